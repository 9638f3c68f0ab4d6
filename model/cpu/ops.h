// CPU backend ops (private to the model module): the reference implementation of every
// operation the InternVL network needs, fp32 throughout.
//
// Layout conventions: matrices are row-major; a "[rows, cols]" comment names the shape of a
// contiguous buffer unless a row stride (ld) is given. Weights follow PyTorch nn.Linear:
// w [out_features, in_features], y = x·wᵀ + b.
//
// Threading: every op runs on iris::default_thread_pool(). OpenBLAS is forced to a single
// thread (init_blas() at model load) and our pool splits the products itself, so there is one
// set of threads in the process and no oversubscription: OpenBLAS's own workers would
// busy-wait after each call and steal the cores the attention and element-wise ops need.
// Ops must not be called from inside another op's parallel region (they would still be
// correct, but serial).
//
// Thread safety: ops are reentrant; concurrent calls from several threads share the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace iris::model::cpu {

// Sets OpenBLAS to one thread (once per process). Called by InternVL::load.
void init_blas();

// Number of threads ops use (the default pool's size).
int n_threads();

// Runs fn(tid) once for every tid in [0, n_threads()) on the pool and blocks. Distinct tids
// never run concurrently on the same thread, so tid may index per-thread scratch.
void run_threads(const std::function<void(int tid)>& fn);

// Splits [0, n) into contiguous ranges of at least `grain` items and runs fn(lo, hi) on the
// pool; runs inline when n < 2 * grain.
void parallel_range(int64_t n, int64_t grain,
                    const std::function<void(int64_t lo, int64_t hi)>& fn);

// ---------------------------------------------------------------------------------------------
// Products

// y[m, n] (row stride ldy) = x[m, k] (row stride ldx) · w[n, k]ᵀ + bias[n] (bias may be null).
// m == 1 takes a matrix-vector path (bandwidth bound); larger m goes to cblas_sgemm with the
// n columns split over the threads.
void linear(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
            const float* bias, float* y, int64_t ldy);
inline void linear(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
                   const float* bias, float* y)
{
    linear(x, m, k, k, w, n, bias, y, n);
}

// Single-threaded C[m, n] = alpha · A[m, k] · op(B) + beta · C, op(B) = Bᵀ when b_trans
// (B stored [n, k]) else B (stored [k, n]). For use inside a parallel region.
void gemm_st(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
             const float* b, int64_t ldb, bool b_trans, float beta, float* c, int64_t ldc);

// ---------------------------------------------------------------------------------------------
// Normalisation and element-wise ops. `y` may alias `x`.

// LayerNorm over the last dim: y = (x - mean) / sqrt(var + eps) · gamma + beta
// (biased variance, as torch.nn.LayerNorm). x, y [rows, cols]; gamma, beta [cols].
void layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, const float* beta,
                float eps, float* y);
// RMSNorm: y = x · rsqrt(mean(x²) + eps) · gamma. x, y [rows, cols]; gamma [cols].
void rms_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, float eps, float* y);

// x = 0.5·x·(1 + erf(x/√2)) (exact GELU) over n values.
void gelu_erf(float* x, int64_t n);
// out[i] = silu(gate[i]) · up[i] = gate / (1 + e^-gate) · up. out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// x[r, c] += y[r, c] (scale == null) or x[r, c] += scale[c] · y[r, c]. x, y [rows, cols].
void add_rows(float* x, const float* y, const float* scale, int64_t rows, int64_t cols);

// In-place softmax of x[0, n) (max-subtracted; fp32 throughout).
void softmax(float* x, int64_t n);

// ---------------------------------------------------------------------------------------------
// Rotary position embedding (HF rotate_half / NeoX layout: dim i pairs with i + D/2).

// inv_freq[i] = 1 / base^(2i / D) for i in [0, D/2), each step rounded to fp32 exactly as
// torch computes `1.0 / (base ** (torch.arange(0, D, 2).float() / D))`.
void rope_inv_freq(int head_dim, double base, float* inv_freq);
// cos/sin tables [n_pos, D/2] for positions pos[i] scaled by 1/pos_scale (linear scaling):
// angle = fp32(pos / pos_scale) · inv_freq[i] in fp32, as torch.outer does.
void rope_tables(const int64_t* pos, int64_t n_pos, const float* inv_freq, int head_dim,
                 float pos_scale, float* cos_out, float* sin_out);
// Rotates x [n_tokens, n_heads, D] (row stride ld) in place with the tables of rope_tables:
// x'[i] = x[i]·cos[i] - x[i + D/2]·sin[i], x'[i + D/2] = x[i + D/2]·cos[i] + x[i]·sin[i].
void rope_apply(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
                const float* cos_tab, const float* sin_tab);

// ---------------------------------------------------------------------------------------------
// Attention

// Full (bidirectional) multi-head attention for n_seq independent sequences of n_tok tokens,
// as InternViT computes it: softmax(scale · q·kᵀ)·v per head.
// qkv [n_seq·n_tok, 3·n_heads·D]: per row the Q, K and V thirds, each head-major.
// out [n_seq·n_tok, n_heads·D].
void attention_full(const float* qkv, int64_t n_seq, int64_t n_tok, int n_heads, int head_dim,
                    float scale, float* out);

// Causal GQA attention of n_new query tokens at positions n_past..n_past+n_new-1 against
// keys/values 0..n_past+n_new-1 (already holding the new tokens' rotated keys).
// q [n_new, n_heads·D] (row stride ldq); k, v: per KV head a contiguous [kv_stride, D]
// block (head h_kv starts at k + h_kv·kv_stride·D), the first n_past+n_new rows valid.
// Query head h reads KV head h / (n_heads / n_kv_heads). out [n_new, n_heads·D].
// `scratch` holds one buffer per thread, grown as needed (no allocation once warm).
void attention_causal(const float* q, int64_t ldq, int64_t n_new, int64_t n_past, int n_heads,
                      int n_kv_heads, int head_dim, const float* k, const float* v,
                      int64_t kv_stride, float scale, float* out,
                      std::vector<std::vector<float>>& scratch);

// ---------------------------------------------------------------------------------------------
// Vision helpers

// Patch extraction for a stride-p, kernel-p convolution (im2col):
// pixels [n, c, s, s] -> patches [n·(s/p)², c·p·p], patch index row-major over the grid and
// the column order (channel, ky, kx) of a PyTorch Conv2d weight [out, c, p, p].
void im2col_patches(const float* pixels, int64_t n, int c, int s, int p, float* patches);

// torch.nn.functional.interpolate(mode='bicubic', align_corners=False) of src [c, ih, iw] to
// dst [c, oh, ow] (A = -0.75, border-clamped taps, fp32; identity when the sizes match).
void bicubic_resize(const float* src, int64_t c, int ih, int iw, int oh, int ow, float* dst);

// InternVL pixel_shuffle with scale_factor 1/r followed by the flatten of extract_feature:
// x [n, h, w, c] (h, w multiples of r) -> out [n, (h/r)·(w/r), r·r·c] with
// out[t][j·r·c + k·c + ch] = x[r·a + j][r·b + k][ch]; v2: t = a·(w/r) + b, v1: t = b·(h/r) + a.
void pixel_shuffle(const float* x, int64_t n, int h, int w, int c, int r, bool v2, float* out);

} // namespace iris::model::cpu
