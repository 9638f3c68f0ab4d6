// The int8 dot-product kernels of quant-dot.h, written once and compiled twice: by
// quant-dot-avx512.cpp with IRIS_QD_AVX512 1 (AVX-512 VNNI: two 32-value blocks per vpdpbusd)
// and by quant-dot-avx2.cpp with IRIS_QD_AVX512 0 (AVX2: one block per vpmaddubsw/vpmaddwd).
// Everything here has internal linkage and uses only intrinsics and plain arithmetic, so no
// function compiled for one target can stand in for another's (see quant-dot.h).
//
// Activation record of one pair of blocks b, b+1 (quant-dot.h): codes at 0, scales at 64,
// offsets at 128. Code layouts, matched to how each kernel unpacks the weights:
//   AVX-512, nibble types (q4_0, q4_1, q5_0, q5_1, iq4_nl)
//                  x_b[0..15], x_b+1[0..15], x_b[16..31], x_b+1[16..31]: the low nibbles of
//                  both weight blocks, then their high nibbles
//   AVX-512, signed weights (q8_0, iq4_nl)  as u8 (code + 128): vpdpbusd multiplies u8 by
//                  s8, and the weights are the signed side; the +128 is taken back with
//                  128·Σq_w
//   otherwise (AVX2, the k-quants, AVX-512 q8_0's order)  x_b[0..31], x_b+1[0..31] as s8
// Scale lanes: d_x of the block whose products each int32 lane of the dot product sums: lanes
// 0-7 block b, 8-15 block b+1, except for split codes (AVX-512 nibble types), whose halves put
// block b in lanes 0-3 and 8-11. Offset lanes:
//   q4_0, q5_0  -8·Σq_x (-16·Σq_x) of a block in the first of its lanes, where the dot product
//         starts so that it sums to Σ(q_w - 8)·q_x
//   q4_1, q5_1  f32 d_x·Σq_x of a block in the first of its lanes, which meets the min m
//   q6_K  -32·Σq_x of each half block (sub-block of 16) in the first of the 4 lanes that sum
//         its products: lanes 0 and 4 (block b), 8 and 12 (b+1)
//   q4_K, q5_K  f32 d_x·Σq_x of the 8 blocks of a super-block in lanes 8-15 of its first
//         pair, which meet its 8 mins in one multiply-add per super-block
#pragma once

#include "model/cpu/quant-dot.h"

#include <immintrin.h>

#include <cstring>

#ifndef IRIS_QD_AVX512
#error "define IRIS_QD_AVX512 before including quant-dot-impl.h"
#endif

// GCC 12 reports the _mm512_undefined_*() inside its own intrinsics as "may be used
// uninitialized"; the values are fully defined (as in vec-math.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace iris::model::cpu {
namespace {

constexpr size_t kScales = 64, kOffsets = 128;
// Super-blocks of 256 (quant.cpp): q4_K d, dmin, scales[12], qs[128]; q5_K the same with
// qh[32] before qs; q6_K ql[128], qh[64], scales[16], d.
constexpr size_t kQ4KBlock = 144, kQ5KBlock = 176, kQ6KBlock = 210;

inline uint16_t load_u16(const uint8_t* p)
{
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

inline size_t pair_count(int64_t k)
{
    return size_t((k / 32 + 1) / 2);
}

// One block of 32 activations to int8 codes q = round(x / d), d = max|x| / 127 (round to
// nearest even, as vcvtps2dq does). Returns d; *sum gets Σq.
inline float quantize_block(const float* x, int8_t* q, int32_t* sum)
{
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    // Below 1e-30 the reciprocal of d could overflow; such a block is zero to f32 precision.
    const float d = amax < 1e-30f ? 0.f : amax / 127.f;
    const __m256 id = _mm256_set1_ps(d == 0.f ? 0.f : 127.f / amax);
    __m256i c[4];
    __m256i s = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
        c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
        s = _mm256_add_epi32(s, c[i]);
    }
    // Packing works within 128-bit lanes; the permutation puts the 32 codes back in order.
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    *sum = _mm_cvtsi128_si32(s4);
    return d;
}

constexpr bool is_k4(WeightType type)
{
    return type == WeightType::q4_K || type == WeightType::q5_K;
}

// The 32-value block types (quant.h): bytes per block, where the 16 bytes of nibbles start,
// where the 32 fifth bits start (0: none), whether an fp16 min after d is added to every
// value (q4_1, q5_1), the offset subtracted from every code (q4_0, q5_0), and whether the
// codes are signed (q8_0, and iq4_nl's looked-up values).
struct Block32
{
    size_t bytes, qs, qh;
    bool min;
    int offset;
    bool is_signed;
};
constexpr Block32 block32(WeightType type)
{
    switch (type) {
    case WeightType::q8_0:
        return {34, 2, 0, false, 0, true};
    case WeightType::q4_0:
        return {18, 2, 0, false, 8, false};
    case WeightType::q4_1:
        return {20, 4, 0, true, 0, false};
    case WeightType::q5_0:
        return {22, 6, 2, false, 16, false};
    case WeightType::q5_1:
        return {24, 8, 4, true, 0, false};
    default: // iq4_nl
        return {18, 2, 0, false, 0, true};
    }
}

// iq4_nl's 16 levels (kvalues_iq4nl), looked up by nibble.
constexpr int8_t kIq4nlValues[16]
    = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

bool supports(WeightType type)
{
    switch (type) {
    case WeightType::q8_0:
    case WeightType::q4_0:
    case WeightType::q4_1:
    case WeightType::q5_0:
    case WeightType::q5_1:
    case WeightType::iq4_nl:
    case WeightType::q4_K:
    case WeightType::q5_K:
    case WeightType::q6_K:
        return true;
    default:
        return false;
    }
}

// The 8 sub-block scales (bytes 0-7) and mins (8-15) of a q4_K / q5_K super-block from their
// 12 packed bytes (get_scale_min_k4, four fields at a time).
inline __m128i k4_scales_mins(const uint8_t* packed)
{
    constexpr uint32_t low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, low2 = 0x03030303;
    uint32_t u[3], out[4];
    std::memcpy(u, packed, 12);
    out[0] = u[0] & low6;
    out[1] = (u[2] & low4) | (((u[0] >> 6) & low2) << 4);
    out[2] = u[1] & low6;
    out[3] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4);
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(out));
}

