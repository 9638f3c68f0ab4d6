// Helpers of the KV cache tests (kv_cache_test, skvq_test): key-like random rows and a
// straightforward attention in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "model/cpu/ops.h"
#include "network-golden.h"

namespace iris::test {

// max |ours - want| / max |want|.
inline double relative_error(std::span<const float> ours, std::span<const float> want)
{
    double scale = 0;
    for (float w : want) scale = std::max(scale, double(std::fabs(w)));
    return max_abs_diff(ours, want) / scale;
}

inline std::vector<float> random_rows(int n, int width, uint32_t seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> v(size_t(n) * size_t(width));
    // Per-channel offsets and scales, like real keys (Qwen2's k_proj bias).
    for (size_t i = 0; i < v.size(); ++i) {
        const size_t c = i % size_t(width);
        v[i] = normal(rng) * (0.5f + float(c % 7)) + float(int(c % 5) - 2);
    }
    return v;
}

// softmax(scale·q·kᵀ)·v in double over the dequantized rows, query token t at position
// n_past + t seeing keys 0..n_past+t. k, v [n_total, n_kv·D]; q [n_new, n_heads·D].
inline std::vector<float> reference_attention(const std::vector<float>& q,
                                              const std::vector<float>& k,
                                              const std::vector<float>& v, int n_new, int n_past,
                                              int n_heads, int n_kv, int d, float scale)
{
    std::vector<float> out(size_t(n_new) * size_t(n_heads * d));
    const int group = n_heads / n_kv;
    for (int t = 0; t < n_new; ++t)
        for (int h = 0; h < n_heads; ++h) {
            const int g = h / group, visible = n_past + t + 1;
            std::vector<double> p(static_cast<size_t>(visible));
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < visible; ++j) {
                double s = 0;
                for (int c = 0; c < d; ++c)
                    s += double(q[size_t(t * n_heads * d + h * d + c)])
                        * k[size_t(j * n_kv * d + g * d + c)];
                p[size_t(j)] = s * scale;
                mx = std::max(mx, p[size_t(j)]);
            }
            for (auto& x : p) sum += (x = std::exp(x - mx));
            for (int c = 0; c < d; ++c) {
                double o = 0;
                for (int j = 0; j < visible; ++j)
                    o += p[size_t(j)] * v[size_t(j * n_kv * d + g * d + c)];
                out[size_t(t * n_heads * d + h * d + c)] = float(o / sum);
            }
        }
    return out;
}

// The relative error of the engine's causal attention of query tokens n_past..n_past+n_new-1
// (rows of q [n_total, n_heads·D]) over the cache's `runs`, against reference_attention on the
// rows kd, vd the cache should hold.
inline double attention_error(const std::vector<float>& q, const std::vector<float>& kd,
                              const std::vector<float>& vd, std::span<const model::KvRun> runs,
                              int n_past, int n_new, int n_heads, int n_kv, int d, float scale)
{
    std::vector<float> out(size_t(n_new * n_heads * d));
    std::vector<std::vector<float>> scratch;
    const float* qn = q.data() + size_t(n_past * n_heads * d);
    model::cpu::attention_causal(qn, n_heads * d, n_new, n_past, n_heads, n_kv, d, runs, scale,
                                 out.data(), scratch);
    std::vector<float> qs(qn, qn + out.size());
    return relative_error(out,
                          reference_attention(qs, kd, vd, n_new, n_past, n_heads, n_kv, d, scale));
}

} // namespace iris::test
