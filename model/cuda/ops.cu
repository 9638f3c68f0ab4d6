// Element-wise, normalisation, RoPE, vision and argmax kernels of the CUDA backend (kernels.h),
// each the plain transcription of its CPU reference in model/cpu/ops.cpp: the same formulas in
// the same order and precision (the norms' sums in double), one thread per output value or one
// block per row.
#include "model/cuda/device.cuh"
#include "model/cuda/kernels.h"

namespace iris::model::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowThreads = 256; // threads per row of the norms
constexpr float kSqrtHalf = 0.70710678118654752440f;

// Grid-stride loop over [0, total).
#define IRIS_CUDA_FOR(i, total)                                                                    \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x,                               \
                 step_ = int64_t(gridDim.x) * blockDim.x;                                          \
         i < (total); i += step_)

unsigned row_blocks(int64_t rows)
{
    return unsigned(rows < 65535 ? rows : 65535);
}

__global__ void layer_norm_kernel(const float* x, int64_t rows, int64_t cols, const float* gamma,
                                  const float* beta, float eps, float* y)
{
    __shared__ double shared[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        // Two passes in double, as the CPU: the mean, then the squares about its f32 value.
        double s = 0;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += double(xr[c]);
        const double mean = block_sum(s, shared) / double(cols);
        const float fmean = float(mean);
        double sq = 0;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
            const double d = double(xr[c]) - double(fmean);
            sq += d * d;
        }
        sq = block_sum(sq, shared);
        const float rstd = float(1.0 / sqrt(sq / double(cols) + double(eps)));
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
            yr[c] = beta ? (xr[c] - fmean) * rstd * gamma[c] + beta[c]
                         : (xr[c] - fmean) * rstd * gamma[c];
    }
}

__global__ void rms_norm_kernel(const float* x, int64_t rows, int64_t cols, const float* gamma,
                                float eps, float* y)
{
    __shared__ double shared[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        double sq = 0;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sq += double(xr[c]) * xr[c];
        sq = block_sum(sq, shared);
        const float scale = float(1.0 / sqrt(sq / double(cols) + double(eps)));
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = gamma[c] * (xr[c] * scale);
    }
}

