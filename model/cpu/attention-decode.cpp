// Run-time choice of the decoding attention kernel (attention-decode.h).
#include "model/cpu/attention-decode.h"

#include "model/cpu/quant-dot.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>

namespace iris::model::cpu {

bool attention_decode(const DecodeAttention* k, const float* q, int n_heads, int n_kv_heads,
                      int head_dim, std::span<const KvRun> runs, int64_t n_keys, float scale,
                      float* out, std::vector<float>& parts)
{
    if (!k) return false;
    for (const KvRun& r : runs)
        if (!k->supports(r.k_type, r.v_type, head_dim)) return false;
    const int group = n_heads / n_kv_heads, d = head_dim;
    const int nth = n_threads();
    // Enough parts that every thread gets as many tasks.
    const int64_t n_splits = std::clamp<int64_t>(nth / std::gcd(n_kv_heads, nth), 1,
                                                 std::max<int64_t>(1, n_keys / 256));
    const int64_t n_tasks = n_kv_heads * n_splits;
    // Per task: o [group, D], m [group], l [group].
    const int64_t part = int64_t(group) * (d + 2);
    if (parts.size() < size_t(n_tasks * part)) parts.resize(size_t(n_tasks * part));
    std::atomic<int64_t> next {0};
    auto body = [&](int) {
        for (int64_t task; (task = next.fetch_add(1, std::memory_order_relaxed)) < n_tasks;) {
            const int g = int(task / n_splits);
            const int64_t split = task % n_splits;
            // Part boundaries on whole tiles of 64 tokens.
            auto bound = [&](int64_t s) {
                return s == n_splits ? n_keys : std::min(n_keys, n_keys * s / n_splits / 64 * 64);
            };
            float* o = parts.data() + task * part;
            float* m = o + group * d;
            float* l = m + group;
            std::fill(o, o + group * d, 0.f);
            std::fill(m, m + group, -INFINITY);
            std::fill(l, l + group, 0.f);
            k->attend(q + int64_t(g) * group * d, group, d, scale, runs.data(), runs.size(), g,
                      bound(split), bound(split + 1), o, m, l);
        }
    };
    if (n_tasks == 1)
        body(0);
    else
        run_threads(body);
    // Each row: its parts rescaled to their common maximum (base 2), summed and normalised.
    for (int g = 0; g < n_kv_heads; ++g)
        for (int r = 0; r < group; ++r) {
            const float* p0 = parts.data() + g * n_splits * part;
            float mx = -INFINITY;
            for (int64_t s = 0; s < n_splits; ++s) mx = std::max(mx, p0[s * part + group * d + r]);
            float* o = out + (int64_t(g) * group + r) * d;
            std::fill(o, o + d, 0.f);
            float sum = 0;
            for (int64_t s = 0; s < n_splits; ++s) {
                const float* ps = p0 + s * part;
                const float w = std::exp2(ps[group * d + r] - mx); // 0 for an empty part
                sum += w * ps[group * (d + 1) + r];
                for (int c = 0; c < d; ++c) o[c] += w * ps[r * d + c];
            }
            const float inv = 1.f / sum;
            for (int c = 0; c < d; ++c) o[c] *= inv;
        }
    return true;
}

const DecodeAttention* decode_attention_named(const char* isa)
{
    if (std::strcmp(isa, "avx512") == 0)
        return cpu_runs_avx512() ? &decode_attention_avx512() : nullptr;
    if (std::strcmp(isa, "avx2") == 0) return cpu_runs_avx2() ? &decode_attention_avx2() : nullptr;
    return nullptr;
}

const DecodeAttention* decode_attention()
{
    static const DecodeAttention* const chosen = cpu_level() == CpuLevel::avx512
        ? &decode_attention_avx512()
        : cpu_level() == CpuLevel::avx2 ? &decode_attention_avx2()
                                        : nullptr;
    return chosen;
}

} // namespace iris::model::cpu
