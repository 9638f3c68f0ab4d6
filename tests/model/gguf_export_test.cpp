// quantize_checkpoint (iris quantize) on the golden tiny checkpoints, its files read back with
// the project's GGUF reader: the tensors llama.cpp loads by name, ne and type (llama-quantize's
// mix), bytes equal to quantize_row of the checkpoint's rows (InternLM2's q and k after the
// converter's permutation, which is checked to turn HF's RoPE into GGML's), metadata equal to
// config.json, tokenizer arrays equal to the checkpoint's vocabulary, and the errors.
#include "model/cpu/quant.h"
#include "model/gguf.h"
#include "model/network-impl.h"
#include "tests/errors.h"
#include "tests/files.h"
#include "tests/golden.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

namespace fs = std::filesystem;
using iris::ErrorKind;
using iris::test::expect_error;
using iris::test::TempDir;
using namespace iris::model;
using cpu::WeightType;
using nlohmann::json;

namespace {

std::string model_dir(const std::string& name)
{
    return iris::test::golden_dir() + "/models/" + name;
}

json read_json(const std::string& path)
{
    std::ifstream in(path);
    return json::parse(in);
}

QuantizeResult export_model(const std::string& model, const std::string& type, const fs::path& out,
                            const std::string& mmproj_type = "f16")
{
    QuantizeOptions o;
    o.type = type;
    o.mmproj_type = mmproj_type;
    o.out_dir = out.string();
    return quantize_checkpoint(model_dir(model), o);
}

// A tensor the file must hold: its name, ne and type, and the checkpoint rows it is made of
// (rows[r] is output row r's row of `src`; empty: src's rows in order).
struct Want
{
    std::string name;
    std::string src;
    std::vector<int64_t> ne;
    WeightType type;
    std::vector<int64_t> rows;
};

// The file holds exactly `want`, each tensor as quantize_row makes it from its source rows.
void expect_tensors(const GgufFile& f, const WeightSet& ws, const std::vector<Want>& want)
{
    EXPECT_EQ(f.tensors().size(), want.size());
    for (const Want& w : want) {
        SCOPED_TRACE(w.name);
        const GgufTensor* t = f.find(w.name);
        ASSERT_NE(t, nullptr) << "missing";
        EXPECT_EQ(t->ne, w.ne);
        ASSERT_TRUE(t->type.has_value());
        ASSERT_EQ(cpu::weight_type_name(*t->type), std::string(cpu::weight_type_name(w.type)));
        const std::vector<float> x = ws.get(w.src).to_f32();
        const int64_t cols = w.ne[0], rows = t->rows();
        const size_t rb = cpu::weight_row_bytes(w.type, cols);
        std::vector<uint8_t> expect(size_t(rows) * rb);
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t sr = w.rows.empty() ? r : w.rows[size_t(r)];
            ASSERT_LE(size_t(sr + 1) * size_t(cols), x.size());
            cpu::quantize_row(w.type, x.data() + sr * cols, cols, expect.data() + size_t(r) * rb);
        }
        ASSERT_EQ(t->nbytes, expect.size());
        EXPECT_EQ(std::memcmp(t->data, expect.data(), expect.size()), 0) << "bytes differ";
    }
}

// The type of a language-model matrix: llama-quantize's mix, or every matrix in f16 / f32.
WeightType llm_type(const std::string& type, TensorRole::Kind kind, int layer, const LlmConfig& c,
                    int64_t cols)
{
    if (type == "f16") return WeightType::f16;
    if (type == "f32") return WeightType::f32;
    return QuantMix::parse(type).type_for({kind, layer, c.num_hidden_layers}, cols,
                                          c.num_attention_heads / c.num_key_value_heads);
}