__global__ void gelu_erf_kernel(float* x, int64_t n)
{
    IRIS_CUDA_FOR(i, n)
    {
        const float v = x[i];
        x[i] = 0.5f * v * (1.0f + erff(v * kSqrtHalf));
    }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, int64_t n)
{
    IRIS_CUDA_FOR(i, n)
    {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void add_rows_kernel(float* x, const float* y, const float* scale, int64_t rows,
                                int64_t cols)
{
    IRIS_CUDA_FOR(i, rows * cols)
    {
        x[i] += scale ? scale[i % cols] * y[i] : y[i];
    }
}

// cpu::rope_tables: the angle fp32(pos / pos_scale)·inv_freq in fp32 (torch.outer), then cos
// and sin of it in double, rounded to f32.
__global__ void rope_tables_kernel(int64_t pos0, int64_t n, const float* inv_freq, int half,
                                   float pos_scale, float* cos_out, float* sin_out)
{
    IRIS_CUDA_FOR(i, n * half)
    {
        float t = float(pos0 + i / half);
        if (pos_scale != 1.0f) t = __fdiv_rn(t, pos_scale);
        const float angle = __fmul_rn(t, inv_freq[i % half]);
        double s, c;
        sincos(double(angle), &s, &c);
        cos_out[i] = float(c);
        sin_out[i] = float(s);
    }
}

// cpu::rope_apply: channel i pairs with i + D/2, stored at i and i + D/2, or at 2i and 2i + 1.
__global__ void rope_kernel(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
                            const float* cos_tab, const float* sin_tab, bool pairs)
{
    const int half = head_dim / 2;
    const int stride = pairs ? 2 : 1, partner = pairs ? 1 : half;
    IRIS_CUDA_FOR(idx, n_tokens * n_heads * half)
    {
        const int i = int(idx % half);
        const int64_t th = idx / half, t = th / n_heads;
        const int h = int(th % n_heads);
        float* pa = x + t * ld + int64_t(h) * head_dim + i * stride;
        const float c = cos_tab[t * half + i], s = sin_tab[t * half + i];
        const float a = pa[0], b = pa[partner];
        pa[0] = a * c - b * s;
        pa[partner] = b * c + a * s;
    }
}

__global__ void im2col_kernel(const float* pixels, int64_t n, int c, int s, int p, float* patches)
{
    const int g = s / p;
    const int64_t cols = int64_t(c) * p * p;
    IRIS_CUDA_FOR(i, n * g * g * cols)
    {
        const int64_t row = i / cols, col = i % cols;
        const int64_t img = row / (int64_t(g) * g);
        const int gy = int((row / g) % g), gx = int(row % g);
        const int ch = int(col / (p * p)), ky = int((col / p) % p), kx = int(col % p);
        patches[i] = pixels[((img * c + ch) * s + gy * p + ky) * int64_t(s) + gx * p + kx];
    }
}

// PyTorch's cubic convolution taps of output o (cpu/ops.cpp's cubic_taps, A = -0.75).
__device__ void cubic_taps(int in, int out, int o, int idx[4], float w[4])
{
    const float a = -0.75f;
    auto conv1 = [a](float x) { return ((a + 2) * x - (a + 3)) * x * x + 1; };
    auto conv2 = [a](float x) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; };
    const float scale = float(in) / float(out);
    const float src = scale * (float(o) + 0.5f) - 0.5f;
    const float fl = floorf(src);
    const int i0 = int(fl);
    const float t = src - fl;
    w[0] = conv2(t + 1.0f);
    w[1] = conv1(t);
    const float t2 = 1.0f - t;
    w[2] = conv1(t2);
    w[3] = conv2(t2 + 1.0f);
    for (int j = 0; j < 4; ++j) idx[j] = min(max(i0 - 1 + j, 0), in - 1);
}

__global__ void bicubic_kernel(const float* src, int64_t c, int ih, int iw, int oh, int ow,
                               float* dst)
{
    IRIS_CUDA_FOR(i, c * oh * ow)
    {
        const int x = int(i % ow), y = int((i / ow) % oh);
        const int64_t ch = i / (int64_t(oh) * ow);
        int yi[4], xi[4];
        float yw[4], xw[4];
        cubic_taps(ih, oh, y, yi, yw);
        cubic_taps(iw, ow, x, xi, xw);
        const float* plane = src + ch * ih * iw;
        // Along x within each of the 4 rows, then along y, tap by tap from tap 0 (aten's order).
        float acc = 0;
        for (int j = 0; j < 4; ++j) {
            const float* row = plane + int64_t(yi[j]) * iw;
            float t = row[xi[0]] * xw[0];
            for (int k = 1; k < 4; ++k) t += row[xi[k]] * xw[k];
            acc = j == 0 ? t * yw[0] : acc + t * yw[j];
        }
        dst[i] = acc;
    }
}

__global__ void pixel_shuffle_kernel(const float* x, int64_t n, int h, int w, int c, int r, bool v2,
                                     float* out)
{
    const int oh = h / r, ow = w / r;
    const int64_t out_c = int64_t(r) * r * c, per_image = int64_t(oh) * ow * out_c;
    IRIS_CUDA_FOR(i, n * per_image)
    {
        const int64_t img = i / per_image, t = (i / out_c) % (int64_t(oh) * ow);
        const int64_t within = i % out_c;
        const int j = int(within / (int64_t(r) * c)), k = int((within / c) % r),
                  ch = int(within % c);
        const int a = v2 ? int(t / ow) : int(t % oh), b = v2 ? int(t % ow) : int(t / oh);
        out[i] = x[((img * h + int64_t(r) * a + j) * w + int64_t(r) * b + k) * c + ch];
    }
}

constexpr int kArgmaxThreads = 1024;

// One block: each thread scans its stride of x keeping the first largest, then a tree picks the
// largest, the lower index on a tie.
__global__ void argmax_kernel(const float* x, int64_t n, int64_t* result)
{
    __shared__ float best_v[kArgmaxThreads];
    __shared__ int64_t best_i[kArgmaxThreads];
    const int tid = int(threadIdx.x);
    float v = -INFINITY;
    int64_t at = -1;
    for (int64_t i = tid; i < n; i += kArgmaxThreads)
        if (at < 0 || x[i] > v) {
            v = x[i];
            at = i;
        }
    best_v[tid] = v;
    best_i[tid] = at;
    __syncthreads();
    for (int s = kArgmaxThreads / 2; s > 0; s /= 2) {
        if (tid < s) {
            const float ov = best_v[tid + s];
            const int64_t oi = best_i[tid + s];
            if (oi >= 0
                && (best_i[tid] < 0 || ov > best_v[tid]
                    || (ov == best_v[tid] && oi < best_i[tid]))) {
                best_v[tid] = ov;
                best_i[tid] = oi;
            }
        }
        __syncthreads();
    }
    if (tid == 0) *result = best_i[0] < 0 ? 0 : best_i[0];
}

} // namespace

