// Export for llama.cpp: an InternVL checkpoint as the two GGUF files llama.cpp runs InternVL
// from, the language model with its tokenizer and the mmproj of its clip (InternViT + mlp1).
// What goes where is what llama.cpp's converter writes for these models (tensor names and
// layouts, metadata, tokenizer arrays), the types are llama-quantize's (QuantMix) and the
// bytes ggml's (cpu::quantize_row). Each tensor is produced in chunks of rows while the writer
// streams it out, so a few MiB of output are in memory at a time.
#include "model/arch.h"
#include "model/cpu/ops.h"
#include "model/gguf.h"
#include "model/network-impl.h"
#include "model/tokenizer-impl.h"

#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <unordered_map>

namespace iris::model {

namespace {

namespace fs = std::filesystem;
using cpu::WeightType;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Output types

// A type of QuantizeOptions: a llama-quantize mix, or one type for every matrix.
struct OutType
{
    std::string name; // as llama.cpp spells it: "q4_K_M", "f16"
    uint32_t ftype = 0; // llama_ftype, stored as general.file_type
    std::optional<QuantMix> mix;
    WeightType plain = WeightType::f16; // without a mix

    // "Q4_K_M", as the converter's file names spell the type.
    std::string label() const
    {
        std::string s = name;
        for (char& ch : s) ch = char(std::toupper(static_cast<unsigned char>(ch)));
        return s;
    }
};

struct TypeSpec
{
    const char* name;
    uint32_t ftype;
    bool mix;
    WeightType plain;
};

constexpr TypeSpec kLlmTypes[] = {
    {"q8_0", 7, true, WeightType::q8_0},    {"q4_0", 2, true, WeightType::q4_0},
    {"q4_1", 3, true, WeightType::q4_1},    {"q5_0", 8, true, WeightType::q5_0},
    {"q5_1", 9, true, WeightType::q5_1},    {"iq4_nl", 25, true, WeightType::iq4_nl},
    {"q4_K_S", 14, true, WeightType::q4_K}, {"q4_K_M", 15, true, WeightType::q4_K},
    {"q5_K_S", 16, true, WeightType::q5_K}, {"q5_K_M", 17, true, WeightType::q5_K},
    {"q6_K", 18, true, WeightType::q6_K},   {"f16", 1, false, WeightType::f16},
    {"bf16", 32, false, WeightType::bf16},  {"f32", 0, false, WeightType::f32},
};
constexpr TypeSpec kMmprojTypes[] = {
    {"f16", 1, false, WeightType::f16},
    {"f32", 0, false, WeightType::f32},
    {"q8_0", 7, false, WeightType::q8_0},
};

bool same_name(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x))
                   == std::tolower(static_cast<unsigned char>(y));
           });
}

template<size_t N>
OutType parse_type(std::string_view name, const TypeSpec (&specs)[N], const char* what)
{
    for (const TypeSpec& s : specs)
        if (same_name(name, s.name)) {
            OutType t {s.name, s.ftype, std::nullopt, s.plain};
            if (s.mix) t.mix = QuantMix::parse(s.name);
            return t;
        }
    std::string names;
    for (const TypeSpec& s : specs) names += std::string(names.empty() ? "" : ", ") + s.name;
    throw Error(ErrorKind::invalid_argument,
                strfmt("unknown %s type \"%s\"; use one of %s", what, std::string(name).c_str(),
                       names.c_str()));
}

// gguf-py's size label: the parameter count with K/M/B/T and at least two digits ("630M",
// "2.2B"), rounding half to even like Python's round().
std::string size_label(uint64_t n)
{
    const double x = double(n);
    double scaled = x * 1e-3;
    char suffix = 'K';
    if (x > 1e12)
        scaled = x * 1e-12, suffix = 'T';
    else if (x > 1e9)
        scaled = x * 1e-9, suffix = 'B';
    else if (x > 1e6)
        scaled = x * 1e-6, suffix = 'M';
    const double whole = std::nearbyint(scaled);
    int digits = 0;
    for (double v = whole; v >= 1; v /= 10) ++digits;
    return strfmt("%.*f%c", std::max(2 - digits, 0), scaled, suffix);
}

// ---------------------------------------------------------------------------------------------
// Tensors

std::string shape_str(const std::vector<int64_t>& shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// One tensor of an output file: `rows` rows of `cols` values stored as `type`, output row r
// being row src_row(r) (r when empty) of the source tensor viewed as rows of `cols` values.
struct Item
{
    std::string name;
    WeightType type;
    std::vector<int64_t> ne; // GGUF order, innermost first
    const TensorInfo* src = nullptr;
    int64_t rows = 0, cols = 0;
    std::function<int64_t(int64_t)> src_row;

    size_t nbytes() const { return size_t(rows) * cpu::weight_row_bytes(type, cols); }
};

// Source row `row` of t (rows of `cols` values) as f32. The mapping need not be aligned.
void read_row(const TensorInfo& t, int64_t row, int64_t cols, float* out)
{
    const uint8_t* p = t.data + size_t(row) * size_t(cols) * dtype_size(t.dtype);
    if (t.dtype == DType::f32) {
        std::memcpy(out, p, size_t(cols) * sizeof(float));
        return;
    }
    const bool bf16 = t.dtype == DType::bf16;
    for (int64_t i = 0; i < cols; ++i) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = bf16 ? bf16_to_f32(bits) : f16_to_f32(bits);
    }
}

