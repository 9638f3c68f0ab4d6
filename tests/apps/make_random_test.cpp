// `iris make-random` and `iris bench`, run as a user would: the tiny shapes end to end (weights,
// tokenizer, network), the real shapes' config and tokenizer only (their weights are gigabytes).
#include "model/model.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace iris::model;
using json = nlohmann::json;

namespace {

struct CommandResult
{
    int status = -1;
    std::string out;
};

// Runs `iris <args>` through the shell; stdout is captured, stderr goes to the test log.
CommandResult run_iris(const std::string& args)
{
    CommandResult r;
    const std::string cmd = std::string(IRIS_BINARY) + " " + args;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

// A fresh folder per test, removed afterwards.
class TempDir
{
public:
    explicit TempDir(const std::string& tag)
        : path_(fs::temp_directory_path()
                / ("iris_make_random_" + tag + "_" + std::to_string(getpid())))
    {
        fs::remove_all(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }
    std::string quoted() const
    {
        // Appended, not "'" + string: GCC 12 warns falsely on that at -O3 (-Wrestrict, bug 105329).
        std::string q = "'";
        q += path_.string();
        q += '\'';
        return q;
    }

private:
    fs::path path_;
};

json read_json(const fs::path& p)
{
    std::ifstream in(p);
    return json::parse(in);
}

// The tensors docs/model.md lists (§2), with shapes, for a config's sizes.
std::map<std::string, std::vector<int64_t>> expected_tensors(const ModelConfig& c)
{
    std::map<std::string, std::vector<int64_t>> t;
    const int64_t cv = c.vision.hidden_size, fv = c.vision.intermediate_size;
    const int64_t grid = c.vision.image_size / c.vision.patch_size;
    t["vision_model.embeddings.class_embedding"] = {1, 1, cv};
    t["vision_model.embeddings.patch_embedding.weight"] = {cv, 3, 14, 14};
    t["vision_model.embeddings.patch_embedding.bias"] = {cv};
    t["vision_model.embeddings.position_embedding"] = {1, grid * grid + 1, cv};
    for (int i = 0; i < c.vision.num_hidden_layers; ++i) {
        const std::string l = "vision_model.encoder.layers." + std::to_string(i) + ".";
        for (const char* n : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "ls1",
                              "ls2", "attn.proj.bias", "mlp.fc2.bias"})
            t[l + n] = {cv};
        t[l + "attn.qkv.weight"] = {3 * cv, cv};
        t[l + "attn.qkv.bias"] = {3 * cv};
        t[l + "attn.proj.weight"] = {cv, cv};
        t[l + "mlp.fc1.weight"] = {fv, cv};
        t[l + "mlp.fc1.bias"] = {fv};
        t[l + "mlp.fc2.weight"] = {cv, fv};
    }
    const int64_t h = c.llm.hidden_size, v = c.llm.vocab_size, f = c.llm.intermediate_size;
    const int64_t d = h / c.llm.num_attention_heads, kv = c.llm.num_key_value_heads * d;
    t["mlp1.0.weight"] = t["mlp1.0.bias"] = {4 * cv};
    t["mlp1.1.weight"] = {h, 4 * cv};
    t["mlp1.1.bias"] = t["mlp1.3.bias"] = {h};
    t["mlp1.3.weight"] = {h, h};
    const std::string m = "language_model.model.";
    t[m + "norm.weight"] = {h};
    for (int i = 0; i < c.llm.num_hidden_layers; ++i) {
        const std::string l = m + "layers." + std::to_string(i) + ".";
        if (c.llm.arch == LlmArch::qwen2) {
            t[l + "input_layernorm.weight"] = t[l + "post_attention_layernorm.weight"] = {h};
            t[l + "self_attn.q_proj.weight"] = t[l + "self_attn.o_proj.weight"] = {h, h};
            t[l + "self_attn.q_proj.bias"] = {h};
            t[l + "self_attn.k_proj.weight"] = t[l + "self_attn.v_proj.weight"] = {kv, h};
            t[l + "self_attn.k_proj.bias"] = t[l + "self_attn.v_proj.bias"] = {kv};
            t[l + "mlp.gate_proj.weight"] = t[l + "mlp.up_proj.weight"] = {f, h};
            t[l + "mlp.down_proj.weight"] = {h, f};
        } else {
            t[l + "attention_norm.weight"] = t[l + "ffn_norm.weight"] = {h};
            t[l + "attention.wqkv.weight"] = {h + 2 * kv, h};
            t[l + "attention.wo.weight"] = {h, h};
            t[l + "feed_forward.w1.weight"] = t[l + "feed_forward.w3.weight"] = {f, h};
            t[l + "feed_forward.w2.weight"] = {h, f};
        }
    }
    if (c.llm.arch == LlmArch::qwen2) {
        t[m + "embed_tokens.weight"] = t["language_model.lm_head.weight"] = {v, h};
    } else {
        t[m + "tok_embeddings.weight"] = t["language_model.output.weight"] = {v, h};
    }
    return t;
}

const char* const kSampleTexts[] = {
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.\n\nPlease describe the image in detail.",
    "Numbers 12345, symbols #$%&*, tabs\tand  double  spaces; unseen words: xylophone zephyr",
    "你是书生·万象，英文名是InternVL。 Ünïcödé ©",
};

// The figures of one markdown row of `iris bench` whose test column starts with `test`.
std::vector<double> bench_row(const std::string& table, const std::string& test)
{
    std::istringstream in(table);
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> cells;
        std::stringstream ss(line);
        for (std::string cell; std::getline(ss, cell, '|');) {
            cell.erase(0, cell.find_first_not_of(' '));
            cell.erase(cell.find_last_not_of(' ') + 1);
            cells.push_back(cell);
        }
        // "", model, size, params, backend, threads, test, t/s (mean ± sd), median t/s,
        // best t/s, ms/unit
        if (cells.size() < 11 || cells[6].rfind(test, 0) != 0) continue;
        return {std::atof(cells[5].c_str()), std::atof(cells[7].c_str()),
                std::atof(cells[8].c_str()), std::atof(cells[9].c_str()),
                std::atof(cells[10].c_str())};
    }
    return {};
}

// Writes a tiny checkpoint, then checks it as every loader sees it.
void check_tiny_checkpoint(const std::string& like, LlmArch arch, int vocab)
{
    TempDir dir(like);
    ASSERT_EQ(run_iris("make-random --like " + like + " --seed 7 --out " + dir.quoted()).status, 0);
    const fs::path p = dir.path();

    // config.json: the real layout, read by the project's parser.
    const json raw = read_json(p / "config.json");
    EXPECT_EQ(raw["model_type"], "internvl_chat");
    EXPECT_TRUE(raw.contains("llm_config") && raw.contains("vision_config"));
    const ModelConfig cfg = ModelConfig::load((p / "config.json").string());
    EXPECT_EQ(cfg.llm.arch, arch);
    EXPECT_EQ(cfg.llm.vocab_size, vocab);
    EXPECT_EQ(cfg.num_image_token(), 256);
    // iris info names the architecture from its configuration.
    const CommandResult info = run_iris("info --model " + dir.quoted());
    ASSERT_EQ(info.status, 0);
    EXPECT_NE(info.out.find(arch == LlmArch::qwen2
                                ? "llm           Qwen2 (Qwen2ForCausalLM)\n"
                                : "llm           InternLM2 (InternLM2ForCausalLM)\n"),
              std::string::npos)
        << info.out;

    // Every spec tensor with its shape, in BF16, and nothing else.
    auto st = SafeTensors::open((p / "model.safetensors").string());
    const auto expected = expected_tensors(cfg);
    EXPECT_EQ(st.tensors().size(), expected.size());
    for (const auto& [name, shape] : expected) {
        const TensorInfo* t = st.find(name);
        ASSERT_NE(t, nullptr) << name;
        EXPECT_EQ(t->shape, shape) << name;
        EXPECT_EQ(t->dtype, DType::bf16) << name;
    }
    // Well-scaled values: matrices ~N(0, 0.02), norm gains ~1, layer scales ~0.1.
    auto mean_std = [&](const char* name) {
        const auto v = st.get(name).to_f32();
        double s = 0, s2 = 0;
        for (float x : v) s += x, s2 += double(x) * x;
        const double mean = s / double(v.size());
        return std::pair {mean, std::sqrt(s2 / double(v.size()) - mean * mean)};
    };
    const auto [w_mean, w_std] = mean_std("mlp1.1.weight");
    EXPECT_NEAR(w_mean, 0.0, 0.002);
    EXPECT_NEAR(w_std, 0.02, 0.002);
    EXPECT_NEAR(mean_std("language_model.model.norm.weight").first, 1.0, 0.01);
    EXPECT_NEAR(mean_std("vision_model.encoder.layers.0.ls1").first, 0.1, 0.01);

    // The tokenizer: the real layout of special tokens, and a lossless round trip.
    auto tok = Tokenizer::load(p.string());
    EXPECT_EQ(tok->size(), vocab);
    for (const char* text : kSampleTexts) {
        const auto ids = tok->encode(text, false);
        EXPECT_EQ(tok->decode(ids, false), text);
        for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < vocab);
    }
    EXPECT_EQ(tok->token_id("<IMG_CONTEXT>"), vocab - 7);
    EXPECT_EQ(tok->token_id("</box>"), vocab - 1);

