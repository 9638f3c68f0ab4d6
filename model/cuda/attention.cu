// Attention kernels of the CUDA backend (kernels.h). A first cut, correct before fast:
//   - dequantize_runs widens the attended keys and values of every KV type into f32 rows in
//     channel order (SKVQ rows are scattered back through their permutation), one block per
//     cached row, with the row formats of cpu/kv-quant.cpp;
//   - attend runs one block per (query row, head) over those rows with an online softmax,
//     tile by tile of kTile keys: a warp per key for the scores, a thread per channel for the
//     values. GQA heads read their KV head; the causal mask limits each token's keys.
// Decode-specific kernels (split keys across blocks, reading the quantized rows in place) and
// tensor-core prefill are later steps.
#include "model/cuda/device.cuh"
#include "model/cuda/kernels.h"

namespace iris::model::cuda {

namespace {

constexpr int kDequantThreads = 128;
constexpr int kAttendThreads = 128; // 4 warps
constexpr int kTile = kAttendThreads; // keys per step: one score per thread
constexpr int kPerThread = kAttendMaxHeadDim / kAttendThreads; // channels each thread owns

// Value j (stored position) of a KV row (cpu/kv-quant.cpp's formats).
__device__ __forceinline__ float kv_value(KvCode type, const uint8_t* row, int j, int q_group,
                                          int bits, int group)
{
    switch (type) {
    case KvCode::f32: {
        const uint8_t* p = row + 4 * j; // rows need not keep floats aligned
        return __uint_as_float(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16
                               | uint32_t(p[3]) << 24);
    }
    case KvCode::f16:
        return load_half(row + 2 * j);
    case KvCode::q8: {
        const uint8_t* b = row + (j / q_group) * (2 + q_group);
        return __fmul_rn(load_half(b), float(int8_t(b[2 + j % q_group])));
    }
    case KvCode::q4: {
        const int half = q_group / 2, jj = j % q_group;
        const uint8_t* b = row + (j / q_group) * (2 + half);
        const uint8_t byte = b[2 + jj % half];
        const int q = jj < half ? byte & 0x0F : byte >> 4;
        return __fmul_rn(float(q - 8), load_half(b));
    }
    case KvCode::skvq: {
        // Groups of an fp16 scale, an fp16 minimum, then codes first-in-the-high-bits.
        const int per_byte = 8 / bits, jj = j % group;
        const uint8_t* b = row + (j / group) * (4 + group * bits / 8);
        const int shift = (per_byte - 1 - jj % per_byte) * bits;
        const int q = (b[4 + jj / per_byte] >> shift) & ((1 << bits) - 1);
        return __fadd_rn(__fmul_rn(float(q), load_half(b)), load_half(b + 2));
    }
    }
    return 0.f;
}

// Block (key, KV head g, side): the row of `key` from the run holding it.
__global__ void runs_kernel(const RunDesc* runs, int n_runs, int64_t n_keys, int d, int q_group,
                            float* k_out, float* v_out)
{
    const int64_t key = blockIdx.x;
    const int g = int(blockIdx.y);
    const bool value = blockIdx.z == 1;
    // The last run starting at or before key.
    int lo = 0, hi = n_runs - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (runs[mid].key0 <= key)
            lo = mid;
        else
            hi = mid - 1;
    }
    const RunDesc& r = runs[lo];
    const int64_t i = key - r.key0;
    const KvCode type = value ? r.v_type : r.k_type;
    const uint8_t* row = value ? r.v + g * r.v_head_stride + size_t(i) * r.v_row_bytes
                               : r.k + g * r.k_head_stride + size_t(i) * r.k_row_bytes;
    const int bits = value ? r.v_bits : r.k_bits, group = value ? r.v_group : r.k_group;
    const int32_t* perm = type == KvCode::skvq ? (value ? r.v_perm : r.k_perm) + g * d : nullptr;
    float* out = (value ? v_out : k_out) + (g * n_keys + key) * d;
    for (int j = int(threadIdx.x); j < d; j += blockDim.x) {
        const float x = kv_value(type, row, j, q_group, bits, group);
        out[perm ? perm[j] : j] = x;
    }
}

__global__ void attend_kernel(AttendArgs a)
{
    extern __shared__ float smem[];
    float* qs = smem; // [d] the query row
    float* s = qs + a.d; // [kTile] scores, then probabilities
    float* red = s + kTile; // [32] reductions
    const int64_t row = blockIdx.x;
    const int h = int(blockIdx.y);
    const int64_t seq = row / a.n_tok, t = row % a.n_tok;
    const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
    const int n_warps = kAttendThreads / 32;
    const int d = a.d;

    const float* q = a.q + row * a.ldq + int64_t(h) * d;
    const int64_t kv_off = seq * a.kv_seq_stride + int64_t(h / a.group) * a.kv_head_stride;
    const float* k = a.k + kv_off;
    const float* v = a.v + kv_off;
    const int64_t visible = a.causal ? a.n_past + t + 1 : a.n_keys;
    for (int c = tid; c < d; c += kAttendThreads) qs[c] = q[c];
    __syncthreads();

    float acc[kPerThread] = {};
    float m = -INFINITY, l = 0.f;
    for (int64_t k0 = 0; k0 < visible; k0 += kTile) {
        const int n = int(visible - k0 < kTile ? visible - k0 : kTile);
        for (int j = warp; j < n; j += n_warps) {
            const float* kr = k + (k0 + j) * a.ld_kv;
            float part = 0.f;
            for (int c = lane; c < d; c += 32) part += qs[c] * kr[c];
            part = warp_sum(part);
            if (lane == 0) s[j] = part * a.scale;
        }
        __syncthreads();
        // Online softmax: rescale what earlier tiles summed when the maximum grows. Every tile
        // holds at least one visible key, so the maximum is finite after the first.
        const float tile_max = block_max(tid < n ? s[tid] : -INFINITY, red);
        const float new_m = fmaxf(m, tile_max);
        const float corr = expf(m - new_m); // 0 on the first tile
        const float p = tid < n ? expf(s[tid] - new_m) : 0.f;
        s[tid] = p;
        l = l * corr + block_sum(p, red); // block_sum synchronises: s is complete
        m = new_m;
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
            const int c = tid + i * kAttendThreads;
            if (c >= d) break;
            float o = acc[i] * corr;
            for (int j = 0; j < n; ++j) o += s[j] * v[(k0 + j) * a.ld_kv + c];
            acc[i] = o;
        }
        __syncthreads(); // before the next tile's scores overwrite s
    }
    float* out = a.out + row * a.ld_out + int64_t(h) * d;
    const float inv = 1.f / l;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
        const int c = tid + i * kAttendThreads;
        if (c < d) out[c] = acc[i] * inv;
    }
}

} // namespace

