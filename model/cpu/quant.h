// Weight storage types (private to the model module): the checkpoint's own f32/bf16/f16 and
// llama.cpp's quantized block formats, byte for byte as ggml stores them in GGUF files.
//
// A row of n values is n / block blocks of block_bytes each, stored back to back; n must be a
// multiple of the block (256 for the k-quants, 32 for the others). The layouts and formulas
// are ggml's (ggml-common.h, ggml-quants.c at commit 34af94cd):
//   q8_0    fp16 d, 32 × int8 q                                  x = d·q
//   q4_0    fp16 d, 16 bytes: q_j low nibble, q_{j+16} high      x = d·(q - 8)
//   q4_1    fp16 d, fp16 m, 16 bytes as q4_0                     x = d·q + m
//   q5_0    fp16 d, 4 bytes of fifth bits, 16 bytes as q4_0      x = d·(q - 16)
//   q5_1    fp16 d, fp16 m, fifth bits, nibbles                  x = d·q + m
//   iq4_nl  fp16 d, 16 bytes as q4_0                             x = d·kvalues_iq4nl[q]
//   q2_K .. q6_K  super-blocks of 256 with 6-bit (q4_K/q5_K: packed) or 4-bit sub-block scales
// Quantizing follows ggml's reference quantizers (quantize_row_*_ref; for iq4_nl
// quantize_iq4_nl with no importance matrix, whose scale search quantize_row_iq4_nl_ref skips)
// exactly, so a file Iris writes holds the bytes llama-quantize would write from the same f32
// values; dequantizing is ggml's to_float.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace iris::model::cpu {

enum class WeightType : uint8_t {
    f32,
    bf16,
    f16,
    q8_0,
    q4_0,
    q4_1,
    q5_0,
    q5_1,
    iq4_nl,
    q2_K,
    q3_K,
    q4_K,
    q5_K,
    q6_K,
};
constexpr int kWeightTypeCount = 14;

struct WeightTypeInfo
{
    const char* name; // ggml's spelling: "f32", "bf16", "q8_0", "q4_K", ...
    uint32_t ggml_type; // the GGML_TYPE_* id stored in GGUF files
    int block; // values per block (1 for f32, bf16, f16)
    size_t block_bytes; // bytes per block
};

const WeightTypeInfo& weight_type_info(WeightType type);
inline const char* weight_type_name(WeightType type)
{
    return weight_type_info(type).name;
}
inline bool is_quantized(WeightType type)
{
    return weight_type_info(type).block > 1;
}
// The type of a GGML_TYPE_* id or of a name as weight_type_info spells it (case-insensitive).
std::optional<WeightType> weight_type_from_ggml(uint32_t ggml_type);
std::optional<WeightType> weight_type_from_name(std::string_view name);

// Bytes of a row of n values. Throws Error(invalid_argument) naming the type when n is not a
// multiple of its block.
size_t weight_row_bytes(WeightType type, int64_t n);

// x [n] -> dst [weight_row_bytes(type, n)], exactly as ggml's reference quantizer (bf16 and
// f16 round to nearest even, as ggml's converters do; an f16 NaN becomes ggml's sign | 0x7E00).
void quantize_row(WeightType type, const float* x, int64_t n, void* dst);
// src [weight_row_bytes(type, n)] -> dst [n], exactly as ggml's to_float.
void dequantize_row(WeightType type, const void* src, int64_t n, float* dst);

} // namespace iris::model::cpu
