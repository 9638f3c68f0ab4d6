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
//
// Instruction sets: everything is compiled for x86-64-v3 (AVX2, FMA, F16C), and the loops that
// gain from more come in per-ISA translation units chosen at run time by cpu_level()
// (quant-dot.h): the quantized products (quant-dot.h), decoding's attention
// (attention-decode.h) and the AVX-512 loops of the rest (ops-avx512.h). IRIS_CPU=avx2 or
// portable forces a lesser set.
#pragma once

#include "model/backend.h"
#include "model/cpu/quant.h"
#include "model/model.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
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

// WeightMatrix, KvRun and SkvqFormat are the seam's (model/backend.h).

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
// The same with w [n = w.rows, k = w.cols] of any WeightType. ggml's block types (q8_0, q4_0,
// q4_1, q5_0, q5_1, iq4_nl, q4_K, q5_K, q6_K) meet activations quantized per block of 32 in
// int8 dot products (quant-dot.h), as llama.cpp computes them: for any number of rows where the
// kernel set has a GEMM (AVX-512), else for up to kMatvecMaxRows rows (q8_0 and q4_0: any
// number). Otherwise up to kMatvecMaxRows rows of x take a matrix-vector path that reads each
// weight once (F32 as it is, BF16/F16 widened in registers, other block types dequantized a row
// at a time) and gives each row the bits it gets alone (Backend::kExactRows); more rows go to
// cblas_sgemm, other types than F32 widened a block of weight rows at a time into a per-thread
// f32 scratch so that the SGEMM rate holds. BF16 weights marked bf16_activations instead meet
// the activations rounded to bf16 in vdpbf16ps tiles (quant-dot.h) where the CPU has
// AVX512_BF16.
void linear(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, const float* bias,
            float* y, int64_t ldy);
inline void linear(const float* x, int64_t m, const WeightMatrix& w, const float* bias, float* y)
{
    linear(x, m, w.cols, w, bias, y, w.rows);
}

constexpr int64_t kMatvecMaxRows = 8;
// The rows up to which linear() gives each row the bits it gets alone (Backend::exact_rows):
// any number for BF16 (f32 activations) and F16 weights on AVX-512, whose matrix-vector kernel
// takes every m and sums each row alike; kMatvecMaxRows for the rest.
int64_t exact_rows(const WeightMatrix& w);

// Building blocks of the low-precision linear, exposed for tests/model/ops_test.cpp.
// Rows [r0, r1) of w widened (or dequantized) to f32 into dst [r1 - r0, w.cols].
void widen_rows(const WeightMatrix& w, int64_t r0, int64_t r1, float* dst);
// Single-threaded y[i, j] = Σ_c x[i, c] · w[j, c] for i < m, j in [r0, r1) (no bias), with
// the fastest kernel for the type (block types: int8 activations); `portable` forces the scalar
// loop over widened or dequantized weights, the exact f32 product.
void matvec_rows(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0,
                 int64_t r1, float* y, int64_t ldy, bool portable = false);

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
// With pairs, channel i + D/2 is stored at 2i + 1 and channel i at 2i (ggml's order, which
// llama.cpp's converter gives InternLM2's q and k rows): the same rotation, so the same values.
void rope_apply(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
                const float* cos_tab, const float* sin_tab, bool pairs = false);

// ---------------------------------------------------------------------------------------------
// Attention

// Full (bidirectional) multi-head attention for n_seq independent sequences of n_tok tokens,
// as InternViT computes it: softmax(scale · q·kᵀ)·v per head.
// qkv [n_seq·n_tok, 3·n_heads·D]: per row the Q, K and V thirds, each head-major.
// out [n_seq·n_tok, n_heads·D].
void attention_full(const float* qkv, int64_t n_seq, int64_t n_tok, int n_heads, int head_dim,
                    float scale, float* out);