// InternLM2's wqkv rows [group][q_0 .. q_{G-1}, k, v][D] as the converter writes them: q head
// group·G + slot, k and v heads by group, and in q and k the row i of a head at 2i when i is in
// the first half, 2(i - D/2) + 1 otherwise (HF's rotate-half pairs become adjacent rows).
void internlm2_qkv_rows(const LlmConfig& c, std::vector<int64_t>& q, std::vector<int64_t>& k,
                        std::vector<int64_t>& v)
{
    const int64_t d = c.head_dim, nkv = c.num_key_value_heads,
                  g = c.num_attention_heads / c.num_key_value_heads;
    q.assign(size_t(nkv * g * d), -1);
    k.assign(size_t(nkv * d), -1);
    v.assign(size_t(nkv * d), -1);
    for (int64_t kv = 0; kv < nkv; ++kv)
        for (int64_t slot = 0; slot < g + 2; ++slot)
            for (int64_t i = 0; i < d; ++i) {
                const int64_t src = (kv * (g + 2) + slot) * d + i;
                const int64_t pair = i < d / 2 ? 2 * i : 2 * (i - d / 2) + 1;
                if (slot < g)
                    q[size_t((kv * g + slot) * d + pair)] = src;
                else if (slot == g)
                    k[size_t(kv * d + pair)] = src;
                else
                    v[size_t(kv * d + i)] = src;
            }
}

std::vector<Want> llm_tensors(const ModelConfig& config, const std::string& type)
{
    const LlmConfig& c = config.llm;
    const int64_t h = c.hidden_size, f = c.intermediate_size, d = c.head_dim, v = c.vocab_size;
    const int64_t q = c.num_attention_heads * d, kv = c.num_key_value_heads * d;
    const bool internlm2 = c.arch == LlmArch::internlm2;
    const std::string m = "language_model.model.";
    std::vector<Want> w;
    auto matrix = [&](std::string name, std::string src, int64_t rows, int64_t cols,
                      TensorRole::Kind kind, int layer) {
        w.push_back({std::move(name),
                     std::move(src),
                     {cols, rows},
                     llm_type(type, kind, layer, c, cols),
                     {}});
    };
    auto vec = [&](std::string name, std::string src, int64_t n) {
        w.push_back({std::move(name), std::move(src), {n}, WeightType::f32, {}});
    };
    matrix("token_embd.weight", m + (internlm2 ? "tok_embeddings.weight" : "embed_tokens.weight"),
           v, h, TensorRole::token_embd, 0);
    std::vector<int64_t> q_rows, k_rows, v_rows;
    if (internlm2) internlm2_qkv_rows(c, q_rows, k_rows, v_rows);
    for (int l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = m + "layers." + std::to_string(l) + ".";
        const std::string b = "blk." + std::to_string(l) + ".";
        if (internlm2) {
            vec(b + "attn_norm.weight", p + "attention_norm.weight", h);
            const std::string qkv = p + "attention.wqkv.weight";
            matrix(b + "attn_q.weight", qkv, q, h, TensorRole::attn_q, l);
            w.back().rows = q_rows;
            matrix(b + "attn_k.weight", qkv, kv, h, TensorRole::attn_k, l);
            w.back().rows = k_rows;
            matrix(b + "attn_v.weight", qkv, kv, h, TensorRole::attn_v, l);
            w.back().rows = v_rows;
            matrix(b + "attn_output.weight", p + "attention.wo.weight", h, q,
                   TensorRole::attn_output, l);
            vec(b + "ffn_norm.weight", p + "ffn_norm.weight", h);
            matrix(b + "ffn_gate.weight", p + "feed_forward.w1.weight", f, h, TensorRole::ffn_gate,
                   l);
            matrix(b + "ffn_up.weight", p + "feed_forward.w3.weight", f, h, TensorRole::ffn_up, l);
            matrix(b + "ffn_down.weight", p + "feed_forward.w2.weight", h, f, TensorRole::ffn_down,
                   l);
        } else {
            vec(b + "attn_norm.weight", p + "input_layernorm.weight", h);
            matrix(b + "attn_q.weight", p + "self_attn.q_proj.weight", q, h, TensorRole::attn_q, l);
            vec(b + "attn_q.bias", p + "self_attn.q_proj.bias", q);
            matrix(b + "attn_k.weight", p + "self_attn.k_proj.weight", kv, h, TensorRole::attn_k,
                   l);
            vec(b + "attn_k.bias", p + "self_attn.k_proj.bias", kv);
            matrix(b + "attn_v.weight", p + "self_attn.v_proj.weight", kv, h, TensorRole::attn_v,
                   l);
            vec(b + "attn_v.bias", p + "self_attn.v_proj.bias", kv);
            matrix(b + "attn_output.weight", p + "self_attn.o_proj.weight", h, q,
                   TensorRole::attn_output, l);
            vec(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", h);
            matrix(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", f, h, TensorRole::ffn_gate,
                   l);
            matrix(b + "ffn_up.weight", p + "mlp.up_proj.weight", f, h, TensorRole::ffn_up, l);
            matrix(b + "ffn_down.weight", p + "mlp.down_proj.weight", h, f, TensorRole::ffn_down,
                   l);
        }
    }
    vec("output_norm.weight", m + "norm.weight", h);
    matrix("output.weight",
           internlm2 ? "language_model.output.weight" : "language_model.lm_head.weight", v, h,
           TensorRole::output, 0);
    return w;
}

uint32_t llm_ftype(const std::string& type)
{
    return type == "q8_0" ? 7 : type == "q4_K_M" ? 15 : type == "f16" ? 1 : 0;
}

// Metadata every llama.cpp loader of the two architectures reads, equal to config.json.
void expect_llm_metadata(const GgufMetadata& md, const ModelConfig& config, const std::string& name,
                         const std::string& type)
{
    const LlmConfig& c = config.llm;
    const std::string arch = c.arch == LlmArch::internlm2 ? "internlm2" : "qwen2";
    EXPECT_EQ(md.get_string("general.architecture"), arch);
    EXPECT_EQ(md.get_string("general.type"), "model");
    EXPECT_EQ(md.get_string("general.name"), name);
    EXPECT_EQ(md.get_u32("general.file_type"), llm_ftype(type));
    EXPECT_EQ(md.get_u32("general.quantization_version"), 2u);
    EXPECT_EQ(md.get_u32(arch + ".block_count"), uint32_t(c.num_hidden_layers));
    EXPECT_EQ(md.get_u32(arch + ".context_length"), uint32_t(c.max_position_embeddings));
    EXPECT_EQ(md.get_u32(arch + ".embedding_length"), uint32_t(c.hidden_size));
    EXPECT_EQ(md.get_u32(arch + ".feed_forward_length"), uint32_t(c.intermediate_size));
    EXPECT_EQ(md.get_u32(arch + ".attention.head_count"), uint32_t(c.num_attention_heads));
    EXPECT_EQ(md.get_u32(arch + ".attention.head_count_kv"), uint32_t(c.num_key_value_heads));
    EXPECT_EQ(md.get_f32(arch + ".rope.freq_base"), c.rope_theta);
    EXPECT_EQ(md.get_f32(arch + ".attention.layer_norm_rms_epsilon"), c.rms_norm_eps);
    // The golden models' dynamic NTK scaling has no GGUF form; the converter writes none.
    EXPECT_EQ(md.find(arch + ".rope.scaling.type"), nullptr);
}

class GgufExport : public testing::Test
{
protected:
    void SetUp() override { IRIS_REQUIRE_GOLDEN(); }
    TempDir tmp;
};

} // namespace