void prepare(WeightType type, const float* x, int64_t m, int64_t ldx, int64_t k, uint8_t* acts)
{
    const int64_t nb = k / 32;
    const size_t row_bytes = pair_count(k) * kActPairBytes;
    for (int64_t i = 0; i < m; ++i) {
        uint8_t* rec = acts + size_t(i) * row_bytes;
        std::memset(rec, 0, row_bytes);
        for (int64_t b = 0; b < nb; ++b) {
            uint8_t* r = rec + size_t(b / 2) * kActPairBytes;
            const int half = int(b % 2);
            int8_t q[32];
            int32_t sum;
            const float d = quantize_block(x + i * ldx + b * 32, q, &sum);
            // AVX-512 splits the codes of the nibble types in halves (low nibbles of both
            // blocks, then high ones) and biases those that meet signed weights by 128.
            const bool k_quant = is_k4(type) || type == WeightType::q6_K;
            const bool split = IRIS_QD_AVX512 && !k_quant && type != WeightType::q8_0;
            const bool biased = IRIS_QD_AVX512 && !k_quant && block32(type).is_signed;
            uint8_t* codes = r;
            if (split) {
                std::memcpy(codes + 16 * half, q, 16);
                std::memcpy(codes + 32 + 16 * half, q + 16, 16);
            } else {
                std::memcpy(codes + 32 * half, q, 32);
            }
            if (biased)
                for (int c = 0; c < 32; ++c) {
                    const int at = split ? c % 16 + 16 * half + 32 * (c / 16) : c + 32 * half;
                    codes[at] ^= 0x80;
                }
            // The lanes block b's products land in: 0-7 (b+1: 8-15), or for split codes 0-3
            // and 8-11 (b+1: 4-7 and 12-15).
            const int lane0 = split ? 4 * half : 8 * half;
            float* scales = reinterpret_cast<float*>(r + kScales);
            for (int l = 0; l < 4; ++l) {
                scales[lane0 + l] = d;
                scales[lane0 + (split ? 8 : 4) + l] = d;
            }
            if (!k_quant && block32(type).offset != 0) {
                const int32_t off = -block32(type).offset * sum;
                std::memcpy(r + kOffsets + 4 * lane0, &off, 4);
            } else if (!k_quant && block32(type).min) {
                const float dsum = d * float(sum);
                std::memcpy(r + kOffsets + 4 * lane0, &dsum, 4);
            } else if (type == WeightType::q6_K) {
                int32_t first = 0;
                for (int c = 0; c < 16; ++c) first += q[c];
                const int32_t off[2] = {-32 * first, -32 * (sum - first)};
                std::memcpy(r + kOffsets + 4 * lane0, &off[0], 4);
                std::memcpy(r + kOffsets + 4 * (lane0 + 4), &off[1], 4);
            } else if (is_k4(type)) {
                const float dsum = d * float(sum);
                std::memcpy(rec + size_t(b / 8 * 4) * kActPairBytes + kOffsets + 4 * (8 + b % 8),
                            &dsum, 4);
            }
        }
    }
}

#if IRIS_QD_AVX512

// The two blocks' fp16 values at byte `at` (d, or the min m) in the lanes of their products
// (see prepare); w1 == w0 for a last block without a partner.
template<WeightType T> inline __m512 pair_halves(const uint8_t* w0, const uint8_t* w1, size_t at)
{
    const __m128i d0 = _mm_set1_epi16(short(load_u16(w0 + at))),
                  d1 = _mm_set1_epi16(short(load_u16(w1 + at)));
    if constexpr (T == WeightType::q8_0)
        return _mm512_cvtph_ps(_mm256_set_m128i(d1, d0));
    else
        return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(_mm_unpacklo_epi64(d0, d1)));
}

// The weight codes of blocks b, b+1 (one, the other zero, when `one`) in the activation layout.
template<WeightType T> inline __m512i pair_codes(const uint8_t* w0, bool one)
{
    constexpr Block32 f = block32(T);
    if constexpr (T == WeightType::q8_0) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + 2));
        if (one) return _mm512_zextsi256_si512(a);
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + f.bytes + 2));
        return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    } else {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + f.qs));
        const __m128i b = one
            ? _mm_setzero_si128()
            : _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + f.bytes + f.qs));
        const __m256i nib = _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
        const __m256i low = _mm256_set1_epi8(0x0F);
        const __m256i lo = _mm256_and_si256(nib, low);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(nib, 4), low);
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        if constexpr (f.qh != 0) {
            // Fifth bit j of a block (value j) to the byte of the split layout that holds it.
            uint32_t h0, h1 = 0;
            std::memcpy(&h0, w0 + f.qh, 4);
            if (!one) std::memcpy(&h1, w0 + f.bytes + f.qh, 4);
            const __mmask64 fifth = uint64_t(h0 & 0xFFFF) | uint64_t(h1 & 0xFFFF) << 16
                | uint64_t(h0 >> 16) << 32 | uint64_t(h1 >> 16) << 48;
            q = _mm512_mask_add_epi8(q, fifth, q, _mm512_set1_epi8(16));
        }
        if constexpr (T == WeightType::iq4_nl) {
            const __m512i levels = _mm512_broadcast_i32x4(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
            q = _mm512_maskz_shuffle_epi8(one ? __mmask64(0x0000FFFF0000FFFF) : ~__mmask64(0),
                                          levels, q);
        }
        return q;
    }
}

// One weight row of a 32-value block type against M activation rows (record stride as).
template<WeightType T, int M>
void dot_row(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y, int64_t ldy)
{
    constexpr Block32 f = block32(T);
    __m512 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm512_setzero_ps();
    const __m512i bias = _mm512_set1_epi8(char(0x80));
    for (int64_t b = 0; b < nb; b += 2) {
        const uint8_t* w0 = w + size_t(b) * f.bytes;
        const bool one = b + 1 == nb;
        const uint8_t* w1 = one ? w0 : w0 + f.bytes;
        const __m512i wq = pair_codes<T>(w0, one);
        const __m512 dw = pair_halves<T>(w0, w1, 0);
        __m512 mw = _mm512_setzero_ps();
        if constexpr (f.min) mw = pair_halves<T>(w0, w1, 2);
        __m512i start = _mm512_setzero_si512();
        if constexpr (f.is_signed) // -128·Σq_w per lane undoes the activations' +128
            start = _mm512_sub_epi32(start, _mm512_dpbusd_epi32(start, bias, wq));
        const size_t off = size_t(b / 2) * kActPairBytes;
        for (int i = 0; i < M; ++i) {
            const uint8_t* a = acts + size_t(i) * as + off;
            const __m512i xq = _mm512_load_si512(a);
            __m512i dot;
            if constexpr (f.is_signed)
                dot = _mm512_dpbusd_epi32(start, xq, wq);
            else if constexpr (f.offset != 0)
                dot = _mm512_dpbusd_epi32(_mm512_load_si512(a + kOffsets), wq, xq);
            else
                dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xq);
            const __m512 s
                = _mm512_mul_ps(dw, _mm512_load_ps(reinterpret_cast<const float*>(a + kScales)));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[i]);
            if constexpr (f.min) // m·d_x·Σq_x
                acc[i] = _mm512_fmadd_ps(
                    mw, _mm512_load_ps(reinterpret_cast<const float*>(a + kOffsets)), acc[i]);
        }
    }
    for (int i = 0; i < M; ++i) y[i * ldy] = _mm512_reduce_add_ps(acc[i]);
}