    // The network loads and one forward gives finite logits, with an image too.
    auto net = InternVL::load(p.string());
    std::vector<float> pixels(3 * 448 * 448);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = float(int(i % 97) - 48) / 24.f;
    const auto visual = net->encode_images(pixels, 1);
    ASSERT_EQ(visual.size(), size_t(256 * cfg.llm.hidden_size));
    std::vector<int32_t> ids = tok->encode("Describe <img>", true);
    const int32_t img_context = *tok->token_id("<IMG_CONTEXT>");
    ids.insert(ids.end(), 256, img_context);
    const auto more = tok->encode("</img> in detail.", false);
    ids.insert(ids.end(), more.begin(), more.end());
    auto cache = net->new_cache();
    const auto logits = net->forward(*cache, ids, visual, img_context);
    ASSERT_EQ(logits.size(), size_t(vocab));
    float max_abs = 0;
    for (float x : logits) {
        ASSERT_TRUE(std::isfinite(x));
        max_abs = std::max(max_abs, std::fabs(x));
    }
    EXPECT_GT(max_abs, 0.f);

    // The same seed gives the same bytes.
    TempDir again(like + "_again");
    ASSERT_EQ(run_iris("make-random --like " + like + " --seed 7 --out " + again.quoted()).status,
              0);
    const auto& a = st.get("mlp1.3.weight");
    auto st2 = SafeTensors::open((again.path() / "model.safetensors").string());
    const auto& b = st2.get("mlp1.3.weight");
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0);

    // iris bench prints its table with positive figures for every test.
    const CommandResult bench
        = run_iris("bench --model " + dir.quoted() + " -p 16 -n 4 --reps 2 --threads 2");
    ASSERT_EQ(bench.status, 0) << bench.out;
    for (const char* test : {"pp16", "tg4 @ d16", "vit448 x1"}) {
        const auto row = bench_row(bench.out, test);
        ASSERT_EQ(row.size(), 5u) << test << " missing from:\n" << bench.out;
        EXPECT_EQ(row[0], 2) << test; // threads
        for (size_t i = 1; i < row.size(); ++i) EXPECT_GT(row[i], 0) << test << "\n" << bench.out;
    }
    EXPECT_NE(bench.out.find("| model"), std::string::npos);
    EXPECT_NE(bench.out.find("kv cache"), std::string::npos);
}

} // namespace

