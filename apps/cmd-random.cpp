// iris make-random: a checkpoint folder of a real InternVL shape with random weights: the real
// config.json layout, every real tensor name and size, and a valid tokenizer of the real size
// (synthetic, but trained like a real BPE so English prompts get realistic token counts). It
// lets benchmarks and tests use the real sizes without downloading gigabytes.
#include "apps/commands.h"
#include "apps/common.h"
#include "model/arch.h"
#include "model/model.h"

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
#include <unordered_map>
#include <unordered_set>

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
};

const Preset kPresets[] = {
    {"internvl2_5-1b", LlmArch::qwen2, 24, 896, 14, 2, 4864, 151674, 1e-6, true, 24, 1024, 16, 4096,
     "Qwen/Qwen2.5-0.5B-Instruct"},
    {"internvl3-1b", LlmArch::qwen2, 24, 896, 14, 2, 4864, 151674, 1e-6, true, 24, 1024, 16, 4096,
     "Qwen/Qwen2.5-0.5B"},
    {"internvl2_5-2b", LlmArch::internlm2, 24, 2048, 16, 8, 8192, 92553, 1e-5, true, 24, 1024, 16,
     4096, "internlm/internlm2_5-1_8b-chat"},
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
        {"v.blk.%d.ln1.bias", matrix({c})},
        {"v.blk.%d.attn_qkv.weight", matrix({3 * c, c})},
        {"v.blk.%d.attn_qkv.bias", matrix({3 * c})},
        // config.json's qk_normalization is false.
        {"v.blk.%d.attn_q_norm.weight", absent},
        {"v.blk.%d.attn_q_norm.bias", absent},
        {"v.blk.%d.attn_k_norm.weight", absent},
        {"v.blk.%d.attn_k_norm.bias", absent},
        {"v.blk.%d.attn_out.weight", matrix({c, c})},
        {"v.blk.%d.attn_out.bias", matrix({c})},
        {"v.blk.%d.ls1.weight", scale(c)},
        {"v.blk.%d.ln2.weight", gain(c)},
        {"v.blk.%d.ln2.bias", matrix({c})},
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
        {"norm_type", "layer_norm"},
        {"num_attention_heads", p.vit_heads},
        {"num_channels", 3},
        {"num_hidden_layers", p.vit_layers},
        {"patch_size", kPatchSize},
        {"qk_normalization", false},
        {"qkv_bias", true},
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

void write_file(const fs::path& path, std::string_view content)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), std::streamsize(content.size()));
    out.close();
    if (!out) throw Error(ErrorKind::io, "cannot write '" + path.string() + "'");
}

void write_json(const fs::path& path, const json& j)
{
    write_file(path, j.dump(2) + "\n");
}

// A special_tokens_map.json entry, as save_pretrained writes it.
json special_token_json(const char* content)
{
    return json {{"content", content},
                 {"lstrip", false},
                 {"normalized", false},
                 {"rstrip", false},
                 {"single_word", false}};
}

// =============================================================================================
// Random numbers: counter-based, so a tensor's values depend only on the seed, its name and the
// index, never on the thread count.