TEST_F(GgufExport, Qwen2HasLlamaCppsTensorsInTheMixesTypesWithQuantizeRowsBytes)
{
    const ModelConfig config = ModelConfig::load(model_dir("tiny_qwen2") + "/config.json");
    const WeightSet ws = WeightSet::open_dir(model_dir("tiny_qwen2"));
    for (const std::string type : {"q8_0", "q4_K_M", "f16"}) {
        SCOPED_TRACE(type);
        const fs::path out = tmp.path() / type;
        std::vector<float> fractions;
        QuantizeOptions o;
        o.type = type;
        o.out_dir = out.string();
        o.progress = [&](float x, const char*) { fractions.push_back(x); };
        const QuantizeResult r = quantize_checkpoint(model_dir("tiny_qwen2"), o);
        std::string label = type;
        for (char& ch : label) ch = char(std::toupper(static_cast<unsigned char>(ch)));
        EXPECT_EQ(r.llm_path, (out / ("tiny_qwen2-" + label + ".gguf")).string());
        EXPECT_EQ(r.mmproj_path, (out / "mmproj-tiny_qwen2-F16.gguf").string());
        ASSERT_FALSE(fractions.empty());
        EXPECT_TRUE(std::is_sorted(fractions.begin(), fractions.end()));
        EXPECT_FLOAT_EQ(fractions.back(), 1.f);

        const GgufFile f = GgufFile::open(r.llm_path);
        EXPECT_EQ(r.llm_bytes, f.file_size());
        expect_tensors(f, ws, llm_tensors(config, type));
        expect_llm_metadata(f.metadata(), config, "tiny_qwen2", type);
    }
}