// q4_K / q5_K: a pair of blocks is one 64-value chunk of a super-block, whose 32 bytes of
// nibbles hold block b in their low halves and b+1 in their high ones, so the weight codes
// (u8 0..31) meet the activations in their natural order. Each pair takes the scales of its
// two sub-blocks into its lanes; the mins meet d_x·Σq_x once per super-block (see prepare).
template<WeightType T, int M>
void dot_row_k4(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y, int64_t ldy)
{
    constexpr size_t bb = T == WeightType::q4_K ? kQ4KBlock : kQ5KBlock;
    constexpr size_t qs = T == WeightType::q4_K ? 16 : 48;
    // Two accumulators per row (even and odd chunks) keep two FMA chains in flight.
    __m512 acc[2][M];
    for (int i = 0; i < M; ++i) acc[0][i] = acc[1][i] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    // The fifth bits of chunk 0's two sub-blocks; chunk j's are these shifted by 2j.
    const __m512i fifth = _mm512_inserti64x4(_mm512_set1_epi8(1), _mm256_set1_epi8(2), 1);
    const __m512i halves = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1);
    for (int64_t s = 0; s < nb / 8; ++s) {
        const uint8_t* blk = w + size_t(s) * bb;
        // d·sc_j in lanes 0-7, dmin·m_j in lanes 8-15.
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(blk)));
        const __m256 dmin = _mm256_set1_ps(_cvtsh_ss(load_u16(blk + 2)));
        const __m512 sm
            = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(k4_scales_mins(blk + 4))),
                            _mm512_insertf32x8(_mm512_castps256_ps512(d), dmin, 1));
        __m512i qh = _mm512_setzero_si512();
        if constexpr (T == WeightType::q5_K)
            qh = _mm512_broadcast_i64x4(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16)));
        const uint8_t* a0 = acts + size_t(s * 4) * kActPairBytes;
        for (int i = 0; i < M; ++i)
            acc[1][i] = _mm512_fnmadd_ps(
                sm, _mm512_load_ps(reinterpret_cast<const float*>(a0 + size_t(i) * as + kOffsets)),
                acc[1][i]);
        for (int j = 0; j < 4; ++j) {
            const __m256i nib
                = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + qs + 32 * j));
            __m512i wq = _mm512_and_si512(
                _mm512_inserti64x4(_mm512_castsi256_si512(nib), _mm256_srli_epi16(nib, 4), 1), low);
            if constexpr (T == WeightType::q5_K)
                wq = _mm512_mask_add_epi8(
                    wq, _mm512_test_epi8_mask(qh, _mm512_slli_epi16(fifth, 2 * j)), wq, sixteen);
            const __m512 dw
                = _mm512_permutexvar_ps(_mm512_add_epi32(halves, _mm512_set1_epi32(2 * j)), sm);
            for (int i = 0; i < M; ++i) {
                const uint8_t* a = a0 + size_t(i) * as + size_t(j) * kActPairBytes;
                const __m512i dot
                    = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, _mm512_load_si512(a));
                const __m512 sx = _mm512_mul_ps(
                    dw, _mm512_load_ps(reinterpret_cast<const float*>(a + kScales)));
                acc[j % 2][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sx, acc[j % 2][i]);
            }
        }
    }
    for (int i = 0; i < M; ++i)
        y[i * ldy] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][i], acc[1][i]));
}

// q6_K: per 128-value half, the 64 bytes of low nibbles hold pair 0's codes in their low
// halves and pair 1's in their high ones, in order, and the 32 bytes of qh the top two bits
// of values l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7 of byte l. Codes are u8 0..63; the
// offset lanes take the 32 back. Lane 4t+u of a pair sums products of its sub-block t of 16.
template<int M>
void dot_row_q6k(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y,
                 int64_t ldy)
{
    __m512 acc[2][M];
    for (int i = 0; i < M; ++i) acc[0][i] = acc[1][i] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    const __m512i quarter = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t s = 0; s < nb / 8; ++s) {
        const uint8_t* blk = w + size_t(s) * kQ6KBlock;
        const __m512 sc = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                            reinterpret_cast<const __m128i*>(blk + 192)))),
                                        _mm512_set1_ps(_cvtsh_ss(load_u16(blk + 208))));
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = _mm512_loadu_si512(blk + 64 * h);
            const __m256i qh
                = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
            // Values 0-63 of the half take bits 0-1 (first 32) and 2-3 (next 32) of qh; 64-127
            // bits 4-5 and 6-7: in bits 4-5 after the shifts below.
            const __m512i hi
                = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            for (int p = 0; p < 2; ++p) {
                const __m512i wq = p == 0
                    ? _mm512_or_si512(_mm512_and_si512(ql, low),
                                      _mm512_and_si512(_mm512_slli_epi16(hi, 4), top))
                    : _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low),
                                      _mm512_and_si512(hi, top));
                const __m512 dw = _mm512_permutexvar_ps(
                    _mm512_add_epi32(quarter, _mm512_set1_epi32(4 * (2 * h + p))), sc);
                const size_t off = size_t(s * 4 + 2 * h + p) * kActPairBytes;
                for (int i = 0; i < M; ++i) {
                    const uint8_t* a = acts + size_t(i) * as + off;
                    const __m512i dot = _mm512_dpbusd_epi32(_mm512_load_si512(a + kOffsets), wq,
                                                            _mm512_load_si512(a));
                    const __m512 sx = _mm512_mul_ps(
                        dw, _mm512_load_ps(reinterpret_cast<const float*>(a + kScales)));
                    acc[p][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sx, acc[p][i]);
                }
            }
        }
    }
    for (int i = 0; i < M; ++i)
        y[i * ldy] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][i], acc[1][i]));
}

