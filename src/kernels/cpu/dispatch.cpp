// Chooses the kernel level at run time: the best the CPU supports, or the one BITNET_CPU_ISA
// names (so tests and benchmarks can run each level on one machine).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

#include "bitnet/error.h"
#include "core/cpu_features.h"
#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar:
            return "scalar";
        case Isa::AVX2:
            return "avx2";
        case Isa::AVXVNNI:
            return "avxvnni";
        case Isa::AVX512:
            return "avx512";
        case Isa::AVX512VNNI:
            return "avx512vnni";
        case Isa::AMX:
            return "amx";
    }
    return "unknown";
}

Isa parse_isa(const std::string& name) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (int i = 0; i < kIsaCount; ++i) {
        if (lower == isa_name(static_cast<Isa>(i))) return static_cast<Isa>(i);
    }
    throw Error(ErrorCode::InvalidArgument,
                "unknown CPU kernel level '" + name +
                    "' (expected scalar, avx2, avxvnni, avx512, avx512vnni or amx)");
}

#if !BITNET_HAVE_X86_KERNELS
// Builds for other CPUs (ARM, RISC-V, ...) compile no x86 kernel objects; the scalar level runs.
const KernelTable* avx2_kernels() {
    return nullptr;
}
const KernelTable* avxvnni_kernels() {
    return nullptr;
}
const KernelTable* avx512_kernels() {
    return nullptr;
}
const KernelTable* avx512vnni_kernels() {
    return nullptr;
}
#endif
#if !BITNET_HAVE_AMX_KERNELS
// Compilers without AMX intrinsics (and other CPUs) build no AMX object.
const KernelTable* amx_kernels() {
    return nullptr;
}
#endif

static const KernelTable* built_table(Isa isa) {
    switch (isa) {
        case Isa::Scalar:
            return &scalar_kernels();
        case Isa::AVX2:
            return avx2_kernels();
        case Isa::AVXVNNI:
            return avxvnni_kernels();
        case Isa::AVX512:
            return avx512_kernels();
        case Isa::AVX512VNNI:
            return avx512vnni_kernels();
        case Isa::AMX:
            return amx_kernels();
    }
    return nullptr;
}

bool isa_supported(Isa isa) {
    if (built_table(isa) == nullptr) return false;
    const CpuFeatures& f = cpu_features();
    switch (isa) {
        case Isa::Scalar:
            return true;
        case Isa::AVX2:
            return f.avx2;
        case Isa::AVXVNNI:
            return f.avx_vnni;
        case Isa::AVX512:
            return f.avx512;
        case Isa::AVX512VNNI:
            return f.avx512_vnni;
        case Isa::AMX:
            return f.amx;
    }
    return false;
}

std::vector<Isa> supported_isas() {
    std::vector<Isa> out;
    for (int i = 0; i < kIsaCount; ++i) {
        if (isa_supported(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
    }
    return out;
}

Isa select_isa() {
    if (const char* forced = std::getenv("BITNET_CPU_ISA"); forced != nullptr && *forced != '\0') {
        const Isa isa = parse_isa(forced);
        if (!isa_supported(isa)) {
            throw Error(ErrorCode::UnsupportedFormat, std::string("BITNET_CPU_ISA=") + forced +
                                                          " is not supported by this CPU or build");
        }
        return isa;
    }
    return supported_isas().back();
}

size_t activation_block_bytes() {
    static const size_t bytes = [] {
        long l2 = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
        l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        const size_t half = l2 > 0 ? static_cast<size_t>(l2) / 2 : size_t{512} << 10;
        return std::clamp(half, size_t{128} << 10, size_t{4} << 20);
    }();
    return bytes;
}

namespace {
std::atomic<int> forced_stream_help{-1};
}  // namespace

bool weights_stream_wants_help() {
    const int forced = forced_stream_help.load(std::memory_order_relaxed);
    return forced >= 0 ? forced != 0 : cpu_features().intel;
}

void force_weights_stream_help(int value) {
    forced_stream_help.store(value, std::memory_order_relaxed);
}

bool short_kv_streams_want_fetching() {
    return !cpu_features().intel;
}

const KernelTable& kernels(Isa isa) {
    const KernelTable* table = isa_supported(isa) ? built_table(isa) : nullptr;
    return table != nullptr ? *table : scalar_kernels();
}

}  // namespace bitnet::cpu
