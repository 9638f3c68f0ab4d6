// The int8 dot-product kernels of quant-dot.h, written once and compiled twice: by
// quant-dot-avx512.cpp with IRIS_QD_AVX512 1 (AVX-512 VNNI: two 32-value blocks per vpdpbusd)
// and by quant-dot-avx2.cpp with IRIS_QD_AVX512 0 (AVX2: one block per vpmaddubsw/vpmaddwd).
// Everything here has internal linkage and uses only intrinsics and plain arithmetic, so no
// function compiled for one target can stand in for another's (see quant-dot.h).
//
// Activation record of one pair of blocks b, b+1 (quant-dot.h): codes at 0, scales at 64,
// offsets at 128. Code layouts, matched to how each kernel unpacks the weights:
//   q8_0, AVX-512  x_b[0..31], x_b+1[0..31] as u8 (code + 128): vpdpbusd multiplies u8 by s8,
//                  and the weights are the signed side; the +128 is taken back with 128·Σq_w
//   q4_0, AVX-512  x_b[0..15], x_b+1[0..15], x_b[16..31], x_b+1[16..31]: the low nibbles of
//                  both weight blocks, then their high nibbles
//   AVX2           x_b[0..31], x_b+1[0..31] as s8
// Scale lanes: d_x of the block whose products each int32 lane of the dot product sums: lanes
// 0-7 block b, 8-15 block b+1, except AVX-512 q4_0, whose halves put block b in lanes 0-3 and
// 8-11. Offset lanes (q4_0): -8·Σq_x of a block in the first of its lanes, so the dot product
// starts from them and sums to Σ(q_w - 8)·q_x.
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
constexpr size_t kQ8Block = 34, kQ4Block = 18; // fp16 d + codes

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

bool supports(WeightType type)
{
    return type == WeightType::q8_0 || type == WeightType::q4_0;
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
            uint8_t* codes = r;
            if (IRIS_QD_AVX512 && type == WeightType::q4_0) {
                std::memcpy(codes + 16 * half, q, 16);
                std::memcpy(codes + 32 + 16 * half, q + 16, 16);
            } else if (IRIS_QD_AVX512) {
                for (int c = 0; c < 32; ++c) codes[32 * half + c] = uint8_t(q[c]) ^ 0x80;
            } else {
                std::memcpy(codes + 32 * half, q, 32);
            }
            // The lanes block b's products land in: 0-7 (b+1: 8-15), or for AVX-512 q4_0,
            // whose codes are split in halves, 0-3 and 8-11 (b+1: 4-7 and 12-15).
            const bool split = IRIS_QD_AVX512 && type == WeightType::q4_0;
            const int lane0 = split ? 4 * half : 8 * half;
            float* scales = reinterpret_cast<float*>(r + kScales);
            for (int l = 0; l < 4; ++l) {
                scales[lane0 + l] = d;
                scales[lane0 + (split ? 8 : 4) + l] = d;
            }
            if (type == WeightType::q4_0) {
                const int32_t off = -8 * sum;
                std::memcpy(r + kOffsets + 4 * lane0, &off, 4);
            }
        }
    }
}

#if IRIS_QD_AVX512

// The two blocks' weight scales in the lanes of their products (see prepare).
template<WeightType T> inline __m512 pair_scales(const uint8_t* w0, const uint8_t* w1)
{
    const __m128i d0 = _mm_set1_epi16(short(load_u16(w0))),
                  d1 = _mm_set1_epi16(short(load_u16(w1)));
    if constexpr (T == WeightType::q8_0)
        return _mm512_cvtph_ps(_mm256_set_m128i(d1, d0));
    else
        return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(_mm_unpacklo_epi64(d0, d1)));
}

// The weight codes of blocks b, b+1 (one, zero-extended, when `one`) in the activation layout.
template<WeightType T> inline __m512i pair_codes(const uint8_t* w0, bool one)
{
    if constexpr (T == WeightType::q8_0) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + 2));
        if (one) return _mm512_zextsi256_si512(a);
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + kQ8Block + 2));
        return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    } else {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + 2));
        const __m128i b = one
            ? _mm_setzero_si128()
            : _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + kQ4Block + 2));
        const __m256i nib = _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
        const __m256i low = _mm256_set1_epi8(0x0F);
        const __m256i lo = _mm256_and_si256(nib, low);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(nib, 4), low);
        return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
}

