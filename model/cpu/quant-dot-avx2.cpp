// The AVX2 kernels of quant-dot.h (compiled with -march=x86-64-v3).
#define IRIS_QD_AVX512 0
#include "model/cpu/quant-dot-impl.h"

namespace iris::model::cpu {

const QuantKernels& quant_kernels_avx2()
{
    static const QuantKernels k {"avx2",  supports, prepare, matvec,  nullptr, nullptr,
                                 nullptr, nullptr,  nullptr, nullptr, nullptr, nullptr};
    return k;
}

} // namespace iris::model::cpu
