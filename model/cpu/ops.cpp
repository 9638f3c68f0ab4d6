#include "model/cpu/ops.h"

#include "core/core.h"
#include "model/cpu/attention-decode.h"
#include "model/cpu/ops-avx512.h"
#include "model/cpu/quant-dot.h"
#include "model/cpu/vec-math.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

// openblas_set_num_threads is declared by OpenBLAS's cblas.h; declared again here so that a
// reference CBLAS header would still compile (the symbol must then come from OpenBLAS).
extern "C" void openblas_set_num_threads(int num_threads);

namespace iris::model::cpu {

void init_blas()
{
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
}

const OpsAvx512* ops_avx512()
{
    static const OpsAvx512* const chosen
        = cpu_level() == CpuLevel::avx512 ? &ops_avx512_kernels() : nullptr;
    return chosen;
}

int n_threads()
{
    return default_thread_pool().size();
}

void run_threads(const std::function<void(int tid)>& fn)
{
    int nth = n_threads();
    if (nth == 1) {
        fn(0);
        return;
    }
    default_thread_pool().parallel_for(0, nth, [&](int64_t tid) { fn(int(tid)); });
}

void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn)
{
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    int64_t n_blocks = std::min<int64_t>(n_threads(), n / grain);
    if (n_blocks < 2) {
        fn(0, n);
        return;
    }
    default_thread_pool().parallel_for(
        0, n_blocks, [&](int64_t b) { fn(n * b / n_blocks, n * (b + 1) / n_blocks); });
}

// ---------------------------------------------------------------------------------------------
// Products

void gemm_st(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
             const float* b, int64_t ldb, bool b_trans, float beta, float* c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (m == 1 && b_trans) {
        // A row times Bᵀ: a matrix-vector product over B's rows.
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(n), int(k), alpha, b, int(ldb), a, 1, beta, c,
                    1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, b_trans ? CblasTrans : CblasNoTrans, int(m), int(n),
                int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

void linear(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
            const float* bias, float* y, int64_t ldy)
{
    if (m <= 0 || n <= 0) return;
    auto add_bias = [&](int64_t c0, int64_t c1) {
        if (!bias) return;
        for (int64_t r = 0; r < m; ++r) {
            float* yr = y + r * ldy;
            for (int64_t c = c0; c < c1; ++c) yr[c] += bias[c];
        }
    };
    int nth = n_threads();
    double flops = 2.0 * double(m) * double(n) * double(k);
    if (nth == 1 || flops < 2e5) {
        gemm_st(m, n, k, 1.f, x, ldx, w, k, true, 0.f, y, ldy);
        add_bias(0, n);
        return;
    }
    // Column blocks handed out dynamically: a core slowed by another process on this shared
    // machine does not hold the others back. Blocks are multiples of 64 columns (whole cache
    // lines of y, full AVX-512 panels). Each block of a GEMM packs its own copy of x, so GEMMs
    // get only 2 blocks per thread; matrix-vector products (no packing) get 4.
    int64_t target_blocks = int64_t(nth) * (m == 1 ? 4 : 2);
    int64_t block = std::max<int64_t>(64, (n + target_blocks - 1) / target_blocks);
    block = (block + 63) / 64 * 64;
    int64_t n_blocks = (n + block - 1) / block;
    std::atomic<int64_t> next {0};
    run_threads([&](int) {
        for (int64_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < n_blocks;) {
            int64_t c0 = b * block, c1 = std::min(n, c0 + block);
            gemm_st(m, c1 - c0, k, 1.f, x, ldx, w + c0 * k, k, true, 0.f, y + c0, ldy);
            add_bias(c0, c1);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Normalisation and element-wise ops

namespace {
// Rows per task for row-wise ops: enough work to amortise a pool dispatch (~10 µs).
int64_t row_grain(int64_t cols)
{
    return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1));
}
} // namespace

void layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, const float* beta,
                float eps, float* y)
{
    parallel_range(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * cols;
            float* yr = y + r * cols;
            // Two passes in double: the mean and the biased variance torch uses, without the
            // cancellation of E[x²] - E[x]² on rows with a large mean.
            double mean = sum_array(xr, cols, false) / double(cols);
            double sq = sum_array(xr, cols, true, float(mean));
            float rstd = float(1.0 / std::sqrt(sq / double(cols) + double(eps)));
            float fmean = float(mean);
            if (beta) {
                for (int64_t c = 0; c < cols; ++c)
                    yr[c] = (xr[c] - fmean) * rstd * gamma[c] + beta[c];
            } else {
                for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - fmean) * rstd * gamma[c];
            }
        }
    });
}

