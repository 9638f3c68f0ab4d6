// The AVX-512 VNNI and BF16 kernels of quant-dot.h (compiled with -march=x86-64-v4
// -mavx512vnni -mavx512bf16; quant-dot.cpp drops the BF16 ones on a CPU without them).
#define IRIS_QD_AVX512 1
#include "model/cpu/quant-dot-impl.h"

namespace iris::model::cpu {

const QuantKernels& quant_kernels_avx512()
{
    static const QuantKernels k {"avx512-vnni",  supports,          prepare,      matvec,
                                 gemm_act_bytes, gemm_weight_bytes, gemm_prepare, gemm,
                                 bf16_act_bytes, bf16_weight_bytes, bf16_prepare, bf16_gemm};
    return k;
}

} // namespace iris::model::cpu