// One weight row against M activation rows (record stride as).
template<WeightType T, int M>
void dot_row(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y, int64_t ldy)
{
    constexpr size_t bb = T == WeightType::q8_0 ? kQ8Block : kQ4Block;
    __m512 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm512_setzero_ps();
    const __m512i bias = _mm512_set1_epi8(char(0x80));
    for (int64_t b = 0; b < nb; b += 2) {
        const uint8_t* w0 = w + size_t(b) * bb;
        const bool one = b + 1 == nb;
        const __m512i wq = pair_codes<T>(w0, one);
        const __m512 dw
            = one ? _mm512_set1_ps(_cvtsh_ss(load_u16(w0))) : pair_scales<T>(w0, w0 + bb);
        __m512i start = _mm512_setzero_si512();
        if constexpr (T == WeightType::q8_0) // -128·Σq_w per lane undoes the activations' +128
            start = _mm512_sub_epi32(start, _mm512_dpbusd_epi32(start, bias, wq));
        const size_t off = size_t(b / 2) * kActPairBytes;
        for (int i = 0; i < M; ++i) {
            const uint8_t* a = acts + size_t(i) * as + off;
            const __m512i xq = _mm512_load_si512(a);
            __m512i dot;
            if constexpr (T == WeightType::q8_0)
                dot = _mm512_dpbusd_epi32(start, xq, wq);
            else
                dot = _mm512_dpbusd_epi32(_mm512_load_si512(a + kOffsets), wq, xq);
            const __m512 s
                = _mm512_mul_ps(dw, _mm512_load_ps(reinterpret_cast<const float*>(a + kScales)));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[i]);
        }
    }
    for (int i = 0; i < M; ++i) y[i * ldy] = _mm512_reduce_add_ps(acc[i]);
}

#else // AVX2

inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

template<WeightType T, int M>
void dot_row(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, float* y, int64_t ldy)
{
    constexpr size_t bb = T == WeightType::q8_0 ? kQ8Block : kQ4Block;
    // Two accumulators per row (even and odd blocks) keep two FMA chains in flight.
    __m256 acc[2][M];
    for (int i = 0; i < M; ++i) acc[0][i] = acc[1][i] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* wb = w + size_t(b) * bb;
        const int half = int(b % 2);
        const __m256 dw = _mm256_set1_ps(_cvtsh_ss(load_u16(wb)));
        __m256i wq;
        if constexpr (T == WeightType::q8_0) {
            wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 2));
        } else {
            const __m128i nib = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 2));
            wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(nib, 4), nib), low);
        }
        // vpmaddubsw multiplies u8 by s8: q8_0 moves the weights' signs onto the activations
        // (|q_w| <= 128, so a pair sum stays below 2^15); q4_0 codes are already unsigned.
        const __m256i wu = T == WeightType::q8_0 ? _mm256_sign_epi8(wq, wq) : wq;
        const size_t off = size_t(b / 2) * kActPairBytes;
        for (int i = 0; i < M; ++i) {
            const uint8_t* a = acts + size_t(i) * as + off;
            __m256i xq = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + 32 * half));
            if constexpr (T == WeightType::q8_0) xq = _mm256_sign_epi8(xq, wq);
            __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xq), ones);
            if constexpr (T == WeightType::q4_0)
                dot = _mm256_add_epi32(
                    dot,
                    _mm256_load_si256(reinterpret_cast<const __m256i*>(a + kOffsets + 32 * half)));
            const __m256 s = _mm256_mul_ps(
                dw, _mm256_load_ps(reinterpret_cast<const float*>(a + kScales) + 8 * half));
            acc[half][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, acc[half][i]);
        }
    }
    for (int i = 0; i < M; ++i) y[i * ldy] = hsum(_mm256_add_ps(acc[0][i], acc[1][i]));
}

#endif

template<WeightType T, int M>
void dot_rows(const uint8_t* acts, size_t as, int64_t nb, const uint8_t* w, size_t row_bytes,
              int64_t r0, int64_t r1, float* y, int64_t ldy)
{
    for (int64_t j = r0; j < r1; ++j)
        dot_row<T, M>(acts, as, nb, w + size_t(j) * row_bytes, y + j, ldy);
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
    if (type == WeightType::q8_0)
        matvec_t<WeightType::q8_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
    else
        matvec_t<WeightType::q4_0>(acts, m, k, wb, row_bytes, r0, r1, y, ldy);
}

#if IRIS_QD_AVX512

// Prompt-sized products: tiles of 4 weight rows against groups of 4 activation rows, both
// rearranged so that one vpdpbusd computes 16 different outputs (lane 4c + r: activation row c,
// weight row r), four bytes of each dot product at a time. Nothing is reduced across lanes,
// and the scale products and conversions are paid once per block of 32 for 16 outputs rather
// than for each. Per block of a group: codes [g = 0..7][c = 0..3][4 bytes] as u8 (code + 128),
// then d_x [4]; per block of a tile: codes [g][r][4 bytes] as s8 (q4_0 widened to q - 8), d_w
// [4], and -128·Σq_w [4], which takes the activations' +128 back out.
constexpr size_t kGroupBlock = 128 + 16, kTileBlock = 128 + 32;

size_t gemm_act_bytes(int64_t m, int64_t k)
{
    return size_t((m + 7) / 8 * 2) * size_t(k / 32) * kGroupBlock;
}

size_t gemm_weight_bytes(int64_t rows, int64_t k)
{
    return size_t((rows + 15) / 16 * 4) * size_t(k / 32) * kTileBlock;
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
            float d[4] = {0, 0, 0, 0};
            __m256i q[4];
            for (int c = 0; c < 4; ++c) {
                const int64_t row = gi * 4 + c;
                q[c] = bias; // padding rows: code 0
                if (row >= m) continue;
                alignas(32) int8_t codes[32];
                int32_t sum;
                d[c] = quantize_block(x + row * ldx + b * 32, codes, &sum);
                q[c] = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(codes)),
                                        bias);
            }
            store_interleaved(q, blk);
            std::memcpy(blk + 128, d, 16);
        }
    }
}

