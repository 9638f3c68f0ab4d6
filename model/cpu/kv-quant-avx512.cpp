// kv-quant.cpp's AVX-512 loops of ops-avx512.h (compiled with -march=x86-64-v4 and, as
// kv-quant.cpp, -ffp-contract=off: each product and sum is rounded apart, as in its loops).
#include "model/cpu/ops-avx512.h"

#include <immintrin.h>

#include <cstring>

// GCC 12 reports the _mm512_undefined_*() inside its own intrinsics as "may be used
// uninitialized"; the values are fully defined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace iris::model::cpu {

namespace {

float load_f16(const uint8_t* src)
{
    uint16_t h;
    std::memcpy(&h, src, 2);
    return _cvtsh_ss(h);
}

// SKVQ groups with the code width known at compile time: 16 codes at a time, their bytes
// spread one per lane (a byte shuffle), each lane shifted to its code and masked; then the
// same two roundings as kv-quant.cpp's loop.
template<int Bits> void skvq_groups(const uint8_t* src, int64_t n_groups, int g, float* dst)
{
    constexpr int per_byte = 8 / Bits, mask = (1 << Bits) - 1;
    constexpr int bytes16 = 16 / per_byte; // bytes holding 16 codes
    const __m128i spread = Bits == 2
        ? _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
        : _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i shifts = Bits == 2
        ? _mm512_setr_epi32(6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0)
        : _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i vmask = _mm512_set1_epi32(mask);
    for (int64_t i = 0; i < n_groups; ++i, dst += g) {
        const __m512 vs = _mm512_set1_ps(load_f16(src)), vz = _mm512_set1_ps(load_f16(src + 2));
        const uint8_t* codes = src + 4;
        src = codes + g / per_byte;
        for (int j = 0; j < g; j += 16) {
            __m512i c;
            if constexpr (Bits == 8) {
                c = _mm512_cvtepu8_epi32(
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + j)));
            } else {
                __m128i b;
                if constexpr (bytes16 == 4) {
                    int32_t w;
                    std::memcpy(&w, codes + j / per_byte, 4);
                    b = _mm_cvtsi32_si128(w);
                } else {
                    b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + j / per_byte));
                }
                c = _mm512_and_si512(
                    _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_shuffle_epi8(b, spread)), shifts),
                    vmask);
            }
            _mm512_storeu_ps(dst + j, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(c), vs), vz));
        }
    }
}

} // namespace

void kv_dequantize_q8_avx512(const uint8_t* src, int64_t n_groups, float* dst)
{
    for (int64_t i = 0; i < n_groups; ++i, src += 34, dst += 32) {
        const __m512 vd = _mm512_set1_ps(load_f16(src));
        for (int j = 0; j < 32; j += 16) {
            const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 + j));
            _mm512_storeu_ps(dst + j,
                             _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), vd));
        }
    }
}

void kv_dequantize_q4_avx512(const uint8_t* src, int64_t n_groups, float* dst)
{
    const __m512i eight = _mm512_set1_epi32(8);
    for (int64_t i = 0; i < n_groups; ++i, src += 18, dst += 32) {
        const __m512 vd = _mm512_set1_ps(load_f16(src));
        const __m512i w
            = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2)));
        const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(w, _mm512_set1_epi32(15)), eight);
        const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(w, 4), eight);
        _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), vd));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), vd));
    }
}

void skvq_dequantize_avx512(int bits, const uint8_t* src, int64_t n_groups, int g, float* dst)
{
    if (bits == 2)
        skvq_groups<2>(src, n_groups, g, dst);
    else if (bits == 4)
        skvq_groups<4>(src, n_groups, g, dst);
    else
        skvq_groups<8>(src, n_groups, g, dst);
}

} // namespace iris::model::cpu