// The mixes pick different types for these shapes: q4_K_M keeps the output and some ffn_down
// and attn_v wider, and 64-wide rows fall back from k-quants.
TEST_F(GgufExport, TheMixGivesTheTinyModelsSeveralTypes)
{
    const QuantizeResult r = export_model("tiny_internlm2", "q4_K_M", tmp.path());
    const GgufFile f = GgufFile::open(r.llm_path);
    std::set<std::string> types;
    for (const GgufTensor& t : f.tensors()) types.insert(cpu::weight_type_name(*t.type));
    EXPECT_EQ(types, (std::set<std::string> {"f32", "q4_K", "q5_0", "q6_K", "q8_0"}));
}

TEST_F(GgufExport, Qwen2TokenizerListsTheCheckpointsVocabularyAsLlamaCppsGpt2)
{
    const std::string dir = model_dir("tiny_qwen2");
    const ModelConfig config = ModelConfig::load(dir + "/config.json");
    const auto tok = Tokenizer::load(dir);
    const GgufFile f = GgufFile::open(export_model("tiny_qwen2", "q8_0", tmp.path()).llm_path);
    const GgufMetadata& md = f.metadata();
    EXPECT_EQ(md.get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(md.get_string("tokenizer.ggml.pre"), "qwen2");
    const auto& tokens = md.get_string_array("tokenizer.ggml.tokens");
    const std::vector<int32_t> types = md.get_i32_array("tokenizer.ggml.token_type");
    ASSERT_EQ(tokens.size(), size_t(config.llm.vocab_size));
    ASSERT_EQ(types.size(), tokens.size());
    for (int32_t i = 0; i < int32_t(tokens.size()); ++i) {
        SCOPED_TRACE(i);
        const std::string text = tok->token_text(i);
        EXPECT_EQ(tokens[size_t(i)], text.empty() ? "[PAD" + std::to_string(i) + "]" : text);
        // Every added token of the golden model is special: control; the BPE vocabulary normal.
        EXPECT_EQ(types[size_t(i)], text.empty() ? 5 : tok->is_special(i) ? 3 : 1);
    }
    // merges.txt's lines after "#version", as "a b".
    std::ifstream in(dir + "/merges.txt");
    std::vector<std::string> merges;
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] != '#') merges.push_back(line);
    EXPECT_EQ(md.get_string_array("tokenizer.ggml.merges"), merges);
    // EOS and padding as tokenizer_config.json names them, BOS from llm_config (its bos_token is
    // null).
    EXPECT_EQ(md.get_u32("tokenizer.ggml.eos_token_id"), uint32_t(*tok->token_id("<|im_end|>")));
    EXPECT_EQ(md.get_u32("tokenizer.ggml.padding_token_id"),
              uint32_t(*tok->token_id("<|endoftext|>")));
    EXPECT_EQ(md.get_u32("tokenizer.ggml.bos_token_id"),
              read_json(dir + "/config.json")["llm_config"]["bos_token_id"].get<uint32_t>());
    EXPECT_EQ(md.find("tokenizer.ggml.unknown_token_id"), nullptr);
    EXPECT_EQ(md.find("tokenizer.chat_template"), nullptr); // the checkpoint has none
}

TEST_F(GgufExport, InternLM2SplitsAndPermutesWqkvAsTheConverterDoes)
{
    const ModelConfig config = ModelConfig::load(model_dir("tiny_internlm2") + "/config.json");
    const WeightSet ws = WeightSet::open_dir(model_dir("tiny_internlm2"));
    for (const std::string type : {"q8_0", "q4_K_M", "f16", "f32"}) {
        SCOPED_TRACE(type);
        const QuantizeResult r = export_model("tiny_internlm2", type, tmp.path() / type);
        const GgufFile f = GgufFile::open(r.llm_path);
        expect_tensors(f, ws, llm_tensors(config, type));
        expect_llm_metadata(f.metadata(), config, "tiny_internlm2", type);
    }
}

