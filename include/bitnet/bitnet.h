// Everything a user of libbitnet includes.
#pragma once

#include "bitnet/chat_template.h"
#include "bitnet/engine.h"
#include "bitnet/error.h"
#include "bitnet/generate.h"
#include "bitnet/model.h"
#include "bitnet/model_cache.h"
#include "bitnet/perplexity.h"
#include "bitnet/sampling.h"
#include "bitnet/tensor.h"
#include "bitnet/tokenizer.h"
