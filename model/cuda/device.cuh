// Device helpers shared by the CUDA kernels (private to model/cuda): byte-level loads of the
// stored formats, ggml's dequantization one value at a time, and block reductions.
//
// Exactness: dequantized values must equal cpu::dequantize_row bit for bit (the CPU compiles
// quant.cpp with -ffp-contract=off, so a·b + c rounds twice there). nvcc fuses a·b + c into one
// FMA by default, so every product and sum of a stored value goes through __fmul_rn /
// __fadd_rn / __fsub_rn, which are never fused, in ggml's operand order.
#pragma once

#include "model/cpu/quant.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

namespace iris::model::cuda {

constexpr int kQK = 32; // values per block of the 32-value formats
constexpr int kQKK = 256; // values per super-block of the k-quants

// Blocks may start at any byte (q8_0 blocks are 34 bytes), so multi-byte fields are read a
// byte at a time, little-endian.
__device__ __forceinline__ uint16_t load_u16(const uint8_t* p)
{
    return uint16_t(p[0] | (p[1] << 8));
}

__device__ __forceinline__ float half_to_float(uint16_t h)
{
    return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ float load_half(const uint8_t* p)
{
    return half_to_float(load_u16(p));
}

__device__ __forceinline__ uint16_t float_to_half_bits(float v)
{
    return __half_as_ushort(__float2half_rn(v));
}

__device__ __forceinline__ void store_half(uint8_t* p, float v)
{
    const uint16_t h = float_to_half_bits(v);
    p[0] = uint8_t(h);
    p[1] = uint8_t(h >> 8);
}

// The 16 levels of iq4_nl (cpu/quant.cpp's kIq4nlValues).
__device__ __forceinline__ float iq4nl_value(int i)
{
    constexpr float kValues[16]
        = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    return kValues[i];
}

// q4_K / q5_K: scale and min of sub-block j (get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(const uint8_t* q, int j, int& sc, int& m)
{
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// q3_K's signed 6-bit scale of sub-block j (0..15).
__device__ __forceinline__ int q3_K_scale(const uint8_t* s, int j)
{
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return int(int8_t(lo | (hi << 4))) - 32;
}

// Value i of a row of type T, as ggml's dequantize_row_* computes it (cpu/quant.cpp).
template<cpu::WeightType T> __device__ __forceinline__ float dequant(const uint8_t* row, int64_t i)
{
    using W = cpu::WeightType;
    if constexpr (T == W::f32) {
        return reinterpret_cast<const float*>(row)[i];
    } else if constexpr (T == W::bf16) {
        return __uint_as_float(uint32_t(load_u16(row + 2 * i)) << 16);
    } else if constexpr (T == W::f16) {
        return load_half(row + 2 * i);
    } else if constexpr (T == W::q8_0) {
        const uint8_t* b = row + (i / kQK) * 34;
        return __fmul_rn(float(int8_t(b[2 + i % kQK])), load_half(b));
    } else if constexpr (T == W::q4_0 || T == W::iq4_nl) {
        const uint8_t* b = row + (i / kQK) * 18;
        const int p = int(i % kQK);
        const int q = p < 16 ? b[2 + p] & 0xF : b[2 + p - 16] >> 4;
        if constexpr (T == W::q4_0)
            return __fmul_rn(float(q - 8), load_half(b));
        else
            return __fmul_rn(load_half(b), iq4nl_value(q));
    } else if constexpr (T == W::q4_1) {
        const uint8_t* b = row + (i / kQK) * 20;
        const int p = int(i % kQK);
        const int q = p < 16 ? b[4 + p] & 0xF : b[4 + p - 16] >> 4;
        return __fadd_rn(__fmul_rn(float(q), load_half(b)), load_half(b + 2));
    } else if constexpr (T == W::q5_0 || T == W::q5_1) {
        constexpr int head = T == W::q5_0 ? 2 : 4; // d (and m)
        const uint8_t* b = row + (i / kQK) * (T == W::q5_0 ? 22 : 24);
        const int p = int(i % kQK);
        const uint8_t* qh = b + head;
        const uint8_t* qs = qh + 4;
        const int low = p < 16 ? qs[p] & 0xF : qs[p - 16] >> 4;
        const int q = low | (((qh[p / 8] >> (p % 8)) & 1) << 4);
        if constexpr (T == W::q5_0)
            return __fmul_rn(float(q - 16), load_half(b));
        else
            return __fadd_rn(__fmul_rn(float(q), load_half(b)), load_half(b + 2));
    } else if constexpr (T == W::q2_K) {
        // scales[16], qs[64], d, dmin.
        const uint8_t* b = row + (i / kQKK) * 84;
        const int p = int(i % kQKK);
        const int n = p / 128 * 128, r = p % 128, j = r / 32, half = (r % 32) / 16, l = p % 16;
        const uint8_t sc = b[p / 16];
        const float dl = __fmul_rn(load_half(b + 80), float(sc & 0xF));
        const float ml = __fmul_rn(load_half(b + 82), float(sc >> 4));
        const int q = (b[16 + n / 4 + 16 * half + l] >> (2 * j)) & 3;
        return __fsub_rn(__fmul_rn(dl, float(q)), ml);
    } else if constexpr (T == W::q3_K) {
        // hmask[32], qs[64], scales[12], d.
        const uint8_t* b = row + (i / kQKK) * 110;
        const int p = int(i % kQKK);
        const int n = p / 128 * 128, r = p % 128, j = r / 32, half = (r % 32) / 16, l = p % 16;
        const float dl = __fmul_rn(load_half(b + 108), float(q3_K_scale(b + 96, p / 16)));
        const int low = (b[32 + n / 4 + 16 * half + l] >> (2 * j)) & 3;
        const int hm = b[16 * half + l] & (1 << (j + n / 32));
        return __fmul_rn(dl, float(low - (hm ? 0 : 4)));
    } else if constexpr (T == W::q4_K || T == W::q5_K) {
        // d, dmin, scales[12], (q5_K: qh[32]), qs[128].
        constexpr int qs_at = T == W::q4_K ? 16 : 48;
        const uint8_t* b = row + (i / kQKK) * (T == W::q4_K ? 144 : 176);
        const int p = int(i % kQKK);
        const int chunk = p / 64, r = p % 64, l = r % 32, is = 2 * chunk + (r < 32 ? 0 : 1);
        int sc, m;
        scale_min_k4(b + 4, is, sc, m);
        const float d1 = __fmul_rn(load_half(b), float(sc));
        const float m1 = __fmul_rn(load_half(b + 2), float(m));
        const uint8_t byte = b[qs_at + 32 * chunk + l];
        int q = r < 32 ? byte & 0xF : byte >> 4;
        if constexpr (T == W::q5_K) {
            const int bit = r < 32 ? 1 << (2 * chunk) : 2 << (2 * chunk);
            q += (b[16 + l] & bit) ? 16 : 0;
        }
        return __fsub_rn(__fmul_rn(d1, float(q)), m1);
    } else {
        static_assert(T == W::q6_K);
        // ql[128], qh[64], scales[16] (int8), d.
        const uint8_t* b = row + (i / kQKK) * 210;
        const int p = int(i % kQKK);
        const int h = p / 128, r = p % 128, quarter = r / 32, l = r % 32, is = l / 16;
        const uint8_t* ql = b + 64 * h;
        const uint8_t* qh = b + 128 + 32 * h;
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h;
        const int low = quarter == 0 ? ql[l] & 0xF
            : quarter == 1           ? ql[l + 32] & 0xF
            : quarter == 2           ? ql[l] >> 4
                                     : ql[l + 32] >> 4;
        const int q = (low | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
        // (d·scale)·q, rounded twice, in ggml's order.
        return __fmul_rn(__fmul_rn(load_half(b + 208), float(sc[is + 2 * quarter])), float(q));
    }
}

// Sums of a warp (every lane gets the total).
template<typename T> __device__ __forceinline__ T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The sum over a block of up to 1024 threads (blockDim.x a multiple of 32); every thread gets
// it. `shared` holds 32 values; the call ends with the block synchronised.
template<typename T> __device__ T block_sum(T v, T* shared)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    T total = 0;
    for (int w = 0; w < n_warps; ++w) total += shared[w];
    __syncthreads();
    return total;
}

__device__ __forceinline__ float block_max(float v, float* shared)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    v = warp_max(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int w = 0; w < n_warps; ++w) m = fmaxf(m, shared[w]);
    __syncthreads();
    return m;
}

// Blocks of n threads covering `total` items, capped so that a grid-stride loop does the rest.
inline unsigned grid_for(int64_t total, int threads)
{
    const int64_t blocks = (total + threads - 1) / threads;
    return unsigned(blocks < 1 ? 1 : blocks > 65535 * 32 ? 65535 * 32 : blocks);
}

} // namespace iris::model::cuda
