// The AVX-512 loops of ops-avx512.h but kv-quant.cpp's (compiled with -march=x86-64-v4).
#include "model/cpu/ops-avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

// GCC 12 reports the _mm512_undefined_*() inside its own intrinsics (min, max, roundscale,
// reduce, cvtph, ...) as "may be used uninitialized"; the values are fully defined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace iris::model::cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// vec-math.h

// e^x for 16 lanes: x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-7 Taylor polynomial
// (truncation error < 1e-8 relative), then scaled by 2^n with vscalefps (exact, handles
// overflow to inf and underflow to 0).
inline __m512 exp_avx512(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
    const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7228f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// erf(x) for 16 lanes (N. Juffa's minimax approximations, max error ~1 ulp): an odd
// polynomial for |x| < 0.9277, and 1 - exp(poly(|x|)) with the sign restored above.
inline __m512 erf_avx512(__m512 a)
{
    const __m512 t = _mm512_abs_ps(a);
    const __m512 s = _mm512_mul_ps(a, a);
    // |x| >= 0.927734375
    __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(-1.72853470e-5f), t, _mm512_set1_ps(3.83197126e-4f));
    __m512 u = _mm512_fmadd_ps(_mm512_set1_ps(-3.88396438e-3f), t, _mm512_set1_ps(2.42546219e-2f));
    r = _mm512_fmadd_ps(r, s, u);
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-1.06777877e-1f));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-6.34846687e-1f));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-1.28717512e-1f));
    r = _mm512_fmadd_ps(r, t, _mm512_sub_ps(_mm512_setzero_ps(), t));
    __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f), exp_avx512(r));
    // copysign(big, a)
    const __m512i sign_mask = _mm512_set1_epi32(int32_t(0x80000000u));
    big = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_andnot_si512(sign_mask, _mm512_castps_si512(big)),
                        _mm512_and_si512(sign_mask, _mm512_castps_si512(a))));
    // |x| < 0.927734375
    __m512 p = _mm512_set1_ps(-5.96761703e-4f);
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(4.99119423e-3f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-2.67681349e-2f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.12819925e-1f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-3.76125336e-1f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.28379166e-1f));
    p = _mm512_fmadd_ps(p, a, a);
    __mmask16 small = _mm512_cmp_ps_mask(t, _mm512_set1_ps(0.927734375f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(small, big, p);
}

// The reductions keep 16 lanes (or 2×8 double lanes) of partial results: GCC does not
// vectorise float reductions without -ffast-math (reassociation), and the scalar dependency
// chains cost ~4 cycles per element.
float max_array(const float* x, int64_t n)
{
    float m = -INFINITY;
    int64_t i = 0;
    if (n >= 16) {
        __m512 acc = _mm512_loadu_ps(x);
        for (i = 16; i + 16 <= n; i += 16) acc = _mm512_max_ps(acc, _mm512_loadu_ps(x + i));
        m = _mm512_reduce_max_ps(acc);
    }
    for (; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

double sum_array(const float* x, int64_t n, bool square, float shift)
{
    int64_t i = 0;
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    const __m512d sh = _mm512_set1_pd(double(shift));
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), sh);
        __m512d hi = _mm512_sub_pd(
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), sh);
        if (square) {
            a0 = _mm512_fmadd_pd(lo, lo, a0);
            a1 = _mm512_fmadd_pd(hi, hi, a1);
        } else {
            a0 = _mm512_add_pd(a0, lo);
            a1 = _mm512_add_pd(a1, hi);
        }
    }
    double total = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    for (; i < n; ++i) {
        double d = double(x[i]) - double(shift);
        total += square ? d * d : d;
    }
    return total;
}

float exp_shift_sum(float* x, int64_t n, float shift)
{
    int64_t i = 0;
    const __m512 sh = _mm512_set1_ps(shift);
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 m = __mmask16((1u << (n - i)) - 1);
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh));
        _mm512_mask_storeu_ps(x + i, m, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(acc);
}

template<__m512 (*F)(__m512)> void map_array(const float* x, float* y, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, F(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, F(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

// ---------------------------------------------------------------------------------------------
// attention_causal's fused products (ops.cpp)

template<bool F16> inline __m512 load_kv(const uint8_t* row, int64_t c)
{
    if constexpr (F16)
        return _mm512_cvtph_ps(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * size_t(c))));
    else
        return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + c);
}