uint64_t splitmix64(uint64_t& state)
{
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

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

// =============================================================================================
// Synthetic tokenizers
//
// A BPE trained on a small built-in "corpus" (common English words with Zipf frequencies, in
// their " word", "word", " Word" and "Word" forms, punctuation and whitespace runs, and the
// characters of the default Chinese system message), so frequent words are single tokens as in
// the real vocabularies. The rest of the real vocabulary size is filled with further unique
// merges of word-like tokens, which ordinary text seldom reaches.

// Most frequent first.
const char* const kEnglishWords
    = "the of and to a in is it you that he was for on are with as I his they be at one have "
      "this from or had by not word but what some we can out other were all there when up use "
      "your how said an each she which do their time if will way about many then them write "
      "would like so these her long make thing see him two has look more day could go come did "
      "number sound no most people my over know water than call first who may down side been "
      "now find any new work part take get place made live where after back little only round "
      "man year came show every good me give our under name very through just form sentence "
      "great think say help low line differ turn cause much mean before move right boy old too "
      "same tell does set three want air well also play small end put home read hand port large "
      "spell add even land here must big high such follow act why ask men change went light "
      "kind off need house picture try us again animal point mother world near build self earth "
      "father head stand own page should country found answer school grow study still learn "
      "plant cover food sun four between state keep eye never last let thought city tree cross "
      "farm hard start might story saw far sea draw left late run don while press close night "
      "real life few north open seem together next white children begin got walk example ease "
      "paper group always music those both mark often letter until mile river car feet care "
      "second book carry took science eat room friend began idea fish mountain stop once base "
      "hear horse cut sure watch color face wood main enough plain girl usual young ready above "
      "ever red list though feel talk bird soon body dog family direct pose leave song measure "
      "door product black short numeral class wind question happen complete ship area half rock "
      "order fire south problem piece told knew pass since top whole king space heard best hour "
      "better true during hundred five remember step early hold west ground interest reach fast "
      "verb sing listen six table travel less morning ten simple several vowel toward war lay "
      "against pattern slow center love person money serve appear road map rain rule govern "
      "pull cold notice voice unit power town fine certain fly fall lead cry dark machine note "
      "wait plan figure star box noun field rest correct able pound done beauty drive stood "
      "contain front teach week final gave green oh quick develop ocean warm free minute strong "
      "special mind behind clear tail produce fact street inch multiply nothing course stay "
      "wheel full force blue object decide surface deep moon island foot system busy test record "
      "boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape "
      "equate hot miss brought heat snow tire bring yes distant fill east paint language among "
      "image images describe assistant model photo shows bottom background foreground text chart "
      "data value wearing holding standing sitting yellow brown gray orange purple pink please "
      "hello thank thanks sorry information following provide based using used between "
      "different important however because another through without within around including "
      "question answers video frame scene object objects camera screen document page table "
      "tables code function return class value values string number numbers list user system "
      "quickly jumps lazy fox brown";

// Whole pre-tokens (Qwen2's pre-tokenizer keeps a leading space with punctuation and splits
// contractions and single digits), weighted like frequent words.
const char* const kFrequentSymbols[] = {
    ".",   ",",    "?",  "!",   ":",     ";",   "'",   "\"",    " \"", "(",    " (",     ")",  ").",
    "),",  "-",    " -", " –",  "/",     " /",  "*",   " *",    "**",  " **",  "#",      " #", "##",
    "###", "`",    " `", "```", "=",     " =",  "<",   ">",     " <",  "_",    "[",      "]",  " [",
    "{",   "}",    " {", ".\n", ".\n\n", ",\n", ":\n", ":\n\n", "\n",  "\n\n", "\n\n\n", " ",  "  ",
    "   ", "    ", "\t", "'s",  "'t",    "'re", "'ve", "'m",    "'ll", "'d",   " 1",     " 2", "0",
    "1",   "2",    "3",  "4",   "5",     "6",   "7",   "8",     "9",   "%",    "$",      " $", "&",
    " &",  "+",    " +", "|",   " |",    "。",  "，",  "：",    "？",  "！",   "、",     "（", "）",
};

// The default system message of the internvl2_5 template (docs/tokenizer.md §1): its characters
// become single tokens, as in the real vocabularies.
const char* const kChineseText
    = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合"
      "开发的多模态大语言模型。图片中有什么请描述这张的内容一个和了在我们";

std::vector<std::string> split_spaces(std::string_view s)
{
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        size_t j = std::min(s.find(' ', i), s.size());
        if (j > i) out.emplace_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

std::vector<std::string> split_utf8_chars(std::string_view s)
{
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        out.emplace_back(s.substr(i, len));
        i += len;
    }
    return out;
}

// Pre-tokens of the built-in corpus with integer frequencies (integers keep training exact).
std::vector<std::pair<std::string, int64_t>> corpus()
{
    std::vector<std::pair<std::string, int64_t>> words;
    std::unordered_set<std::string> seen;
    auto add = [&](std::string w, int64_t f) {
        if (f > 0 && seen.insert(w).second) words.emplace_back(std::move(w), f);
    };
    int rank = 0;
    for (const auto& w : split_spaces(kEnglishWords)) {
        const int64_t f = 10'000'000 / (rank++ + 10); // Zipf
        std::string cap = w;
        cap[0] = char(std::toupper(static_cast<unsigned char>(cap[0])));
        add(" " + w, f);
        add(w, f / 6);
        add(" " + cap, f / 8);
        add(cap, f / 12);
    }
    for (const char* s : kFrequentSymbols) add(s, 400'000);
    for (const auto& ch : split_utf8_chars(kChineseText))
        if (static_cast<unsigned char>(ch[0]) >= 0x80) add(ch, 60'000);
    return words;
}

// Learns up to max_merges merges over the given words (each a sequence of initial symbols):
// repeatedly the most frequent adjacent pair (ties: the smallest symbol ids) whose concatenation
// is not a symbol yet. Returns the merges in rank order.
std::vector<std::pair<std::string, std::string>>
train_bpe(const std::vector<std::pair<std::vector<std::string>, int64_t>>& corpus_words,
          size_t max_merges)
{
    std::vector<std::string> text;
    std::unordered_map<std::string, int32_t> ids;
    auto intern = [&](const std::string& s) {
        auto [it, fresh] = ids.emplace(s, int32_t(text.size()));
        if (fresh) text.push_back(s);
        return it->second;
    };
    struct Word
    {
        std::vector<int32_t> syms;
        int64_t freq;
    };
    std::vector<Word> words;
    for (const auto& [syms, freq] : corpus_words) {
        Word w {{}, freq};
        for (const auto& s : syms) w.syms.push_back(intern(s));
        words.push_back(std::move(w));
    }
    auto key = [](int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); };
    std::unordered_map<uint64_t, int64_t> counts;
    auto count_word = [&](const Word& w, int64_t sign) {
        for (size_t i = 0; i + 1 < w.syms.size(); ++i) {
            auto& c = counts[key(w.syms[i], w.syms[i + 1])];
            c += sign * w.freq;
        }
    };
    for (const auto& w : words) count_word(w, 1);

    std::vector<std::pair<std::string, std::string>> merges;
    std::unordered_set<uint64_t> banned;
    while (merges.size() < max_merges) {
        uint64_t best = 0;
        int64_t best_count = 0;
        for (const auto& [k, c] : counts)
            if (c > 0 && !banned.count(k) && (c > best_count || (c == best_count && k < best)))
                best = k, best_count = c;
        if (best_count == 0) break;
        const int32_t a = int32_t(best >> 32), b = int32_t(best & 0xFFFFFFFF);
        const std::string merged = text[size_t(a)] + text[size_t(b)];
        if (ids.count(merged)) { // another split of the same string came first
            banned.insert(best);
            continue;
        }
        merges.emplace_back(text[size_t(a)], text[size_t(b)]);
        const int32_t ab = intern(merged);
        for (auto& w : words) {
            bool has = false;
            for (size_t i = 0; i + 1 < w.syms.size() && !has; ++i)
                has = w.syms[i] == a && w.syms[i + 1] == b;
            if (!has) continue;
            count_word(w, -1);
            std::vector<int32_t> out;
            for (size_t i = 0; i < w.syms.size(); ++i) {
                if (i + 1 < w.syms.size() && w.syms[i] == a && w.syms[i + 1] == b) {
                    out.push_back(ab);
                    ++i;
                } else {
                    out.push_back(w.syms[i]);
                }
            }
            w.syms = std::move(out);
            count_word(w, 1);
        }
        counts.erase(best);
    }
    return merges;
}

// Fills `merges` up to `target` with merges of a word-like symbol (from `heads`) and a
// continuation (from `tails`) into a string that is not a symbol yet. Deterministic.
void fill_merges(std::vector<std::pair<std::string, std::string>>& merges,
                 std::unordered_set<std::string>& symbols, const std::vector<std::string>& heads,
                 const std::vector<std::string>& tails, size_t target)
{
    if (heads.empty() || tails.empty()) return;
    uint64_t state = 0x5EED5EED5EEDull;
    size_t misses = 0;
    while (merges.size() < target) {
        const auto& a = heads[splitmix64(state) % heads.size()];
        const auto& b = tails[splitmix64(state) % tails.size()];
        std::string ab = a + b;
        if (!symbols.insert(ab).second) {
            if (++misses > 100 * target)
                throw Error(ErrorKind::internal, "make-random: ran out of merges");
            continue;
        }
        merges.emplace_back(a, b);
    }
}

bool is_ascii_letters(std::string_view s)
{
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalpha(static_cast<unsigned char>(c));
    });
}

