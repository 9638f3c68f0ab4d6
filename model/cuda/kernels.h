// The CUDA backend's kernels as host-callable launchers (private to model/cuda). The .cu files
// implement them; backend-cuda.cpp, plain C++, calls them and turns their errors into
// iris::Error. Every launcher queues its work on `stream` and returns the launch's error
// (cudaGetLastError), never waits. Pointers are device memory unless a comment says host.
// Shapes and semantics are the seam's (model/backend.h) and the CPU reference's
// (model/cpu/ops.h, model/cpu/quant.h).
#pragma once

#include "model/cpu/quant.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace iris::model::cuda {

// --- Weights (weights.cu) ------------------------------------------------------------------------

// A weight matrix [rows, cols] of any WeightType, rows of row_bytes back to back.
struct DeviceMatrix
{
    const void* data;
    cpu::WeightType type;
    int64_t rows, cols;
    size_t row_bytes;
};

// Rows [r0, r1) of w as f32 into dst [r1 - r0, cols], bit for bit cpu::dequantize_row.
cudaError_t dequantize_rows(const DeviceMatrix& w, int64_t r0, int64_t r1, float* dst,
                            cudaStream_t stream);
// out[i, :] = row ids[i] of w as f32, for n ids (device, each in [0, rows)).
cudaError_t get_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out,
                     cudaStream_t stream);
// y[i, j] = Σ_c x[i, c]·w[j, c] + bias[j] (bias may be null) for a few rows of x (m ≤
// kMatvecMaxRows): each weight is read and dequantized once, in f32.
constexpr int64_t kMatvecMaxRows = 8;
cudaError_t matvec(const float* x, int64_t m, int64_t ldx, const DeviceMatrix& w, const float* bias,
                   float* y, int64_t ldy, cudaStream_t stream);
// y[i, j] += bias[j] for i < m, j < n.
cudaError_t add_bias(float* y, int64_t m, int64_t n, int64_t ldy, const float* bias,
                     cudaStream_t stream);
// dst [m, k] (bf16 bits, contiguous) = x [m, k] (stride ldx) rounded to nearest even.
cudaError_t round_to_bf16(const float* x, int64_t m, int64_t k, int64_t ldx, uint16_t* dst,
                          cudaStream_t stream);

// --- Element-wise ops, RoPE, vision, argmax (ops.cu)
// ----------------------------------------------

cudaError_t layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma,
                       const float* beta, float eps, float* y, cudaStream_t stream);
cudaError_t rms_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, float eps,
                     float* y, cudaStream_t stream);
cudaError_t gelu_erf(float* x, int64_t n, cudaStream_t stream);
cudaError_t silu_mul(const float* gate, const float* up, float* out, int64_t n,
                     cudaStream_t stream);
cudaError_t add_rows(float* x, const float* y, const float* scale, int64_t rows, int64_t cols,
                     cudaStream_t stream);
// cos/sin [n, half] of positions pos0.. with inv_freq [half] (device, cpu::rope_inv_freq's).
cudaError_t rope_tables(int64_t pos0, int64_t n, const float* inv_freq, int half, float pos_scale,
                        float* cos_out, float* sin_out, cudaStream_t stream);
cudaError_t rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
                 const float* cos_tab, const float* sin_tab, bool pairs, cudaStream_t stream);
cudaError_t im2col_patches(const float* pixels, int64_t n, int c, int s, int p, float* patches,
                           cudaStream_t stream);
// Sizes differ (the identity is a copy, done by the caller).
cudaError_t bicubic_resize(const float* src, int64_t c, int ih, int iw, int oh, int ow, float* dst,
                           cudaStream_t stream);
cudaError_t pixel_shuffle(const float* x, int64_t n, int h, int w, int c, int r, bool v2,
                          float* out, cudaStream_t stream);
// *result (device) = the index of the first largest of x[0, n), n ≥ 1.
cudaError_t argmax(const float* x, int64_t n, int64_t* result, cudaStream_t stream);

// --- Attention (attention.cu)
// ---------------------------------------------------------------------

// How a side of the KV cache is stored (model.h's KvType, same order).
enum class KvCode : int { f32, f16, q8, q4, skvq };

// One run of cached tokens (backend.h's KvRun) as the device reads it: tokens [key0, key0 +
// n_tokens) of the attended range; rows of KV head g at k + g·k_head_stride + i·k_row_bytes.
struct RunDesc
{
    const uint8_t* k;
    const uint8_t* v;
    size_t k_head_stride, v_head_stride;
    size_t k_row_bytes, v_row_bytes;
    const int32_t* k_perm; // skvq: [n_kv, D], stored position j holds channel perm[j]
    const int32_t* v_perm;
    int64_t key0, n_tokens;
    KvCode k_type, v_type;
    int k_bits, k_group, v_bits, v_group; // skvq formats
};

// Keys and values 0..n_keys of every KV head as f32 in channel order: k_out, v_out [n_kv,
// n_keys, D]. runs (device, n_runs, ordered by key0) must cover [0, n_keys); q_group is
// cpu::kv_group_size(D) for the q8 and q4 rows.
cudaError_t dequantize_runs(const RunDesc* runs, int n_runs, int64_t n_keys, int n_kv, int d,
                            int q_group, float* k_out, float* v_out, cudaStream_t stream);

// softmax(scale·q·kᵀ)·v per query row and head, over f32 keys and values. Query row r (of
// n_seq·n_tok) is token r % n_tok of sequence r / n_tok; head h reads KV head h / group, at
// k + seq·kv_seq_stride + (h / group)·kv_head_stride + key·ld_kv (the same for v). Causal:
// token t sees keys [0, n_past + t + 1); otherwise all n_keys.
struct AttendArgs
{
    const float* q;
    int64_t ldq;
    const float* k;
    const float* v;
    int64_t ld_kv, kv_head_stride, kv_seq_stride;
    float* out;
    int64_t ld_out;
    int64_t n_seq, n_tok, n_keys, n_past;
    bool causal;
    int n_heads, group, d;
    float scale;
};
constexpr int kAttendMaxHeadDim = 512;
cudaError_t attend(const AttendArgs& a, cudaStream_t stream);

// --- KV rows (kv-store.cu, built with -fmad=false: the CPU's bytes) ----------------------------

// n_rows rows of d values (stride src_ld floats) into rows of `type` (not skvq; stride dst_ld
// bytes), as cpu::kv_quantize_row; g = cpu::kv_group_size(d).
cudaError_t kv_store(KvCode type, const float* src, int64_t n_rows, int64_t src_ld, int d, int g,
                     uint8_t* dst, size_t dst_ld, cudaStream_t stream);
// The same into SKVQ rows, as cpu::skvq_quantize_row; perm and clip may be null.
cudaError_t skvq_store(int bits, int levels, int group, const float* src, int64_t n_rows,
                       int64_t src_ld, int d, const int32_t* perm, int64_t perm_ld,
                       const float* clip, int64_t clip_ld, uint8_t* dst, size_t dst_ld,
                       cudaStream_t stream);

} // namespace iris::model::cuda
