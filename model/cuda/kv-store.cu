// KV row quantizers of the CUDA backend (kernels.h): the bytes of cpu::kv_quantize_row and
// cpu::skvq_quantize_row, exactly. The CPU transcribes ggml's ISO C reference and compiles it
// with -ffp-contract=off, so every product and sum here rounds on its own (__fmul_rn and
// friends, and this file is built with -fmad=false as well), divisions are IEEE (nvcc's
// default -prec-div=true), and each comparison keeps std::min / std::max's operand order, which
// decides the result on ties and NaN. One thread quantizes one group, in the CPU's order.
#include "model/cuda/device.cuh"
#include "model/cuda/kernels.h"

namespace iris::model::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void copy_rows_kernel(const float* src, int64_t n_rows, int64_t src_ld, int d,
                                 uint8_t* dst, size_t dst_ld)
{
    const int64_t total = n_rows * d, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        const int64_t r = i / d, j = i % d;
        // Byte by byte: a row stride need not keep floats aligned.
        const uint32_t bits = __float_as_uint(src[r * src_ld + j]);
        uint8_t* out = dst + size_t(r) * dst_ld + 4 * j;
        for (int b = 0; b < 4; ++b) out[b] = uint8_t(bits >> (8 * b));
    }
}

__global__ void f16_rows_kernel(const float* src, int64_t n_rows, int64_t src_ld, int d,
                                uint8_t* dst, size_t dst_ld)
{
    const int64_t total = n_rows * d, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        const int64_t r = i / d, j = i % d;
        store_half(dst + size_t(r) * dst_ld + 2 * j, src[r * src_ld + j]);
    }
}

// ggml's quantize_row_q8_0_ref on a group of g: d = max|x| / 127, q = round(x·(1/d)).
__device__ void quantize_q8(const float* x, int g, uint8_t* out)
{
    float amax = 0.f;
    for (int j = 0; j < g; ++j) {
        const float a = fabsf(x[j]);
        amax = amax < a ? a : amax; // std::max(amax, a)
    }
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    store_half(out, d);
    for (int j = 0; j < g; ++j) out[2 + j] = uint8_t(int8_t(int(roundf(__fmul_rn(x[j], id)))));
}

// ggml's quantize_row_q4_0_ref: d = m / -8 for the first x of largest |x|, q = min(15,
// trunc(x·(1/d) + 8.5)); byte j holds q_j (low nibble) and q_{j+g/2}.
__device__ void quantize_q4(const float* x, int g, uint8_t* out)
{
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < g; ++j)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    store_half(out, d);
    const int half = g / 2;
    for (int j = 0; j < half; ++j) {
        const int q0 = min(15, int(__fadd_rn(__fmul_rn(x[j], id), 8.5f)));
        const int q1 = min(15, int(__fadd_rn(__fmul_rn(x[half + j], id), 8.5f)));
        out[2 + j] = uint8_t(q0 | (q1 << 4));
    }
}

__global__ void quant_rows_kernel(KvCode type, const float* src, int64_t n_rows, int64_t src_ld,
                                  int d, int g, uint8_t* dst, size_t dst_ld)
{
    const int groups = d / g;
    const int group_bytes = type == KvCode::q8 ? 2 + g : 2 + g / 2;
    const int64_t total = n_rows * groups, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        const int64_t r = i / groups;
        const int gi = int(i % groups);
        const float* x = src + r * src_ld + int64_t(gi) * g;
        uint8_t* out = dst + size_t(r) * dst_ld + size_t(gi) * group_bytes;
        if (type == KvCode::q8)
            quantize_q8(x, g, out);
        else
            quantize_q4(x, g, out);
    }
}