#else // AVX2

inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Byte j = 0xFF where bit j of x is set (each byte of x spread over 8 bytes, one bit kept
// per byte).
inline __m256i bits_to_bytes(uint32_t x)
{
    const __m256i spread
        = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int(x)), spread);
    const __m256i others = _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE);
    return _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1));
}

// One weight row of a 32-value block type against M activation rows (record stride as).
template<WeightType T, int M>
void dot_row(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y, int64_t ldy)
{
    constexpr Block32 f = block32(T);
    // Two accumulators per row (even and odd blocks) keep two FMA chains in flight.
    __m256 acc[2][M];
    for (int i = 0; i < M; ++i) acc[0][i] = acc[1][i] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* wb = w + size_t(b) * f.bytes;
        const int half = int(b % 2);
        const __m256 dw = _mm256_set1_ps(_cvtsh_ss(load_u16(wb)));
        __m256i wq;
        if constexpr (T == WeightType::q8_0) {
            wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 2));
        } else {
            const __m128i nib = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + f.qs));
            wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(nib, 4), nib), low);
        }
        if constexpr (f.qh != 0) {
            uint32_t h;
            std::memcpy(&h, wb + f.qh, 4);
            wq = _mm256_or_si256(wq, _mm256_and_si256(bits_to_bytes(h), _mm256_set1_epi8(16)));
        }
        if constexpr (T == WeightType::iq4_nl)
            wq = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128(
                                         reinterpret_cast<const __m128i*>(kIq4nlValues))),
                                     wq);
        // vpmaddubsw multiplies u8 by s8: signed weights move their signs onto the
        // activations (|q_w| <= 128, so a pair sum stays below 2^15).
        const __m256i wu = f.is_signed ? _mm256_sign_epi8(wq, wq) : wq;
        __m256 mw = _mm256_setzero_ps();
        if constexpr (f.min) mw = _mm256_set1_ps(_cvtsh_ss(load_u16(wb + 2)));
        const size_t off = size_t(b / 2) * kActPairBytes;
        for (int i = 0; i < M; ++i) {
            const uint8_t* a = acts + size_t(i) * as + off;
            __m256i xq = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + 32 * half));
            if constexpr (f.is_signed) xq = _mm256_sign_epi8(xq, wq);
            __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xq), ones);
            if constexpr (f.offset != 0)
                dot = _mm256_add_epi32(
                    dot,
                    _mm256_load_si256(reinterpret_cast<const __m256i*>(a + kOffsets + 32 * half)));
            const __m256 s = _mm256_mul_ps(
                dw, _mm256_load_ps(reinterpret_cast<const float*>(a + kScales) + 8 * half));
            acc[half][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, acc[half][i]);
            if constexpr (f.min) // m·d_x·Σq_x
                acc[half][i] = _mm256_fmadd_ps(
                    mw, _mm256_load_ps(reinterpret_cast<const float*>(a + kOffsets) + 8 * half),
                    acc[half][i]);
        }
    }
    for (int i = 0; i < M; ++i) y[i * ldy] = hsum(_mm256_add_ps(acc[0][i], acc[1][i]));
}

// q4_K / q5_K (see the AVX-512 version): one block of 32, one sub-block, per step; the low
// nibbles of a chunk are its even block, the high ones its odd block.
template<WeightType T, int M>
void dot_row_k4(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y, int64_t ldy)
{
    constexpr size_t bb = T == WeightType::q4_K ? kQ4KBlock : kQ5KBlock;
    constexpr size_t qs = T == WeightType::q4_K ? 16 : 48;
    __m256 acc[2][M];
    for (int i = 0; i < M; ++i) acc[0][i] = acc[1][i] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i low = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16);
    for (int64_t s = 0; s < nb / 8; ++s) {
        const uint8_t* blk = w + size_t(s) * bb;
        const __m128i sm = k4_scales_mins(blk + 4);
        alignas(32) float dw[8];
        _mm256_store_ps(dw,
                        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)),
                                      _mm256_set1_ps(_cvtsh_ss(load_u16(blk)))));
        const __m256 dmin
            = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8))),
                            _mm256_set1_ps(_cvtsh_ss(load_u16(blk + 2))));
        __m256i qh = _mm256_setzero_si256();
        if constexpr (T == WeightType::q5_K)
            qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16));
        const uint8_t* a0 = acts + size_t(s * 4) * kActPairBytes;
        for (int i = 0; i < M; ++i)
            acc[1][i] = _mm256_fnmadd_ps(
                dmin,
                _mm256_load_ps(reinterpret_cast<const float*>(a0 + size_t(i) * as + kOffsets) + 8),
                acc[1][i]);
        for (int b = 0; b < 8; ++b) {
            const int half = b % 2;
            const __m256i nib
                = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + qs + 32 * (b / 2)));
            __m256i wq = _mm256_and_si256(half ? _mm256_srli_epi16(nib, 4) : nib, low);
            if constexpr (T == WeightType::q5_K) {
                const __m256i bit = _mm256_set1_epi8(char(1 << b));
                wq = _mm256_or_si256(
                    wq,
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), sixteen));
            }
            const __m256 d = _mm256_broadcast_ss(dw + b);
            for (int i = 0; i < M; ++i) {
                const uint8_t* a = a0 + size_t(i) * as + size_t(b / 2) * kActPairBytes;
                const __m256i xq
                    = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + 32 * half));
                const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), ones);
                const __m256 sx = _mm256_mul_ps(
                    d, _mm256_load_ps(reinterpret_cast<const float*>(a + kScales) + 8 * half));
                acc[half][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), sx, acc[half][i]);
            }
        }
    }
    for (int i = 0; i < M; ++i) y[i * ldy] = hsum(_mm256_add_ps(acc[0][i], acc[1][i]));
}

