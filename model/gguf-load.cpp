// llama.cpp's InternVL files as a model: where they are (ModelPaths) and the configuration
// their metadata gives. The tensors are read by TensorSource::from_gguf (weights.cpp) and the
// tokenizer by Tokenizer::from_gguf.
#include "model/arch.h"
#include "model/network-impl.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>

namespace iris::model {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool has_gguf_extension(const fs::path& p)
{
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    return ext == ".gguf";
}

// llama.cpp names the vision half of a model mmproj-*.gguf (its converter's --mmproj output).
bool is_mmproj_name(const fs::path& p)
{
    std::string name = p.filename().string();
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    return name.starts_with("mmproj");
}

// The .gguf files of a folder, split into language models and mmproj files, by name.
void list_ggufs(const fs::path& dir, std::vector<std::string>& models,
                std::vector<std::string>& mmprojs)
{
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (!e.is_regular_file(ec) || !has_gguf_extension(e.path())) continue;
        (is_mmproj_name(e.path()) ? mmprojs : models).push_back(e.path().string());
    }
    if (ec) throw Error(ErrorKind::io, "cannot list " + dir.string() + ": " + ec.message());
    std::sort(models.begin(), models.end());
    std::sort(mmprojs.begin(), mmprojs.end());
}

std::string joined(const std::vector<std::string>& v)
{
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

} // namespace