template<bool F16>
void scores(const float* q, int64_t rows, const uint8_t* k, size_t row_bytes, int64_t n, int64_t d,
            float scale, float* sc, int64_t ldsc)
{
    for (int64_t j = 0; j < n; ++j) {
        const uint8_t* kj = k + size_t(j) * row_bytes;
        __m512 acc[kFusedRows];
        for (int64_t r = 0; r < rows; ++r) acc[r] = _mm512_setzero_ps();
        for (int64_t c = 0; c < d; c += 16) {
            const __m512 kv = load_kv<F16>(kj, c);
            for (int64_t r = 0; r < rows; ++r)
                acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * d + c), kv, acc[r]);
        }
        for (int64_t r = 0; r < rows; ++r) sc[r * ldsc + j] = scale * _mm512_reduce_add_ps(acc[r]);
    }
}

// 16 registers a row would spill: the columns go 64 at a time.
template<bool F16>
void values(const float* p, int64_t ldp, int64_t rows, const uint8_t* v, size_t row_bytes,
            int64_t n, int64_t d, float* out)
{
    for (int64_t c0 = 0; c0 < d; c0 += 64) {
        const int64_t nc = std::min<int64_t>(4, (d - c0) / 16);
        __m512 acc[kFusedRows][4];
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < nc; ++i) acc[r][i] = _mm512_loadu_ps(out + r * d + c0 + 16 * i);
        for (int64_t j = 0; j < n; ++j) {
            const uint8_t* vj = v + size_t(j) * row_bytes;
            __m512 vv[4];
            for (int64_t i = 0; i < nc; ++i) vv[i] = load_kv<F16>(vj, c0 + 16 * i);
            for (int64_t r = 0; r < rows; ++r) {
                const __m512 pr = _mm512_set1_ps(p[r * ldp + j]);
                for (int64_t i = 0; i < nc; ++i) acc[r][i] = _mm512_fmadd_ps(pr, vv[i], acc[r][i]);
            }
        }
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < nc; ++i) _mm512_storeu_ps(out + r * d + c0 + 16 * i, acc[r][i]);
    }
}

// ---------------------------------------------------------------------------------------------
// linear-lowp.cpp's BF16 and F16 weights

// 16 weights widened to f32. The bf16 → f32 widening is a zero-extension and a 16-bit shift.
template<bool BF16> inline __m512 widen16(__m256i v)
{
    if constexpr (BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    else
        return _mm512_cvtph_ps(v);
}
template<bool BF16> inline __m512 load16(const uint16_t* p)
{
    return widen16<BF16>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
template<bool BF16> inline __m512 load16(const uint16_t* p, __mmask16 mask)
{
    return widen16<BF16>(_mm256_maskz_loadu_epi16(mask, p));
}

template<bool BF16> void widen_n(const uint16_t* src, int64_t n, float* dst)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16<BF16>(src + i));
    if (i < n) {
        const __mmask16 mask = __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, mask, load16<BF16>(src + i, mask));
    }
}

