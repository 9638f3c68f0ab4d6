// Row formats of the KV cache (ops.h, "KV cache storage"). The quantizers transcribe ggml's
// quantize_row_q8_0_ref / quantize_row_q4_0_ref; this file is compiled with -ffp-contract=off
// (model/CMakeLists.txt) so that x·id + 8.5 rounds twice, as that ISO C reference does, instead
// of becoming one fused multiply-add.
#include "core/core.h"
#include "model/cpu/ops.h"

#include <cmath>
#include <cstring>
#include <numeric>

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

// GCC 12 reports the _mm512_undefined_ps() inside _mm512_cvtph_ps as "may be used
// uninitialized"; the value is fully defined (as in linear-lowp.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace iris::model::cpu {

namespace {

void store_f16(uint8_t* dst, float v)
{
    const uint16_t h = f32_to_f16(v);
    std::memcpy(dst, &h, 2);
}

float load_f16(const uint8_t* src)
{
    uint16_t h;
    std::memcpy(&h, src, 2);
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return f16_to_f32(h);
#endif
}

void quantize_q8_0(const float* x, int g, uint8_t* dst)
{
    float amax = 0.f;
    for (int j = 0; j < g; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    store_f16(dst, d);
    auto* qs = reinterpret_cast<int8_t*>(dst + 2);
    for (int j = 0; j < g; ++j) qs[j] = int8_t(std::round(x[j] * id));
}

void quantize_q4_0(const float* x, int g, uint8_t* dst)
{
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < g; ++j)
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    const float d = max / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    store_f16(dst, d);
    uint8_t* qs = dst + 2;
    const int half = g / 2;
    for (int j = 0; j < half; ++j) {
        const float x0 = x[j] * id, x1 = x[half + j] * id;
        const uint8_t q0 = uint8_t(std::min(15, int(int8_t(x0 + 8.5f))));
        const uint8_t q1 = uint8_t(std::min(15, int(int8_t(x1 + 8.5f))));
        qs[j] = uint8_t(q0 | (q1 << 4));
    }
}

void dequantize_f16(const uint8_t* src, int64_t n, float* dst)
{
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(
            dst + i,
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i))));
#elif defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            dst + i,
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
#endif
    for (; i < n; ++i) dst[i] = load_f16(src + 2 * i);
}

} // namespace

int kv_group_size(int head_dim)
{
    return std::gcd(head_dim, 32);
}

size_t kv_row_bytes(KvType type, int head_dim)
{
    const size_t d = size_t(head_dim), g = size_t(kv_group_size(head_dim));
    switch (type) {
    case KvType::f32:
        return 4 * d;
    case KvType::f16:
        return 2 * d;
    case KvType::q8:
        return d / g * (2 + g);
    case KvType::q4:
        return d / g * (2 + g / 2);
    }
    return 0;
}

void kv_quantize_row(KvType type, const float* x, int head_dim, uint8_t* dst)
{
    const int g = kv_group_size(head_dim);
    switch (type) {
    case KvType::f32:
        std::memcpy(dst, x, size_t(head_dim) * sizeof(float));
        return;
    case KvType::f16:
        for (int i = 0; i < head_dim; ++i) store_f16(dst + 2 * i, x[i]);
        return;
    case KvType::q8:
        for (int i = 0; i < head_dim; i += g, dst += 2 + g) quantize_q8_0(x + i, g, dst);
        return;
    case KvType::q4:
        for (int i = 0; i < head_dim; i += g, dst += 2 + g / 2) quantize_q4_0(x + i, g, dst);
        return;
    }
}

void kv_dequantize_rows(KvType type, const uint8_t* src, int64_t n_rows, int head_dim, float* dst)
{
    const int64_t n = n_rows * head_dim;
    const int g = kv_group_size(head_dim);
    switch (type) {
    case KvType::f32:
        std::memcpy(dst, src, size_t(n) * sizeof(float));
        return;
    case KvType::f16:
        dequantize_f16(src, n, dst);
        return;
    case KvType::q8:
        for (int64_t i = 0; i < n; i += g, src += 2 + g) {
            const float d = load_f16(src);
            const auto* qs = reinterpret_cast<const int8_t*>(src + 2);
#if defined(__AVX512F__)
            if (g == 32) {
                const __m512 vd = _mm512_set1_ps(d);
                for (int j = 0; j < 32; j += 16) {
                    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + j));
                    _mm512_storeu_ps(
                        dst + i + j,
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), vd));
                }
                continue;
            }
#endif
            for (int j = 0; j < g; ++j) dst[i + j] = d * float(qs[j]);
        }
        return;
    case KvType::q4:
        for (int64_t i = 0; i < n; i += g, src += 2 + g / 2) {
            const float d = load_f16(src);
            const uint8_t* qs = src + 2;
#if defined(__AVX512F__)
            if (g == 32) {
                const __m512 vd = _mm512_set1_ps(d);
                const __m512i w
                    = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
                const __m512i eight = _mm512_set1_epi32(8);
                const __m512i lo
                    = _mm512_sub_epi32(_mm512_and_si512(w, _mm512_set1_epi32(15)), eight);
                const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(w, 4), eight);
                _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), vd));
                _mm512_storeu_ps(dst + i + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), vd));
                continue;
            }
#endif
            for (int j = 0; j < g / 2; ++j) {
                dst[i + j] = float((qs[j] & 0x0F) - 8) * d;
                dst[i + j + g / 2] = float((qs[j] >> 4) - 8) * d;
            }
        }
        return;
    }
}

} // namespace iris::model::cpu
