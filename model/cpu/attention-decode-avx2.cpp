// The AVX2 decoding attention of attention-decode.h (compiled with -march=x86-64-v3).
#define IRIS_AD_AVX512 0
#include "model/cpu/attention-decode-impl.h"

namespace iris::model::cpu {

const DecodeAttention& decode_attention_avx2()
{
    static const DecodeAttention k {"avx2", supports, attend};
    return k;
}

} // namespace iris::model::cpu