// F16: R weight rows (w points at the first, row stride k) times M activation rows, R·M dot
// products with 16-lane f32 accumulators, the weights widened by vcvtph2ps. Each weight vector is
// loaded and widened once and used for all M activation rows, which stay in L1.
template<int R, int M>
void dot_block_f16(const float* x, int64_t ldx, const uint16_t* w, int64_t k, float* y, int64_t ldy)
{
    __m512 acc[R][M];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= k; c += 16) {
        __m512 xv[M];
        for (int i = 0; i < M; ++i) xv[i] = _mm512_loadu_ps(x + i * ldx + c);
        for (int r = 0; r < R; ++r) {
            if (c % 32 == 0) // one prefetch per cache line, as in dot_block_bf16
                _mm_prefetch(reinterpret_cast<const char*>(w + (2 * R + r) * k + c), _MM_HINT_T1);
            __m512 wv = load16<false>(w + r * k + c);
            for (int i = 0; i < M; ++i) acc[r][i] = _mm512_fmadd_ps(wv, xv[i], acc[r][i]);
        }
    }
    if (c < k) {
        const __mmask16 mask = __mmask16((1u << (k - c)) - 1);
        __m512 xv[M];
        for (int i = 0; i < M; ++i) xv[i] = _mm512_maskz_loadu_ps(mask, x + i * ldx + c);
        for (int r = 0; r < R; ++r) {
            __m512 wv = load16<false>(w + r * k + c, mask);
            for (int i = 0; i < M; ++i) acc[r][i] = _mm512_fmadd_ps(wv, xv[i], acc[r][i]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[r][i]);
}

// BF16 without shuffles: 32 weights are one 512-bit load; the even-indexed values become f32
// by a shift left of 16 and the odd-indexed ones by masking off the low half (a bf16 value is
// the top half of its f32). The activations were de-interleaved to match (xp: per 32 columns,
// the 16 even then the 16 odd ones, zero-padded to kp columns), so each weight costs 1/16 of a
// cheap integer op instead of a lane-crossing widen: the kernel then keeps up with DRAM.
template<int R, int M>
void dot_block_bf16(const float* xp, int64_t kp, const uint16_t* w, int64_t k, float* y,
                    int64_t ldy)
{
    const __m512i hi_mask = _mm512_set1_epi32(int32_t(0xFFFF0000u));
    __m512 acc[R][M];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
    auto step = [&](const __m512i* v, int64_t c) {
        __m512 xe[M], xo[M];
        for (int i = 0; i < M; ++i) {
            xe[i] = _mm512_loadu_ps(xp + i * kp + c);
            xo[i] = _mm512_loadu_ps(xp + i * kp + c + 16);
        }
        for (int r = 0; r < R; ++r) {
            __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v[r], 16));
            __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(v[r], hi_mask));
            for (int i = 0; i < M; ++i) {
                acc[r][i] = _mm512_fmadd_ps(we, xe[i], acc[r][i]);
                acc[r][i] = _mm512_fmadd_ps(wo, xo[i], acc[r][i]);
            }
        }
    };
    int64_t c = 0;
    for (; c + 32 <= k; c += 32) {
        __m512i v[R];
        for (int r = 0; r < R; ++r) {
            // The same columns two blocks of rows ahead, into L2: the hardware prefetcher
            // alone leaves these short, interleaved row streams at ~12 GB/s, this at ~31 (a
            // plain sequential read: 33; _MM_HINT_T0 does not help, measured on Zen 4).
            // Prefetches past the matrix are harmless (they never fault).
            _mm_prefetch(reinterpret_cast<const char*>(w + (2 * R + r) * k + c), _MM_HINT_T1);
            v[r] = _mm512_loadu_si512(w + r * k + c);
        }
        step(v, c);
    }
    if (c < k) {
        const __mmask32 mask = __mmask32((uint64_t(1) << (k - c)) - 1);
        __m512i v[R];
        for (int r = 0; r < R; ++r) v[r] = _mm512_maskz_loadu_epi16(mask, w + r * k + c);
        step(v, c);
    }
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[r][i]);
}

template<bool BF16, int R, int M>
inline void dot_block(const float* x, int64_t ldx, const uint16_t* w, int64_t k, float* y,
                      int64_t ldy)
{
    if constexpr (BF16)
        dot_block_bf16<R, M>(x, ldx, w, k, y, ldy);
    else
        dot_block_f16<R, M>(x, ldx, w, k, y, ldy);
}

// Rows [r0, r1) of w against M activation rows (BF16: de-interleaved, row stride kp).
template<bool BF16, int M>
void matvec_m(const float* x, int64_t ldx, const uint16_t* w, int64_t k, int64_t r0, int64_t r1,
              float* y, int64_t ldy)
{
    int64_t j = r0;
    for (; j + 4 <= r1; j += 4) dot_block<BF16, 4, M>(x, ldx, w + j * k, k, y + j, ldy);
    for (; j < r1; ++j) dot_block<BF16, 1, M>(x, ldx, w + j * k, k, y + j, ldy);
}