// The tensors of one output file, checked against the config as they are added.
class Plan
{
public:
    Plan(const WeightSet& weights, std::string origin)
        : weights_(weights)
        , origin_(std::move(origin))
    { }

    const TensorInfo& need(const std::string& name, const std::vector<int64_t>& shape) const
    {
        const TensorInfo* t = weights_.find(name);
        if (!t) throw Error(ErrorKind::not_found, origin_ + ": tensor " + name + " is missing");
        if (t->shape != shape)
            throw Error(ErrorKind::invalid_input,
                        strfmt("%s: tensor %s has shape %s, expected %s from config.json",
                               origin_.c_str(), name.c_str(), shape_str(t->shape).c_str(),
                               shape_str(shape).c_str()));
        if (t->dtype != DType::f32 && t->dtype != DType::bf16 && t->dtype != DType::f16)
            throw Error(ErrorKind::unsupported,
                        strfmt("%s: tensor %s has dtype %s; weights must be F32, BF16 or F16",
                               origin_.c_str(), name.c_str(), dtype_name(t->dtype)));
        return *t;
    }
    bool has(const std::string& name) const { return weights_.find(name) != nullptr; }

    // The source tensor `src` as is (ne: its shape reversed).
    void add(std::string name, const std::string& src, const std::vector<int64_t>& shape,
             WeightType type)
    {
        const TensorInfo& t = need(src, shape);
        const int64_t cols = shape.back();
        items_.push_back({std::move(name),
                          type,
                          std::vector<int64_t>(shape.rbegin(), shape.rend()),
                          &t,
                          t.numel() / cols,
                          cols,
                          {}});
    }
    // Rows picked from a source matrix (a split, a permutation): ne = {cols, rows}, or {cols}
    // for the rows of a bias (cols = 1).
    void add_rows(std::string name, const TensorInfo& src, int64_t rows, int64_t cols,
                  WeightType type, std::function<int64_t(int64_t)> src_row)
    {
        std::vector<int64_t> ne
            = cols == 1 ? std::vector<int64_t> {rows} : std::vector<int64_t> {cols, rows};
        items_.push_back(
            {std::move(name), type, std::move(ne), &src, rows, cols, std::move(src_row)});
    }

    const std::vector<Item>& items() const { return items_; }
    uint64_t params() const
    {
        uint64_t n = 0;
        for (const Item& it : items_) n += uint64_t(it.rows) * uint64_t(it.cols);
        return n;
    }
    uint64_t bytes() const
    {
        uint64_t n = 0;
        for (const Item& it : items_) n += it.nbytes();
        return n;
    }

private:
    const WeightSet& weights_;
    std::string origin_;
    std::vector<Item> items_;
};

// The bytes written over both files, for QuantizeOptions::progress.
struct Progress
{
    const std::function<void(float, const char*)>& fn;
    uint64_t total = 0, done = 0;
    void add(uint64_t n, const std::string& what)
    {
        done += n;
        if (fn && total) fn(float(double(done) / double(total)), what.c_str());
    }
};

// Streams an item: chunks of about 4 MiB of output, each chunk's rows quantized in parallel.
void stream_item(const Item& it, Progress& progress, const GgufWriter::Emit& emit)
{
    const size_t rb = cpu::weight_row_bytes(it.type, it.cols);
    const int64_t chunk
        = std::clamp<int64_t>(int64_t((size_t(4) << 20) / std::max<size_t>(rb, 1)), 1, it.rows);
    std::vector<uint8_t> buf(size_t(chunk) * rb);
    for (int64_t r0 = 0; r0 < it.rows; r0 += chunk) {
        const int64_t n = std::min(chunk, it.rows - r0);
        cpu::parallel_range(n, 4, [&](int64_t lo, int64_t hi) {
            std::vector<float> row(size_t(it.cols));
            for (int64_t i = lo; i < hi; ++i) {
                const int64_t r = r0 + i;
                read_row(*it.src, it.src_row ? it.src_row(r) : r, it.cols, row.data());
                cpu::quantize_row(it.type, row.data(), it.cols, buf.data() + size_t(i) * rb);
            }
        });
        emit(buf.data(), size_t(n) * rb);
        progress.add(uint64_t(n) * rb, it.name);
    }
}

void add_items(GgufWriter& w, const Plan& plan, Progress& progress)
{
    for (const Item& it : plan.items())
        w.add_tensor_stream(it.name, it.type, it.ne, [&it, &progress](const GgufWriter::Emit& e) {
            stream_item(it, progress, e);
        });
}

// ---------------------------------------------------------------------------------------------
// The language model

// What llama.cpp's converter writes for a matrix of the f16/bf16/f32 file types, or what
// llama-quantize gives it for a mix.
WeightType llm_matrix_type(const OutType& t, const TensorRole& role, int64_t cols, int n_gqa)
{
    return t.mix ? t.mix->type_for(role, cols, n_gqa) : t.plain;
}

// InternLM2's wqkv rows are [kv group][q_0 .. q_{G-1}, k, v][D]. The converter splits them
// into attn_q / attn_k / attn_v and permutes the q and k rows of each head from the rotate-half
// layout (pairs (i, i + D/2)) to GGML's interleaved one (pairs (2i, 2i + 1)): output row 2i + s
// of a head is its source row s·D/2 + i.
int64_t rope_interleave(int64_t j, int64_t d)
{
    return (j % 2) * (d / 2) + j / 2;
}