// ---------------------------------------------------------------------------------------------
// Qwen2: byte-level BPE (docs/tokenizer.md §6) + 31 added tokens (§2)

struct AddedToken
{
    int32_t id;
    std::string content;
    bool special;
};

json added_token_json(const AddedToken& t)
{
    return {{"content", t.content}, {"lstrip", false},      {"normalized", false},
            {"rstrip", false},      {"single_word", false}, {"special", t.special}};
}

// GPT-2's byte -> unicode map: printable bytes map to themselves, the other 68 in order to
// U+0100, U+0101, ...; `order` lists the bytes in vocabulary order (printable ones first).
void byte_to_unicode(std::string (&map)[256], std::vector<int>& order)
{
    auto utf8 = [](uint32_t cp) {
        std::string s;
        if (cp < 0x80) {
            s += char(cp);
        } else {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        }
        return s;
    };
    bool printable[256] = {};
    for (int b = 0; b < 256; ++b) {
        printable[b] = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable[b]) {
            map[b] = utf8(uint32_t(b));
            order.push_back(b);
        }
    }
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b)
        if (!printable[b]) {
            map[b] = utf8(next++);
            order.push_back(b);
        }
}

void write_qwen2_tokenizer(const fs::path& dir, int32_t vocab_size)
{
    // docs/tokenizer.md §2, in id order from <|endoftext|> = 151643.
    const auto added = split_spaces(
        "<|endoftext|> <|im_start|> <|im_end|> <|object_ref_start|> <|object_ref_end|> "
        "<|box_start|> <|box_end|> <|quad_start|> <|quad_end|> <|vision_start|> <|vision_end|> "
        "<|vision_pad|> <|image_pad|> <|video_pad|> <tool_call> </tool_call> <|fim_prefix|> "
        "<|fim_middle|> <|fim_suffix|> <|fim_pad|> <|repo_name|> <|file_sep|> <img> </img> "
        "<IMG_CONTEXT> <quad> </quad> <ref> </ref> <box> </box>");
    // <tool_call> .. <|file_sep|> (151657-151664) are the only ones not marked special.
    auto is_special = [](int32_t i) { return i < 14 || i > 21; };
    const int32_t n_added = int32_t(added.size());
    const int32_t n_bpe = vocab_size - n_added; // 151643 for the real vocabulary
    if (n_bpe < 256) throw Error(ErrorKind::internal, "make-random: vocabulary too small");

    std::string byte_map[256];
    std::vector<int> order;
    byte_to_unicode(byte_map, order);
    std::vector<std::pair<std::vector<std::string>, int64_t>> words;
    for (const auto& [w, f] : corpus()) {
        std::vector<std::string> syms;
        for (unsigned char c : w) syms.push_back(byte_map[c]);
        words.emplace_back(std::move(syms), f);
    }
    const size_t n_merges = size_t(n_bpe - 256);
    auto merges = train_bpe(words, n_merges);

    std::unordered_set<std::string> symbols;
    for (int b : order) symbols.insert(byte_map[b]);
    std::vector<std::string> heads, tails;
    for (const auto& [a, b] : merges) {
        const std::string ab = a + b;
        symbols.insert(ab);
        // "Ġ" is U+0120, two bytes: a head is Ġ + letters or letters; a tail is letters.
        const bool spaced = ab.rfind("\xC4\xA0", 0) == 0;
        if (is_ascii_letters(spaced ? std::string_view(ab).substr(2) : std::string_view(ab)))
            heads.push_back(ab);
        if (!spaced && is_ascii_letters(ab) && std::islower(static_cast<unsigned char>(ab[0])))
            tails.push_back(ab);
    }
    for (char c = 'a'; c <= 'z'; ++c) tails.emplace_back(1, c);
    fill_merges(merges, symbols, heads, tails, n_merges);

    json vocab = json::object();
    for (size_t i = 0; i < order.size(); ++i) vocab[byte_map[order[i]]] = int32_t(i);
    std::string merges_txt = "#version: 0.2\n";
    for (size_t i = 0; i < merges.size(); ++i) {
        vocab[merges[i].first + merges[i].second] = int32_t(256 + i);
        merges_txt += merges[i].first + " " + merges[i].second + "\n";
    }
    write_file(dir / "vocab.json", vocab.dump(2) + "\n");
    write_file(dir / "merges.txt", merges_txt);

    json decoder = json::object(), added_json = json::object(), extra = json::array();
    for (int32_t i = 0; i < n_added; ++i) {
        const AddedToken t {n_bpe + i, added[i], is_special(i)};
        decoder[std::to_string(t.id)] = added_token_json(t);
        added_json[t.content] = t.id;
        if (t.special && i > 0) extra.push_back(t.content); // all but <|endoftext|> (the pad)
    }
    json config = {
        {"add_prefix_space", false},
        {"added_tokens_decoder", decoder},
        {"additional_special_tokens", extra},
        {"bos_token", nullptr},
        {"clean_up_tokenization_spaces", false},
        {"eos_token", "<|im_end|>"},
        {"errors", "replace"},
        {"model_max_length", 8192},
        {"pad_token", "<|endoftext|>"},
        {"split_special_tokens", false},
        {"tokenizer_class", "Qwen2Tokenizer"},
        {"unk_token", nullptr},
    };
    write_json(dir / "tokenizer_config.json", config);
    write_json(dir / "added_tokens.json", added_json);
    write_json(dir / "special_tokens_map.json",
               {{"additional_special_tokens", extra},
                {"eos_token", special_token_json("<|im_end|>")},
                {"pad_token", special_token_json("<|endoftext|>")}});
}

