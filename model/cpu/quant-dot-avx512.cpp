// The AVX-512 VNNI kernels of quant-dot.h (compiled with -march=x86-64-v4 -mavx512vnni).
#define IRIS_QD_AVX512 1
#include "model/cpu/quant-dot-impl.h"

namespace iris::model::cpu {

const QuantKernels& quant_kernels_avx512()
{
    static const QuantKernels k {"avx512-vnni",  supports,          prepare,      matvec,
                                 gemm_act_bytes, gemm_weight_bytes, gemm_prepare, gemm};
    return k;
}

} // namespace iris::model::cpu