// q6_K (see the AVX-512 version): block t of a 128-value half takes the low (t < 2) or high
// nibbles of ql[32·(t % 2) ..] and bits 2t, 2t+1 of qh; lanes 0-3 of its dot product sum its
// first sub-block of 16, lanes 4-7 its second.
template<int M>
void dot_row_q6k(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y,
                 int64_t ldy)
{
    __m256 acc[2][M];
    for (int i = 0; i < M; ++i) acc[0][i] = acc[1][i] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i low = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
    for (int64_t s = 0; s < nb / 8; ++s) {
        const uint8_t* blk = w + size_t(s) * kQ6KBlock;
        const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192));
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(blk + 208)));
        for (int h = 0; h < 2; ++h) {
            const __m256 sc = _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h ? _mm_srli_si128(sc8, 8) : sc8)), d);
            const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * h));
            const __m256i ql1
                = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * h + 32));
            const __m256i qh
                = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
            const __m256i wq[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, low),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 4), top)),
                _mm256_or_si256(_mm256_and_si256(ql1, low),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 2), top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                                _mm256_and_si256(qh, top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), top)),
            };
            for (int t = 0; t < 4; ++t) {
                const int half = t % 2;
                const __m256 dw = _mm256_permutevar8x32_ps(
                    sc,
                    _mm256_setr_epi32(2 * t, 2 * t, 2 * t, 2 * t, 2 * t + 1, 2 * t + 1, 2 * t + 1,
                                      2 * t + 1));
                const size_t off = size_t(s * 4 + 2 * h + t / 2) * kActPairBytes;
                for (int i = 0; i < M; ++i) {
                    const uint8_t* a = acts + size_t(i) * as + off;
                    const __m256i xq
                        = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + 32 * half));
                    __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[t], xq), ones);
                    dot = _mm256_add_epi32(dot,
                                           _mm256_load_si256(reinterpret_cast<const __m256i*>(
                                               a + kOffsets + 32 * half)));
                    const __m256 sx = _mm256_mul_ps(
                        dw, _mm256_load_ps(reinterpret_cast<const float*>(a + kScales) + 8 * half));
                    acc[half][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), sx, acc[half][i]);
                }
            }
        }
    }
    for (int i = 0; i < M; ++i) y[i * ldy] = hsum(_mm256_add_ps(acc[0][i], acc[1][i]));
}

#endif

template<WeightType T, int M>
void dot_rows(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, size_t row_bytes,
              int64_t r0, int64_t r1, float* y, int64_t ldy)
{
    for (int64_t j = r0; j < r1; ++j) {
        const uint8_t* wj = w + size_t(j) * row_bytes;
        if constexpr (is_k4(T))
            dot_row_k4<T, M>(acts, as, nb, wj, y + j, ldy);
        else if constexpr (T == WeightType::q6_K)
            dot_row_q6k<M>(acts, as, nb, wj, y + j, ldy);
        else
            dot_row<T, M>(acts, as, nb, wj, y + j, ldy);
    }
}

template<WeightType T>
void matvec_t(const uint8_t* acts, int64_t m, int64_t k, const uint8_t* w, size_t row_bytes,
              int64_t r0, int64_t r1, float* y, int64_t ldy)
{
    const int64_t nb = k / 32;
    const size_t as = pair_count(k) * kActPairBytes;
    // Up to 4 activation rows share each weight load. With more (a prompt), blocks of 64
    // activation rows (L2) meet the weight rows 16 at a time (L1), so that every group of 4
    // after the first reads both from cache.
    const int64_t step = m > 4 ? 16 : r1 - r0;
    for (int64_t i0 = 0; i0 < m; i0 += 64)
        for (int64_t j0 = r0; j0 < r1; j0 += step) {
            const int64_t j1 = j0 + step < r1 ? j0 + step : r1;
            const int64_t i1 = i0 + 64 < m ? i0 + 64 : m;
            for (int64_t i = i0; i < i1; i += 4) {
                const uint8_t* a = acts + size_t(i) * as;
                float* yi = y + i * ldy;
                switch (i1 - i < 4 ? i1 - i : 4) {
                case 1:
                    dot_rows<T, 1>(a, as, nb, w, row_bytes, j0, j1, yi, ldy);
                    break;
                case 2:
                    dot_rows<T, 2>(a, as, nb, w, row_bytes, j0, j1, yi, ldy);
                    break;
                case 3:
                    dot_rows<T, 3>(a, as, nb, w, row_bytes, j0, j1, yi, ldy);
                    break;
                default:
                    dot_rows<T, 4>(a, as, nb, w, row_bytes, j0, j1, yi, ldy);
                    break;
                }
            }
        }
}

void matvec(WeightType type, const uint8_t* acts, int64_t m, int64_t k, const void* w,
            size_t row_bytes, int64_t r0, int64_t r1, float* y, int64_t ldy)
{
    const auto* wb = static_cast<const uint8_t*>(w);
    switch (type) {
    case WeightType::q8_0:
        return matvec_t<WeightType::q8_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    case WeightType::q4_0:
        return matvec_t<WeightType::q4_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    case WeightType::q4_1:
        return matvec_t<WeightType::q4_1>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    case WeightType::q5_0:
        return matvec_t<WeightType::q5_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    case WeightType::q5_1:
        return matvec_t<WeightType::q5_1>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    case WeightType::iq4_nl:
        return matvec_t<WeightType::iq4_nl>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    case WeightType::q4_K:
        return matvec_t<WeightType::q4_K>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    case WeightType::q5_K:
        return matvec_t<WeightType::q5_K>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    default:
        return matvec_t<WeightType::q6_K>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    }
}

#if IRIS_QD_AVX512

// Prompt-sized products: tiles of 4 weight rows against groups of 4 activation rows, both
// rearranged so that one vpdpbusd computes 16 different outputs (lane 4c + r: activation row c,
// weight row r), four bytes of each dot product at a time. Nothing is reduced across lanes,
// and the scale products and conversions are paid once per block of 32 for 16 outputs rather
// than for each. Every type's block of 32 is rewritten as w_v = d·c_v + min with int8 codes c
// (decode_block). Per block of a group: codes [g = 0..7][c = 0..3][4 bytes] as u8 (code +
// 128), d_x [4], d_x·Σq_x [4]; per block of a tile: codes [g][r][4 bytes] as s8, d [4] and
// -128·Σc [4] (which takes the activations' +128 back out), then the mins [4] of the types
// that have them, then for q6_K, whose scales change after 16 values, d and -128·Σc of the
// second 16 (the first pair then covers the first 16 only).
constexpr size_t kGroupBlock = 128 + 32;

constexpr bool has_min(WeightType type)
{
    return type == WeightType::q4_1 || type == WeightType::q5_1 || is_k4(type);
}

// Bytes per block of a tile (no type has both a min and two scales per block).
constexpr size_t tile_block(bool min, bool split)
{
    return 128 + 32 + (min ? 16 : 0) + (split ? 32 : 0);
}
constexpr size_t kTileBlockMax = tile_block(false, true);

size_t gemm_act_bytes(int64_t m, int64_t k)
{
    return size_t((m + 7) / 8 * 2) * size_t(k / 32) * kGroupBlock;
}