void plan_llm(Plan& p, const LlmConfig& c, const OutType& t)
{
    const int64_t h = c.hidden_size, f = c.intermediate_size, d = c.head_dim, vocab = c.vocab_size;
    const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, g = nh / nkv;
    const int nl = c.num_hidden_layers;
    const int n_gqa = int(g);
    const bool internlm2 = c.arch == LlmArch::internlm2;
    if (h <= 0 || f <= 0 || vocab <= 0 || nl <= 0 || nh <= 0 || nkv <= 0 || nh % nkv != 0 || d <= 0
        || d % 2 != 0 || nh * d != h)
        throw Error(ErrorKind::invalid_input, "llm_config: inconsistent sizes");
    if (internlm2 && c.attention_bias)
        throw Error(ErrorKind::unsupported,
                    "InternLM2 with attention biases (llm_config.bias true): llama.cpp's internlm2 "
                    "has no attention output bias and its converter cannot split wqkv.bias");
    const std::span<const TensorName> names = llm_arch(c.arch).tensors;
    auto hf = [&](const char* pattern, int layer = 0) {
        return checkpoint_name(names, pattern, layer);
    };
    const std::string head = hf("output.weight"), embed = hf("token_embd.weight");
    const bool tied = !p.has(head);
    auto role = [nl](TensorRole::Kind kind, int layer = 0) { return TensorRole {kind, layer, nl}; };
    auto matrix = [&](const char* pattern, int l, std::vector<int64_t> shape, TensorRole r) {
        p.add(layer_name(pattern, l), hf(pattern, l), shape,
              llm_matrix_type(t, r, shape.back(), n_gqa));
    };
    auto vec = [&](const char* pattern, int l, int64_t n) {
        p.add(layer_name(pattern, l), hf(pattern, l), {n}, WeightType::f32);
    };

    matrix("token_embd.weight", 0, {vocab, h},
           role(tied ? TensorRole::output : TensorRole::token_embd));
    for (int l = 0; l < nl; ++l) {
        vec("blk.%d.attn_norm.weight", l, h);
        if (internlm2) {
            const TensorInfo& qkv
                = p.need(hf("blk.%d.attn_qkv.weight", l), {(nh + 2 * nkv) * d, h});
            auto type
                = [&](TensorRole::Kind k) { return llm_matrix_type(t, role(k, l), h, n_gqa); };
            p.add_rows(layer_name("blk.%d.attn_q.weight", l), qkv, nh * d, h,
                       type(TensorRole::attn_q), [=](int64_t r) {
                           const int64_t head_q = r / d, kv = head_q / g, slot = head_q % g;
                           return (kv * (g + 2) + slot) * d + rope_interleave(r % d, d);
                       });
            p.add_rows(
                layer_name("blk.%d.attn_k.weight", l), qkv, nkv * d, h, type(TensorRole::attn_k),
                [=](int64_t r) { return ((r / d) * (g + 2) + g) * d + rope_interleave(r % d, d); });
            p.add_rows(layer_name("blk.%d.attn_v.weight", l), qkv, nkv * d, h,
                       type(TensorRole::attn_v),
                       [=](int64_t r) { return ((r / d) * (g + 2) + g + 1) * d + r % d; });
        } else {
            for (auto [weight, bias, rows, kind] :
                 {std::tuple {"blk.%d.attn_q.weight", "blk.%d.attn_q.bias", nh * d,
                              TensorRole::attn_q},
                  std::tuple {"blk.%d.attn_k.weight", "blk.%d.attn_k.bias", nkv * d,
                              TensorRole::attn_k},
                  std::tuple {"blk.%d.attn_v.weight", "blk.%d.attn_v.bias", nkv * d,
                              TensorRole::attn_v}}) {
                matrix(weight, l, {rows, h}, role(kind, l));
                vec(bias, l, rows);
            }
        }
        matrix("blk.%d.attn_output.weight", l, {h, nh * d}, role(TensorRole::attn_output, l));
        vec("blk.%d.ffn_norm.weight", l, h);
        matrix("blk.%d.ffn_gate.weight", l, {f, h}, role(TensorRole::ffn_gate, l));
        matrix("blk.%d.ffn_up.weight", l, {f, h}, role(TensorRole::ffn_up, l));
        matrix("blk.%d.ffn_down.weight", l, {h, f}, role(TensorRole::ffn_down, l));
    }
    vec("output_norm.weight", 0, h);
    if (!tied) {
        matrix("output.weight", 0, {vocab, h}, role(TensorRole::output));
    } else if (internlm2) {
        // llama.cpp's internlm2 requires output.weight (qwen2 falls back to token_embd itself).
        IRIS_LOG_WARN("%s is absent: writing the input embedding as output.weight", head.c_str());
        p.add("output.weight", embed, {vocab, h},
              llm_matrix_type(t, role(TensorRole::output), h, n_gqa));
    }
}