template<bool BF16>
void matvec_16(const float* x, int64_t m, int64_t ldx, const uint16_t* w, int64_t k, int64_t r0,
               int64_t r1, float* y, int64_t ldy)
{
    // Activation rows in groups of G: 4 weight rows × G activation rows of accumulators, with
    // each widened weight vector feeding G FMAs. F16 takes 6 (24 of the 32 registers); BF16
    // holds each activation vector twice (even and odd lanes), so 4. For m > G (a prompt, the
    // ViT) blocks of kMatvecChunk activation rows (L2) meet the weight rows 32 at a time (at
    // most 32·k·2 bytes, also L2), so that after the first group both come from cache.
    constexpr int64_t G = BF16 ? 4 : 6;
    const int64_t rstep = m > G ? 32 : r1 - r0;
    for (int64_t i0 = 0; i0 < m; i0 += kMatvecChunk)
        for (int64_t j0 = r0; j0 < r1; j0 += rstep) {
            const int64_t j1 = std::min(r1, j0 + rstep), i1 = std::min(m, i0 + kMatvecChunk);
            for (int64_t i = i0; i < i1; i += G) {
                const float* xi = x + i * ldx;
                float* yi = y + i * ldy;
                switch (std::min(G, i1 - i)) {
                case 1:
                    matvec_m<BF16, 1>(xi, ldx, w, k, j0, j1, yi, ldy);
                    break;
                case 2:
                    matvec_m<BF16, 2>(xi, ldx, w, k, j0, j1, yi, ldy);
                    break;
                case 3:
                    matvec_m<BF16, 3>(xi, ldx, w, k, j0, j1, yi, ldy);
                    break;
                case 4:
                    matvec_m<BF16, 4>(xi, ldx, w, k, j0, j1, yi, ldy);
                    break;
                default:
                    if constexpr (!BF16) {
                        if (i1 - i == 5)
                            matvec_m<BF16, 5>(xi, ldx, w, k, j0, j1, yi, ldy);
                        else
                            matvec_m<BF16, 6>(xi, ldx, w, k, j0, j1, yi, ldy);
                    }
                    break;
                }
            }
        }
}

void matvec(bool bf16, const float* x, int64_t m, int64_t ldx, const uint16_t* w, int64_t k,
            int64_t r0, int64_t r1, float* y, int64_t ldy, float* xp)
{
    if (!bf16) return matvec_16<false>(x, m, ldx, w, k, r0, r1, y, ldy);
    // BF16: kMatvecChunk activation rows at a time de-interleaved into xp, so that the
    // scratch stays small whatever m is.
    const int64_t kp = (k + 31) / 32 * 32;
    for (int64_t i0 = 0; i0 < m; i0 += kMatvecChunk) {
        const int64_t n = std::min(m - i0, kMatvecChunk);
        for (int64_t i = 0; i < n; ++i) {
            const float* xi = x + (i0 + i) * ldx;
            float* dst = xp + i * kp;
            for (int64_t base = 0; base < kp; base += 32)
                for (int64_t lane = 0; lane < 16; ++lane) {
                    const int64_t e = base + 2 * lane, o = e + 1;
                    dst[base + lane] = e < k ? xi[e] : 0.f;
                    dst[base + 16 + lane] = o < k ? xi[o] : 0.f;
                }
        }
        matvec_16<true>(xp, n, kp, w, k, r0, r1, y + i0 * ldy, ldy);
    }
}

void fused_scores(bool f16, const float* q, int64_t rows, const uint8_t* k, size_t row_bytes,
                  int64_t n, int64_t d, float scale, float* sc, int64_t ldsc)
{
    (f16 ? scores<true> : scores<false>)(q, rows, k, row_bytes, n, d, scale, sc, ldsc);
}

void fused_values(bool f16, const float* p, int64_t ldp, int64_t rows, const uint8_t* v,
                  size_t row_bytes, int64_t n, int64_t d, float* out)
{
    (f16 ? values<true> : values<false>)(p, ldp, rows, v, row_bytes, n, d, out);
}

void widen(bool bf16, const uint16_t* src, int64_t n, float* dst)
{
    (bf16 ? widen_n<true> : widen_n<false>)(src, n, dst);
}

} // namespace

const OpsAvx512& ops_avx512_kernels()
{
    static const OpsAvx512 k {max_array,
                              sum_array,
                              exp_shift_sum,
                              map_array<exp_avx512>,
                              map_array<erf_avx512>,
                              fused_scores,
                              fused_values,
                              widen,
                              matvec,
                              kv_dequantize_q8_avx512,
                              kv_dequantize_q4_avx512,
                              skvq_dequantize_avx512};
    return k;
}

} // namespace iris::model::cpu
