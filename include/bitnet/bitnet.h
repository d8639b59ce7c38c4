// Everything a user of libbitnet includes.
#pragma once

#include "bitnet/engine.h"
#include "bitnet/error.h"
#include "bitnet/model.h"
#include "bitnet/tensor.h"
