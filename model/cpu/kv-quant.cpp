// Row formats of the KV cache (ops.h, "KV cache storage"). The quantizers transcribe ggml's
// quantize_row_q8_0_ref / quantize_row_q4_0_ref; this file is compiled with -ffp-contract=off
// (model/CMakeLists.txt) so that x·id + 8.5 rounds twice, as that ISO C reference does, instead
// of becoming one fused multiply-add.
#include "core/core.h"
#include "model/cpu/ops-avx512.h"
#include "model/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#if defined(__F16C__)
#include <immintrin.h>
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
    // F16C's 8 lanes give the bits 16 would (the widening is exact); only prefill's attention
    // over an f16 cache comes here, decoding's kernel widens the rows itself.
#if defined(__F16C__)
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
    case KvType::skvq:
        break;
    }
    throw Error(ErrorKind::invalid_argument, "kv_row_bytes: skvq rows need their format");
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
    case KvType::skvq:
        break;
    }
    throw Error(ErrorKind::invalid_argument, "kv_quantize_row: skvq rows need their format");
}

void kv_dequantize_rows(KvType type, const uint8_t* src, int64_t n_rows, int head_dim, float* dst)
{
    const int64_t n = n_rows * head_dim;
    const int g = kv_group_size(head_dim);
    const OpsAvx512* simd = g == 32 ? ops_avx512() : nullptr;
    switch (type) {
    case KvType::f32:
        std::memcpy(dst, src, size_t(n) * sizeof(float));
        return;
    case KvType::f16:
        dequantize_f16(src, n, dst);
        return;
    case KvType::q8:
        if (simd) return simd->dequantize_q8(src, n / g, dst);
        for (int64_t i = 0; i < n; i += g, src += 2 + g) {
            const float d = load_f16(src);
            const auto* qs = reinterpret_cast<const int8_t*>(src + 2);
            for (int j = 0; j < g; ++j) dst[i + j] = d * float(qs[j]);
        }
        return;
    case KvType::q4:
        if (simd) return simd->dequantize_q4(src, n / g, dst);
        for (int64_t i = 0; i < n; i += g, src += 2 + g / 2) {
            const float d = load_f16(src);
            const uint8_t* qs = src + 2;
            for (int j = 0; j < g / 2; ++j) {
                dst[i + j] = float((qs[j] & 0x0F) - 8) * d;
                dst[i + j + g / 2] = float((qs[j] >> 4) - 8) * d;
            }
        }
        return;
    case KvType::skvq:
        break;
    }
    throw Error(ErrorKind::invalid_argument, "kv_dequantize_rows: skvq rows need their format");
}

// ---------------------------------------------------------------------------------------------
// SKVQ

SkvqFormat skvq_format(float bits, int group, int head_dim)
{
    SkvqFormat f;
    if (bits == 1.5f) {
        f.bits = 2;
        f.levels = 3;
    } else if (bits == 2.f || bits == 4.f || bits == 8.f) {
        f.bits = int(bits);
        f.levels = 1 << f.bits;
    } else {
        throw Error(ErrorKind::invalid_argument,
                    strfmt("SKVQ: %g bits is not 1.5, 2, 4 or 8", double(bits)));
    }
    if (group != 32 && group != 64 && group != 128)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("SKVQ: group of %d channels is not 32, 64 or 128", group));
    f.group = std::min(group, head_dim);
    if (head_dim % f.group != 0) f.group = std::gcd(head_dim, f.group);
    if (f.group * f.bits % 8 != 0)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("SKVQ: head_dim %d gives groups of %d channels, which do not fill "
                           "whole bytes at %d bits",
                           head_dim, f.group, f.bits));
    return f;
}

size_t skvq_row_bytes(const SkvqFormat& f, int head_dim)
{
    return size_t(head_dim / f.group) * (4 + size_t(f.group * f.bits / 8));
}

void skvq_quantize_row(const SkvqFormat& f, const float* x, int head_dim, const int32_t* perm,
                       const float* clip, uint8_t* dst)
{
    const int g = f.group, per_byte = 8 / f.bits;
    const float max_int = float(f.levels - 1);
    float v[256];
    for (int g0 = 0; g0 < head_dim; g0 += g) {
        float mn = INFINITY, mx = -INFINITY;
        for (int j = 0; j < g; ++j) {
            v[j] = x[perm ? perm[g0 + j] : g0 + j];
            mn = std::min(mn, v[j]);
            mx = std::max(mx, v[j]);
        }
        const float a = clip ? clip[g0 / g] : 1.f;
        const float gmax = a * mx, gmin = a * mn;
        const float scale = std::max((gmax - gmin) / max_int, 1e-5f);
        store_f16(dst, scale);
        store_f16(dst + 2, gmin);
        uint8_t* codes = dst + 4;
        std::memset(codes, 0, size_t(g / per_byte));
        for (int j = 0; j < g; ++j) {
            const float t = (v[j] - gmin) / scale;
            // Clamp, then round half to even (the default rounding mode); NaN becomes 0.
            const int q = int(std::nearbyint(t > 0.f ? std::min(t, max_int) : 0.f));
            codes[j / per_byte] |= uint8_t(q << ((per_byte - 1 - j % per_byte) * f.bits));
        }
        dst = codes + g / per_byte;
    }
}

namespace {

// The groups of skvq_dequantize_rows with the code width known at compile time (the decode
// loop of long contexts runs through here).
template<int Bits>
void skvq_dequantize_groups(const uint8_t* src, int64_t n_groups, int g, float* dst)
{
    constexpr int per_byte = 8 / Bits, mask = (1 << Bits) - 1;
    for (int64_t i = 0; i < n_groups; ++i, dst += g) {
        const float scale = load_f16(src), zp = load_f16(src + 2);
        const uint8_t* codes = src + 4;
        src = codes + g / per_byte;
        for (int j = 0; j < g; ++j) {
            const int q = (codes[j / per_byte] >> ((per_byte - 1 - j % per_byte) * Bits)) & mask;
            dst[j] = float(q) * scale + zp;
        }
    }
}

} // namespace

void skvq_dequantize_rows(const SkvqFormat& f, const uint8_t* src, int64_t n_rows, int head_dim,
                          float* dst)
{
    const int64_t n_groups = n_rows * (head_dim / f.group);
    if (const OpsAvx512* simd = ops_avx512(); simd && f.group % 16 == 0)
        return simd->skvq_dequantize(f.bits, src, n_groups, f.group, dst);
    if (f.bits == 2)
        skvq_dequantize_groups<2>(src, n_groups, f.group, dst);
    else if (f.bits == 4)
        skvq_dequantize_groups<4>(src, n_groups, f.group, dst);
    else
        skvq_dequantize_groups<8>(src, n_groups, f.group, dst);
}

} // namespace iris::model::cpu