// Un-permuted, the f32 file's attn_q / attn_k rows are HF's; and permuted they make GGML's RoPE
// (rotating adjacent pairs) give the attention scores HF's rotate-half RoPE gives.
TEST_F(GgufExport, InternLM2PermutedRowsGiveGgmlsRopeTheScoresOfHfsRope)
{
    const ModelConfig config = ModelConfig::load(model_dir("tiny_internlm2") + "/config.json");
    const LlmConfig& c = config.llm;
    const WeightSet ws = WeightSet::open_dir(model_dir("tiny_internlm2"));
    const GgufFile f = GgufFile::open(export_model("tiny_internlm2", "f32", tmp.path()).llm_path);
    const int64_t h = c.hidden_size, d = c.head_dim, nh = c.num_attention_heads,
                  nkv = c.num_key_value_heads, g = nh / nkv;
    const std::vector<float> wqkv
        = ws.get("language_model.model.layers.1.attention.wqkv.weight").to_f32();
    auto gguf_rows = [&](const char* name) {
        const GgufTensor& t = f.get(name);
        std::vector<float> x(size_t(t.numel()));
        std::memcpy(x.data(), t.data, t.nbytes);
        return x;
    };
    const std::vector<float> wq = gguf_rows("blk.1.attn_q.weight"),
                             wk = gguf_rows("blk.1.attn_k.weight");
    // Un-permuting: GGUF rows (2i, 2i + 1) of a head are HF rows (i, i + D/2).
    auto hf_row = [&](int64_t group, int64_t slot, int64_t i) {
        return wqkv.data() + ((group * (g + 2) + slot) * d + i) * h;
    };
    for (int64_t head = 0; head < nh; ++head)
        for (int64_t i = 0; i < d; ++i) {
            const int64_t hf = i % 2 == 0 ? i / 2 : i / 2 + d / 2;
            ASSERT_EQ(std::memcmp(wq.data() + (head * d + i) * h, hf_row(head / g, head % g, hf),
                                  size_t(h) * 4),
                      0)
                << "q head " << head << " row " << i;
        }
    for (int64_t head = 0; head < nkv; ++head)
        for (int64_t i = 0; i < d; ++i) {
            const int64_t hf = i % 2 == 0 ? i / 2 : i / 2 + d / 2;
            ASSERT_EQ(
                std::memcmp(wk.data() + (head * d + i) * h, hf_row(head, g, hf), size_t(h) * 4), 0)
                << "k head " << head << " row " << i;
        }

    // One head of q and k at two positions: HF rotates (x_i, x_{i+D/2}), GGML (x_2i, x_2i+1).
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(h));
    for (float& v : x) v = normal(rng);
    auto project = [&](const float* rows, int64_t n) {
        std::vector<double> y(static_cast<size_t>(n));
        for (int64_t r = 0; r < n; ++r)
            for (int64_t k = 0; k < h; ++k) y[size_t(r)] += double(rows[r * h + k]) * x[size_t(k)];
        return y;
    };
    auto rope = [&](std::vector<double> v, int pos, bool interleaved) {
        for (int64_t i = 0; i < d / 2; ++i) {
            const double a = pos * std::pow(double(c.rope_theta), -2.0 * double(i) / double(d));
            const int64_t i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + d / 2;
            const double x0 = v[size_t(i0)], x1 = v[size_t(i1)];
            v[size_t(i0)] = x0 * std::cos(a) - x1 * std::sin(a);
            v[size_t(i1)] = x1 * std::cos(a) + x0 * std::sin(a);
        }
        return v;
    };
    auto dot = [](const std::vector<double>& a, const std::vector<double>& b) {
        double s = 0;
        for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
        return s;
    };
    for (int64_t head = 0; head < nh; ++head) {
        std::vector<float> hq(size_t(d * h)), hk(size_t(d * h));
        for (int64_t i = 0; i < d; ++i) {
            std::memcpy(hq.data() + i * h, hf_row(head / g, head % g, i), size_t(h) * 4);
            std::memcpy(hk.data() + i * h, hf_row(head / g, g, i), size_t(h) * 4);
        }
        const double want
            = dot(rope(project(hq.data(), d), 5, false), rope(project(hk.data(), d), 2, false));
        const double got = dot(rope(project(wq.data() + head * d * h, d), 5, true),
                               rope(project(wk.data() + (head / g) * d * h, d), 2, true));
        EXPECT_NEAR(got, want, 1e-9 * std::max(1.0, std::fabs(want))) << "head " << head;
    }
}

