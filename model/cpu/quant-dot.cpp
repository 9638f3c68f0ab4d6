// Run-time choice of the CPU kernels' instruction set and of the quantized matrix-vector
// kernels (quant-dot.h).
#include "model/cpu/quant-dot.h"

#include "core/core.h"
#include "model/model.h"

#include <cstdlib>
#include <cstring>
#include <string>

namespace iris::model::cpu {

const QuantKernels* quant_kernels_named(const char* isa)
{
    __builtin_cpu_init();
    if (std::strcmp(isa, "avx512-vnni") == 0) {
        if (!cpu_runs_avx512() || !__builtin_cpu_supports("avx512vnni")) return nullptr;
        if (__builtin_cpu_supports("avx512bf16")) return &quant_kernels_avx512();
        // VNNI without BF16 (Ice Lake): the same set less its bf16 products.
        static const QuantKernels no_bf16 = [] {
            QuantKernels k = quant_kernels_avx512();
            k.bf16_act_bytes = k.bf16_weight_bytes = nullptr;
            k.bf16_prepare = nullptr;
            k.bf16_gemm = nullptr;
            return k;
        }();
        return &no_bf16;
    }
    if (std::strcmp(isa, "avx2") == 0) return cpu_runs_avx2() ? &quant_kernels_avx2() : nullptr;
    return nullptr;
}

bool cpu_runs_avx2()
{
    return cpu_runs_x86_64_v3();
}

bool cpu_runs_avx512()
{
    return cpu_runs_avx2() && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

CpuLevel cpu_level()
{
    static const CpuLevel level = [] {
        const char* env = std::getenv("IRIS_CPU");
        const std::string want = env ? env : "";
        if (want == "portable") return CpuLevel::portable;
        if (!want.empty() && want != "avx2" && want != "avx512")
            IRIS_LOG_WARN("IRIS_CPU=%s is not one of avx512, avx2, portable: ignored", env);
        if (want != "avx2" && cpu_runs_avx512()) return CpuLevel::avx512;
        return cpu_runs_avx2() ? CpuLevel::avx2 : CpuLevel::portable;
    }();
    return level;
}

const QuantKernels* quant_kernels()
{
    static const QuantKernels* const chosen = [] {
        // A CPU with AVX-512 but not VNNI (Skylake-X) gets the AVX2 set.
        const QuantKernels* k
            = cpu_level() == CpuLevel::avx512 ? quant_kernels_named("avx512-vnni") : nullptr;
        if (!k && cpu_level() != CpuLevel::portable) k = quant_kernels_named("avx2");
        IRIS_LOG_DEBUG("quantized kernels: %s", k ? k->isa : "portable");
        return k;
    }();
    return chosen;
}

} // namespace iris::model::cpu

namespace iris::model {

const char* cpu_kernels_name()
{
    const cpu::QuantKernels* k = cpu::quant_kernels();
    return k ? k->isa : "portable";
}

} // namespace iris::model