void rms_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, float eps, float* y)
{
    parallel_range(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * cols;
            float* yr = y + r * cols;
            double sq = sum_array(xr, cols, true);
            // HF: x * torch.rsqrt(mean(x²) + eps), then weight * (that).
            float scale = float(1.0 / std::sqrt(sq / double(cols) + double(eps)));
            for (int64_t c = 0; c < cols; ++c) yr[c] = gamma[c] * (xr[c] * scale);
        }
    });
}

void gelu_erf(float* x, int64_t n)
{
    constexpr int64_t chunk = 1024;
    parallel_range((n + chunk - 1) / chunk, 16, [&](int64_t b0, int64_t b1) {
        float tmp[chunk];
        for (int64_t b = b0; b < b1; ++b) {
            int64_t i0 = b * chunk, len = std::min(chunk, n - i0);
            float* xs = x + i0;
            for (int64_t i = 0; i < len; ++i) tmp[i] = xs[i] * float(M_SQRT1_2);
            erf_array(tmp, tmp, len);
            for (int64_t i = 0; i < len; ++i) xs[i] = 0.5f * xs[i] * (1.0f + tmp[i]);
        }
    });
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n)
{
    constexpr int64_t chunk = 1024;
    parallel_range((n + chunk - 1) / chunk, 16, [&](int64_t b0, int64_t b1) {
        float tmp[chunk];
        for (int64_t b = b0; b < b1; ++b) {
            int64_t i0 = b * chunk, len = std::min(chunk, n - i0);
            for (int64_t i = 0; i < len; ++i) tmp[i] = -gate[i0 + i];
            exp_array(tmp, tmp, len);
            for (int64_t i = 0; i < len; ++i)
                out[i0 + i] = gate[i0 + i] / (1.0f + tmp[i]) * up[i0 + i];
        }
    });
}

void add_rows(float* x, const float* y, const float* scale, int64_t rows, int64_t cols)
{
    parallel_range(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            float* xr = x + r * cols;
            const float* yr = y + r * cols;
            if (scale) {
                for (int64_t c = 0; c < cols; ++c) xr[c] += scale[c] * yr[c];
            } else {
                for (int64_t c = 0; c < cols; ++c) xr[c] += yr[c];
            }
        }
    });
}

