// The public API's kernel levels (CpuKernelLevel) and the kernel tables' (cpu::Isa), one to
// one but for Auto, which is the best level this CPU supports.
#pragma once

#include "bitnet/engine.h"
#include "kernels/cpu/kernels.h"

namespace bitnet {

cpu::Isa isa_for(CpuKernelLevel level);
CpuKernelLevel level_for(cpu::Isa isa);

}  // namespace bitnet