size_t gemm_weight_bytes(int64_t rows, int64_t k)
{
    return size_t((rows + 15) / 16 * 4) * size_t(k / 32) * kTileBlockMax;
}

// Four rows' 32 codes (one ymm each) as [g = 0..7][row = 0..3][4 bytes]: a 4 × 8 transpose of
// 32-bit words.
inline void store_interleaved(const __m256i q[4], uint8_t* dst)
{
    const __m256i t0 = _mm256_unpacklo_epi32(q[0], q[1]), t1 = _mm256_unpackhi_epi32(q[0], q[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(q[2], q[3]), t3 = _mm256_unpackhi_epi32(q[2], q[3]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    auto* out = reinterpret_cast<__m256i*>(dst);
    _mm256_storeu_si256(out + 0, _mm256_permute2x128_si256(u0, u1, 0x20)); // g 0, 1
    _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(u2, u3, 0x20)); // g 2, 3
    _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(u0, u1, 0x31)); // g 4, 5
    _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(u2, u3, 0x31)); // g 6, 7
}

void gemm_prepare(const float* x, int64_t m, int64_t ldx, int64_t k, uint8_t* acts)
{
    const int64_t nb = k / 32, groups = (m + 7) / 8 * 2;
    const __m256i bias = _mm256_set1_epi8(char(0x80));
    for (int64_t gi = 0; gi < groups; ++gi) {
        uint8_t* group = acts + size_t(gi * nb) * kGroupBlock;
        for (int64_t b = 0; b < nb; ++b) {
            uint8_t* blk = group + size_t(b) * kGroupBlock;
            float d[4] = {0, 0, 0, 0}, dsum[4] = {0, 0, 0, 0};
            __m256i q[4];
            for (int c = 0; c < 4; ++c) {
                const int64_t row = gi * 4 + c;
                q[c] = bias; // padding rows: code 0
                if (row >= m) continue;
                alignas(32) int8_t codes[32];
                int32_t sum;
                d[c] = quantize_block(x + row * ldx + b * 32, codes, &sum);
                dsum[c] = d[c] * float(sum);
                q[c] = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(codes)),
                                        bias);
            }
            store_interleaved(q, blk);
            std::memcpy(blk + 128, d, 16);
            std::memcpy(blk + 144, dsum, 16);
        }
    }
}

// Block b (of 32 values) of a weight row as w_v = d_v·c_v + min, c_v int8 and d_v = lo for
// v < 16, hi after (the same but for q6_K), with ggml's roundings of the scale products.
struct DecodedBlock
{
    __m256i codes;
    float lo, hi, min;
};

template<WeightType T> inline DecodedBlock decode_block(const uint8_t* row, int64_t b)
{
    auto half = [](const uint8_t* p) { return _cvtsh_ss(load_u16(p)); };
    if constexpr (T == WeightType::q8_0) {
        const uint8_t* p = row + size_t(b) * 34;
        return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)), half(p), half(p), 0};
    } else if constexpr (is_k4(T)) {
        constexpr bool q5 = T == WeightType::q5_K;
        const uint8_t* p = row + size_t(b / 8) * (q5 ? kQ5KBlock : kQ4KBlock);
        const int j = int(b % 8);
        alignas(16) uint8_t sm[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(sm), k4_scales_mins(p + 4));
        const __m256i nib = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(p + (q5 ? 48 : 16) + 32 * (j / 2)));
        __m256i c
            = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(nib, 4) : nib, _mm256_set1_epi8(0x0F));
        if constexpr (q5) {
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16));
            c = _mm256_mask_add_epi8(c, _mm256_test_epi8_mask(qh, _mm256_set1_epi8(char(1 << j))),
                                     c, _mm256_set1_epi8(16));
        }
        const float d = half(p) * float(sm[j]);
        return {c, d, d, -(half(p + 2) * float(sm[8 + j]))};
    } else if constexpr (T == WeightType::q6_K) {
        const uint8_t* p = row + size_t(b / 8) * kQ6KBlock;
        const int t = int(b % 8), h = t / 4, u = t % 4;
        const __m256i ql
            = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * h + 32 * (u % 2)));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h));
        // Block u of the half: bits 2u, 2u+1 of qh on top of the low (u < 2) or high nibbles.
        const __m256i hi = u == 0 ? _mm256_slli_epi16(qh, 4)
            : u == 1              ? _mm256_slli_epi16(qh, 2)
            : u == 2              ? qh
                                  : _mm256_srli_epi16(qh, 2);
        const __m256i c = _mm256_or_si256(
            _mm256_and_si256(u < 2 ? ql : _mm256_srli_epi16(ql, 4), _mm256_set1_epi8(0x0F)),
            _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
        const float d = half(p + 208);
        const auto* sc = reinterpret_cast<const int8_t*>(p + 192 + 2 * t);
        return {_mm256_sub_epi8(c, _mm256_set1_epi8(32)), d * float(sc[0]), d * float(sc[1]), 0};
    } else {
        constexpr Block32 f = block32(T);
        const uint8_t* p = row + size_t(b) * f.bytes;
        const __m128i nib = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + f.qs));
        __m256i c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(nib, 4), nib),
                                     _mm256_set1_epi8(0x0F));
        if constexpr (f.qh != 0) {
            uint32_t h;
            std::memcpy(&h, p + f.qh, 4);
            c = _mm256_mask_add_epi8(c, h, c, _mm256_set1_epi8(16));
        }
        if constexpr (T == WeightType::iq4_nl)
            c = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128(
                                        reinterpret_cast<const __m128i*>(kIq4nlValues))),
                                    c);
        else
            c = _mm256_sub_epi8(c, _mm256_set1_epi8(char(f.offset)));
        return {c, half(p), half(p), f.min ? half(p + 2) : 0.f};
    }
}

// -128·Σc over the 16 codes whose vpmaddwd sums are in s.
inline int32_t bias_correction(__m128i s)
{
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return -128 * _mm_cvtsi128_si32(s);
}

