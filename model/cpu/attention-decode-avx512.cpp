// The AVX-512 decoding attention of attention-decode.h (compiled with -march=x86-64-v4).
#define IRIS_AD_AVX512 1
#include "model/cpu/attention-decode-impl.h"

namespace iris::model::cpu {

const DecodeAttention& decode_attention_avx512()
{
    static const DecodeAttention k {"avx512", supports, attend};
    return k;
}

} // namespace iris::model::cpu