cudaError_t layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma,
                       const float* beta, float eps, float* y, cudaStream_t stream)
{
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    layer_norm_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(x, rows, cols, gamma, beta, eps,
                                                                    y);
    return cudaGetLastError();
}

cudaError_t rms_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, float eps,
                     float* y, cudaStream_t stream)
{
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    rms_norm_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(x, rows, cols, gamma, eps, y);
    return cudaGetLastError();
}

cudaError_t gelu_erf(float* x, int64_t n, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    gelu_erf_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n);
    return cudaGetLastError();
}

cudaError_t silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    silu_mul_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(gate, up, out, n);
    return cudaGetLastError();
}

cudaError_t add_rows(float* x, const float* y, const float* scale, int64_t rows, int64_t cols,
                     cudaStream_t stream)
{
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    add_rows_kernel<<<grid_for(rows * cols, kThreads), kThreads, 0, stream>>>(x, y, scale, rows,
                                                                              cols);
    return cudaGetLastError();
}

cudaError_t rope_tables(int64_t pos0, int64_t n, const float* inv_freq, int half, float pos_scale,
                        float* cos_out, float* sin_out, cudaStream_t stream)
{
    if (n <= 0 || half <= 0) return cudaSuccess;
    rope_tables_kernel<<<grid_for(n * half, kThreads), kThreads, 0, stream>>>(
        pos0, n, inv_freq, half, pos_scale, cos_out, sin_out);
    return cudaGetLastError();
}

cudaError_t rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
                 const float* cos_tab, const float* sin_tab, bool pairs, cudaStream_t stream)
{
    const int64_t total = n_tokens * n_heads * (head_dim / 2);
    if (total <= 0) return cudaSuccess;
    rope_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(x, n_tokens, n_heads, head_dim,
                                                                    ld, cos_tab, sin_tab, pairs);
    return cudaGetLastError();
}

cudaError_t im2col_patches(const float* pixels, int64_t n, int c, int s, int p, float* patches,
                           cudaStream_t stream)
{
    const int64_t g = s / p, total = n * g * g * c * p * p;
    if (total <= 0) return cudaSuccess;
    im2col_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(pixels, n, c, s, p, patches);
    return cudaGetLastError();
}

cudaError_t bicubic_resize(const float* src, int64_t c, int ih, int iw, int oh, int ow, float* dst,
                           cudaStream_t stream)
{
    const int64_t total = c * oh * ow;
    if (total <= 0) return cudaSuccess;
    bicubic_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(src, c, ih, iw, oh, ow, dst);
    return cudaGetLastError();
}

cudaError_t pixel_shuffle(const float* x, int64_t n, int h, int w, int c, int r, bool v2,
                          float* out, cudaStream_t stream)
{
    const int64_t total = n * (h / r) * (w / r) * int64_t(r) * r * c;
    if (total <= 0) return cudaSuccess;
    pixel_shuffle_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(x, n, h, w, c, r, v2,
                                                                             out);
    return cudaGetLastError();
}

cudaError_t argmax(const float* x, int64_t n, int64_t* result, cudaStream_t stream)
{
    argmax_kernel<<<1, kArgmaxThreads, 0, stream>>>(x, n, result);
    return cudaGetLastError();
}

} // namespace iris::model::cuda