// Weight rows [r0, r1) into tiles (rows past r1 up to a multiple of 16 are zero).
template<WeightType T>
void gemm_repack(const uint8_t* w, size_t row_bytes, int64_t k, int64_t r0, int64_t r1,
                 uint8_t* tiles)
{
    constexpr bool Min = has_min(T), Split = T == WeightType::q6_K;
    constexpr size_t tb = tile_block(Min, Split);
    const int64_t nb = k / 32, n_tiles = (r1 - r0 + 15) / 16 * 4;
    for (int64_t t = 0; t < n_tiles; ++t)
        for (int64_t b = 0; b < nb; ++b) {
            uint8_t* blk = tiles + size_t(t * nb + b) * tb;
            float lo[4] = {0, 0, 0, 0}, hi[4] = {0, 0, 0, 0}, min[4] = {0, 0, 0, 0};
            int32_t corr_lo[4] = {0, 0, 0, 0}, corr_hi[4] = {0, 0, 0, 0};
            __m256i q[4];
            for (int r = 0; r < 4; ++r) {
                const int64_t row = r0 + t * 4 + r;
                q[r] = _mm256_setzero_si256();
                if (row >= r1) continue;
                const DecodedBlock db = decode_block<T>(w + size_t(row) * row_bytes, b);
                q[r] = db.codes;
                lo[r] = db.lo;
                hi[r] = db.hi;
                min[r] = db.min;
                // |c| <= 128, so the pair sums of vpmaddubsw (1 · c) cannot saturate.
                const __m256i s = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_set1_epi8(1), db.codes), _mm256_set1_epi16(1));
                const __m128i s_lo = _mm256_castsi256_si128(s),
                              s_hi = _mm256_extracti128_si256(s, 1);
                if constexpr (Split) {
                    corr_lo[r] = bias_correction(s_lo);
                    corr_hi[r] = bias_correction(s_hi);
                } else {
                    corr_lo[r] = bias_correction(_mm_add_epi32(s_lo, s_hi));
                }
            }
            store_interleaved(q, blk);
            std::memcpy(blk + 128, lo, 16);
            std::memcpy(blk + 144, corr_lo, 16);
            if constexpr (Min) std::memcpy(blk + 160, min, 16);
            if constexpr (Split) {
                std::memcpy(blk + 160, hi, 16);
                std::memcpy(blk + 176, corr_hi, 16);
            }
        }
}

// The 8 × 16 outputs of a kernel call, lane 4c + r of acc[a][i] being y[4a + c, 4i + r]; rows
// and columns past the ends are padding.
inline void store_tile_outputs(const __m512 (&acc)[2][4], float* y, int64_t ldy, int64_t rows_left,
                               int64_t cols_left)
{
    for (int a = 0; a < 2; ++a)
        for (int i = 0; i < 4; ++i) {
            alignas(64) float out[16];
            _mm512_store_ps(out, acc[a][i]);
            for (int c = 0; c < 4 && a * 4 + c < rows_left; ++c)
                for (int r = 0; r < 4 && i * 4 + r < cols_left; ++r)
                    y[(a * 4 + c) * ldy + i * 4 + r] = out[c * 4 + r];
        }
}

// 8 activation rows (two groups) × 16 weight rows (four tiles): y[i0 + c, j0 + r].
template<bool Min, bool Split>
void gemm_kernel(const uint8_t* ga, const uint8_t* gb, const uint8_t* tiles, int64_t nb, float* y,
                 int64_t ldy, int64_t rows_left, int64_t cols_left)
{
    constexpr size_t tb = tile_block(Min, Split);
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    auto tile4 = [](const uint8_t* p) {
        return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    };
    auto tile4f = [](const uint8_t* p) {
        return _mm512_broadcast_f32x4(_mm_loadu_ps(reinterpret_cast<const float*>(p)));
    };
    auto group4f = [&](const uint8_t* p) {
        return _mm512_permutexvar_ps(
            spread, _mm512_castps128_ps512(_mm_loadu_ps(reinterpret_cast<const float*>(p))));
    };
    __m512 acc[2][4];
    for (auto& a : acc)
        for (auto& v : a) v = _mm512_setzero_ps();
    const uint8_t* groups[2] = {ga, gb};
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* t[4];
        for (int i = 0; i < 4; ++i) t[i] = tiles + size_t(i * nb + b) * tb;
        // dot: the whole block, or with Split its first 16 values and dot2 the other 16.
        __m512i dot[2][4], dot2[2][4];
        for (int i = 0; i < 4; ++i) {
            dot[0][i] = dot[1][i] = tile4(t[i] + 144);
            if constexpr (Split) dot2[0][i] = dot2[1][i] = tile4(t[i] + 176);
        }
        for (int g = 0; g < 8; ++g) {
            __m512i xa[2];
            for (int a = 0; a < 2; ++a)
                xa[a] = _mm512_permutexvar_epi32(
                    spread,
                    _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(
                        groups[a] + size_t(b) * kGroupBlock + g * 16))));
            for (int i = 0; i < 4; ++i) {
                const __m512i wq = tile4(t[i] + g * 16);
                for (int a = 0; a < 2; ++a) {
                    if (Split && g >= 4)
                        dot2[a][i] = _mm512_dpbusd_epi32(dot2[a][i], xa[a], wq);
                    else
                        dot[a][i] = _mm512_dpbusd_epi32(dot[a][i], xa[a], wq);
                }
            }
        }
        for (int a = 0; a < 2; ++a) {
            const uint8_t* blk = groups[a] + size_t(b) * kGroupBlock;
            const __m512 dx = group4f(blk + 128);
            __m512 sx = _mm512_setzero_ps();
            if constexpr (Min) sx = group4f(blk + 144);
            for (int i = 0; i < 4; ++i) {
                acc[a][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[a][i]),
                                            _mm512_mul_ps(dx, tile4f(t[i] + 128)), acc[a][i]);
                if constexpr (Split)
                    acc[a][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot2[a][i]),
                                                _mm512_mul_ps(dx, tile4f(t[i] + 160)), acc[a][i]);
                if constexpr (Min) // min·d_x·Σq_x
                    acc[a][i] = _mm512_fmadd_ps(sx, tile4f(t[i] + 160), acc[a][i]);
            }
        }
    }
    store_tile_outputs(acc, y, ldy, rows_left, cols_left);
}

template<WeightType T>
void gemm_t(const uint8_t* acts, int64_t m, int64_t k, const uint8_t* w, size_t row_bytes,
            int64_t r0, int64_t r1, float* y, int64_t ldy, uint8_t* scratch)
{
    constexpr bool Min = has_min(T), Split = T == WeightType::q6_K;
    constexpr size_t tb = tile_block(Min, Split);
    const int64_t nb = k / 32;
    gemm_repack<T>(w, row_bytes, k, r0, r1, scratch);
    const size_t group_bytes = size_t(nb) * kGroupBlock;
    for (int64_t i = 0; i < m; i += 8) {
        const uint8_t* ga = acts + size_t(i / 4) * group_bytes;
        for (int64_t j = r0; j < r1; j += 16)
            gemm_kernel<Min, Split>(ga, ga + group_bytes, scratch + size_t((j - r0) / 4 * nb) * tb,
                                    nb, y + i * ldy + j, ldy, m - i, r1 - j);
    }
}

