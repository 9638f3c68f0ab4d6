// The architecture tables of arch.h. The GGUF names are llama.cpp's (gguf-py's
// TENSOR_NAMES for qwen2, internlm2 and clip), as its converter writes them for InternVL.
#include "model/arch.h"

#include <cstring>

namespace iris::model {

namespace {

constexpr TensorName kQwen2[] = {
    {"token_embd.weight", "language_model.model.embed_tokens.weight"},
    {"output_norm.weight", "language_model.model.norm.weight"},
    {"output.weight", "language_model.lm_head.weight"},
    {"blk.%d.attn_norm.weight", "language_model.model.layers.%d.input_layernorm.weight"},
    {"blk.%d.attn_q.weight", "language_model.model.layers.%d.self_attn.q_proj.weight"},
    {"blk.%d.attn_q.bias", "language_model.model.layers.%d.self_attn.q_proj.bias"},
    {"blk.%d.attn_k.weight", "language_model.model.layers.%d.self_attn.k_proj.weight"},
    {"blk.%d.attn_k.bias", "language_model.model.layers.%d.self_attn.k_proj.bias"},
    {"blk.%d.attn_v.weight", "language_model.model.layers.%d.self_attn.v_proj.weight"},
    {"blk.%d.attn_v.bias", "language_model.model.layers.%d.self_attn.v_proj.bias"},
    {"blk.%d.attn_output.weight", "language_model.model.layers.%d.self_attn.o_proj.weight"},
    {"blk.%d.ffn_norm.weight", "language_model.model.layers.%d.post_attention_layernorm.weight"},
    {"blk.%d.ffn_gate.weight", "language_model.model.layers.%d.mlp.gate_proj.weight"},
    {"blk.%d.ffn_up.weight", "language_model.model.layers.%d.mlp.up_proj.weight"},
    {"blk.%d.ffn_down.weight", "language_model.model.layers.%d.mlp.down_proj.weight"},
};

constexpr TensorName kInternLM2[] = {
    {"token_embd.weight", "language_model.model.tok_embeddings.weight"},
    {"output_norm.weight", "language_model.model.norm.weight"},
    {"output.weight", "language_model.output.weight"},
    {"blk.%d.attn_norm.weight", "language_model.model.layers.%d.attention_norm.weight"},
    {"blk.%d.attn_qkv.weight", "language_model.model.layers.%d.attention.wqkv.weight"},
    {"blk.%d.attn_qkv.bias", "language_model.model.layers.%d.attention.wqkv.bias"},
    {"blk.%d.attn_output.weight", "language_model.model.layers.%d.attention.wo.weight"},
    {"blk.%d.attn_output.bias", "language_model.model.layers.%d.attention.wo.bias"},
    {"blk.%d.ffn_norm.weight", "language_model.model.layers.%d.ffn_norm.weight"},
    {"blk.%d.ffn_gate.weight", "language_model.model.layers.%d.feed_forward.w1.weight"},
    {"blk.%d.ffn_up.weight", "language_model.model.layers.%d.feed_forward.w3.weight"},
    {"blk.%d.ffn_down.weight", "language_model.model.layers.%d.feed_forward.w2.weight"},
};

constexpr TensorName kVision[] = {
    {"v.class_embd", "vision_model.embeddings.class_embedding"},
    {"v.patch_embd.weight", "vision_model.embeddings.patch_embedding.weight"},
    {"v.patch_embd.bias", "vision_model.embeddings.patch_embedding.bias"},
    {"v.position_embd.weight", "vision_model.embeddings.position_embedding"},
    {"v.blk.%d.ln1.weight", "vision_model.encoder.layers.%d.norm1.weight"},
    {"v.blk.%d.ln1.bias", "vision_model.encoder.layers.%d.norm1.bias"},
    {"v.blk.%d.attn_qkv.weight", "vision_model.encoder.layers.%d.attn.qkv.weight"},
    {"v.blk.%d.attn_qkv.bias", "vision_model.encoder.layers.%d.attn.qkv.bias"},
    {"v.blk.%d.attn_q_norm.weight", "vision_model.encoder.layers.%d.attn.q_norm.weight"},
    {"v.blk.%d.attn_q_norm.bias", "vision_model.encoder.layers.%d.attn.q_norm.bias"},
    {"v.blk.%d.attn_k_norm.weight", "vision_model.encoder.layers.%d.attn.k_norm.weight"},
    {"v.blk.%d.attn_k_norm.bias", "vision_model.encoder.layers.%d.attn.k_norm.bias"},
    {"v.blk.%d.attn_out.weight", "vision_model.encoder.layers.%d.attn.proj.weight"},
    {"v.blk.%d.attn_out.bias", "vision_model.encoder.layers.%d.attn.proj.bias"},
    {"v.blk.%d.ls1.weight", "vision_model.encoder.layers.%d.ls1"},
    {"v.blk.%d.ln2.weight", "vision_model.encoder.layers.%d.norm2.weight"},
    {"v.blk.%d.ln2.bias", "vision_model.encoder.layers.%d.norm2.bias"},
    {"v.blk.%d.ffn_up.weight", "vision_model.encoder.layers.%d.mlp.fc1.weight"},
    {"v.blk.%d.ffn_up.bias", "vision_model.encoder.layers.%d.mlp.fc1.bias"},
    {"v.blk.%d.ffn_down.weight", "vision_model.encoder.layers.%d.mlp.fc2.weight"},
    {"v.blk.%d.ffn_down.bias", "vision_model.encoder.layers.%d.mlp.fc2.bias"},
    {"v.blk.%d.ls2.weight", "vision_model.encoder.layers.%d.ls2"},
    {"mm.model.mlp.0.weight", "mlp1.0.weight"},
    {"mm.model.mlp.0.bias", "mlp1.0.bias"},
    {"mm.model.mlp.1.weight", "mlp1.1.weight"},
    {"mm.model.mlp.1.bias", "mlp1.1.bias"},
    {"mm.model.mlp.3.weight", "mlp1.3.weight"},
    {"mm.model.mlp.3.bias", "mlp1.3.bias"},
};

const LlmArchInfo kArchs[] = {
    {LlmArch::qwen2, "Qwen2ForCausalLM", "qwen2", "Qwen2", "qwen2", false, kQwen2},
    {LlmArch::internlm2, "InternLM2ForCausalLM", "internlm2", "InternLM2", "internlm2", true,
     kInternLM2},
};

} // namespace

const LlmArchInfo& llm_arch(LlmArch arch)
{
    for (const LlmArchInfo& a : kArchs)
        if (a.arch == arch) return a;
    throw Error(ErrorKind::internal, "no table for this language-model architecture");
}

const LlmArchInfo* llm_arch_by_class(std::string_view hf_class)
{
    for (const LlmArchInfo& a : kArchs)
        if (hf_class == a.hf_class) return &a;
    return nullptr;
}

const LlmArchInfo* llm_arch_by_gguf(std::string_view gguf_arch)
{
    for (const LlmArchInfo& a : kArchs)
        if (gguf_arch == a.gguf_arch) return &a;
    return nullptr;
}

std::string llm_arch_list(bool gguf)
{
    std::string s;
    for (const LlmArchInfo& a : kArchs)
        s += std::string(s.empty() ? "" : ", ") + "\"" + (gguf ? a.gguf_arch : a.hf_class) + "\"";
    return s;
}

std::span<const TensorName> vision_tensor_names()
{
    return kVision;
}

std::string layer_name(const char* pattern, int layer)
{
    const char* at = std::strstr(pattern, "%d");
    if (!at) return pattern;
    return std::string(pattern, at) + std::to_string(layer) + (at + 2);
}

std::string checkpoint_name(std::span<const TensorName> table, std::string_view gguf_pattern,
                            int layer)
{
    for (const TensorName& n : table)
        if (gguf_pattern == n.gguf) return layer_name(n.hf, layer);
    throw Error(ErrorKind::internal,
                "no checkpoint name for tensor " + std::string(gguf_pattern) + " in the table");
}

} // namespace iris::model