void set_llm_metadata(GgufWriter& w, const LlmConfig& c, const json& llm_json,
                      const std::string& name, const OutType& t, uint64_t params)
{
    const std::string arch = c.arch == LlmArch::internlm2 ? "internlm2" : "qwen2";
    w.set_string("general.architecture", arch);
    w.set_string("general.type", "model");
    w.set_string("general.name", name);
    w.set_string("general.size_label", size_label(params));
    w.set_u32(arch + ".block_count", uint32_t(c.num_hidden_layers));
    w.set_u32(arch + ".context_length", uint32_t(c.max_position_embeddings));
    w.set_u32(arch + ".embedding_length", uint32_t(c.hidden_size));
    w.set_u32(arch + ".feed_forward_length", uint32_t(c.intermediate_size));
    w.set_u32(arch + ".attention.head_count", uint32_t(c.num_attention_heads));
    w.set_u32(arch + ".attention.head_count_kv", uint32_t(c.num_key_value_heads));
    // Dynamic NTK has no GGUF form: the converter writes nothing for it (llama.cpp then runs
    // plain RoPE, which it is below max_position_embeddings).
    if (c.rope_scaling_type == "linear") {
        w.set_string(arch + ".rope.scaling.type", "linear");
        w.set_f32(arch + ".rope.scaling.factor", c.rope_scaling_factor);
    }
    w.set_f32(arch + ".rope.freq_base", c.rope_theta);
    w.set_f32(arch + ".attention.layer_norm_rms_epsilon", c.rms_norm_eps);
    if (llm_json.contains("head_dim") && llm_json["head_dim"].is_number_integer()) {
        w.set_u32(arch + ".attention.key_length", uint32_t(c.head_dim));
        w.set_u32(arch + ".attention.value_length", uint32_t(c.head_dim));
    }
    w.set_u32("general.file_type", t.ftype);
    w.set_u32("general.quantization_version", 2);
}

// ---------------------------------------------------------------------------------------------
// Tokenizer metadata

json read_json_file(const std::string& path)
{
    const std::string text = detail::read_file(path);
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) throw Error(ErrorKind::invalid_input, "'" + path + "' is not valid JSON");
    return j;
}

// Added tokens the converter marks as control although not flagged special (<|...|> and the
// like).
bool looks_special(std::string_view t)
{
    auto wrapped = [&](std::string_view a, std::string_view b) {
        return t.size() >= a.size() + b.size() && t.starts_with(a) && t.ends_with(b);
    };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>")
        || wrapped("<\uFF5C", "\uFF5C>") || wrapped("<unused", ">");
}

std::string replace_all(std::string s, std::string_view from, std::string_view to)
{
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
    return s;
}

// merges as the converter reads them: tokenizer.json's model.merges ("a b" strings, or pairs
// whose spaces become U+0120), else merges.txt without its "#version" line.
std::vector<std::string> read_merges(const std::string& dir)
{
    std::vector<std::string> merges;
    const std::string tj = detail::path_join(dir, "tokenizer.json");
    if (detail::file_exists(tj)) {
        const json j = read_json_file(tj);
        const json* m = j.contains("model") && j["model"].contains("merges") ? &j["model"]["merges"]
                                                                             : nullptr;
        if (m && m->is_array() && !m->empty()) {
            for (const json& e : *m) {
                if (e.is_string()) {
                    merges.push_back(e.get<std::string>());
                } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
                    merges.push_back(replace_all(e[0].get<std::string>(), " ", "\u0120") + ' '
                                     + replace_all(e[1].get<std::string>(), " ", "\u0120"));
                } else {
                    throw Error(ErrorKind::invalid_input,
                                tj
                                    + ": model.merges has an entry that "
                                      "is neither \"a b\" nor [a, b]");
                }
            }
            return merges;
        }
    }
    const std::string path = detail::path_join(dir, "merges.txt");
    if (!detail::file_exists(path))
        throw Error(ErrorKind::not_found,
                    "no BPE merges in '" + dir + "': expected merges.txt or tokenizer.json");
    const std::string text = detail::read_file(path);
    size_t at = 0;
    for (bool first = true; at < text.size(); first = false) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        const std::string_view line = trim(std::string_view(text).substr(at, end - at));
        at = end + 1;
        if (first && line.starts_with('#')) continue;
        if (line.empty()) continue;
        std::vector<std::string_view> parts;
        for (size_t i = 0; i < line.size();) {
            while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
            size_t j = i;
            while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
            if (j > i) parts.push_back(line.substr(i, j - i));
            i = j;
        }
        if (parts.size() != 2) continue; // the converter skips malformed lines too
        merges.push_back(std::string(parts[0]) + ' ' + std::string(parts[1]));
    }
    return merges;
}

// NormalizerSpec.add_dummy_prefix of a SentencePiece model file (ModelProto field 3, its field
// 3; true when absent, the proto's default). libsentencepiece does not expose the proto
// without protobuf's headers, so the two fields are read from the wire format.
bool spm_add_dummy_prefix(const std::string& bytes, const std::string& origin)
{
    bool add_prefix = true;
    const std::string what = "'" + origin + "'";
    detail::proto_fields(bytes, 0, bytes.size(), what, [&](const detail::ProtoField& spec) {
        if (spec.number != 3 || spec.wire != 2) return;
        detail::proto_fields(bytes, spec.at, spec.end, what, [&](const detail::ProtoField& f) {
            if (f.number == 3 && f.wire == 0) add_prefix = f.value != 0;
        });
    });
    return add_prefix;
}

// The vocabulary arrays, one entry per id of the embedding.
struct Vocab
{
    std::vector<std::string> tokens;
    std::vector<float> scores; // SentencePiece only
    std::vector<int32_t> types;
};

