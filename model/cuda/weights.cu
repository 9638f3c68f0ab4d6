// Weight kernels of the CUDA backend (kernels.h): dequantization of every WeightType to f32
// (for the products' panels and get_rows), the matrix-vector product of a few activation rows
// that reads each weight once, bias and bf16 rounding. A first cut: one thread per value,
// every value decoded on its own (device.cuh's dequant); fused block-wise kernels come later.
#include "model/cuda/device.cuh"
#include "model/cuda/kernels.h"

#include <type_traits>

namespace iris::model::cuda {

namespace {

using cpu::WeightType;

constexpr int kThreads = 256;
constexpr int kMatvecWarps = 4; // output rows per block of the matrix-vector product

template<WeightType T> using TypeTag = std::integral_constant<WeightType, T>;

// f(TypeTag<T>{}) for the run-time type t.
template<typename F> cudaError_t dispatch(WeightType t, F&& f)
{
    switch (t) {
    case WeightType::f32:
        return f(TypeTag<WeightType::f32> {});
    case WeightType::bf16:
        return f(TypeTag<WeightType::bf16> {});
    case WeightType::f16:
        return f(TypeTag<WeightType::f16> {});
    case WeightType::q8_0:
        return f(TypeTag<WeightType::q8_0> {});
    case WeightType::q4_0:
        return f(TypeTag<WeightType::q4_0> {});
    case WeightType::q4_1:
        return f(TypeTag<WeightType::q4_1> {});
    case WeightType::q5_0:
        return f(TypeTag<WeightType::q5_0> {});
    case WeightType::q5_1:
        return f(TypeTag<WeightType::q5_1> {});
    case WeightType::iq4_nl:
        return f(TypeTag<WeightType::iq4_nl> {});
    case WeightType::q2_K:
        return f(TypeTag<WeightType::q2_K> {});
    case WeightType::q3_K:
        return f(TypeTag<WeightType::q3_K> {});
    case WeightType::q4_K:
        return f(TypeTag<WeightType::q4_K> {});
    case WeightType::q5_K:
        return f(TypeTag<WeightType::q5_K> {});
    case WeightType::q6_K:
        return f(TypeTag<WeightType::q6_K> {});
    }
    return cudaErrorInvalidValue;
}

// dst[r, c] = value c of row ids[r] (ids null: row r0 + r), for rows·cols values.
template<WeightType T>
__global__ void rows_kernel(const uint8_t* w, size_t row_bytes, int64_t r0, const int32_t* ids,
                            int64_t rows, int64_t cols, float* dst)
{
    const int64_t total = rows * cols, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        const int64_t r = i / cols, c = i % cols;
        const int64_t src = ids ? int64_t(ids[r]) : r0 + r;
        dst[i] = dequant<T>(w + size_t(src) * row_bytes, c);
    }
}

// One warp per output column j: y[i, j] = Σ_c x[i, c]·w[j, c] (+ bias[j]) for i < m. Lanes
// stride over c, so a warp reads the row's bytes together; the partial sums meet in a shuffle.
template<WeightType T>
__global__ void matvec_kernel(const float* x, int m, int64_t ldx, const uint8_t* w,
                              size_t row_bytes, int64_t rows, int64_t cols, const float* bias,
                              float* y, int64_t ldy)
{
    const int64_t j = int64_t(blockIdx.x) * kMatvecWarps + threadIdx.x / 32;
    if (j >= rows) return; // the whole warp
    const int lane = int(threadIdx.x % 32);
    const uint8_t* row = w + size_t(j) * row_bytes;
    float acc[kMatvecMaxRows] = {};
    for (int64_t c = lane; c < cols; c += 32) {
        const float wv = dequant<T>(row, c);
#pragma unroll
        for (int i = 0; i < int(kMatvecMaxRows); ++i)
            if (i < m) acc[i] += wv * x[i * ldx + c];
    }
#pragma unroll
    for (int i = 0; i < int(kMatvecMaxRows); ++i) {
        if (i >= m) break;
        const float s = warp_sum(acc[i]);
        if (lane == 0) y[i * ldy + j] = bias ? s + bias[j] : s;
    }
}

__global__ void add_bias_kernel(float* y, int64_t m, int64_t n, int64_t ldy, const float* bias)
{
    const int64_t total = m * n, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
        y[(i / n) * ldy + i % n] += bias[i % n];
}

__global__ void bf16_kernel(const float* x, int64_t m, int64_t k, int64_t ldx, uint16_t* dst)
{
    const int64_t total = m * k, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
        dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[(i / k) * ldx + i % k]));
}

} // namespace

cudaError_t dequantize_rows(const DeviceMatrix& w, int64_t r0, int64_t r1, float* dst,
                            cudaStream_t stream)
{
    if (r1 <= r0 || w.cols <= 0) return cudaSuccess;
    return dispatch(w.type, [&](auto tag) {
        const int64_t total = (r1 - r0) * w.cols;
        rows_kernel<decltype(tag)::value><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
            static_cast<const uint8_t*>(w.data), w.row_bytes, r0, nullptr, r1 - r0, w.cols, dst);
        return cudaGetLastError();
    });
}

cudaError_t get_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out,
                     cudaStream_t stream)
{
    if (n <= 0 || w.cols <= 0) return cudaSuccess;
    return dispatch(w.type, [&](auto tag) {
        const int64_t total = n * w.cols;
        rows_kernel<decltype(tag)::value><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
            static_cast<const uint8_t*>(w.data), w.row_bytes, 0, ids, n, w.cols, out);
        return cudaGetLastError();
    });
}

cudaError_t matvec(const float* x, int64_t m, int64_t ldx, const DeviceMatrix& w, const float* bias,
                   float* y, int64_t ldy, cudaStream_t stream)
{
    if (m <= 0 || w.rows <= 0) return cudaSuccess;
    if (m > kMatvecMaxRows) return cudaErrorInvalidValue;
    return dispatch(w.type, [&](auto tag) {
        const auto blocks = unsigned((w.rows + kMatvecWarps - 1) / kMatvecWarps);
        matvec_kernel<decltype(tag)::value><<<blocks, kMatvecWarps * 32, 0, stream>>>(
            x, int(m), ldx, static_cast<const uint8_t*>(w.data), w.row_bytes, w.rows, w.cols, bias,
            y, ldy);
        return cudaGetLastError();
    });
}

cudaError_t add_bias(float* y, int64_t m, int64_t n, int64_t ldy, const float* bias,
                     cudaStream_t stream)
{
    if (m <= 0 || n <= 0) return cudaSuccess;
    add_bias_kernel<<<grid_for(m * n, kThreads), kThreads, 0, stream>>>(y, m, n, ldy, bias);
    return cudaGetLastError();
}

cudaError_t round_to_bf16(const float* x, int64_t m, int64_t k, int64_t ldx, uint16_t* dst,
                          cudaStream_t stream)
{
    if (m <= 0 || k <= 0) return cudaSuccess;
    bf16_kernel<<<grid_for(m * k, kThreads), kThreads, 0, stream>>>(x, m, k, ldx, dst);
    return cudaGetLastError();
}

} // namespace iris::model::cuda
