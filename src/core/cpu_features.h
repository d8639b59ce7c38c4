// What the CPU and OS let us run, read once from CPUID/XGETBV.
#pragma once

namespace bitnet {

struct CpuFeatures {
    bool avx2 = false;      // with FMA and F16C
    bool avx_vnni = false;  // the VEX vpdpbusd on 256-bit vectors (Alder Lake on, Zen 5)
    bool avx512 = false;    // F + BW + DQ + VL, and the OS saves the ZMM state
    bool avx512_vnni = false;
    bool avx512_bf16 = false;
    // AMX tiles with int8 and bf16 products, and the OS lets this process use them (Linux
    // grants the 8 KB of tile state per process on request; detection makes that request);
    // with GFNI.
    bool amx = false;
    // GenuineIntel: its cores stream weights from memory best with more loads in flight than
    // their hardware prefetchers give a lone stream (kernels.h, weights_stream_wants_help).
    bool intel = false;
};

const CpuFeatures& cpu_features();

// Cores this process may run on (affinity mask), at least 1.
int available_cores();

}  // namespace bitnet