// Qwen2 (gpt2 BPE): the byte-level vocabulary, added tokens as control (special) or
// user-defined tokens, and "[PAD<id>]" for ids without a token.
Vocab bpe_vocab(const detail::TokenizerBase& tok, int32_t n_vocab)
{
    Vocab v;
    v.tokens.resize(size_t(n_vocab));
    v.types.assign(size_t(n_vocab), detail::tk_unused);
    for (int32_t i = 0; i < n_vocab; ++i) {
        std::string text = i < tok.model_vocab_size() ? tok.token_text(i) : std::string();
        if (text.empty()) {
            v.tokens[size_t(i)] = strfmt("[PAD%d]", i);
        } else {
            v.tokens[size_t(i)] = std::move(text);
            v.types[size_t(i)] = detail::tk_normal;
        }
    }
    for (const detail::AddedToken& a : tok.added_tokens()) {
        const bool control = a.special || looks_special(a.content);
        // llama.cpp takes user-defined tokens as normalised text, where U+2581 is a space.
        v.tokens[size_t(a.id)] = control ? a.content : replace_all(a.content, "\u2581", " ");
        v.types[size_t(a.id)] = control ? detail::tk_control : detail::tk_user_defined;
    }
    return v;
}

// InternLM2 (SentencePiece): the pieces with their scores and kinds (a "\0" piece becomes
// U+1F409, which the converter substitutes so that llama.cpp does not read it as empty), then
// the added tokens by id with score -1000, control when special.
Vocab spm_vocab(const std::string& dir, const detail::TokenizerBase& tok, int32_t n_vocab)
{
    const std::string path = detail::path_join(dir, "tokenizer.model");
    sentencepiece::SentencePieceProcessor sp;
    if (const auto st = sp.Load(path); !st.ok())
        throw Error(ErrorKind::invalid_input,
                    "'" + path + "' is not a valid SentencePiece model: " + st.ToString());
    Vocab v;
    v.tokens.resize(size_t(n_vocab));
    v.scores.assign(size_t(n_vocab), -1000.f);
    v.types.assign(size_t(n_vocab), detail::tk_unused);
    const int n_pieces = std::min(sp.GetPieceSize(), n_vocab);
    for (int i = 0; i < n_vocab; ++i) {
        if (i >= n_pieces) {
            v.tokens[size_t(i)] = strfmt("[PAD%d]", i);
            continue;
        }
        const std::string piece = sp.IdToPiece(i);
        v.tokens[size_t(i)] = piece == std::string(1, '\0') ? "\U0001F409" : piece;
        v.scores[size_t(i)] = sp.GetScore(i);
        int32_t kind = detail::tk_normal;
        if (sp.IsUnknown(i))
            kind = detail::tk_unknown;
        else if (sp.IsControl(i))
            kind = detail::tk_control;
        else if (sp.IsUnused(i))
            kind = detail::tk_unused;
        else if (sp.IsByte(i))
            kind = detail::tk_byte;
        if (piece.starts_with("[UNUSED")) kind = detail::tk_unused;
        v.types[size_t(i)] = kind;
    }
    for (const detail::AddedToken& a : tok.added_tokens()) {
        v.tokens[size_t(a.id)] = a.content;
        v.scores[size_t(a.id)] = -1000.f;
        v.types[size_t(a.id)] = a.special ? detail::tk_control : detail::tk_user_defined;
    }
    return v;
}

