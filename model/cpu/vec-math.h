// Vectorised exp / erf for the CPU kernels (private to model/cpu).
//
// The ViT evaluates ~17 M exact-erf GELUs and ~17 M softmax exps per 448 tile and layer; the
// scalar libm calls would cost more than the matrix products. These AVX-512 versions are
// within ~2 ulp of the correctly rounded result (checked against double-precision libm in
// tests/model/vision_test.cpp), far below the 1e-4 golden tolerance. Without AVX-512 the
// scalar libm functions are used.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace iris::model::cpu {

// GCC 12 reports the _mm512_undefined_*() inside its own intrinsics (min, max, roundscale,
// reduce, ...) as "may be used uninitialized"; the values are fully defined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__)

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

#endif

// Reductions. GCC does not vectorise float reductions without -ffast-math (reassociation),
// and the scalar dependency chains cost ~4 cycles per element: these keep 16 lanes (or 2×8
// double lanes) of partial results.

// max(x[0..n)), -inf for n == 0.
inline float max_array(const float* x, int64_t n)
{
    float m = -INFINITY;
    int64_t i = 0;
#if defined(__AVX512F__)
    if (n >= 16) {
        __m512 acc = _mm512_loadu_ps(x);
        for (i = 16; i + 16 <= n; i += 16) acc = _mm512_max_ps(acc, _mm512_loadu_ps(x + i));
        m = _mm512_reduce_max_ps(acc);
    }
#endif
    for (; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

// Σ (x[i] - shift)² over n values, accumulated in double; with shift = 0 the sum of squares.
// Σ x[i] (in double) when `square` is false.
inline double sum_array(const float* x, int64_t n, bool square, float shift = 0.f)
{
    double total = 0;
    int64_t i = 0;
#if defined(__AVX512F__)
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
    total = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
#endif
    for (; i < n; ++i) {
        double d = double(x[i]) - double(shift);
        total += square ? d * d : d;
    }
    return total;
}

// x[i] = exp(x[i] - shift) in place; returns Σ x[i] (fp32 lanes).
inline float exp_shift_sum(float* x, int64_t n, float shift)
{
    float total = 0;
    int64_t i = 0;
#if defined(__AVX512F__)
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
        i = n;
    }
    total = _mm512_reduce_add_ps(acc);
#endif
    for (; i < n; ++i) {
        x[i] = std::exp(x[i] - shift);
        total += x[i];
    }
    return total;
}

// y[i] = exp(x[i]) for n values (x and y may alias).
inline void exp_array(const float* x, float* y, int64_t n)
{
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, exp_avx512(_mm512_maskz_loadu_ps(m, x + i)));
        return;
    }
#endif
    for (; i < n; ++i) y[i] = std::exp(x[i]);
}

// y[i] = erf(x[i]) for n values (x and y may alias).
inline void erf_array(const float* x, float* y, int64_t n)
{
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, erf_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, erf_avx512(_mm512_maskz_loadu_ps(m, x + i)));
        return;
    }
#endif
    for (; i < n; ++i) y[i] = std::erf(x[i]);
}

} // namespace iris::model::cpu

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
