// The architectures Iris runs, one table each: the Hugging Face class and model_type, the name
// people know, llama.cpp's architecture string and the tensor names. The model module reads and
// writes files through them; the apps and the server name architectures and tensors from them
// (iris make-random, bench, info, /v1/models) so that an architecture is described once.
//
// Inside the engine a tensor is called by its GGUF name ("blk.3.attn_q.weight", llama.cpp's
// vocabulary): the loader asks for those names whatever the files are, and a Hugging Face
// checkpoint is read through the table's second column ("language_model.model.layers.3.
// self_attn.q_proj.weight"). A row whose GGUF name is one llama.cpp never writes for the
// architecture (attn_qkv of InternLM2 and InternViT, fused in the checkpoints) names a tensor
// only checkpoints have; the GGUF files hold its parts instead (attn_q, attn_k, attn_v).
#pragma once

#include "model/model.h"

#include <span>
#include <string>
#include <string_view>

namespace iris::model {

// One tensor: the GGUF name and the checkpoint name, "%d" standing for the layer in both.
struct TensorName
{
    const char* gguf;
    const char* hf;
};

struct LlmArchInfo
{
    LlmArch arch;
    const char* hf_class; // llm_config.architectures[0]: "Qwen2ForCausalLM"
    const char* hf_model_type; // llm_config.model_type: "qwen2"
    const char* display; // "Qwen2"
    const char* gguf_arch; // general.architecture: "qwen2"
    // llama.cpp rotates pairs of adjacent channels (2i, 2i+1) for this architecture, so its
    // converter reorders each head's q and k rows from the checkpoint's halves (i, i + D/2)
    // (InternLM2); false where llama.cpp rotates halves too (NeoX order: Qwen2).
    bool gguf_rope_pairs;
    std::span<const TensorName> tensors;
};

// The table of an architecture, and the one a class or GGUF name gives (null when unknown).
const LlmArchInfo& llm_arch(LlmArch arch);
const LlmArchInfo* llm_arch_by_class(std::string_view hf_class);
const LlmArchInfo* llm_arch_by_gguf(std::string_view gguf_arch);
// "Qwen2ForCausalLM, InternLM2ForCausalLM" (or the GGUF names), for messages.
std::string llm_arch_list(bool gguf);

// InternViT and the mlp1 projector, as llama.cpp's clip names them (projector "internvl").
std::span<const TensorName> vision_tensor_names();

// "blk.%d.attn_q.weight" with the layer put in.
std::string layer_name(const char* pattern, int layer);
// The checkpoint's name of a tensor the table lists by its GGUF name pattern, with the layer
// put in; Error(internal) for a pattern the table lacks.
std::string checkpoint_name(std::span<const TensorName> table, std::string_view gguf_pattern,
                            int layer = 0);

} // namespace iris::model