// Weight rows [r0, r1) into tiles (rows past r1 up to a multiple of 16 are zero).
void gemm_repack(WeightType type, const uint8_t* w, size_t row_bytes, int64_t k, int64_t r0,
                 int64_t r1, uint8_t* tiles)
{
    const int64_t nb = k / 32, n_tiles = (r1 - r0 + 15) / 16 * 4;
    const size_t bb = type == WeightType::q8_0 ? kQ8Block : kQ4Block;
    const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t t = 0; t < n_tiles; ++t)
        for (int64_t b = 0; b < nb; ++b) {
            uint8_t* blk = tiles + size_t(t * nb + b) * kTileBlock;
            float d[4] = {0, 0, 0, 0};
            int32_t corr[4] = {0, 0, 0, 0};
            __m256i q[4];
            for (int r = 0; r < 4; ++r) {
                const int64_t row = r0 + t * 4 + r;
                q[r] = _mm256_setzero_si256();
                if (row >= r1) continue;
                const uint8_t* src = w + size_t(row) * row_bytes + size_t(b) * bb;
                d[r] = _cvtsh_ss(load_u16(src));
                if (type == WeightType::q8_0) {
                    q[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2));
                } else {
                    const __m128i nib = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
                    q[r] = _mm256_sub_epi8(
                        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(nib, 4), nib), low),
                        eight);
                }
                // Σq: |q| <= 128, so the pair sums of vpmaddubsw (1 · q) cannot saturate.
                const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q[r]), ones16);
                __m128i s4
                    = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
                corr[r] = -128 * _mm_cvtsi128_si32(s4);
            }
            store_interleaved(q, blk);
            std::memcpy(blk + 128, d, 16);
            std::memcpy(blk + 144, corr, 16);
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
void gemm_kernel(const uint8_t* ga, const uint8_t* gb, const uint8_t* tiles, int64_t nb, float* y,
                 int64_t ldy, int64_t rows_left, int64_t cols_left)
{
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc[2][4];
    for (auto& a : acc)
        for (auto& v : a) v = _mm512_setzero_ps();
    const uint8_t* groups[2] = {ga, gb};
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* t[4];
        for (int i = 0; i < 4; ++i) t[i] = tiles + size_t(i * nb + b) * kTileBlock;
        __m512i dot[2][4];
        for (int i = 0; i < 4; ++i) {
            const __m512i corr = _mm512_broadcast_i32x4(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(t[i] + 144)));
            dot[0][i] = dot[1][i] = corr;
        }
        for (int g = 0; g < 8; ++g) {
            __m512i xa[2];
            for (int a = 0; a < 2; ++a)
                xa[a] = _mm512_permutexvar_epi32(
                    spread,
                    _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(
                        groups[a] + size_t(b) * kGroupBlock + g * 16))));
            for (int i = 0; i < 4; ++i) {
                const __m512i wq = _mm512_broadcast_i32x4(
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(t[i] + g * 16)));
                dot[0][i] = _mm512_dpbusd_epi32(dot[0][i], xa[0], wq);
                dot[1][i] = _mm512_dpbusd_epi32(dot[1][i], xa[1], wq);
            }
        }
        for (int a = 0; a < 2; ++a) {
            const __m512 dx = _mm512_permutexvar_ps(
                spread,
                _mm512_castps128_ps512(_mm_loadu_ps(
                    reinterpret_cast<const float*>(groups[a] + size_t(b) * kGroupBlock + 128))));
            for (int i = 0; i < 4; ++i) {
                const __m512 dw = _mm512_broadcast_f32x4(
                    _mm_loadu_ps(reinterpret_cast<const float*>(t[i] + 128)));
                acc[a][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[a][i]), _mm512_mul_ps(dx, dw),
                                            acc[a][i]);
            }
        }
    }
    store_tile_outputs(acc, y, ldy, rows_left, cols_left);
}

void gemm(WeightType type, const uint8_t* acts, int64_t m, int64_t k, const void* w,
          size_t row_bytes, int64_t r0, int64_t r1, float* y, int64_t ldy, uint8_t* scratch)
{
    const int64_t nb = k / 32;
    gemm_repack(type, static_cast<const uint8_t*>(w), row_bytes, k, r0, r1, scratch);
    const size_t group_bytes = size_t(nb) * kGroupBlock;
    for (int64_t i = 0; i < m; i += 8) {
        const uint8_t* ga = acts + size_t(i / 4) * group_bytes;
        for (int64_t j = r0; j < r1; j += 16)
            gemm_kernel(ga, ga + group_bytes, scratch + size_t((j - r0) / 4 * nb) * kTileBlock, nb,
                        y + i * ldy + j, ldy, m - i, r1 - j);
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