TEST(MakeRandom, ATinyQwen2CheckpointLoadsTokenizesRunsAndBenchmarks)
{
    check_tiny_checkpoint("tiny-qwen2", LlmArch::qwen2, 968);
}

TEST(MakeRandom, ATinyInternLM2CheckpointLoadsTokenizesRunsAndBenchmarks)
{
    check_tiny_checkpoint("tiny-internlm2", LlmArch::internlm2, 809);
}

TEST(MakeRandom, TheRealQwen2TokenizerHasTheRealSizeAndSpecialTokenIds)
{
    TempDir dir("qwen2_tok");
    ASSERT_EQ(
        run_iris("make-random --like internvl2_5-1b --tokenizer-only --out " + dir.quoted()).status,
        0);
    EXPECT_FALSE(fs::exists(dir.path() / "model.safetensors"));
    const auto cfg = ModelConfig::load((dir.path() / "config.json").string());
    EXPECT_EQ(cfg.llm.num_hidden_layers, 24);
    EXPECT_EQ(cfg.llm.hidden_size, 896);
    EXPECT_EQ(cfg.vision.num_hidden_layers, 24);

    auto tok = Tokenizer::load(dir.path().string());
    EXPECT_EQ(tok->size(), 151674);
    EXPECT_EQ(tok->token_id("<|endoftext|>"), 151643);
    EXPECT_EQ(tok->token_id("<|im_start|>"), 151644);
    EXPECT_EQ(tok->token_id("<|im_end|>"), 151645);
    EXPECT_EQ(tok->token_id("<tool_call>"), 151657);
    EXPECT_EQ(tok->token_id("<img>"), 151665);
    EXPECT_EQ(tok->token_id("</img>"), 151666);
    EXPECT_EQ(tok->token_id("<IMG_CONTEXT>"), 151667);
    EXPECT_EQ(tok->token_id("</box>"), 151673);
    EXPECT_TRUE(tok->is_special(151645));
    EXPECT_FALSE(tok->is_special(151657));
    EXPECT_FALSE(tok->adds_bos());
    EXPECT_EQ(tok->token_text(0), "!");
    EXPECT_EQ(tok->token_text(220), "\xC4\xA0"); // Ġ, the space byte (GPT-2 byte order)
    for (const char* text : kSampleTexts)
        EXPECT_EQ(tok->decode(tok->encode(text, false), false), text);
    // Common English words are single tokens, as in the real vocabulary.
    const auto ids = tok->encode("The quick brown fox jumps over the lazy dog.", false);
    EXPECT_EQ(ids.size(), 10u);
    EXPECT_EQ(tok->encode(" the", false).size(), 1u);

    // vocab.json holds every id below the added tokens exactly once.
    const json vocab = read_json(dir.path() / "vocab.json");
    EXPECT_EQ(vocab.size(), 151643u);
    std::vector<bool> seen(151643, false);
    for (const auto& [token, id] : vocab.items()) {
        ASSERT_TRUE(id.get<int>() >= 0 && id.get<int>() < 151643) << token;
        EXPECT_FALSE(seen[size_t(id.get<int>())]) << token;
        seen[size_t(id.get<int>())] = true;
    }
}

