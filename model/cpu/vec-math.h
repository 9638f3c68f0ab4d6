// Reductions, exp and erf over arrays for the CPU ops (private to model/cpu).
//
// The ViT evaluates ~17 M exact-erf GELUs and ~17 M softmax exps per 448 tile and layer; the
// scalar libm calls would cost more than the matrix products. So each of these goes to its
// AVX-512 version where those were chosen (ops-avx512.h): exp and erf within ~2 ulp of the
// correctly rounded result (checked against double-precision libm in
// tests/model/vision_test.cpp), far below the 1e-4 golden tolerance, and reductions that keep
// 16 lanes of partial sums (GCC does not vectorise the float reductions below without
// -ffast-math). Otherwise the scalar loops and libm below.
#pragma once

#include "model/cpu/ops-avx512.h"

#include <cmath>
#include <cstdint>

namespace iris::model::cpu {

// max(x[0..n)), -inf for n == 0.
inline float max_array(const float* x, int64_t n)
{
    if (const OpsAvx512* k = ops_avx512()) return k->max_array(x, n);
    float m = -INFINITY;
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

// Σ (x[i] - shift)² over n values, accumulated in double; with shift = 0 the sum of squares.
// Σ x[i] (in double) when `square` is false.
inline double sum_array(const float* x, int64_t n, bool square, float shift = 0.f)
{
    if (const OpsAvx512* k = ops_avx512()) return k->sum_array(x, n, square, shift);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
        double d = double(x[i]) - double(shift);
        total += square ? d * d : d;
    }
    return total;
}

// x[i] = exp(x[i] - shift) in place; returns Σ x[i] (fp32).
inline float exp_shift_sum(float* x, int64_t n, float shift)
{
    if (const OpsAvx512* k = ops_avx512()) return k->exp_shift_sum(x, n, shift);
    float total = 0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - shift);
        total += x[i];
    }
    return total;
}

// y[i] = exp(x[i]) for n values (x and y may alias).
inline void exp_array(const float* x, float* y, int64_t n)
{
    if (const OpsAvx512* k = ops_avx512()) return k->exp_array(x, y, n);
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

// y[i] = erf(x[i]) for n values (x and y may alias).
inline void erf_array(const float* x, float* y, int64_t n)
{
    if (const OpsAvx512* k = ops_avx512()) return k->erf_array(x, y, n);
    for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
}

} // namespace iris::model::cpu
