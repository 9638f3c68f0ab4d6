// The AVX-512 loops of ops.cpp, vec-math.h, linear-lowp.cpp and kv-quant.cpp (private to
// model/cpu), chosen at run time.
//
// The project is compiled for x86-64-v3 (cmake/iris.cmake), so those files hold AVX2 or scalar
// loops. Their AVX-512 versions live in ops-avx512.cpp and kv-quant-avx512.cpp, compiled with
// -march=x86-64-v4 (kv-quant-avx512.cpp with kv-quant.cpp's -ffp-contract=off too), and
// ops_avx512() hands them out where cpu_level() (quant-dot.h) is AVX-512, so IRIS_CPU=avx2 or
// portable turns them off with the other kernels. Each gives the bits the same code gave when
// the whole build was compiled for an AVX-512 machine. The callers' own loops give the same
// values for the widening, the dequantizers and max_array, and sum in another order otherwise
// (exp and erf: libm's).
// The interface is plain pointers and types, and those two files use no inline function of a
// shared header: the linker could keep their AVX-512 copy of it for every caller.
#pragma once

#include <cstddef>
#include <cstdint>

namespace iris::model::cpu {

// The most query rows that attention_causal's fused products take (ops.cpp).
constexpr int64_t kFusedRows = 8;

// Activation rows the BF16/F16 products take at a time (held in L2 with the weight rows).
constexpr int64_t kMatvecChunk = 60;

struct OpsAvx512
{
    // vec-math.h's functions.
    float (*max_array)(const float* x, int64_t n);
    double (*sum_array)(const float* x, int64_t n, bool square, float shift);
    float (*exp_shift_sum)(float* x, int64_t n, float shift);
    void (*exp_array)(const float* x, float* y, int64_t n);
    void (*erf_array)(const float* x, float* y, int64_t n);

    // attention_causal's products of up to kFusedRows query rows (the heads of a GQA group)
    // with n cached rows of one KV head read in place, f32 or (f16) widened in registers: for
    // so few rows OpenBLAS costs more in call overhead and packing than in arithmetic, and the
    // f16 rows would first have to be widened into a buffer. d is a multiple of 16.
    // sc[r, j] = scale · q[r] · k[j] for r < rows, j < n.
    void (*fused_scores)(bool f16, const float* q, int64_t rows, const uint8_t* k, size_t row_bytes,
                         int64_t n, int64_t d, float scale, float* sc, int64_t ldsc);
    // out[r] += Σ_j p[r, j] · v[j] for r < rows (d at most 256).
    void (*fused_values)(bool f16, const float* p, int64_t ldp, int64_t rows, const uint8_t* v,
                         size_t row_bytes, int64_t n, int64_t d, float* out);

    // linear-lowp.cpp's, on BF16 (bf16) or F16 weights.
    // n values widened to f32.
    void (*widen)(bool bf16, const uint16_t* src, int64_t n, float* dst);
    // y[i, j] = Σ_c x[i, c] · w[j, c] for i < m, j in [r0, r1), w [rows, k]; single-threaded,
    // for any m (prompts and the ViT too: the f32 products of the widened weights, tiled in
    // registers). BF16 uses xp, min(m, kMatvecChunk)·⌈k/32⌉·32 floats of scratch (the
    // activations, de-interleaved).
    void (*matvec)(bool bf16, const float* x, int64_t m, int64_t ldx, const uint16_t* w, int64_t k,
                   int64_t r0, int64_t r1, float* y, int64_t ldy, float* xp);

    // kv-quant.cpp's: n_groups q8 or q4 groups of 32 values, and SKVQ groups of g values (a
    // multiple of 16) coded in `bits` bits, to f32.
    void (*dequantize_q8)(const uint8_t* src, int64_t n_groups, float* dst);
    void (*dequantize_q4)(const uint8_t* src, int64_t n_groups, float* dst);
    void (*skvq_dequantize)(int bits, const uint8_t* src, int64_t n_groups, int g, float* dst);
};

// The AVX-512 loops where cpu_level() is AVX-512, else null. Chosen once.
const OpsAvx512* ops_avx512();

// The set (ops-avx512.cpp), and the part of it that kv-quant-avx512.cpp defines.
const OpsAvx512& ops_avx512_kernels();
void kv_dequantize_q8_avx512(const uint8_t* src, int64_t n_groups, float* dst);
void kv_dequantize_q4_avx512(const uint8_t* src, int64_t n_groups, float* dst);
void skvq_dequantize_avx512(int bits, const uint8_t* src, int64_t n_groups, int g, float* dst);

} // namespace iris::model::cpu
