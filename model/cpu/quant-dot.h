// Matrix-vector products directly on quantized weight blocks (private to model/cpu).
//
// Decoding streams every weight once per token, so these kernels never widen a weight to f32:
// the activations are quantized instead, per block of 32 values, to int8 with an f32 scale
// (llama.cpp's q8_0 activations use an fp16 scale; f32 loses nothing to rounding it), and each
// weight block meets them in one int8 dot-product instruction:
//   q8_0  Σ d_w·q_w · d_x·q_x  = d_w·d_x · Σ q_w·q_x
//   q4_0  Σ d_w·(q_w - 8) · d_x·q_x = d_w·d_x · (Σ q_w·q_x - 8·Σ q_x)
// with Σ q_x stored beside the activation codes, so the offset costs nothing per weight
// (q5_0 alike with 16; q4_1 and q5_1 add m_w · d_x·Σ q_x for their min; iq4_nl multiplies its
// looked-up levels as q8_0 does its codes). The k-quants (super-blocks of 256, so rows of a
// multiple of 256) meet the same blocks of 32:
//   q4_K, q5_K  sub-block j of 32: Σ (d·sc_j·q_w - dmin·m_j) · d_x·q_x
//               = d·sc_j·d_x · Σ q_w·q_x - dmin·m_j · d_x·Σ q_x
//   q6_K        sub-blocks of 16, two per block: Σ d·sc·(q_w - 32) · d_x·q_x
//               = d·sc·d_x · (Σ q_w·q_x - 32·Σ q_x), Σ q_x per half block
// so every type's activations carry the error of a per-32 scale, the same bound for all
// (llama.cpp's q8_K for its k-quants has one scale per 256, which is coarser); the price is
// one f32 multiply per block of 32 and activation row.
//
// Run-time choice: the project is compiled for x86-64-v3 (AVX2, FMA, F16C), and one binary
// carries an AVX-512 VNNI and an AVX2 version of each kernel, each compiled in its own
// translation unit with its own target flags (quant-dot-avx512.cpp, quant-dot-avx2.cpp over
// quant-dot-impl.h). cpu_level() settles once on the best instruction set the CPU runs, or a
// lesser one that IRIS_CPU names (avx2 forces the AVX2 kernels on an AVX-512 machine, so both
// are tested anywhere; portable none), and quant_kernels(), decode_attention() and ops_avx512()
// all follow it. The interface is plain pointers: an inline function of a shared header
// compiled with AVX-512 flags could otherwise be the copy the linker keeps for every caller.
#pragma once

#include "model/cpu/quant.h"

#include <cstddef>
#include <cstdint>

namespace iris::model::cpu {

// Quantized activations: per row of k values (k a multiple of 32), one 192-byte record per
// pair of 32-value blocks (the last pair zero-padded): 64 bytes of codes, 16 f32 scale lanes
// and 16 offset lanes, in the layout the kernel set that prepared them reads for the weight
// type they were prepared for.
constexpr size_t kActPairBytes = 192;
inline size_t act_row_bytes(int64_t k)
{
    return size_t((k / 32 + 1) / 2) * kActPairBytes;
}

struct QuantKernels
{
    const char* isa; // "avx512-vnni", "avx2"
    // Whether `matvec` takes weights of this type (the others are dequantized by the caller).
    bool (*supports)(WeightType type);
    // x [m, k] (row stride ldx) -> acts [m, act_row_bytes(k)] for weights of `type`. acts is
    // 64-byte aligned.
    void (*prepare)(WeightType type, const float* x, int64_t m, int64_t ldx, int64_t k,
                    uint8_t* acts);
    // y[i, j] = Σ_c x[i, c] · w[j, c] for i < m, j in [r0, r1), from prepared activations and
    // weight rows of row_bytes bytes starting at w. Single-threaded.
    void (*matvec)(WeightType type, const uint8_t* acts, int64_t m, int64_t k, const void* w,
                   size_t row_bytes, int64_t r0, int64_t r1, float* y, int64_t ldy);

    // Products of many rows (prompts, images), or null where the set has none (linear() then
    // uses matvec for q8_0 and q4_0 and dequantizes the others): the activations in groups of 4
    // rows, the weight rows repacked into tiles of 4 in `scratch` (gemm_weight_bytes) by each call.
    // gemm_prepare takes rows in multiples of 8 (a shorter last call is zero-padded to 8). gemm
    // takes the types of `supports`.
    size_t (*gemm_act_bytes)(int64_t m, int64_t k);
    size_t (*gemm_weight_bytes)(int64_t rows, int64_t k);
    void (*gemm_prepare)(const float* x, int64_t m, int64_t ldx, int64_t k, uint8_t* acts);
    void (*gemm)(WeightType type, const uint8_t* acts, int64_t m, int64_t k, const void* w,
                 size_t row_bytes, int64_t r0, int64_t r1, float* y, int64_t ldy, uint8_t* scratch);

    // The same for BF16 weights [n, k] with the activations rounded to bf16 (AVX512_BF16;
    // null without it), for --precision bf16.
    size_t (*bf16_act_bytes)(int64_t m, int64_t k);
    size_t (*bf16_weight_bytes)(int64_t rows, int64_t k);
    void (*bf16_prepare)(const float* x, int64_t m, int64_t ldx, int64_t k, uint8_t* acts);
    void (*bf16_gemm)(const uint8_t* acts, int64_t m, int64_t k, const void* w, int64_t r0,
                      int64_t r1, float* y, int64_t ldy, uint8_t* scratch);
};

// The instruction set of the kernels chosen at run time: AVX-512 where the CPU runs x86-64-v4,
// else AVX2 where it runs x86-64-v3's arithmetic, unless IRIS_CPU=avx2 or IRIS_CPU=portable
// (none: the compiled code alone) asks for less. Settled once.
enum class CpuLevel { portable, avx2, avx512 };
CpuLevel cpu_level();

// The kernels for this CPU at cpu_level(): AVX-512 VNNI where present, else AVX2, else null
// (the caller then dequantizes). Chosen once.
const QuantKernels* quant_kernels();
// A kernel set by name if this CPU can run it, else null (for tests and benchmarks).
const QuantKernels* quant_kernels_named(const char* isa);

// Whether the CPU runs the AVX2 kernel sets (AVX2, FMA, F16C: x86-64-v3's arithmetic), and the
// AVX-512 ones (x86-64-v4: AVX-512 F, BW, CD, DQ, VL, their target), here and in
// attention-decode.h and ops-avx512.h.
bool cpu_runs_avx2();
bool cpu_runs_avx512();

// The two sets, defined in their translation units.
const QuantKernels& quant_kernels_avx512();
const QuantKernels& quant_kernels_avx2();

} // namespace iris::model::cpu
