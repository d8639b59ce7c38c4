#include "runtime/kernel_level.h"

namespace bitnet {
namespace {

struct LevelIsa {
    CpuKernelLevel level;
    cpu::Isa isa;
};

constexpr LevelIsa kLevels[] = {
    {CpuKernelLevel::Scalar, cpu::Isa::Scalar},         {CpuKernelLevel::AVX2, cpu::Isa::AVX2},
    {CpuKernelLevel::AVXVNNI, cpu::Isa::AVXVNNI},       {CpuKernelLevel::AVX512, cpu::Isa::AVX512},
    {CpuKernelLevel::AVX512VNNI, cpu::Isa::AVX512VNNI}, {CpuKernelLevel::AMX, cpu::Isa::AMX},
};

}  // namespace

cpu::Isa isa_for(CpuKernelLevel level) {
    for (const LevelIsa& l : kLevels) {
        if (l.level == level) return l.isa;
    }
    return cpu::select_isa();  // Auto
}

CpuKernelLevel level_for(cpu::Isa isa) {
    for (const LevelIsa& l : kLevels) {
        if (l.isa == isa) return l.level;
    }
    return CpuKernelLevel::Auto;
}

}  // namespace bitnet