void softmax(float* x, int64_t n)
{
    if (n <= 0) return;
    const float mx = max_array(x, n);
    const float inv = 1.0f / exp_shift_sum(x, n, mx);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// ---------------------------------------------------------------------------------------------
// Rotary position embedding

void rope_inv_freq(int head_dim, double base, float* inv_freq)
{
    // torch: (arange(0, D, 2).float() / D) in fp32, base ** that in fp32 (the Python scalar
    // base is cast to the tensor's dtype), then 1.0 / (...) in fp32.
    float fbase = float(base);
    for (int i = 0; i < head_dim / 2; ++i) {
        float e = float(2 * i) / float(head_dim);
        float p = float(std::pow(double(fbase), double(e)));
        inv_freq[i] = 1.0f / p;
    }
}

void rope_tables(const int64_t* pos, int64_t n_pos, const float* inv_freq, int head_dim,
                 float pos_scale, float* cos_out, float* sin_out)
{
    int half = head_dim / 2;
    for (int64_t p = 0; p < n_pos; ++p) {
        float t = float(pos[p]);
        if (pos_scale != 1.0f) t = t / pos_scale;
        for (int i = 0; i < half; ++i) {
            float angle = t * inv_freq[i];
            cos_out[p * half + i] = float(std::cos(double(angle)));
            sin_out[p * half + i] = float(std::sin(double(angle)));
        }
    }
}

void rope_apply(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
                const float* cos_tab, const float* sin_tab, bool pairs)
{
    const int half = head_dim / 2;
    // Channel i is at a(i), its partner i + D/2 at b(i).
    const int stride = pairs ? 2 : 1, partner = pairs ? 1 : half;
    parallel_range(n_tokens, std::max<int64_t>(1, 8192 / (int64_t(n_heads) * head_dim)),
                   [&](int64_t t0, int64_t t1) {
                       for (int64_t t = t0; t < t1; ++t) {
                           const float* c = cos_tab + t * half;
                           const float* s = sin_tab + t * half;
                           for (int h = 0; h < n_heads; ++h) {
                               float* v = x + t * ld + int64_t(h) * head_dim;
                               for (int i = 0; i < half; ++i) {
                                   float* pa = v + i * stride;
                                   const float a = pa[0], b = pa[partner];
                                   pa[0] = a * c[i] - b * s[i];
                                   pa[partner] = b * c[i] + a * s[i];
                               }
                           }
                       }
                   });
}

// ---------------------------------------------------------------------------------------------
// Attention

void attention_full(const float* qkv, int64_t n_seq, int64_t n_tok, int n_heads, int head_dim,
                    float scale, float* out)
{
    const int64_t width = int64_t(n_heads) * head_dim; // C
    const int64_t ld_qkv = 3 * width;
    // Query blocks of up to 256 rows keep a block of scores (256 × 1025 floats = 1 MiB) in L2.
    const int64_t bq = std::min<int64_t>(n_tok, 256);
    const int64_t n_qb = (n_tok + bq - 1) / bq;
    const int64_t n_tasks = n_seq * n_heads * n_qb;
    std::atomic<int64_t> next {0};
    run_threads([&](int) {
        std::vector<float> scores(size_t(bq * n_tok));
        for (int64_t task; (task = next.fetch_add(1, std::memory_order_relaxed)) < n_tasks;) {
            int64_t qb = task % n_qb;
            int64_t h = (task / n_qb) % n_heads;
            int64_t s = task / (n_qb * n_heads);
            int64_t t0 = qb * bq, rows = std::min(bq, n_tok - t0);
            const float* base = qkv + s * n_tok * ld_qkv;
            const float* q = base + t0 * ld_qkv + h * head_dim;
            const float* k = base + width + h * head_dim;
            const float* v = base + 2 * width + h * head_dim;
            gemm_st(rows, n_tok, head_dim, scale, q, ld_qkv, k, ld_qkv, true, 0.f, scores.data(),
                    n_tok);
            for (int64_t r = 0; r < rows; ++r) softmax(scores.data() + r * n_tok, n_tok);
            float* o = out + (s * n_tok + t0) * width + h * head_dim;
            gemm_st(rows, head_dim, n_tok, 1.f, scores.data(), n_tok, v, ld_qkv, false, 0.f, o,
                    width);
        }
    });
}

namespace {

// Whether a run's products can take the fused path of ops-avx512.h (the cached rows read in
// place by a few query rows).
bool fused_run(const OpsAvx512* simd, const KvRun& run, int64_t rows, int64_t d)
{
    return simd && rows <= kFusedRows && d % 16 == 0 && run.k_type == run.v_type
        && (run.k_type == KvType::f32 || run.k_type == KvType::f16);
}

} // namespace

void attention_causal(const float* q, int64_t ldq, int64_t n_new, int64_t n_past, int n_heads,
                      int n_kv_heads, int head_dim, std::span<const KvRun> runs, float scale,
                      float* out, std::vector<std::vector<float>>& scratch)
{
    if (n_new == 1) {
        if (scratch.empty()) scratch.resize(1);
        if (attention_decode(decode_attention(), q, n_heads, n_kv_heads, head_dim, runs, n_past + 1,
                             scale, out, scratch[0]))
            return;
    }
    const int group = n_heads / n_kv_heads;
    const int64_t d = head_dim;
    const int64_t ld_out = int64_t(n_heads) * head_dim;
    // Query blocks: every query head of a KV group and a run of tokens share one product with
    // each run of keys (GQA: the keys are read, and dequantized, once for all `group` heads).
    // Up to 256 rows per block, fewer when that leaves a thread without work.
    int64_t bq = std::max<int64_t>(1, 256 / group);
    int nth = n_threads();
    int64_t min_blocks = (2 * nth + n_kv_heads - 1) / n_kv_heads;
    bq = std::min(bq, std::max<int64_t>(1, (n_new + min_blocks - 1) / min_blocks));
    bq = std::min(bq, n_new);
    const int64_t n_qb = (n_new + bq - 1) / bq;
    // Still fewer tasks than threads (decoding): split the runs too, at least 256 keys a part.
    int64_t n_keys_total = 0, run_max = 0;
    for (const KvRun& r : runs) {
        n_keys_total += r.n_tokens;
        run_max = std::max(run_max, r.n_tokens);
    }
    const int64_t base_tasks = int64_t(n_kv_heads) * n_qb;
    int64_t n_splits = 1;
    if (base_tasks < nth)
        n_splits = std::clamp<int64_t>(
            std::min<int64_t>((2 * nth + base_tasks - 1) / base_tasks, n_keys_total / 256), 1,
            int64_t(runs.size()));
    const int64_t n_tasks = base_tasks * n_splits;

    const int64_t max_rows = bq * group;
    const int64_t chunk_max = std::max<int64_t>(run_max, 256); // keys per product at most
    if (int(scratch.size()) < nth + 1) scratch.resize(size_t(nth + 1));
    const size_t need = size_t(max_rows * (4 * d + chunk_max + 2) + 2 * chunk_max * d);
    for (int i = 0; i < nth; ++i)
        if (scratch[size_t(i)].size() < need) scratch[size_t(i)].resize(need);
    // The parts of split tasks: [task][og (max_rows·D), max (max_rows), sum (max_rows)].
    const int64_t part = max_rows * (d + 2);
    float* parts = nullptr;
    if (n_splits > 1) {
        auto& p = scratch[size_t(nth)];
        if (p.size() < size_t(n_tasks * part)) p.resize(size_t(n_tasks * part));
        parts = p.data();
    }

    // n rows of a run for KV head g as f32 in dst (SKVQ rows in their stored channel order).
    auto to_f32
        = [&](KvType type, const SkvqFormat& fmt, const uint8_t* src, int64_t n, float* dst) {
              if (type == KvType::f32)
                  std::memcpy(dst, src, size_t(n * d) * sizeof(float));
              else if (type == KvType::skvq)
                  skvq_dequantize_rows(fmt, src, n, head_dim, dst);
              else
                  kv_dequantize_rows(type, src, n, head_dim, dst);
          };

    const OpsAvx512* simd = ops_avx512();
    std::atomic<int64_t> next {0};
    auto body = [&](int tid) {
        float* qg = scratch[size_t(tid)].data(); // [rows, D]
        float* qp = qg + max_rows * d; // [rows, D] the query in an SKVQ key order
        float* og = qp + max_rows * d; // [rows, D] unnormalised output
        float* ov = og + max_rows * d; // [rows, D] the SKVQ runs' output, in stored order
        float* sc = ov + max_rows * d; // [rows, chunk tokens] scores, then probabilities
        float* row_max = sc + max_rows * chunk_max; // [rows] running max of the scores
        float* row_sum = row_max + max_rows; // [rows] running Σ exp(score - max)
        float* kbuf = row_sum + max_rows; // [chunk tokens, D] dequantized keys
        float* vbuf = kbuf + chunk_max * d; // [chunk tokens, D] dequantized values
        for (int64_t task; (task = next.fetch_add(1, std::memory_order_relaxed)) < n_tasks;) {
            const int64_t split = task % n_splits, base = task / n_splits;
            const int64_t g = base / n_qb, qb = base % n_qb;
            const int64_t t0 = qb * bq, t1 = std::min(n_new, t0 + bq);
            const int64_t rows = (t1 - t0) * group;
            const int64_t n_keys = n_past + t1; // keys the last token of the block may see
            const size_t r0 = size_t(int64_t(runs.size()) * split / n_splits);
            const size_t r1 = size_t(int64_t(runs.size()) * (split + 1) / n_splits);
            for (int64_t t = t0; t < t1; ++t)
                std::memcpy(qg + (t - t0) * group * d, q + t * ldq + g * group * d,
                            size_t(group * d) * sizeof(float));
            std::fill(og, og + rows * d, 0.f);
            std::fill(ov, ov + rows * d, 0.f);
            const int32_t* ov_perm = nullptr; // the order ov is in (null: unused)
            std::fill(row_max, row_max + rows, -INFINITY);
            std::fill(row_sum, row_sum + rows, 0.f);
            const int32_t* qp_perm = nullptr; // the order qp is in
            int64_t key0 = 0; // position of the run's first token
            for (size_t i = 0; i < r0; ++i) key0 += runs[i].n_tokens;
            for (size_t i = r0; i < r1 && key0 < n_keys;) {
                // A chunk of keys: an f32 run read in place, or consecutive runs of one stored
                // type dequantized together (fewer, larger products).
                const KvRun& run = runs[i];
                int64_t bn = 0;
                const float *kr = kbuf, *vr = vbuf;
                const bool fused = fused_run(simd, run, rows, d);
                if (fused) {
                    bn = std::min(run.n_tokens, n_keys - key0);
                    ++i;
                } else if (run.k_type == KvType::f32 && run.v_type == KvType::f32) {
                    bn = std::min(run.n_tokens, n_keys - key0);
                    kr = reinterpret_cast<const float*>(run.k + size_t(g) * run.k_head_stride);
                    vr = reinterpret_cast<const float*>(run.v + size_t(g) * run.v_head_stride);
                    ++i;
                } else {
                    for (; i < r1 && key0 + bn < n_keys && runs[i].k_type == run.k_type
                         && runs[i].v_type == run.v_type
                         && (bn == 0 || bn + runs[i].n_tokens <= chunk_max);
                         ++i) {
                        const KvRun& r = runs[i];
                        const int64_t n = std::min(r.n_tokens, n_keys - key0 - bn);
                        to_f32(r.k_type, r.k_fmt, r.k + size_t(g) * r.k_head_stride, n,
                               kbuf + bn * d);
                        to_f32(r.v_type, r.v_fmt, r.v + size_t(g) * r.v_head_stride, n,
                               vbuf + bn * d);
                        bn += n;
                    }
                }
                const float* qk = qg;
                if (run.k_type == KvType::skvq) {
                    const int32_t* perm = run.k_perm + g * d;
                    if (qp_perm != perm) {
                        for (int64_t r = 0; r < rows; ++r)
                            for (int64_t j = 0; j < d; ++j) qp[r * d + j] = qg[r * d + perm[j]];
                        qp_perm = perm;
                    }
                    qk = qp;
                }
                const bool f16 = run.k_type == KvType::f16;
                const size_t kv_row = fused ? kv_row_bytes(run.k_type, head_dim) : 0;
                if (fused)
                    simd->fused_scores(f16, qk, rows, run.k + size_t(g) * run.k_head_stride, kv_row,
                                       bn, d, scale, sc, bn);
                else
                    gemm_st(rows, bn, d, scale, qk, d, kr, d, true, 0.f, sc, bn);
                // Online softmax: rescale what earlier runs summed when the maximum grows.
                for (int64_t t = t0; t < t1; ++t) {
                    const int64_t visible = std::clamp<int64_t>(n_past + t + 1 - key0, 0, bn);
                    for (int j = 0; j < group; ++j) {
                        const int64_t r = (t - t0) * group + j;
                        float* p = sc + r * bn;
                        if (visible > 0) {
                            const float m = std::max(row_max[r], max_array(p, visible));
                            const float corr = std::exp(row_max[r] - m);
                            row_sum[r] = row_sum[r] * corr + exp_shift_sum(p, visible, m);
                            row_max[r] = m;
                            if (corr != 1.f) {
                                for (int64_t c = 0; c < d; ++c) og[r * d + c] *= corr;
                                if (ov_perm)
                                    for (int64_t c = 0; c < d; ++c) ov[r * d + c] *= corr;
                            }
                        }
                        std::fill(p + visible, p + bn, 0.f);
                    }
                }
                if (run.v_type == KvType::skvq) {
                    // Summed in the stored order over every SKVQ run (one layer's runs share
                    // it) and scattered to the channels once, below.
                    gemm_st(rows, d, bn, 1.f, sc, bn, vr, d, false, 1.f, ov, d);
                    ov_perm = run.v_perm + g * d;
                } else if (fused) {
                    simd->fused_values(f16, sc, bn, rows, run.v + size_t(g) * run.v_head_stride,
                                       kv_row, bn, d, og);
                } else {
                    gemm_st(rows, d, bn, 1.f, sc, bn, vr, d, false, 1.f, og, d);
                }
                key0 += bn;
            }
            if (ov_perm)
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t j = 0; j < d; ++j) og[r * d + ov_perm[j]] += ov[r * d + j];
            if (n_splits > 1) {
                float* pt = parts + task * part;
                std::memcpy(pt, og, size_t(rows * d) * sizeof(float));
                std::memcpy(pt + max_rows * d, row_max, size_t(rows) * sizeof(float));
                std::memcpy(pt + max_rows * (d + 1), row_sum, size_t(rows) * sizeof(float));
                continue;
            }
            for (int64_t r = 0; r < rows; ++r) {
                const float inv = 1.f / row_sum[r];
                for (int64_t c = 0; c < d; ++c) og[r * d + c] *= inv;
            }
            for (int64_t t = t0; t < t1; ++t)
                std::memcpy(out + t * ld_out + g * group * d, og + (t - t0) * group * d,
                            size_t(group * d) * sizeof(float));
        }
    };
    if (n_tasks == 1) {
        body(0);
    } else {
        run_threads(body);
    }
    if (n_splits == 1) return;
    // Merge the parts of each (KV head, query block): rescale each to the common maximum.
    for (int64_t base = 0; base < base_tasks; ++base) {
        const int64_t g = base / n_qb, qb = base % n_qb;
        const int64_t t0 = qb * bq, t1 = std::min(n_new, t0 + bq);
        for (int64_t r = 0; r < (t1 - t0) * group; ++r) {
            float m = -INFINITY;
            for (int64_t sp = 0; sp < n_splits; ++sp)
                m = std::max(m, parts[(base * n_splits + sp) * part + max_rows * d + r]);
            float sum = 0;
            float* o = out + (t0 + r / group) * ld_out + (g * group + r % group) * d;
            std::fill(o, o + d, 0.f);
            for (int64_t sp = 0; sp < n_splits; ++sp) {
                const float* pt = parts + (base * n_splits + sp) * part;
                const float w = std::exp(pt[max_rows * d + r] - m); // 0 for an empty part
                sum += w * pt[max_rows * (d + 1) + r];
                for (int64_t c = 0; c < d; ++c) o[c] += w * pt[r * d + c];
            }
            const float inv = 1.f / sum;
            for (int64_t c = 0; c < d; ++c) o[c] *= inv;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vision helpers

void im2col_patches(const float* pixels, int64_t n, int c, int s, int p, float* patches)
{
    const int g = s / p;
    const int64_t cols = int64_t(c) * p * p;
    parallel_range(n * g, 4, [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) { // one row of patches of one image
            int64_t img = row / g, gy = row % g;
            for (int gx = 0; gx < g; ++gx) {
                float* dst = patches + ((img * g + gy) * g + gx) * cols;
                for (int ch = 0; ch < c; ++ch) {
                    const float* plane = pixels + (img * c + ch) * int64_t(s) * s;
                    for (int ky = 0; ky < p; ++ky) {
                        const float* src = plane + (gy * p + ky) * int64_t(s) + gx * p;
                        std::memcpy(dst + (ch * p + ky) * p, src, size_t(p) * sizeof(float));
                    }
                }
            }
        }
    });
}

namespace {
// PyTorch's cubic convolution coefficients (A = -0.75) for fractional offset t, in fp32 and in
// the same operation order as aten's get_cubic_upsample_coefficients.
void cubic_coeffs(float t, float w[4])
{
    const float a = -0.75f;
    auto conv1 = [a](float x) { return ((a + 2) * x - (a + 3)) * x * x + 1; };
    auto conv2 = [a](float x) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; };
    float x1 = t;
    w[0] = conv2(x1 + 1.0f);
    w[1] = conv1(x1);
    float x2 = 1.0f - t;
    w[2] = conv1(x2);
    w[3] = conv2(x2 + 1.0f);
}

struct CubicTaps
{
    std::vector<int> idx; // [out, 4] clamped source indices
    std::vector<float> w; // [out, 4]
};

CubicTaps cubic_taps(int in, int out)
{
    CubicTaps taps;
    taps.idx.resize(size_t(out) * 4);
    taps.w.resize(size_t(out) * 4);
    // align_corners=False, output size given: scale = in / out and
    // src = scale · (dst + 0.5) - 0.5, not clamped for cubic (aten area_pixel_compute_*).
    float scale = float(in) / float(out);
    for (int o = 0; o < out; ++o) {
        float src = scale * (float(o) + 0.5f) - 0.5f;
        float fl = std::floor(src);
        int i0 = int(fl);
        cubic_coeffs(src - fl, &taps.w[size_t(o) * 4]);
        for (int j = 0; j < 4; ++j) taps.idx[size_t(o) * 4 + j] = std::clamp(i0 - 1 + j, 0, in - 1);
    }
    return taps;
}
} // namespace

void bicubic_resize(const float* src, int64_t c, int ih, int iw, int oh, int ow, float* dst)
{
    if (ih == oh && iw == ow) {
        std::memcpy(dst, src, size_t(c) * ih * iw * sizeof(float));
        return;
    }
    CubicTaps ty = cubic_taps(ih, oh), tx = cubic_taps(iw, ow);
    parallel_range(c, 8, [&](int64_t c0, int64_t c1) {
        for (int64_t ch = c0; ch < c1; ++ch) {
            const float* plane = src + ch * ih * iw;
            float* out = dst + ch * int64_t(oh) * ow;
            for (int y = 0; y < oh; ++y) {
                const int* yi = &ty.idx[size_t(y) * 4];
                const float* yw = &ty.w[size_t(y) * 4];
                for (int x = 0; x < ow; ++x) {
                    const int* xi = &tx.idx[size_t(x) * 4];
                    const float* xw = &tx.w[size_t(x) * 4];
                    // aten's generic interpolation: along x within each of the 4 rows, then
                    // along y, each sum accumulated tap by tap from tap 0.
                    float acc = 0;
                    for (int j = 0; j < 4; ++j) {
                        const float* row = plane + int64_t(yi[j]) * iw;
                        float t = row[xi[0]] * xw[0];
                        for (int i = 1; i < 4; ++i) t += row[xi[i]] * xw[i];
                        acc = j == 0 ? t * yw[0] : acc + t * yw[j];
                    }
                    out[int64_t(y) * ow + x] = acc;
                }
            }
        }
    });
}

void pixel_shuffle(const float* x, int64_t n, int h, int w, int c, int r, bool v2, float* out)
{
    const int oh = h / r, ow = w / r;
    const int64_t out_c = int64_t(r) * r * c;
    parallel_range(n * oh, 4, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            int64_t img = i / oh;
            int a = int(i % oh);
            for (int b = 0; b < ow; ++b) {
                int64_t t = v2 ? int64_t(a) * ow + b : int64_t(b) * oh + a;
                float* dst = out + (img * oh * ow + t) * out_c;
                for (int j = 0; j < r; ++j)
                    for (int k = 0; k < r; ++k) {
                        const float* src = x + ((img * h + (r * a + j)) * w + (r * b + k)) * c;
                        std::memcpy(dst + (int64_t(j) * r + k) * c, src, size_t(c) * sizeof(float));
                    }
            }
        }
    });
}

} // namespace iris::model::cpu
