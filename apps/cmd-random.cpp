// iris make-random: a checkpoint folder of a real InternVL shape with random weights: the real
// config.json layout, every real tensor name and size, and a valid tokenizer of the real size
// (synthetic, but trained like a real BPE so English prompts get realistic token counts:
// tools/synthetic-tokenizer.h). It lets benchmarks and tests use the real sizes without
// downloading gigabytes.
#include "apps/commands.h"
#include "apps/common.h"
#include "model/arch.h"
#include "model/model.h"
#include "tools/synthetic-tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <unistd.h>

namespace iris::app {
namespace {

namespace fs = std::filesystem;
using model::LlmArch;
using nlohmann::json;

// =============================================================================================
// Shapes (docs/model.md §1, §2; the tiny ones are the golden models' sizes)

struct Preset
{
    const char* name;
    LlmArch arch;
    int layers, hidden, heads, kv_heads, ffn, vocab;
    double rms_eps;
    bool rope_dynamic; // rope_scaling {dynamic, x2}: inactive below 32768 tokens
    int vit_layers, vit_hidden, vit_heads, vit_ffn;
    const char* llm_name_or_path;
    bool vit_6b = false; // InternViT-6B's blocks: RMSNorm, q and k norms, no qkv bias
};

const Preset kPresets[] = {
    {"internvl2_5-1b", LlmArch::qwen2, 24, 896, 14, 2, 4864, 151674, 1e-6, true, 24, 1024, 16, 4096,
     "Qwen/Qwen2.5-0.5B-Instruct"},
    {"internvl3-1b", LlmArch::qwen2, 24, 896, 14, 2, 4864, 151674, 1e-6, true, 24, 1024, 16, 4096,
     "Qwen/Qwen2.5-0.5B"},
    {"internvl2_5-2b", LlmArch::internlm2, 24, 2048, 16, 8, 8192, 92553, 1e-5, true, 24, 1024, 16,
     4096, "internlm/internlm2_5-1_8b-chat"},
    {"internvl2_5-8b", LlmArch::internlm2, 32, 4096, 32, 8, 14336, 92553, 1e-5, true, 24, 1024, 16,
     4096, "internlm/internlm2_5-7b-chat"},
    // InternViT-6B-448px-V2_5, the tower of InternVL2.5-26B and larger, before the 1B's language
    // model: a 13 GB file to time the tower with, rather than 52 GB with InternLM2.5-20B.
    {"internvit-6b", LlmArch::qwen2, 24, 896, 14, 2, 4864, 151674, 1e-6, true, 45, 3200, 25, 12800,
     "Qwen/Qwen2.5-0.5B-Instruct", true},
    {"internvl3-2b", LlmArch::qwen2, 28, 1536, 12, 2, 8960, 151674, 1e-6, true, 24, 1024, 16, 4096,
     "Qwen/Qwen2.5-1.5B"},
    {"tiny-qwen2", LlmArch::qwen2, 2, 64, 4, 2, 176, 968, 1e-6, false, 2, 64, 4, 256, ""},
    {"tiny-internlm2", LlmArch::internlm2, 2, 96, 6, 2, 256, 809, 1e-5, true, 2, 64, 4, 256, ""},
};

constexpr int kImageSize = 448;
constexpr int kPatchSize = 14;

const Preset& find_preset(const std::string& name)
{
    for (const auto& p : kPresets)
        if (name == p.name) return p;
    std::string list;
    for (const auto& p : kPresets) list += std::string(list.empty() ? "" : ", ") + p.name;
    throw Error(ErrorKind::invalid_argument,
                "--like '" + name + "' is not a known shape; one of: " + list);
}

// A tensor and how its values are drawn: mean + std * N(0, 1).
struct TensorSpec
{
    std::string name;
    std::vector<int64_t> shape;
    float mean = 0.f;
    float std = 0.02f;
};

int64_t numel(const std::vector<int64_t>& shape)
{
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

// Every tensor of the checkpoint: the rows of arch.h's tables (InternViT and mlp1, then the
// language model), named by their checkpoint column, each once or once per layer.
std::vector<TensorSpec> tensor_specs(const Preset& p)
{
    // Shapes and values by GGUF name. Scales keep activations finite over 24 layers: matrices
    // and biases N(0, 0.02), norm gains 1 ± 0.02, layer scales 0.1 ± 0.01. An empty shape is
    // a row these checkpoints lack; a row missing here is an error, so that a new table's
    // tensor is given a shape rather than silently left out.
    const auto matrix = [](std::vector<int64_t> shape) {
        return TensorSpec {{}, std::move(shape)};
    };
    const auto gain = [](int64_t n) { return TensorSpec {{}, {n}, 1.f, 0.02f}; };
    const auto scale = [](int64_t n) { return TensorSpec {{}, {n}, 0.1f, 0.01f}; };
    const TensorSpec absent;
    const int64_t c = p.vit_hidden, f = p.vit_ffn;
    const auto bias = [&](int64_t n) { return p.vit_6b ? absent : matrix({n}); };
    const int64_t grid = kImageSize / kPatchSize;
    const int64_t h = p.hidden, c4 = 4 * c;
    const int64_t d = p.hidden / p.heads, q = p.heads * d, kv = p.kv_heads * d, ff = p.ffn;
    const int64_t v = p.vocab;
    const std::map<std::string_view, TensorSpec> shapes = {
        {"v.class_embd", matrix({1, 1, c})},
        {"v.patch_embd.weight", matrix({c, 3, kPatchSize, kPatchSize})},
        {"v.patch_embd.bias", matrix({c})},
        {"v.position_embd.weight", matrix({1, grid * grid + 1, c})},
        {"v.blk.%d.ln1.weight", gain(c)},
        {"v.blk.%d.ln1.bias", bias(c)},
        {"v.blk.%d.attn_qkv.weight", matrix({3 * c, c})},
        {"v.blk.%d.attn_qkv.bias", bias(3 * c)},
        // config.json's qk_normalization: RMSNorms over all heads at once, in InternViT-6B only.
        {"v.blk.%d.attn_q_norm.weight", p.vit_6b ? gain(c) : absent},
        {"v.blk.%d.attn_q_norm.bias", absent},
        {"v.blk.%d.attn_k_norm.weight", p.vit_6b ? gain(c) : absent},
        {"v.blk.%d.attn_k_norm.bias", absent},
        {"v.blk.%d.attn_out.weight", matrix({c, c})},
        {"v.blk.%d.attn_out.bias", matrix({c})},
        {"v.blk.%d.ls1.weight", scale(c)},
        {"v.blk.%d.ln2.weight", gain(c)},
        {"v.blk.%d.ln2.bias", bias(c)},
        {"v.blk.%d.ffn_up.weight", matrix({f, c})},
        {"v.blk.%d.ffn_up.bias", matrix({f})},
        {"v.blk.%d.ffn_down.weight", matrix({c, f})},
        {"v.blk.%d.ffn_down.bias", matrix({c})},
        {"v.blk.%d.ls2.weight", scale(c)},
        // mlp1: LayerNorm(4C) -> Linear(4C, H) -> GELU -> Linear(H, H); 4C after the 0.5 pixel
        // shuffle.
        {"mm.model.mlp.0.weight", gain(c4)},
        {"mm.model.mlp.0.bias", matrix({c4})},
        {"mm.model.mlp.1.weight", matrix({h, c4})},
        {"mm.model.mlp.1.bias", matrix({h})},
        {"mm.model.mlp.3.weight", matrix({h, h})},
        {"mm.model.mlp.3.bias", matrix({h})},
        {"token_embd.weight", matrix({v, h})},
        {"output_norm.weight", gain(h)},
        {"output.weight", matrix({v, h})}, // untied (docs/model.md §2.5)
        {"blk.%d.attn_norm.weight", gain(h)},
        {"blk.%d.attn_q.weight", matrix({q, h})},
        {"blk.%d.attn_q.bias", matrix({q})},
        {"blk.%d.attn_k.weight", matrix({kv, h})},
        {"blk.%d.attn_k.bias", matrix({kv})},
        {"blk.%d.attn_v.weight", matrix({kv, h})},
        {"blk.%d.attn_v.bias", matrix({kv})},
        // InternLM2's wqkv: fused and interleaved by KV group (docs/model.md §7.2); random values
        // make the order moot. Its config.json says "bias": false.
        {"blk.%d.attn_qkv.weight", matrix({q + 2 * kv, h})},
        {"blk.%d.attn_qkv.bias", absent},
        {"blk.%d.attn_output.weight", matrix({h, q})},
        {"blk.%d.attn_output.bias", absent},
        {"blk.%d.ffn_norm.weight", gain(h)},
        {"blk.%d.ffn_gate.weight", matrix({ff, h})},
        {"blk.%d.ffn_up.weight", matrix({ff, h})},
        {"blk.%d.ffn_down.weight", matrix({h, ff})},
    };

    std::vector<TensorSpec> t;
    auto add = [&](std::span<const model::TensorName> table, int layers) {
        for (const model::TensorName& n : table) {
            const auto it = shapes.find(n.gguf);
            if (it == shapes.end())
                throw Error(ErrorKind::internal,
                            std::string("make-random: no shape for tensor ") + n.gguf);
            if (it->second.shape.empty()) continue;
            const bool per_layer = std::strstr(n.gguf, "%d") != nullptr;
            for (int l = 0; l < (per_layer ? layers : 1); ++l) {
                t.push_back(it->second);
                t.back().name = model::layer_name(n.hf, l);
            }
        }
    };
    add(model::vision_tensor_names(), p.vit_layers);
    add(model::llm_arch(p.arch).tensors, p.layers);
    return t;
}

// =============================================================================================
// config.json (docs/model.md §1: top-level internvl_chat fields + llm_config + vision_config)

json rope_scaling(const Preset& p)
{
    if (!p.rope_dynamic) return nullptr;
    // transformers 4.37 reads "type"; newer versions write both.
    return p.arch == LlmArch::qwen2
        ? json {{"factor", 2.0}, {"rope_type", "dynamic"}, {"type", "dynamic"}}
        : json {{"factor", 2.0}, {"type", "dynamic"}};
}

json make_config(const Preset& p, const std::string& torch_dtype, int32_t pad_or_bos)
{
    const model::LlmArchInfo& arch = model::llm_arch(p.arch);
    json llm = {
        {"_name_or_path", p.llm_name_or_path},
        {"architectures", {arch.hf_class}},
        {"hidden_act", "silu"},
        {"hidden_size", p.hidden},
        {"initializer_range", 0.02},
        {"intermediate_size", p.ffn},
        {"max_position_embeddings", 32768},
        {"model_type", arch.hf_model_type},
        {"num_attention_heads", p.heads},
        {"num_hidden_layers", p.layers},
        {"num_key_value_heads", p.kv_heads},
        {"rms_norm_eps", p.rms_eps},
        {"rope_scaling", rope_scaling(p)},
        {"rope_theta", 1000000.0},
        {"tie_word_embeddings", false},
        {"torch_dtype", torch_dtype},
        {"transformers_version", "4.37.2"},
        {"use_bfloat16", torch_dtype == "bfloat16"},
        {"use_cache", true},
        {"vocab_size", p.vocab},
    };
    // The fields of the architecture's own config class.
    if (p.arch == LlmArch::qwen2) {
        llm["attention_dropout"] = 0.0;
        llm["bos_token_id"] = pad_or_bos; // <|endoftext|>, as in the real llm_config
        llm["eos_token_id"] = pad_or_bos;
        llm["max_window_layers"] = p.layers;
        llm["sliding_window"] = 32768;
        llm["use_sliding_window"] = false;
    } else {
        llm["auto_map"] = {{"AutoConfig", "configuration_internlm2.InternLM2Config"},
                           {"AutoModel", "modeling_internlm2.InternLM2ForCausalLM"},
                           {"AutoModelForCausalLM", "modeling_internlm2.InternLM2ForCausalLM"}};
        llm["attn_implementation"] = "eager";
        llm["bias"] = false;
        llm["bos_token_id"] = 1;
        llm["eos_token_id"] = 2;
        llm["pad_token_id"] = 2;
    }
    json vision = {
        {"architectures", {"InternVisionModel"}},
        {"attention_dropout", 0.0},
        {"drop_path_rate", 0.0},
        {"dropout", 0.0},
        {"hidden_act", "gelu"},
        {"hidden_size", p.vit_hidden},
        {"image_size", kImageSize},
        {"initializer_factor", 1.0},
        {"initializer_range", 0.02},
        {"intermediate_size", p.vit_ffn},
        {"layer_norm_eps", 1e-6},
        {"model_type", "intern_vit_6b"},
        {"norm_type", p.vit_6b ? "rms_norm" : "layer_norm"},
        {"num_attention_heads", p.vit_heads},
        {"num_channels", 3},
        {"num_hidden_layers", p.vit_layers},
        {"patch_size", kPatchSize},
        {"qk_normalization", p.vit_6b},
        {"qkv_bias", !p.vit_6b},
        {"torch_dtype", torch_dtype},
        {"transformers_version", "4.37.2"},
        {"use_bfloat16", torch_dtype == "bfloat16"},
        {"use_flash_attn", false},
    };
    return {
        {"_commit_hash", nullptr},
        {"architectures", {"InternVLChatModel"}},
        {"auto_map",
         {{"AutoConfig", "configuration_internvl_chat.InternVLChatConfig"},
          {"AutoModel", "modeling_internvl_chat.InternVLChatModel"},
          {"AutoModelForCausalLM", "modeling_internvl_chat.InternVLChatModel"}}},
        {"downsample_ratio", 0.5},
        {"dynamic_image_size", true},
        {"force_image_size", kImageSize},
        {"hidden_size", p.hidden},
        {"llm_config", llm},
        {"max_dynamic_patch", 12},
        {"min_dynamic_patch", 1},
        {"model_type", "internvl_chat"},
        {"pad2square", false},
        {"ps_version", "v2"},
        {"select_layer", -1},
        {"template", "internvl2_5"},
        {"tie_word_embeddings", false},
        {"torch_dtype", torch_dtype},
        {"transformers_version", nullptr},
        {"use_backbone_lora", 0},
        {"use_llm_lora", 0},
        {"use_thumbnail", true},
        {"vision_config", vision},
    };
}

// =============================================================================================
// Files

// config.json and generation_config.json, as save_pretrained writes them.
void write_json(const fs::path& path, const json& j)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << j.dump(2) << '\n';
    out.close();
    if (!out) throw Error(ErrorKind::io, "cannot write '" + path.string() + "'");
}

// =============================================================================================
// Random numbers: counter-based, so a tensor's values depend only on the seed, its name and the
// index, never on the thread count.

uint64_t hash_name(std::string_view s)
{
    uint64_t h = 0xcbf29ce484222325ull; // FNV-1a
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

constexpr int64_t kRngChunk = int64_t(1) << 16; // values per independent stream (even)

// Fills out[0, n) with mean + std * N(0, 1) for elements [first, first + n) of the tensor whose
// stream key is `key`; `first` is a multiple of kRngChunk. Box-Muller, two values per draw.
void fill_normal(uint64_t key, int64_t first, float* out, int64_t n, float mean, float std)
{
    for (int64_t c0 = 0; c0 < n; c0 += kRngChunk) {
        uint64_t state = key ^ (uint64_t(first + c0) / kRngChunk) * 0xD1B54A32D192ED03ull;
        splitmix64(state);
        const int64_t end = std::min(n, c0 + kRngChunk);
        for (int64_t i = c0; i < end; i += 2) {
            const uint64_t r = splitmix64(state);
            const float u1 = float((r >> 40) + 1) * 0x1p-24f; // (0, 1]
            const float u2 = float(r & 0xFFFFFF) * 0x1p-24f;
            const float rad = std * std::sqrt(-2.f * std::log(u1));
            const float phi = 2.f * std::numbers::pi_v<float> * u2;
            out[i] = mean + rad * std::cos(phi);
            if (i + 1 < end) out[i + 1] = mean + rad * std::sin(phi);
        }
    }
}

// Writes model.safetensors tensor by tensor (through a temporary file, fsync and rename), so a
// multi-gigabyte checkpoint is never held in memory twice as SafeTensorsWriter would. Layout as
// the official writer: header sorted by name, data contiguous in that order, header padded to
// 8 bytes with spaces.
void write_weights(const fs::path& path, std::vector<TensorSpec> specs, model::DType dtype,
                   uint64_t seed, const std::map<std::string, std::string>& metadata,
                   ProgressBar& bar)
{
    std::sort(specs.begin(), specs.end(),
              [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
    const size_t elem = model::dtype_size(dtype);
    // json objects keep their keys sorted, which is also the order of the data here.
    json index = {{"__metadata__", metadata}};
    uint64_t offset = 0;
    for (const auto& s : specs) {
        const uint64_t nbytes = uint64_t(numel(s.shape)) * elem;
        index[s.name] = {{"dtype", model::dtype_name(dtype)},
                         {"shape", s.shape},
                         {"data_offsets", {offset, offset + nbytes}}};
        offset += nbytes;
    }
    std::string header = index.dump();
    header.append((8 - header.size() % 8) % 8, ' ');
    const uint64_t total = offset;

    const std::string tmp = path.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(ErrorKind::io, "cannot create '" + tmp + "': " + std::strerror(errno));
    auto write_all = [&](const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        while (n > 0) {
            const ssize_t w = ::write(fd, b, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                const int err = errno;
                ::close(fd);
                ::unlink(tmp.c_str());
                throw Error(ErrorKind::io, "cannot write '" + tmp + "': " + std::strerror(err));
            }
            b += w;
            n -= size_t(w);
        }
    };
    uint8_t len_le[8];
    for (int i = 0; i < 8; ++i) len_le[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
    write_all(len_le, 8);
    write_all(header.data(), header.size());

    // Slices of whole rng chunks: generated in parallel, then written in order.
    constexpr int64_t slice = 256 * kRngChunk;
    std::vector<float> values;
    std::vector<uint16_t> half;
    uint64_t done = 0;
    auto& pool = default_thread_pool();
    for (const auto& s : specs) {
        const uint64_t key = seed * 0x9E3779B97F4A7C15ull ^ hash_name(s.name);
        const int64_t n = numel(s.shape);
        for (int64_t first = 0; first < n; first += slice) {
            const int64_t count = std::min(slice, n - first);
            values.resize(size_t(count));
            half.resize(dtype == model::DType::f32 ? 0 : size_t(count));
            const int64_t chunks = (count + kRngChunk - 1) / kRngChunk;
            pool.parallel_for(0, chunks, [&](int64_t c) {
                const int64_t lo = c * kRngChunk, m = std::min(kRngChunk, count - lo);
                fill_normal(key, first + lo, values.data() + lo, m, s.mean, s.std);
                if (dtype == model::DType::bf16)
                    for (int64_t i = lo; i < lo + m; ++i)
                        half[size_t(i)] = model::f32_to_bf16(values[size_t(i)]);
                else if (dtype == model::DType::f16)
                    for (int64_t i = lo; i < lo + m; ++i)
                        half[size_t(i)] = model::f32_to_f16(values[size_t(i)]);
            });
            if (dtype == model::DType::f32)
                write_all(values.data(), size_t(count) * 4);
            else
                write_all(half.data(), size_t(count) * 2);
            done += uint64_t(count) * elem;
            bar.update(float(double(done) / double(std::max<uint64_t>(total, 1))), s.name.c_str());
        }
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        ::unlink(tmp.c_str());
        throw Error(ErrorKind::io, "cannot write '" + tmp + "': " + std::strerror(errno));
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec)
        throw Error(ErrorKind::io,
                    "cannot rename '" + tmp + "' to '" + path.string() + "': " + ec.message());
}

std::string human_bytes(double b)
{
    if (b >= double(1ull << 30)) return strfmt("%.2f GiB", b / double(1ull << 30));
    if (b >= double(1ull << 20)) return strfmt("%.1f MiB", b / double(1ull << 20));
    return strfmt("%.0f KiB", b / 1024.0);
}

} // namespace

int cmd_make_random(int argc, char** argv)
{
    Args args(argc, argv, {"--like", "--dtype", "--seed", "--out", "--threads"},
              {"--tokenizer-only", "--force", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris make-random --like SHAPE --out DIR [--dtype bf16|f32] [--seed N]\n"
            "                        [--tokenizer-only] [--force] [--threads N]\n"
            "\n"
            "Writes a checkpoint folder with random weights of a real InternVL shape: config.json "
            "in\n"
            "the real layout, model.safetensors with every real tensor name and size, and a valid\n"
            "synthetic tokenizer of the real size with the real special-token ids. For benchmarks "
            "and\n"
            "tests; the model's answers are meaningless.\n"
            "\n"
            "  --like SHAPE        internvl2_5-1b, internvl3-1b, internvl3-2b (Qwen2),\n"
            "                      internvl2_5-2b, internvl2_5-8b (InternLM2), internvit-6b\n"
            "                      (InternViT-6B, the tower of InternVL2.5-26B and larger, before\n"
            "                      the 1B's language model, to time the tower), or tiny-qwen2 /\n"
            "                      tiny-internlm2 (the golden tiny models' sizes)\n"
            "  --dtype T           bf16 (default, like the real files) or f32\n"
            "  --seed N            weights' random seed (default 0); the tokenizer is fixed\n"
            "  --tokenizer-only    write config.json and the tokenizer, no weights\n"
            "  --force             write into a folder that is not empty\n");
        return 0;
    }
    const Preset& preset = find_preset(args.required("--like"));
    const std::string dtype_text = args.str("--dtype", "bf16");
    model::DType dtype;
    if (dtype_text == "bf16")
        dtype = model::DType::bf16;
    else if (dtype_text == "f32")
        dtype = model::DType::f32;
    else
        throw Error(ErrorKind::invalid_argument,
                    "--dtype must be bf16 or f32, got '" + dtype_text + "'");
    const uint64_t seed = uint64_t(args.integer("--seed", 0, 0, INT64_MAX));
    const fs::path out = args.required("--out");
    apply_threads(args);

    std::error_code ec;
    if (fs::exists(out, ec) && !fs::is_empty(out, ec) && !args.flag("--force"))
        throw Error(ErrorKind::invalid_argument,
                    "'" + out.string()
                        + "' exists and is not empty (use --force to write into it)");
    fs::create_directories(out, ec);
    if (ec) throw Error(ErrorKind::io, "cannot create '" + out.string() + "': " + ec.message());

    const int64_t t0 = now_us();
    const bool qwen2 = preset.arch == LlmArch::qwen2;
    if (qwen2)
        tools::write_qwen2_tokenizer(out, preset.vocab);
    else
        tools::write_internlm2_tokenizer(out, preset.vocab);
    const int32_t endoftext = preset.vocab - 31; // Qwen2's <|endoftext|>, first added token
    const std::string torch_dtype = dtype == model::DType::bf16 ? "bfloat16" : "float32";
    write_json(out / "config.json", make_config(preset, torch_dtype, endoftext));
    write_json(out / "generation_config.json",
               {{"_from_model_config", true}, {"transformers_version", "4.37.2"}});
    const int64_t t1 = now_us();
    std::fprintf(stderr, "%s: config and %s tokenizer (%d ids) written in %.1f s\n", out.c_str(),
                 qwen2 ? "byte-level BPE" : "SentencePiece", preset.vocab, double(t1 - t0) / 1e6);
    if (args.flag("--tokenizer-only")) return 0;

    auto specs = tensor_specs(preset);
    int64_t params = 0;
    for (const auto& s : specs) params += numel(s.shape);
    ProgressBar bar("writing");
    write_weights(out / "model.safetensors", specs, dtype, seed,
                  {{"format", "pt"},
                   {"iris_random_like", preset.name},
                   {"iris_random_seed", std::to_string(seed)}},
                  bar);
    bar.finish();
    std::fprintf(stderr, "%s: %zu tensors, %.1fM parameters, %s %s, in %.1f s\n", out.c_str(),
                 specs.size(), double(params) / 1e6,
                 human_bytes(double(params) * double(model::dtype_size(dtype))).c_str(),
                 model::dtype_name(dtype), double(now_us() - t1) / 1e6);
    return 0;
}

} // namespace iris::app