// ---------------------------------------------------------------------------------------------
// InternLM2: SentencePiece BPE tokenizer.model (docs/tokenizer.md §7) + special tokens (§3)

// Protocol-buffer wire format, enough for sentencepiece_model.proto.
struct Proto
{
    std::string bytes;
    void varint(uint64_t v)
    {
        while (v >= 0x80) {
            bytes += char(0x80 | (v & 0x7F));
            v >>= 7;
        }
        bytes += char(v);
    }
    void tag(int field, int wire) { varint(uint64_t(field) << 3 | uint64_t(wire)); }
    void int_field(int field, int64_t v) // int32/enum/bool; negatives as 10-byte varints
    {
        tag(field, 0);
        varint(uint64_t(v));
    }
    void bytes_field(int field, std::string_view s)
    {
        tag(field, 2);
        varint(s.size());
        bytes += s;
    }
    void float_field(int field, float f)
    {
        tag(field, 5);
        uint32_t u;
        std::memcpy(&u, &f, 4);
        for (int i = 0; i < 4; ++i) bytes += char((u >> (8 * i)) & 0xFF);
    }
};

enum PieceType { normal = 1, unknown = 2, control = 3, user_defined = 4, byte_piece = 6 };

void write_internlm2_tokenizer(const fs::path& dir, int32_t vocab_size)
{
    static const char* const relabelled[]
        = {"<|plugin|>",       "<|interpreter|>", "<|action_end|>",
           "<|action_start|>", "<|im_end|>",      "<|im_start|>"};
    static const char* const internvl_added[]
        = {"<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>",
           "<ref>", "</ref>", "<box>",         "</box>"};
    const int32_t n_pieces
        = vocab_size - int32_t(std::size(internvl_added)); // 92544 for the real one
    // The real model ends with 147 USER_DEFINED [UNUSED_TOKEN_0..146]; the last six are relabelled.
    const int32_t n_unused = n_pieces >= 10000 ? 147 : 6;

    // Single characters: printable ASCII, the escaped space, newline, tab and the corpus'
    // characters; everything else falls back to <0xNN> byte pieces.
    const std::string space = "\xE2\x96\x81"; // ▁
    std::vector<std::pair<std::vector<std::string>, int64_t>> words;
    std::vector<std::string> chars;
    std::unordered_set<std::string> char_set;
    auto add_char = [&](const std::string& c) {
        if (char_set.insert(c).second) chars.push_back(c);
    };
    add_char(space);
    add_char("\n");
    add_char("\t");
    for (int c = 33; c < 127; ++c) add_char(std::string(1, char(c)));
    for (const auto& [w, f] : corpus()) {
        std::vector<std::string> syms;
        for (auto& c : split_utf8_chars(w)) {
            if (c == " ") c = space;
            add_char(c);
            syms.push_back(c);
        }
        words.emplace_back(std::move(syms), f);
    }
    const int64_t budget = int64_t(n_pieces) - 3 - 256 - int64_t(chars.size()) - n_unused;
    if (budget < 0) throw Error(ErrorKind::internal, "make-random: vocabulary too small");
    auto merges = train_bpe(words, size_t(budget));
    std::unordered_set<std::string> symbols(char_set.begin(), char_set.end());
    std::vector<std::string> heads, tails;
    for (const auto& [a, b] : merges) {
        const std::string ab = a + b;
        symbols.insert(ab);
        const bool spaced = ab.rfind(space, 0) == 0;
        if (is_ascii_letters(spaced ? std::string_view(ab).substr(space.size())
                                    : std::string_view(ab)))
            heads.push_back(ab);
        if (!spaced && is_ascii_letters(ab) && std::islower(static_cast<unsigned char>(ab[0])))
            tails.push_back(ab);
    }
    for (char c = 'a'; c <= 'z'; ++c) tails.emplace_back(1, c);
    const size_t n_trained = merges.size();
    fill_merges(merges, symbols, heads, tails, size_t(budget));

    // Pieces in id order; scores fall with the id so that SentencePiece's BPE (highest score
    // first) replays the merges in training order.
    Proto model;
    int32_t next_id = 0;
    auto piece = [&](std::string_view text, float score, PieceType type) {
        Proto p;
        p.bytes_field(1, text);
        p.float_field(2, score);
        p.int_field(3, type);
        model.bytes_field(1, p.bytes);
        ++next_id;
    };
    piece("<unk>", 0.f, unknown);
    piece("<s>", 0.f, control);
    piece("</s>", 0.f, control);
    for (int b = 0; b < 256; ++b) piece(strfmt("<0x%02X>", b), 0.f, byte_piece);
    float score = 0.f;
    for (size_t i = 0; i < n_trained; ++i)
        piece(merges[i].first + merges[i].second, score -= 1.f, normal);
    for (const auto& c : chars) piece(c, score -= 1.f, normal);
    for (size_t i = n_trained; i < merges.size(); ++i)
        piece(merges[i].first + merges[i].second, score -= 1.f, normal);
    for (int32_t i = 0; i < n_unused; ++i)
        piece(strfmt("[UNUSED_TOKEN_%d]", 147 - n_unused + i), 0.f, user_defined);
    if (next_id != n_pieces)
        throw Error(ErrorKind::internal,
                    strfmt("make-random: %d pieces, expected %d", next_id, n_pieces));

    Proto trainer;
    trainer.int_field(3, 2); // model_type BPE
    trainer.int_field(4, n_pieces);
    trainer.int_field(35, 1); // byte_fallback
    trainer.int_field(40, 0); // unk_id
    trainer.int_field(41, 1); // bos_id
    trainer.int_field(42, 2); // eos_id
    trainer.int_field(43, -1); // pad_id
    model.bytes_field(2, trainer.bytes);
    Proto normalizer;
    normalizer.bytes_field(1, "identity");
    normalizer.bytes_field(2, "");
    normalizer.int_field(3, 0); // add_dummy_prefix (the default is true)
    normalizer.int_field(4, 0); // remove_extra_whitespaces
    normalizer.int_field(5, 1); // escape_whitespaces
    model.bytes_field(3, normalizer.bytes);
    write_file(dir / "tokenizer.model", model.bytes);

    json decoder = json::object(), added_json = json::object(), extra = json::array();
    const std::pair<int32_t, const char*> specials[] = {{0, "<unk>"}, {1, "<s>"}, {2, "</s>"}};
    for (const auto& [id, text] : specials)
        decoder[std::to_string(id)] = added_token_json({id, text, true});
    for (int32_t i = 0; i < int32_t(std::size(relabelled)); ++i) {
        const int32_t id = n_pieces - int32_t(std::size(relabelled)) + i;
        decoder[std::to_string(id)] = added_token_json({id, relabelled[i], true});
        extra.push_back(relabelled[i]);
    }
    for (int32_t i = 0; i < int32_t(std::size(internvl_added)); ++i) {
        const int32_t id = n_pieces + i;
        decoder[std::to_string(id)] = added_token_json({id, internvl_added[i], true});
        added_json[internvl_added[i]] = id;
        extra.push_back(internvl_added[i]);
    }
    json config = {
        {"add_bos_token", true},
        {"add_eos_token", false},
        {"added_tokens_decoder", decoder},
        {"additional_special_tokens", extra},
        {"auto_map", {{"AutoTokenizer", {"tokenization_internlm2.InternLM2Tokenizer", nullptr}}}},
        {"bos_token", "<s>"},
        {"clean_up_tokenization_spaces", false},
        {"eos_token", "</s>"},
        {"model_max_length", 8192},
        {"pad_token", "</s>"},
        {"tokenizer_class", "InternLM2Tokenizer"},
        {"unk_token", "<unk>"},
    };
    write_json(dir / "tokenizer_config.json", config);
    write_json(dir / "added_tokens.json", added_json);
    write_json(dir / "special_tokens_map.json",
               {{"additional_special_tokens", extra},
                {"bos_token", special_token_json("<s>")},
                {"eos_token", special_token_json("</s>")},
                {"pad_token", special_token_json("</s>")},
                {"unk_token", special_token_json("<unk>")}});
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
            "                      internvl2_5-2b (InternLM2), or tiny-qwen2 / tiny-internlm2\n"
            "                      (the golden tiny models' sizes)\n"
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
        write_qwen2_tokenizer(out, preset.vocab);
    else
        write_internlm2_tokenizer(out, preset.vocab);
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