// Causal GQA attention of n_new query tokens at positions n_past..n_past+n_new-1 against the
// keys/values 0..n_past+n_new-1 that `runs` hold in order (the new tokens' rotated keys
// included; runs past that are ignored). q [n_new, n_heads·D] (row stride ldq); query head h
// reads KV head h / (n_heads / n_kv_heads). out [n_new, n_heads·D].
// Works chunk by chunk with an online softmax: consecutive quantized runs are dequantized one
// head at a time into a per-thread buffer of up to 256 tokens (or one run, if longer), never
// the whole cache; f32 runs are read in place.
// SKVQ keys stay in their stored channel order and meet a query permuted the same way; SKVQ
// values are summed in stored order and scattered back to their channels once per run. When
// the query blocks and KV heads leave threads idle (decoding), the runs are split between
// threads too, each part with its own online softmax, and the parts merged at the end.
// `scratch` holds one buffer per thread, grown as needed (no allocation once warm).
// One query token (decoding) whose runs are all f32, f16, q8 or q4 with head_dim 16, 32, 64 or
// 128 goes to the kernel of attention-decode.h instead, where the CPU has AVX2 or AVX-512.
void attention_causal(const float* q, int64_t ldq, int64_t n_new, int64_t n_past, int n_heads,
                      int n_kv_heads, int head_dim, std::span<const KvRun> runs, float scale,
                      float* out, std::vector<std::vector<float>>& scratch);

// ---------------------------------------------------------------------------------------------
// KV cache storage (kv-quant.cpp)
//
// One row is one token's head_dim values of one KV head. q8 and q4 rows are groups of
// kv_group_size(head_dim) values, each an fp16 scale d followed by the codes, as llama.cpp's
// block_q8_0 / block_q4_0 (docs/kv-cache.md §3, formulas of the reference C quantizers):
//   q8: d = max|x| / 127, q = roundf(x / d) as int8 (half away from zero); x' = d·q
//   q4: m = the x of largest |x| (the first one on a tie), d = m / -8,
//       q = min(15, trunc(x / d + 8.5)); byte j holds q_j (low nibble) and q_{j+g/2} (high);
//       x' = (q - 8)·d, so m maps to level 0 exactly and -m saturates at 15
// where x / d is x·(1/d) computed in f32 with d = 0 giving 0, and d is rounded to fp16 for
// storage only (x' uses the stored d).

// Channels per group: 32, or gcd(head_dim, 32) when 32 does not divide head_dim.
int kv_group_size(int head_dim);

// SKVQ rows (docs/skvq.md §3). A row is one token's D values of one KV head, taken in the
// calibrated order (stored position j holds channel perm[j]) and cut into D/g groups of g
// channels; each group is an fp16 scale, an fp16 minimum, then g codes of `bits` bits, packed
// 8/bits per byte with the first code in the most significant bits. With the clipping factor α
// of the group and max_int = levels - 1, in f32:
//   gmax = α·max x, gmin = α·min x, scale = max((gmax - gmin) / max_int, 1e-5), zp = gmin,
//   q = round_half_even(clamp((x - zp) / scale, 0, max_int)),   x' = q·scale16 + zp16
// where scale16 and zp16 are the stored (fp16-rounded) parameters: the codes come from the
// unrounded ones, as SKVQ's fake quantization does. bits 1.5 is the ternary format: three
// levels stored in 2 bits. group is min(group, D), or gcd(D, group) if that does not divide D.
// Throws Error(invalid_argument) for other bit widths or group sizes.
SkvqFormat skvq_format(float bits, int group, int head_dim);
size_t skvq_row_bytes(const SkvqFormat& f, int head_dim);
// x [D] -> dst [skvq_row_bytes]; perm [D] (null: identity), clip [D/g] (null: α = 1).
void skvq_quantize_row(const SkvqFormat& f, const float* x, int head_dim, const int32_t* perm,
                       const float* clip, uint8_t* dst);
// n_rows rows -> dst [n_rows, D] in stored order (dst[j] is channel perm[j]).
void skvq_dequantize_rows(const SkvqFormat& f, const uint8_t* src, int64_t n_rows, int head_dim,
                          float* dst);
// Bytes of one row: 4·D (f32), 2·D (f16), (D/g)·(2 + g) (q8), (D/g)·(2 + g/2) (q4); skvq rows
// depend on their format (skvq_row_bytes), and these functions reject them.
size_t kv_row_bytes(KvType type, int head_dim);
// x [D] -> dst [kv_row_bytes].
void kv_quantize_row(KvType type, const float* x, int head_dim, uint8_t* dst);
// n_rows consecutive rows -> dst [n_rows, D] f32.
void kv_dequantize_rows(KvType type, const uint8_t* src, int64_t n_rows, int head_dim, float* dst);

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