// cpu::skvq_quantize_row, one group per thread: min and max of the group's channels (in the
// calibrated order), clipped by α; scale = max((gmax - gmin) / max_int, 1e-5), zp = gmin;
// codes round_half_even(clamp((x - zp) / scale, 0, max_int)) packed first-in-high-bits.
__global__ void skvq_kernel(int bits, int levels, int group, const float* src, int64_t n_rows,
                            int64_t src_ld, int d, const int32_t* perm, int64_t perm_ld,
                            const float* clip, int64_t clip_ld, uint8_t* dst, size_t dst_ld)
{
    const int groups = d / group, per_byte = 8 / bits, code_bytes = group / per_byte;
    const float max_int = float(levels - 1);
    const int64_t total = n_rows * groups, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        const int64_t r = i / groups;
        const int gi = int(i % groups), g0 = gi * group;
        const float* x = src + r * src_ld;
        const int32_t* pr = perm ? perm + r * perm_ld : nullptr;
        uint8_t* out = dst + size_t(r) * dst_ld + size_t(gi) * (4 + code_bytes);
        float mn = INFINITY, mx = -INFINITY;
        for (int j = 0; j < group; ++j) {
            const float v = x[pr ? pr[g0 + j] : g0 + j];
            mn = v < mn ? v : mn; // std::min(mn, v)
            mx = mx < v ? v : mx; // std::max(mx, v)
        }
        const float a = clip ? clip[r * clip_ld + gi] : 1.f;
        const float gmax = __fmul_rn(a, mx), gmin = __fmul_rn(a, mn);
        const float range = __fdiv_rn(__fsub_rn(gmax, gmin), max_int);
        const float scale = range < 1e-5f ? 1e-5f : range; // std::max(range, 1e-5f)
        store_half(out, scale);
        store_half(out + 2, gmin);
        for (int byte = 0; byte < code_bytes; ++byte) {
            int packed = 0;
            for (int k = 0; k < per_byte; ++k) {
                const int j = byte * per_byte + k;
                const float v = x[pr ? pr[g0 + j] : g0 + j];
                const float t = __fdiv_rn(__fsub_rn(v, gmin), scale);
                // Clamp, then round half to even; NaN becomes 0 (t > 0 is false).
                const float c = t > 0.f ? (max_int < t ? max_int : t) : 0.f;
                packed |= int(rintf(c)) << ((per_byte - 1 - k) * bits);
            }
            out[4 + byte] = uint8_t(packed);
        }
    }
}

} // namespace

cudaError_t kv_store(KvCode type, const float* src, int64_t n_rows, int64_t src_ld, int d, int g,
                     uint8_t* dst, size_t dst_ld, cudaStream_t stream)
{
    if (n_rows <= 0 || d <= 0) return cudaSuccess;
    switch (type) {
    case KvCode::f32:
        copy_rows_kernel<<<grid_for(n_rows * d, kThreads), kThreads, 0, stream>>>(
            src, n_rows, src_ld, d, dst, dst_ld);
        break;
    case KvCode::f16:
        f16_rows_kernel<<<grid_for(n_rows * d, kThreads), kThreads, 0, stream>>>(
            src, n_rows, src_ld, d, dst, dst_ld);
        break;
    case KvCode::q8:
    case KvCode::q4:
        quant_rows_kernel<<<grid_for(n_rows * (d / g), kThreads), kThreads, 0, stream>>>(
            type, src, n_rows, src_ld, d, g, dst, dst_ld);
        break;
    case KvCode::skvq:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

cudaError_t skvq_store(int bits, int levels, int group, const float* src, int64_t n_rows,
                       int64_t src_ld, int d, const int32_t* perm, int64_t perm_ld,
                       const float* clip, int64_t clip_ld, uint8_t* dst, size_t dst_ld,
                       cudaStream_t stream)
{
    if (n_rows <= 0 || d <= 0) return cudaSuccess;
    if (bits != 2 && bits != 4 && bits != 8) return cudaErrorInvalidValue;
    skvq_kernel<<<grid_for(n_rows * (d / group), kThreads), kThreads, 0, stream>>>(
        bits, levels, group, src, n_rows, src_ld, d, perm, perm_ld, clip, clip_ld, dst, dst_ld);
    return cudaGetLastError();
}

} // namespace iris::model::cuda