// The shapes the GPU check times (scripts/device-check): InternVL2.5-8B's InternLM2.5-7B, and
// InternViT-6B's blocks (RMSNorm, q and k norms, no qkv bias) as InternVL2.5-26B has them.
TEST(MakeRandom, TheLargeShapesHaveTheRealConfigs)
{
    TempDir big("internvl2_5-8b");
    ASSERT_EQ(
        run_iris("make-random --like internvl2_5-8b --tokenizer-only --out " + big.quoted()).status,
        0);
    const auto llm = ModelConfig::load((big.path() / "config.json").string()).llm;
    EXPECT_EQ(llm.arch, LlmArch::internlm2);
    EXPECT_EQ(llm.num_hidden_layers, 32);
    EXPECT_EQ(llm.hidden_size, 4096);
    EXPECT_EQ(llm.num_attention_heads, 32);
    EXPECT_EQ(llm.num_key_value_heads, 8);
    EXPECT_EQ(llm.intermediate_size, 14336);

    TempDir vit("internvit-6b");
    ASSERT_EQ(
        run_iris("make-random --like internvit-6b --tokenizer-only --out " + vit.quoted()).status,
        0);
    const auto vc = ModelConfig::load((vit.path() / "config.json").string()).vision;
    EXPECT_EQ(vc.num_hidden_layers, 45);
    EXPECT_EQ(vc.hidden_size, 3200);
    EXPECT_EQ(vc.num_attention_heads, 25);
    EXPECT_EQ(vc.intermediate_size, 12800);
    EXPECT_TRUE(vc.rms_norm);
    EXPECT_TRUE(vc.qk_normalization);
    EXPECT_FALSE(vc.qkv_bias);
}