void gemm(WeightType type, const uint8_t* acts, int64_t m, int64_t k, const void* w,
          size_t row_bytes, int64_t r0, int64_t r1, float* y, int64_t ldy, uint8_t* scratch)
{
    const auto* wb = static_cast<const uint8_t*>(w);
    switch (type) {
    case WeightType::q8_0:
        return gemm_t<WeightType::q8_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    case WeightType::q4_0:
        return gemm_t<WeightType::q4_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    case WeightType::q4_1:
        return gemm_t<WeightType::q4_1>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    case WeightType::q5_0:
        return gemm_t<WeightType::q5_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    case WeightType::q5_1:
        return gemm_t<WeightType::q5_1>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    case WeightType::iq4_nl:
        return gemm_t<WeightType::iq4_nl>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    case WeightType::q4_K:
        return gemm_t<WeightType::q4_K>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    case WeightType::q5_K:
        return gemm_t<WeightType::q5_K>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    default:
        return gemm_t<WeightType::q6_K>(acts, m, k, wb, row_bytes, r0, r1, y, ldy, scratch);
    }
}

// BF16 products with activations rounded to bf16 (--precision bf16): the same tiles with
// pairs of bf16 in each 32-bit word, one vdpbf16ps per 16 outputs and 2 values of k. Per
// chunk of 16 values of k: [g = 0..7][row = 0..3][2 bf16] for activation groups and weight
// tiles alike; k is zero-padded to a multiple of 16.
constexpr size_t kBf16Chunk = 128;

inline int64_t bf16_chunks(int64_t k)
{
    return (k + 15) / 16;
}

size_t bf16_act_bytes(int64_t m, int64_t k)
{
    return size_t((m + 7) / 8 * 2) * size_t(bf16_chunks(k)) * kBf16Chunk;
}

size_t bf16_weight_bytes(int64_t rows, int64_t k)
{
    return size_t((rows + 15) / 16 * 4) * size_t(bf16_chunks(k)) * kBf16Chunk;
}

void bf16_prepare(const float* x, int64_t m, int64_t ldx, int64_t k, uint8_t* acts)
{
    const int64_t nc = bf16_chunks(k), groups = (m + 7) / 8 * 2;
    for (int64_t gi = 0; gi < groups; ++gi)
        for (int64_t ch = 0; ch < nc; ++ch) {
            const int64_t c0 = ch * 16;
            const __mmask16 mask
                = k - c0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - c0)) - 1);
            __m256i q[4];
            for (int c = 0; c < 4; ++c) {
                const int64_t row = gi * 4 + c;
                q[c] = _mm256_setzero_si256();
                if (row < m)
                    q[c] = reinterpret_cast<__m256i>(
                        _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + row * ldx + c0)));
            }
            store_interleaved(q, acts + size_t(gi * nc + ch) * kBf16Chunk);
        }
}

void bf16_repack(const uint16_t* w, int64_t k, int64_t r0, int64_t r1, uint8_t* tiles)
{
    const int64_t nc = bf16_chunks(k), n_tiles = (r1 - r0 + 15) / 16 * 4;
    for (int64_t t = 0; t < n_tiles; ++t)
        for (int64_t ch = 0; ch < nc; ++ch) {
            const int64_t c0 = ch * 16;
            const __mmask16 mask
                = k - c0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - c0)) - 1);
            __m256i q[4];
            for (int r = 0; r < 4; ++r) {
                const int64_t row = r0 + t * 4 + r;
                q[r] = row < r1 ? _mm256_maskz_loadu_epi16(mask, w + row * k + c0)
                                : _mm256_setzero_si256();
            }
            store_interleaved(q, tiles + size_t(t * nc + ch) * kBf16Chunk);
        }
}

void bf16_kernel(const uint8_t* ga, const uint8_t* gb, const uint8_t* tiles, int64_t nc, float* y,
                 int64_t ldy, int64_t rows_left, int64_t cols_left)
{
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc[2][4];
    for (auto& a : acc)
        for (auto& v : a) v = _mm512_setzero_ps();
    for (int64_t ch = 0; ch < nc; ++ch) {
        const uint8_t* a0 = ga + size_t(ch) * kBf16Chunk;
        const uint8_t* a1 = gb + size_t(ch) * kBf16Chunk;
        for (int g = 0; g < 8; ++g) {
            const __m512bh x0 = reinterpret_cast<__m512bh>(
                _mm512_permutexvar_epi32(spread,
                                         _mm512_castsi128_si512(_mm_loadu_si128(
                                             reinterpret_cast<const __m128i*>(a0 + g * 16)))));
            const __m512bh x1 = reinterpret_cast<__m512bh>(
                _mm512_permutexvar_epi32(spread,
                                         _mm512_castsi128_si512(_mm_loadu_si128(
                                             reinterpret_cast<const __m128i*>(a1 + g * 16)))));
            for (int i = 0; i < 4; ++i) {
                const __m512bh wv = reinterpret_cast<__m512bh>(
                    _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(
                        tiles + size_t(i * nc + ch) * kBf16Chunk + g * 16))));
                acc[0][i] = _mm512_dpbf16_ps(acc[0][i], x0, wv);
                acc[1][i] = _mm512_dpbf16_ps(acc[1][i], x1, wv);
            }
        }
    }
    store_tile_outputs(acc, y, ldy, rows_left, cols_left);
}

void bf16_gemm(const uint8_t* acts, int64_t m, int64_t k, const void* w, int64_t r0, int64_t r1,
               float* y, int64_t ldy, uint8_t* scratch)
{
    const int64_t nc = bf16_chunks(k);
    bf16_repack(static_cast<const uint16_t*>(w), k, r0, r1, scratch);
    const size_t group_bytes = size_t(nc) * kBf16Chunk;
    for (int64_t i = 0; i < m; i += 8) {
        const uint8_t* ga = acts + size_t(i / 4) * group_bytes;
        for (int64_t j = r0; j < r1; j += 16)
            bf16_kernel(ga, ga + group_bytes, scratch + size_t((j - r0) / 4 * nc) * kBf16Chunk, nc,
                        y + i * ldy + j, ldy, m - i, r1 - j);
    }
}

#endif

} // namespace
} // namespace iris::model::cpu
