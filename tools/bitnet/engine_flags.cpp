#include <algorithm>

#include "commands.h"
#include "kernels/cpu/kernels.h"
#include "runtime/kernel_level.h"

namespace bitnet::cli {

void EngineFlags::add_to(CLI::App& app) {
    app.add_option("-t,--threads", threads, "worker threads (0: every available core)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--kernel", kernel,
                   "CPU kernel level: auto, scalar, avx2, avxvnni, avx512, avx512vnni, amx")
        ->check(
            CLI::IsMember({"auto", "scalar", "avx2", "avxvnni", "avx512", "avx512vnni", "amx"}));
    app.add_option("--kv-cache", kv_cache,
                   "KV cache precision: f32 (exact), f16, bf16, i8 (int8 rows, a scale each)")
        ->check(CLI::IsMember({"f32", "f16", "bf16", "i8"}));
    app.add_flag("--reference-numerics", reference_numerics,
                 "accumulate BitLinear in float32 like PyTorch, to reproduce transformers' "
                 "rounding (slower)");
    app.add_option("--device", device, "auto, cpu or cuda")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    app.add_option("--weight-memory", weight_memory,
                   "weights the file stores as the kernels read them: auto (copied into 2 MiB "
                   "pages from 1 MiB on, where the OS offers them), mapped (read in place from "
                   "the file mapping, shared page cache), huge (always copied)")
        ->check(CLI::IsMember({"auto", "mapped", "huge"}));
}

EngineOptions EngineFlags::to_options() const {
    EngineOptions o;
    o.threads = threads;
    o.reference_numerics = reference_numerics;
    if (kernel != "auto") o.kernel_level = level_for(cpu::parse_isa(kernel));
    o.kv_cache_type = kv_cache == "f16"    ? KVCacheType::F16
                      : kv_cache == "bf16" ? KVCacheType::BF16
                      : kv_cache == "i8"   ? KVCacheType::I8
                                           : KVCacheType::F32;
    o.device = device == "cpu" ? Device::CPU : device == "cuda" ? Device::CUDA : Device::Auto;
    o.weight_memory = weight_memory == "mapped" ? WeightMemory::Mapped
                      : weight_memory == "huge" ? WeightMemory::HugePages
                                                : WeightMemory::Auto;
    return o;
}

}  // namespace bitnet::cli