TEST(MakeRandom, TheRealInternLM2TokenizerIsAValidSentencePieceModelOfTheRealLayout)
{
    TempDir dir("internlm2_tok");
    ASSERT_EQ(
        run_iris("make-random --like internvl2_5-2b --tokenizer-only --out " + dir.quoted()).status,
        0);
    const auto cfg = ModelConfig::load((dir.path() / "config.json").string());
    EXPECT_EQ(cfg.llm.arch, LlmArch::internlm2);
    EXPECT_EQ(cfg.llm.hidden_size, 2048);
    EXPECT_EQ(cfg.llm.num_key_value_heads, 8);

    // libsentencepiece itself accepts the hand-written protobuf (docs/tokenizer.md §7 layout).
    sentencepiece::SentencePieceProcessor sp;
    ASSERT_TRUE(sp.Load((dir.path() / "tokenizer.model").string()).ok());
    EXPECT_EQ(sp.GetPieceSize(), 92544);
    EXPECT_TRUE(sp.IsUnknown(0));
    EXPECT_TRUE(sp.IsControl(1) && sp.IsControl(2));
    EXPECT_EQ(sp.bos_id(), 1);
    EXPECT_EQ(sp.eos_id(), 2);
    EXPECT_EQ(sp.IdToPiece(3), "<0x00>");
    EXPECT_EQ(sp.IdToPiece(258), "<0xFF>");
    EXPECT_TRUE(sp.IsByte(3) && sp.IsByte(258) && !sp.IsByte(259));
    EXPECT_EQ(sp.IdToPiece(92543), "[UNUSED_TOKEN_146]");
    std::vector<std::string> pieces;
    ASSERT_TRUE(sp.Encode("Hello world", &pieces).ok());
    EXPECT_EQ(pieces, (std::vector<std::string> {"Hello", "\xE2\x96\x81world"})); // no dummy prefix
    ASSERT_TRUE(sp.Encode("©", &pieces).ok());
    EXPECT_EQ(pieces, (std::vector<std::string> {"<0xC2>", "<0xA9>"})); // byte fallback

    auto tok = Tokenizer::load(dir.path().string());
    EXPECT_EQ(tok->size(), 92553);
    EXPECT_EQ(tok->token_id("<|im_end|>"), 92542);
    EXPECT_EQ(tok->token_id("<|im_start|>"), 92543);
    EXPECT_EQ(tok->token_id("<|plugin|>"), 92538);
    EXPECT_EQ(tok->token_id("<img>"), 92544);
    EXPECT_EQ(tok->token_id("<IMG_CONTEXT>"), 92546);
    EXPECT_EQ(tok->token_id("</box>"), 92552);
    EXPECT_TRUE(tok->adds_bos());
    EXPECT_EQ(tok->bos_id(), 1);
    const auto ids = tok->encode("<|im_start|>user\nHello<|im_end|>", true);
    ASSERT_GE(ids.size(), 4u);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(ids[1], 92543);
    EXPECT_EQ(ids.back(), 92542);
    for (const char* text : kSampleTexts)
        EXPECT_EQ(tok->decode(tok->encode(text, false), false), text);
    EXPECT_EQ(tok->encode("The quick brown fox jumps over the lazy dog.", false).size(), 10u);
}

TEST(MakeRandom, BadOptionsAreClearErrorsAndAFullFolderIsNotOverwritten)
{
    TempDir dir("errors");
    EXPECT_EQ(
        run_iris("make-random --like internvl9-1b --out " + dir.quoted() + " 2>/dev/null").status,
        1);
    EXPECT_EQ(
        run_iris("make-random --like tiny-qwen2 --dtype q4 --out " + dir.quoted() + " 2>/dev/null")
            .status,
        1);
    EXPECT_EQ(run_iris("make-random --like tiny-qwen2 2>/dev/null").status, 1); // no --out
    ASSERT_EQ(
        run_iris("make-random --like tiny-qwen2 --tokenizer-only --out " + dir.quoted()).status, 0);
    EXPECT_EQ(
        run_iris("make-random --like tiny-qwen2 --out " + dir.quoted() + " 2>/dev/null").status, 1);
    EXPECT_EQ(run_iris("make-random --like tiny-qwen2 --force --out " + dir.quoted()).status, 0);
    EXPECT_TRUE(fs::exists(dir.path() / "model.safetensors"));
    EXPECT_FALSE(fs::exists(dir.path() / "model.safetensors.tmp"));
    EXPECT_EQ(run_iris("bench --model " + dir.quoted() + " -p x 2>/dev/null").status, 1);
    EXPECT_EQ(run_iris("bench --model /nonexistent/model 2>/dev/null").status, 1);
}

TEST(MakeRandom, BenchPrintsOneJsonObjectWithEveryFigure)
{
    TempDir dir("json");
    ASSERT_EQ(
        run_iris("make-random --like tiny-internlm2 --dtype f32 --out " + dir.quoted()).status, 0);
    const CommandResult r
        = run_iris("bench --model " + dir.quoted() + " -p 8 -n 2 --tiles 2 --reps 1 --json");
    ASSERT_EQ(r.status, 0);
    const json j = json::parse(r.out);
    EXPECT_EQ(j["arch"], "internlm2");
    EXPECT_EQ(j["file_dtype"], "F32");
    EXPECT_GT(j["weight_bytes_mapped"].get<double>(), 0); // F32 is used in place
    EXPECT_GT(j["kv_cache_bytes"].get<double>(), 0);
    EXPECT_GT(j["params"].get<double>(), 0);
    ASSERT_EQ(j["tests"].size(), 3u);
    for (const auto& t : j["tests"]) {
        EXPECT_GT(t["median_per_s"].get<double>(), 0) << t.dump();
        EXPECT_GT(t["best_per_s"].get<double>(), 0) << t.dump();
        EXPECT_EQ(t["samples_ms"].size(), 1u);
    }
    EXPECT_EQ(j["tests"][2]["test"], "vit448 x2");
    EXPECT_EQ(j["tests"][2]["n"], 2);
}