TEST_F(GgufExport, InternLM2TokenizerHasTheSentencePiecesScoresAndChatEos)
{
    const std::string dir = model_dir("tiny_internlm2");
    const ModelConfig config = ModelConfig::load(dir + "/config.json");
    const auto tok = Tokenizer::load(dir);
    sentencepiece::SentencePieceProcessor sp;
    ASSERT_TRUE(sp.Load(dir + "/tokenizer.model").ok());
    std::map<int32_t, std::string> added; // added_tokens_decoder, all special in the golden model
    const json config_json = read_json(dir + "/tokenizer_config.json");
    for (const auto& [id, t] : config_json["added_tokens_decoder"].items())
        added[std::stoi(id)] = t["content"].get<std::string>();

    const GgufFile f = GgufFile::open(export_model("tiny_internlm2", "q8_0", tmp.path()).llm_path);
    const GgufMetadata& md = f.metadata();
    EXPECT_EQ(md.get_string("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(md.get_string("tokenizer.ggml.pre"), "default");
    const auto& tokens = md.get_string_array("tokenizer.ggml.tokens");
    const std::vector<float> scores = md.get_f32_array("tokenizer.ggml.scores");
    const std::vector<int32_t> types = md.get_i32_array("tokenizer.ggml.token_type");
    ASSERT_EQ(tokens.size(), size_t(config.llm.vocab_size));
    ASSERT_EQ(scores.size(), tokens.size());
    ASSERT_EQ(types.size(), tokens.size());
    for (int32_t i = 0; i < int32_t(tokens.size()); ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(tokens[size_t(i)], tok->token_text(i));
        if (added.count(i)) {
            EXPECT_EQ(tokens[size_t(i)], added[i]);
            EXPECT_EQ(scores[size_t(i)], -1000.f);
            EXPECT_EQ(types[size_t(i)], 3);
        } else {
            ASSERT_LT(i, sp.GetPieceSize());
            EXPECT_EQ(tokens[size_t(i)], sp.IdToPiece(i));
            EXPECT_EQ(scores[size_t(i)], sp.GetScore(i));
            EXPECT_EQ(types[size_t(i)], sp.IsByte(i) ? 6 : sp.IsControl(i) ? 3 : 1);
        }
    }
    EXPECT_EQ(md.get_bool("tokenizer.ggml.add_space_prefix"), true);
    EXPECT_EQ(md.get_u32("tokenizer.ggml.bos_token_id"), uint32_t(*tok->token_id("<s>")));
    EXPECT_EQ(md.get_u32("tokenizer.ggml.unknown_token_id"), uint32_t(*tok->token_id("<unk>")));
    EXPECT_EQ(md.get_u32("tokenizer.ggml.padding_token_id"), uint32_t(*tok->token_id("</s>")));
    // The converter's chat mode: turns end at <|im_end|>, not </s>.
    EXPECT_EQ(md.get_u32("tokenizer.ggml.eos_token_id"), uint32_t(*tok->token_id("<|im_end|>")));
}

TEST_F(GgufExport, MmprojHoldsWhatLlamaCppsClipLoadsForInternVL)
{
    const ModelConfig config = ModelConfig::load(model_dir("tiny_qwen2") + "/config.json");
    const VisionConfig& vc = config.vision;
    const WeightSet ws = WeightSet::open_dir(model_dir("tiny_qwen2"));
    const int64_t c = vc.hidden_size, in = vc.intermediate_size, p = vc.patch_size,
                  h = config.llm.hidden_size, n_pos = (vc.image_size / p) * (vc.image_size / p) + 1;
    for (const std::string type : {"f16", "q8_0", "f32"}) {
        SCOPED_TRACE(type);
        const WeightType mat = type == "f16" ? WeightType::f16
            : type == "q8_0"                 ? WeightType::q8_0
                                             : WeightType::f32;
        const QuantizeResult r = export_model("tiny_qwen2", "q8_0", tmp.path() / type, type);
        std::string label = type;
        for (char& ch : label) ch = char(std::toupper(static_cast<unsigned char>(ch)));
        EXPECT_EQ(r.mmproj_path,
                  (tmp.path() / type / ("mmproj-tiny_qwen2-" + label + ".gguf")).string());
        const GgufFile f = GgufFile::open(r.mmproj_path);

        const std::string e = "vision_model.embeddings.";
        std::vector<Want> w = {
            {"v.class_embd", e + "class_embedding", {c, 1, 1}, WeightType::f32, {}},
            {"v.patch_embd.weight",
             e + "patch_embedding.weight",
             {p, p, 3, c},
             type == "f16" ? WeightType::f16 : WeightType::f32,
             {}},
            {"v.patch_embd.bias", e + "patch_embedding.bias", {c}, WeightType::f32, {}},
            {"v.position_embd.weight",
             e + "position_embedding",
             {c, n_pos, 1},
             WeightType::f32,
             {}},
        };
        auto rows = [](int64_t from, int64_t n) {
            std::vector<int64_t> v(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) v[size_t(i)] = from + i;
            return v;
        };
        for (int l = 0; l < vc.num_hidden_layers; ++l) {
            const std::string s = "vision_model.encoder.layers." + std::to_string(l) + ".";
            const std::string b = "v.blk." + std::to_string(l) + ".";
            auto vec = [&](const std::string& name, const std::string& src, int64_t n) {
                w.push_back({b + name, s + src, {n}, WeightType::f32, {}});
            };
            vec("ln1.weight", "norm1.weight", c);
            vec("ln1.bias", "norm1.bias", c);
            const char* qkv[] = {"attn_q", "attn_k", "attn_v"};
            for (int part = 0; part < 3; ++part) {
                w.push_back({b + qkv[part] + ".weight",
                             s + "attn.qkv.weight",
                             {c, c},
                             mat,
                             rows(part * c, c)});
                w.push_back({b + qkv[part] + ".bias",
                             s + "attn.qkv.bias",
                             {c},
                             WeightType::f32,
                             {part}}); // the bias as rows of c values
            }
            w.push_back({b + "attn_out.weight", s + "attn.proj.weight", {c, c}, mat, {}});
            vec("attn_out.bias", "attn.proj.bias", c);
            vec("ls1.weight", "ls1", c);
            vec("ln2.weight", "norm2.weight", c);
            vec("ln2.bias", "norm2.bias", c);
            w.push_back({b + "ffn_up.weight", s + "mlp.fc1.weight", {c, in}, mat, {}});
            vec("ffn_up.bias", "mlp.fc1.bias", in);
            w.push_back({b + "ffn_down.weight", s + "mlp.fc2.weight", {in, c}, mat, {}});
            vec("ffn_down.bias", "mlp.fc2.bias", c);
            vec("ls2.weight", "ls2", c);
        }
        w.push_back({"mm.model.mlp.0.weight", "mlp1.0.weight", {4 * c}, WeightType::f32, {}});
        w.push_back({"mm.model.mlp.0.bias", "mlp1.0.bias", {4 * c}, WeightType::f32, {}});
        w.push_back({"mm.model.mlp.1.weight", "mlp1.1.weight", {4 * c, h}, mat, {}});
        w.push_back({"mm.model.mlp.1.bias", "mlp1.1.bias", {h}, WeightType::f32, {}});
        w.push_back({"mm.model.mlp.3.weight", "mlp1.3.weight", {h, h}, mat, {}});
        w.push_back({"mm.model.mlp.3.bias", "mlp1.3.bias", {h}, WeightType::f32, {}});
        expect_tensors(f, ws, w);

        const GgufMetadata& md = f.metadata();
        EXPECT_EQ(md.get_string("general.architecture"), "clip");
        EXPECT_EQ(md.get_string("general.type"), "mmproj");
        EXPECT_EQ(md.get_u32("general.file_type"), type == "f16" ? 1u : type == "q8_0" ? 7u : 0u);
        EXPECT_EQ(md.get_string("clip.projector_type"), "internvl");
        EXPECT_TRUE(md.get_bool("clip.has_vision_encoder"));
        EXPECT_TRUE(md.get_bool("clip.use_gelu"));
        EXPECT_EQ(md.get_u32("clip.vision.projection_dim"), uint32_t(h));
        EXPECT_EQ(md.get_u32("clip.vision.image_size"), uint32_t(vc.image_size));
        EXPECT_EQ(md.get_u32("clip.vision.patch_size"), uint32_t(p));
        EXPECT_EQ(md.get_u32("clip.vision.embedding_length"), uint32_t(c));
        EXPECT_EQ(md.get_u32("clip.vision.feed_forward_length"), uint32_t(in));
        EXPECT_EQ(md.get_u32("clip.vision.block_count"), uint32_t(vc.num_hidden_layers));
        EXPECT_EQ(md.get_u32("clip.vision.attention.head_count"), uint32_t(vc.num_attention_heads));
        EXPECT_EQ(md.get_f32("clip.vision.attention.layer_norm_epsilon"), vc.layer_norm_eps);
        EXPECT_EQ(md.get_u32("clip.vision.projector.scale_factor"), 2u);
        EXPECT_EQ(md.get_u32("clip.vision.preproc_min_tiles"), uint32_t(config.min_dynamic_patch));
        EXPECT_EQ(md.get_u32("clip.vision.preproc_max_tiles"), uint32_t(config.max_dynamic_patch));
        // ImageNet's, as InternVL's preprocessing uses them (the golden model ships no
        // preprocessor_config.json).
        EXPECT_EQ(md.get_f32_array("clip.vision.image_mean"),
                  (std::vector<float> {0.485f, 0.456f, 0.406f}));
        EXPECT_EQ(md.get_f32_array("clip.vision.image_std"),
                  (std::vector<float> {0.229f, 0.224f, 0.225f}));
    }
}

TEST_F(GgufExport, TheChatTemplateFallbackIsWrittenOnlyWithoutTheCheckpointsOwn)
{
    QuantizeOptions o;
    o.type = "q8_0";
    o.out_dir = tmp.path().string();
    o.chat_template = "{{ messages }}";
    const GgufFile f = GgufFile::open(quantize_checkpoint(model_dir("tiny_qwen2"), o).llm_path);
    EXPECT_EQ(f.metadata().get_string("tokenizer.chat_template"), "{{ messages }}");
}

TEST_F(GgufExport, AnUnknownTypeIsAnErrorListingTheValidOnes)
{
    expect_error([&] { export_model("tiny_qwen2", "q3_K_M", tmp.path()); },
                 ErrorKind::invalid_argument,
                 {"q3_K_M", "q8_0", "q4_K_M", "iq4_nl", "bf16", "f32"});
    expect_error([&] { export_model("tiny_qwen2", "q8_0", tmp.path(), "q4_0"); },
                 ErrorKind::invalid_argument, {"q4_0", "f16", "f32", "q8_0"});
    EXPECT_TRUE(tmp.listing().empty());
}

TEST_F(GgufExport, AnExistingOutputIsOnlyReplacedWithForce)
{
    const std::string llm = tmp.file("tiny_qwen2-Q8_0.gguf");
    iris::test::write_bytes(llm, "mine");
    expect_error([&] { export_model("tiny_qwen2", "q8_0", tmp.path()); },
                 ErrorKind::invalid_argument, {llm, "--force"});
    EXPECT_EQ(iris::test::read_bytes(llm), "mine");
    EXPECT_EQ(tmp.listing(), std::vector<std::string> {"tiny_qwen2-Q8_0.gguf"});

    QuantizeOptions o;
    o.type = "q8_0";
    o.out_dir = tmp.path().string();
    o.force = true;
    quantize_checkpoint(model_dir("tiny_qwen2"), o);
    EXPECT_EQ(GgufFile::open(llm).metadata().get_string("general.architecture"), "qwen2");
    EXPECT_EQ(tmp.listing(),
              (std::vector<std::string> {"mmproj-tiny_qwen2-F16.gguf", "tiny_qwen2-Q8_0.gguf"}));
}

TEST_F(GgufExport, AFolderThatIsNoInternVLCheckpointIsAnError)
{
    QuantizeOptions o;
    o.type = "q8_0";
    o.out_dir = tmp.file("out");
    expect_error([&] { quantize_checkpoint(tmp.file("nothing"), o); }, ErrorKind::not_found,
                 {"config.json"});

    // A Qwen2 config in place of InternVL's.
    const fs::path plain = tmp.path() / "plain";
    fs::create_directories(plain);
    json qwen2 = read_json(model_dir("tiny_qwen2") + "/config.json")["llm_config"];
    std::ofstream(plain / "config.json") << qwen2.dump();
    expect_error([&] { quantize_checkpoint(plain.string(), o); }, ErrorKind::unsupported,
                 {"model_type", "internvl_chat"});

    // The weights without the tokenizer files.
    const fs::path bare = tmp.path() / "bare";
    fs::create_directories(bare);
    for (const char* name : {"config.json", "model.safetensors"})
        fs::copy_file(model_dir("tiny_qwen2") + "/" + name, bare / name);
    expect_error([&] { quantize_checkpoint(bare.string(), o); }, ErrorKind::not_found,
                 {"tokenizer"});
    EXPECT_FALSE(fs::exists(tmp.file("out")) && !fs::is_empty(tmp.file("out")));
}