// The special-token ids as the converter sets them from a checkpoint with a tokenizer.json:
// each *_token of tokenizer_config.json found among the added tokens (which tokenizer.json
// would list), else config.json's *_token_id at the top or in llm_config (InternVL's
// text_config); then add_bos/eos/sep_token and the chat template. (InternVL checkpoints ship no
// tokenizer.json, and the converter would then write no ids at all: llama.cpp would take token
// 11 as BOS and EOS of a gpt2 vocabulary.)
void set_special_tokens(GgufWriter& w, const std::string& dir, const json& config,
                        const detail::TokenizerBase& tok, int32_t n_vocab, bool chat_eos,
                        const std::string& fallback_template)
{
    std::unordered_map<std::string, int32_t> added;
    for (const auto& a : tok.added_tokens()) added.emplace(a.content, a.id);
    const json none = json::object();
    const json& llm = config.contains("llm_config") ? config.at("llm_config") : none;
    const std::string cfg_path = detail::path_join(dir, "tokenizer_config.json");
    const json cfg = detail::file_exists(cfg_path) ? read_json_file(cfg_path) : json::object();
    if (!cfg.is_object())
        throw Error(ErrorKind::invalid_input, "'" + cfg_path + "' is not a JSON object");

    // gguf-py has no key for cls, so the converter drops it.
    constexpr std::pair<const char*, const char*> kinds[] = {
        {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
    };
    std::vector<std::pair<std::string, int64_t>> ids;
    for (const auto& [kind, key] : kinds) {
        const std::string field = std::string(kind) + "_token";
        std::optional<int64_t> id;
        if (auto it = cfg.find(field); it != cfg.end()) {
            const json* content
                = it->is_object() && it->contains("content") ? &(*it)["content"] : &*it;
            if (content->is_string())
                if (auto a = added.find(content->get<std::string>()); a != added.end())
                    id = a->second;
        }
        for (const json* c : {&config, &llm}) {
            if (id) break;
            if (auto it = c->find(field + "_id"); it != c->end() && it->is_number_integer())
                id = it->get<int64_t>();
        }
        if (!id) continue;
        if (*id < 0 || *id >= n_vocab) {
            IRIS_LOG_WARN("%s: %s id %lld is outside the vocabulary (%d); not written", dir.c_str(),
                          field.c_str(), (long long)*id, n_vocab);
            continue;
        }
        ids.emplace_back(key, *id);
    }
    // InternLM2's converter ends chat models' turns at <|im_end|>, replacing the EOS.
    if (chat_eos)
        if (auto a = added.find("<|im_end|>"); a != added.end()) {
            auto eos = std::find_if(ids.begin(), ids.end(), [](const auto& e) {
                return e.first == "tokenizer.ggml.eos_token_id";
            });
            if (eos != ids.end())
                eos->second = a->second;
            else
                ids.emplace_back("tokenizer.ggml.eos_token_id", a->second);
        }
    for (const auto& [key, id] : ids) w.set_u32(key, uint32_t(id));

    for (const char* kind : {"bos", "eos", "sep"})
        if (auto it = cfg.find(std::string("add_") + kind + "_token");
            it != cfg.end() && it->is_boolean())
            w.set_bool(std::string("tokenizer.ggml.add_") + kind + "_token", it->get<bool>());

    // The template: tokenizer_config.json's, else chat_template.jinja or chat_template.json; a
    // list of named templates gives its "default" one. Without any, the fallback: llama.cpp's
    // mtmd tools refuse a model that has no template.
    json tmpl;
    if (detail::file_exists(cfg_path)) tmpl = cfg.value("chat_template", json());
    if (tmpl.is_null() && detail::file_exists(cfg_path)) {
        if (const std::string p = detail::path_join(dir, "chat_template.jinja");
            detail::file_exists(p))
            tmpl = detail::read_file(p);
        else if (const std::string q = detail::path_join(dir, "chat_template.json");
                 detail::file_exists(q))
            tmpl = read_json_file(q).value("chat_template", json());
    }
    if (tmpl.is_array())
        for (const json& e : tmpl)
            if (e.is_object() && e.value("name", "") == "default")
                tmpl = e.value("template", json());
    if (tmpl.is_string())
        w.set_string("tokenizer.chat_template", tmpl.get<std::string>());
    else if (!fallback_template.empty())
        w.set_string("tokenizer.chat_template", fallback_template);
}

void set_tokenizer(GgufWriter& w, const std::string& dir, const json& config, const LlmConfig& c,
                   const std::string& fallback_template)
{
    const bool spm = detail::file_exists(detail::path_join(dir, "tokenizer.model"));
    const bool internlm2 = c.arch == LlmArch::internlm2;
    if (internlm2 && !spm)
        throw Error(ErrorKind::not_found,
                    "'" + dir + "' has no tokenizer.model (InternLM2's SentencePiece tokenizer)");
    if (!internlm2 && spm)
        throw Error(ErrorKind::unsupported,
                    "'" + dir + "': a Qwen2 language model with a SentencePiece tokenizer.model");
    const std::unique_ptr<Tokenizer> loaded = Tokenizer::load(dir);
    const auto& tok = dynamic_cast<const detail::TokenizerBase&>(*loaded);
    const int32_t n_vocab = c.vocab_size;
    if (tok.model_vocab_size() > n_vocab)
        throw Error(
            ErrorKind::invalid_input,
            strfmt("'%s': the tokenizer has %d tokens, more than llm_config.vocab_size (%d)",
                   dir.c_str(), tok.model_vocab_size(), n_vocab));
    for (const auto& a : tok.added_tokens())
        if (a.id >= n_vocab)
            throw Error(ErrorKind::invalid_input,
                        strfmt("'%s': added token '%s' has id %d, outside llm_config.vocab_size "
                               "(%d)",
                               dir.c_str(), a.content.c_str(), a.id, n_vocab));

    Vocab v = internlm2 ? spm_vocab(dir, tok, n_vocab) : bpe_vocab(tok, n_vocab);
    // llama.cpp's loader aborts on a repeated token string.
    std::unordered_map<std::string_view, int32_t> seen;
    for (int32_t i = 0; i < n_vocab; ++i)
        if (auto [it, fresh] = seen.emplace(v.tokens[size_t(i)], i); !fresh)
            throw Error(ErrorKind::unsupported,
                        strfmt("'%s': tokens %d and %d are both '%s'; llama.cpp needs distinct "
                               "token strings",
                               dir.c_str(), it->second, i, v.tokens[size_t(i)].c_str()));

    if (internlm2) {
        const std::string model_path = detail::path_join(dir, "tokenizer.model");
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_string("tokenizer.ggml.pre", "default");
        w.set_string_array("tokenizer.ggml.tokens", std::move(v.tokens));
        w.set_f32_array("tokenizer.ggml.scores", v.scores);
        w.set_i32_array("tokenizer.ggml.token_type", v.types);
        w.set_bool("tokenizer.ggml.add_space_prefix",
                   spm_add_dummy_prefix(detail::read_file(model_path), model_path));
    } else {
        w.set_string("tokenizer.ggml.model", "gpt2");
        w.set_string("tokenizer.ggml.pre", "qwen2");
        w.set_string_array("tokenizer.ggml.tokens", std::move(v.tokens));
        w.set_i32_array("tokenizer.ggml.token_type", v.types);
        w.set_string_array("tokenizer.ggml.merges", read_merges(dir));
    }
    set_special_tokens(w, dir, config, tok, n_vocab, internlm2, fallback_template);
}

// ---------------------------------------------------------------------------------------------
// The mmproj (InternViT + mlp1 for llama.cpp's clip)

void plan_mmproj(Plan& p, const ModelConfig& config, const OutType& t)
{
    const VisionConfig& vc = config.vision;
    const int64_t c = vc.hidden_size, inter = vc.intermediate_size, ps = vc.patch_size;
    const int64_t grid = vc.image_size / vc.patch_size;
    const int r = int(std::lround(1.0 / double(config.downsample_ratio)));
    if (c <= 0 || inter <= 0 || ps <= 0 || vc.num_hidden_layers <= 0 || vc.num_attention_heads <= 0
        || c % vc.num_attention_heads != 0 || vc.image_size % vc.patch_size != 0)
        throw Error(ErrorKind::invalid_input, "vision_config: inconsistent sizes");
    if (r < 1 || std::fabs(1.0 / r - double(config.downsample_ratio)) > 1e-6)
        throw Error(ErrorKind::unsupported,
                    strfmt("downsample_ratio %g is not the reciprocal of an integer",
                           double(config.downsample_ratio)));
    const int64_t in = c * r * r, h = config.llm.hidden_size;
    // The converter's rules: 2-D weights in the file type (q8_0 falls back to f16 where a row
    // is no multiple of 32), the patch embedding f16 in an f16 file and f32 otherwise, the
    // position and class embeddings, norms, biases and layer scales f32.
    auto weight_type = [&](int64_t cols) {
        return t.plain == WeightType::q8_0 && cols % 32 != 0 ? WeightType::f16 : t.plain;
    };
    auto hf = [](const char* pattern, int layer = 0) {
        return checkpoint_name(vision_tensor_names(), pattern, layer);
    };
    auto matrix = [&](const char* pattern, int l, int64_t rows, int64_t cols) {
        p.add(layer_name(pattern, l), hf(pattern, l), {rows, cols}, weight_type(cols));
    };
    auto vec = [&](const char* pattern, int l, int64_t n) {
        p.add(layer_name(pattern, l), hf(pattern, l), {n}, WeightType::f32);
    };

    p.add("v.class_embd", hf("v.class_embd"), {1, 1, c}, WeightType::f32);
    p.add("v.patch_embd.weight", hf("v.patch_embd.weight"), {c, vc.num_channels, ps, ps},
          t.plain == WeightType::f16 ? WeightType::f16 : WeightType::f32);
    vec("v.patch_embd.bias", 0, c);
    p.add("v.position_embd.weight", hf("v.position_embd.weight"), {1, grid * grid + 1, c},
          WeightType::f32);
    const bool norm_bias = !vc.rms_norm;
    for (int l = 0; l < vc.num_hidden_layers; ++l) {
        vec("v.blk.%d.ln1.weight", l, c);
        if (norm_bias) vec("v.blk.%d.ln1.bias", l, c);
        // The converter splits qkv into thirds, biases first (it reads the checkpoint's
        // tensors in name order), so the three weights lie back to back in the file and a
        // loader can use them as one matrix in place.
        const TensorInfo& qkv = p.need(hf("v.blk.%d.attn_qkv.weight", l), {3 * c, c});
        const TensorInfo* qkv_b
            = vc.qkv_bias ? &p.need(hf("v.blk.%d.attn_qkv.bias", l), {3 * c}) : nullptr;
        const char* parts[] = {"attn_q", "attn_k", "attn_v"};
        for (int64_t part = 0; part < 3 && qkv_b; ++part)
            p.add_rows(strfmt("v.blk.%d.%s.bias", l, parts[part]), *qkv_b, c, 1, WeightType::f32,
                       [=](int64_t row) { return part * c + row; });
        for (int64_t part = 0; part < 3; ++part)
            p.add_rows(strfmt("v.blk.%d.%s.weight", l, parts[part]), qkv, c, c, weight_type(c),
                       [=](int64_t row) { return part * c + row; });
        if (vc.qk_normalization) {
            vec("v.blk.%d.attn_q_norm.weight", l, c);
            if (norm_bias) vec("v.blk.%d.attn_q_norm.bias", l, c);
            vec("v.blk.%d.attn_k_norm.weight", l, c);
            if (norm_bias) vec("v.blk.%d.attn_k_norm.bias", l, c);
        }
        matrix("v.blk.%d.attn_out.weight", l, c, c);
        vec("v.blk.%d.attn_out.bias", l, c);
        vec("v.blk.%d.ls1.weight", l, c);
        vec("v.blk.%d.ln2.weight", l, c);
        if (norm_bias) vec("v.blk.%d.ln2.bias", l, c);
        matrix("v.blk.%d.ffn_up.weight", l, inter, c);
        vec("v.blk.%d.ffn_up.bias", l, inter);
        matrix("v.blk.%d.ffn_down.weight", l, c, inter);
        vec("v.blk.%d.ffn_down.bias", l, c);
        vec("v.blk.%d.ls2.weight", l, c);
    }
    vec("mm.model.mlp.0.weight", 0, in);
    vec("mm.model.mlp.0.bias", 0, in);
    matrix("mm.model.mlp.1.weight", 0, h, in);
    vec("mm.model.mlp.1.bias", 0, h);
    matrix("mm.model.mlp.3.weight", 0, h, h);
    vec("mm.model.mlp.3.bias", 0, h);
}

void set_mmproj_metadata(GgufWriter& w, const ModelConfig& config, const std::string& dir,
                         const std::string& name, const OutType& t, uint64_t params)
{
    const VisionConfig& vc = config.vision;
    w.set_string("general.architecture", "clip");
    w.set_string("general.type", "mmproj");
    w.set_string("general.name", name);
    w.set_string("general.size_label", size_label(params));
    w.set_u32("general.file_type", t.ftype);
    w.set_bool("clip.has_vision_encoder", true);
    w.set_u32("clip.vision.projection_dim", uint32_t(config.llm.hidden_size));
    w.set_u32("clip.vision.image_size", uint32_t(vc.image_size));
    w.set_u32("clip.vision.patch_size", uint32_t(vc.patch_size));
    w.set_u32("clip.vision.embedding_length", uint32_t(vc.hidden_size));
    w.set_u32("clip.vision.feed_forward_length", uint32_t(vc.intermediate_size));
    w.set_u32("clip.vision.block_count", uint32_t(vc.num_hidden_layers));
    w.set_u32("clip.vision.attention.head_count", uint32_t(vc.num_attention_heads));
    // preprocessor_config.json's normalisation, else the ImageNet one InternVL trains with.
    std::vector<float> mean = {0.485f, 0.456f, 0.406f}, std_dev = {0.229f, 0.224f, 0.225f};
    if (const std::string pp = detail::path_join(dir, "preprocessor_config.json");
        detail::file_exists(pp)) {
        const json j = read_json_file(pp);
        auto three = [&](const char* key, std::vector<float>& out) {
            auto it = j.find(key);
            if (it == j.end()) return;
            if (!it->is_array() || it->size() != 3
                || !std::all_of(it->begin(), it->end(),
                                [](const json& x) { return x.is_number(); }))
                throw Error(ErrorKind::invalid_input,
                            "'" + pp + "': " + key + " must be an array of 3 numbers");
            for (size_t i = 0; i < 3; ++i) out[i] = (*it)[i].get<float>();
        };
        three("image_mean", mean);
        three("image_std", std_dev);
    }
    w.set_f32_array("clip.vision.image_mean", mean);
    w.set_f32_array("clip.vision.image_std", std_dev);
    w.set_string("clip.projector_type", "internvl");
    w.set_f32("clip.vision.attention.layer_norm_epsilon", vc.layer_norm_eps);
    w.set_bool("clip.use_gelu", true); // InternViT's only activation (ModelConfig checks it)
    w.set_u32("clip.vision.projector.scale_factor",
              uint32_t(std::lround(1.0 / double(config.downsample_ratio))));
    if (config.min_dynamic_patch > 0)
        w.set_u32("clip.vision.preproc_min_tiles", uint32_t(config.min_dynamic_patch));
    if (config.max_dynamic_patch > 0)
        w.set_u32("clip.vision.preproc_max_tiles", uint32_t(config.max_dynamic_patch));
    w.set_u32("general.quantization_version", 2);
}

// The folder's name: the converter's general.name without a model card.
std::string checkpoint_name(const std::string& dir)
{
    fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

} // namespace

QuantizeResult quantize_checkpoint(const std::string& dir, const QuantizeOptions& options)
{
    const int64_t t0 = now_us();
    const OutType llm_type = parse_type(options.type, kLlmTypes, "quantization");
    const OutType mmproj_type = parse_type(options.mmproj_type, kMmprojTypes, "mmproj");
    if (options.out_dir.empty())
        throw Error(ErrorKind::invalid_argument, "quantize: no output folder");

    const ModelConfig config = ModelConfig::load(dir + "/config.json");
    const json raw = read_json_file(dir + "/config.json");
    if (config.ps_version != "v2")
        IRIS_LOG_WARN("%s: ps_version %s; llama.cpp's InternVL graph shuffles pixels as v2 does",
                      dir.c_str(), config.ps_version.c_str());
    if (config.select_layer != -1 && config.select_layer != config.vision.num_hidden_layers)
        IRIS_LOG_WARN("%s: select_layer %d; llama.cpp's clip runs every vision layer", dir.c_str(),
                      config.select_layer);
    const WeightSet weights = WeightSet::open_dir(dir);

    const std::string name = checkpoint_name(dir);
    QuantizeResult result;
    result.llm_path
        = (fs::path(options.out_dir) / (name + "-" + llm_type.label() + ".gguf")).string();
    result.mmproj_path
        = (fs::path(options.out_dir) / ("mmproj-" + name + "-" + mmproj_type.label() + ".gguf"))
              .string();
    for (const std::string& path : {result.llm_path, result.mmproj_path})
        if (!options.force && fs::exists(path))
            throw Error(ErrorKind::invalid_argument,
                        "'" + path + "' already exists (use --force to replace it)");

    // Everything is checked before anything is written.
    Plan llm(weights, dir), mmproj(weights, dir);
    plan_llm(llm, config.llm, llm_type);
    plan_mmproj(mmproj, config, mmproj_type);
    GgufWriter lw, mw;
    set_llm_metadata(lw, config.llm, raw.value("llm_config", json::object()), name, llm_type,
                     llm.params());
    set_tokenizer(lw, dir, raw, config.llm, options.chat_template);
    set_mmproj_metadata(mw, config, dir, name, mmproj_type, mmproj.params());

    std::error_code ec;
    fs::create_directories(options.out_dir, ec);
    if (ec) throw Error(ErrorKind::io, "cannot create '" + options.out_dir + "': " + ec.message());
    Progress progress {options.progress, llm.bytes() + mmproj.bytes()};
    add_items(lw, llm, progress);
    add_items(mw, mmproj, progress);
    lw.write(result.llm_path);
    mw.write(result.mmproj_path);
    result.llm_bytes = fs::file_size(result.llm_path);
    result.mmproj_bytes = fs::file_size(result.mmproj_path);
    result.llm_tensors = lw.tensor_count();
    result.mmproj_tensors = mw.tensor_count();
    IRIS_LOG_INFO("quantized %s to %s (%.1f MB) and %s (%.1f MB) in %.1f s", dir.c_str(),
                  result.llm_path.c_str(), double(result.llm_bytes) / 1e6,
                  result.mmproj_path.c_str(), double(result.mmproj_bytes) / 1e6,
                  double(now_us() - t0) / 1e6);
    return result;
}

} // namespace iris::model