std::string ModelPaths::name() const
{
    fs::path p = is_gguf() ? fs::path(gguf).stem() : fs::absolute(fs::path(dir)).lexically_normal();
    if (!is_gguf() && p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

ModelPaths ModelPaths::resolve(const std::string& model, const std::string& mmproj)
{
    std::error_code ec;
    const fs::path path(model);
    const fs::file_status st = fs::status(path, ec);
    if (!fs::exists(st)) throw Error(ErrorKind::not_found, "model " + model + " does not exist");
    if (!mmproj.empty() && !fs::is_regular_file(fs::status(mmproj, ec)))
        throw Error(ErrorKind::not_found, "mmproj file " + mmproj + " does not exist");

    ModelPaths p;
    if (fs::is_regular_file(st)) {
        if (!has_gguf_extension(path))
            throw Error(ErrorKind::invalid_argument,
                        "model " + model
                            + " is a file but not a .gguf: give a checkpoint folder or llama.cpp's "
                              "GGUF file");
        if (is_mmproj_name(path))
            throw Error(ErrorKind::invalid_argument,
                        model
                            + " is an mmproj (the vision tower): give the language-model GGUF "
                              "with --model and this file with --mmproj");
        p.gguf = model;
        p.dir = path.has_parent_path() ? path.parent_path().string() : ".";
    } else if (fs::is_directory(st)) {
        p.dir = model;
        if (fs::exists(path / "config.json", ec)) {
            if (!mmproj.empty())
                throw Error(ErrorKind::invalid_argument,
                            model
                                + " is a checkpoint folder, whose vision tower is in its own "
                                  "weights: --mmproj is for GGUF models");
            return p;
        }
        std::vector<std::string> models, mmprojs;
        list_ggufs(path, models, mmprojs);
        if (models.empty())
            throw Error(ErrorKind::not_found,
                        "model folder " + model
                            + " has neither config.json (a checkpoint) nor a .gguf language model");
        if (models.size() > 1)
            throw Error(ErrorKind::invalid_argument,
                        "model folder " + model + " holds several language models ("
                            + joined(models) + "): give one with --model FILE.gguf");
        p.gguf = models[0];
    } else {
        throw Error(ErrorKind::invalid_argument, "model " + model + " is not a file or folder");
    }

    if (!mmproj.empty()) {
        p.mmproj = mmproj;
        return p;
    }
    std::vector<std::string> models, mmprojs;
    list_ggufs(p.dir, models, mmprojs);
    if (mmprojs.size() > 1)
        throw Error(ErrorKind::invalid_argument,
                    "several mmproj files are beside " + p.gguf + " (" + joined(mmprojs)
                        + "): choose one with --mmproj FILE");
    if (!mmprojs.empty()) p.mmproj = mmprojs[0];
    return p;
}

// ---------------------------------------------------------------------------------------------
// The configuration

namespace {

const GgufTensor& need_tensor(const GgufFile& f, const char* name, size_t n_dims)
{
    const GgufTensor& t = f.get(name);
    if (t.ne.size() < n_dims)
        throw Error(ErrorKind::invalid_input,
                    strfmt("%s: tensor %s has %zu dimensions, expected %zu", f.path().c_str(), name,
                           t.ne.size(), n_dims));
    return t;
}

} // namespace

ModelConfig ModelConfig::of(const ModelPaths& paths)
{
    if (!paths.is_gguf()) return load(paths.dir + "/config.json");
    if (paths.mmproj.empty())
        throw Error(ErrorKind::not_found,
                    paths.gguf
                        + ": the vision settings are in its mmproj file: give it with --mmproj");
    return gguf_model_config(GgufFile::open(paths.gguf), GgufFile::open(paths.mmproj));
}

ModelConfig gguf_model_config(const GgufFile& llm, const GgufFile& mmproj)
{
    const GgufMetadata& m = llm.metadata();
    const GgufMetadata& v = mmproj.metadata();

    const std::string& arch_name = m.get_string("general.architecture");
    const LlmArchInfo* arch = llm_arch_by_gguf(arch_name);
    if (!arch) {
        if (arch_name == "clip")
            throw Error(ErrorKind::invalid_argument,
                        llm.path()
                            + " is an mmproj (the vision tower): give the language-model GGUF "
                              "with --model and this file with --mmproj");
        throw Error(ErrorKind::unsupported,
                    strfmt("%s: general.architecture is \"%s\"; Iris runs InternVL with the "
                           "language models %s",
                           llm.path().c_str(), arch_name.c_str(), llm_arch_list(true).c_str()));
    }
    if (v.get_string("general.architecture") != "clip")
        throw Error(ErrorKind::invalid_input,
                    mmproj.path() + ": general.architecture is \""
                        + v.get_string("general.architecture")
                        + "\", not \"clip\": this is not an mmproj file");
    if (const auto pt = v.opt_string("clip.projector_type"); pt != "internvl")
        throw Error(ErrorKind::unsupported,
                    mmproj.path() + ": clip.projector_type is \"" + pt.value_or("")
                        + "\"; Iris runs InternVL's (\"internvl\")");
    if (v.opt_bool("clip.use_silu").value_or(false) || !v.opt_bool("clip.use_gelu").value_or(true))
        throw Error(ErrorKind::unsupported,
                    mmproj.path() + ": the vision tower's activation is not GELU, InternViT's");

    const std::string a = arch_name + ".";
    const uint32_t n_embd = m.get_u32(a + "embedding_length");
    const uint32_t n_head = m.get_u32(a + "attention.head_count");
    if (n_head == 0 || n_embd % n_head != 0)
        throw Error(ErrorKind::invalid_input,
                    strfmt("%s: %sembedding_length %u is not a multiple of "
                           "%sattention.head_count %u",
                           llm.path().c_str(), a.c_str(), n_embd, a.c_str(), n_head));
    for (const char* key : {"attention.key_length", "attention.value_length"})
        if (const auto len = m.opt_u32(a + key); len && *len != n_embd / n_head)
            throw Error(ErrorKind::unsupported,
                        strfmt("%s: %s%s is %u; Iris's decoders have heads of embedding_length / "
                               "head_count (%u)",
                               llm.path().c_str(), a.c_str(), key, *len, n_embd / n_head));
    const GgufTensor& embd = need_tensor(llm, "token_embd.weight", 2);

    json l = {
        {"architectures", {arch->hf_class}},
        {"hidden_size", n_embd},
        {"intermediate_size", m.get_u32(a + "feed_forward_length")},
        {"num_hidden_layers", m.get_u32(a + "block_count")},
        {"num_attention_heads", n_head},
        {"num_key_value_heads", m.opt_u32(a + "attention.head_count_kv").value_or(n_head)},
        {"vocab_size", embd.ne[1]},
        {"max_position_embeddings", m.get_u32(a + "context_length")},
        {"rms_norm_eps", m.get_f32(a + "attention.layer_norm_rms_epsilon")},
        {"rope_theta", m.opt_f32(a + "rope.freq_base").value_or(10000.f)},
        // llama.cpp's internlm2 takes attention biases only with q/k/v all present.
        {"bias", llm.find("blk.0.attn_q.bias") != nullptr},
        {"tie_word_embeddings", llm.find("output.weight") == nullptr},
    };
    // GGUF has no form of dynamic NTK: like llama.cpp, plain RoPE at every length.
    if (const auto type = m.opt_string(a + "rope.scaling.type"); type && *type != "none") {
        if (*type != "linear")
            throw Error(ErrorKind::unsupported,
                        llm.path() + ": " + a + "rope.scaling.type is \"" + *type
                            + "\"; supported: \"linear\", \"none\"");
        l["rope_scaling"] = {{"type", "linear"}, {"factor", m.get_f32(a + "rope.scaling.factor")}};
    }

    const GgufTensor& patch = need_tensor(mmproj, "v.patch_embd.weight", 3);
    const uint32_t scale = v.get_u32("clip.vision.projector.scale_factor");
    const uint32_t image_size = v.get_u32("clip.vision.image_size");
    json vis = {
        {"hidden_size", v.get_u32("clip.vision.embedding_length")},
        {"num_hidden_layers", v.get_u32("clip.vision.block_count")},
        {"num_attention_heads", v.get_u32("clip.vision.attention.head_count")},
        {"intermediate_size", v.get_u32("clip.vision.feed_forward_length")},
        {"patch_size", v.get_u32("clip.vision.patch_size")},
        {"image_size", image_size},
        {"num_channels", patch.ne[2]},
        {"layer_norm_eps", v.get_f32("clip.vision.attention.layer_norm_epsilon")},
        // InternViT-6B's RMSNorm has no bias; the 300M's LayerNorm has one.
        {"norm_type", mmproj.find("v.blk.0.ln1.bias") ? "layer_norm" : "rms_norm"},
        {"qkv_bias", mmproj.find("v.blk.0.attn_q.bias") != nullptr},
        {"qk_normalization", mmproj.find("v.blk.0.attn_q_norm.weight") != nullptr},
        {"hidden_act", "gelu"},
    };
    const std::vector<float> mean
        = v.opt_f32_array("clip.vision.image_mean").value_or(std::vector<float> {});
    const std::vector<float> std_dev
        = v.opt_f32_array("clip.vision.image_std").value_or(std::vector<float> {});
    const std::vector<float> imagenet_mean = {0.485f, 0.456f, 0.406f};
    const std::vector<float> imagenet_std = {0.229f, 0.224f, 0.225f};
    if ((!mean.empty() && mean != imagenet_mean) || (!std_dev.empty() && std_dev != imagenet_std))
        IRIS_LOG_WARN("%s: the image normalisation differs from ImageNet's, which Iris applies",
                      mmproj.path().c_str());

    json top = {
        {"model_type", "internvl_chat"},
        {"vision_config", vis},
        {"llm_config", l},
        {"force_image_size", image_size},
        {"downsample_ratio", scale == 0 ? 0.0 : 1.0 / double(scale)},
        {"select_layer", -1},
        {"ps_version", "v2"},
        {"template", "internvl2_5"},
        {"min_dynamic_patch", v.opt_u32("clip.vision.preproc_min_tiles").value_or(1)},
        {"max_dynamic_patch", v.opt_u32("clip.vision.preproc_max_tiles").value_or(12)},
        {"use_thumbnail", true},
        {"dynamic_image_size", true},
    };
    ModelConfig c = ModelConfig::parse(top.dump(), llm.path() + " and " + mmproj.path());
    const uint32_t proj = v.opt_u32("clip.vision.projection_dim").value_or(uint32_t(n_embd));
    if (proj != n_embd)
        throw Error(ErrorKind::invalid_input,
                    strfmt("%s projects to %u values but %s's embedding is %u wide: they are not "
                           "one model",
                           mmproj.path().c_str(), proj, llm.path().c_str(), n_embd));
    return c;
}

} // namespace iris::model