cudaError_t dequantize_runs(const RunDesc* runs, int n_runs, int64_t n_keys, int n_kv, int d,
                            int q_group, float* k_out, float* v_out, cudaStream_t stream)
{
    if (n_keys <= 0 || n_kv <= 0 || d <= 0) return cudaSuccess;
    if (n_runs <= 0 || n_kv > 65535 || n_keys > 0x7fffffff) return cudaErrorInvalidValue;
    const dim3 grid(unsigned(n_keys), unsigned(n_kv), 2);
    runs_kernel<<<grid, kDequantThreads, 0, stream>>>(runs, n_runs, n_keys, d, q_group, k_out,
                                                      v_out);
    return cudaGetLastError();
}

cudaError_t attend(const AttendArgs& a, cudaStream_t stream)
{
    const int64_t rows = a.n_seq * a.n_tok;
    if (rows <= 0 || a.n_heads <= 0) return cudaSuccess;
    if (a.d > kAttendMaxHeadDim || a.n_heads > 65535 || rows > 0x7fffffff || a.group <= 0)
        return cudaErrorInvalidValue;
    const size_t shared = size_t(a.d + kTile + 32) * sizeof(float);
    attend_kernel<<<dim3(unsigned(rows), unsigned(a.n_heads)), kAttendThreads, shared, stream>>>(a);
    return cudaGetLastError();
}

} // namespace iris::model::cuda
