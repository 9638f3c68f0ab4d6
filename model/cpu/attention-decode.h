// Decoding's attention: one query token against the paged KV cache (private to model/cpu).
//
// At long context a decoding step reads every cached key and value once per layer, so this
// kernel reads each row exactly once from its block and never widens it into a buffer: per KV
// head it takes all `group` query heads of the GQA group (up to 8 at a time, held as rows of the
// kernel's tiles) and, tile by tile of up to 64 tokens, converts each key row to f32 in
// registers (f16 with vcvtph2ps, q8_0 / q4_0 codes times their scale), takes its dot product
// with every query row, reduces the rows' sums together, runs an online softmax over the tile in
// base 2 (the query is pre-scaled by scale·log2 e) and accumulates the value rows the same way.
// q8_0 keys are widened too rather than met with int8 dot products against a quantized query:
// by instruction count (not measured) a 64-channel row against 7 query rows costs about the
// same either way, the sums still need reducing per row, and the query keeps its f32.
//
// Run-time choice: an AVX-512 and an AVX2 version (attention-decode-avx512.cpp / -avx2.cpp over
// attention-decode-impl.h, each compiled with its own -march), picked like quant-dot.h's kernels
// (IRIS_CPU=avx2 forces AVX2; IRIS_CPU=portable none, leaving ops.cpp's general path).
#pragma once

#include "model/cpu/ops.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace iris::model::cpu {

struct DecodeAttention
{
    const char* isa; // "avx512", "avx2"
    // Whether `attend` takes rows of these types and head_dim (f32, f16, q8, q4; D 16, 32, 64
    // or 128).
    bool (*supports)(KvType k_type, KvType v_type, int head_dim);
    // Folds tokens [t0, t1) of `runs` (positions counted from the first run; the runs must cover
    // them) of KV head g into the online-softmax state of `rows` query rows q [rows, D]:
    // o [rows, D] the unnormalised output, m [rows] the running maximum of the scores in base 2
    // (scale·log2 e·q·k), l [rows] the running Σ 2^(score - m). Start from o = 0, m = -inf,
    // l = 0; the attention is o / l. Single-threaded.
    void (*attend)(const float* q, int rows, int head_dim, float scale, const KvRun* runs,
                   size_t n_runs, int g, int64_t t0, int64_t t1, float* o, float* m, float* l);
};

// attention_causal for one query token (n_new 1: q [n_heads·D] at position n_keys - 1, keys
// 0..n_keys-1 in `runs`) with kernel k, or false (nothing done) if k is null or does not take
// every run. Each task is a KV head and a stretch of its tokens: the tokens are split between
// threads when there are fewer KV heads than a multiple of the threads (parts of at least 256
// tokens, merged at the end). `parts` is scratch, grown as needed.
bool attention_decode(const DecodeAttention* k, const float* q, int n_heads, int n_kv_heads,
                      int head_dim, std::span<const KvRun> runs, int64_t n_keys, float scale,
                      float* out, std::vector<float>& parts);

// The kernel for this CPU at cpu_level() (quant-dot.h), chosen once (null: none).
const DecodeAttention* decode_attention();
// A kernel set by name ("avx512", "avx2") if this CPU runs it, else null (tests, benchmarks).
const DecodeAttention* decode_attention_named(const char* isa);

// The two sets, defined in their translation units.
const DecodeAttention& decode_attention_avx512();
const DecodeAttention& decode_attention_avx2();

} // namespace iris::model::cpu
