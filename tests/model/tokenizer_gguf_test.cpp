// Tokenizer::from_gguf against Tokenizer::load: the GGUF files iris quantize writes (as
// llama.cpp's converter does) from the golden tiny models and the demo model, and the real
// Qwen2 vocabulary in the converter's layout, give the same ids, text, sizes and special tokens
// on a varied corpus; hostile metadata is an Error naming the key, never a crash.
#include "model/gguf.h"
#include "model/tokenizer-impl.h"
#include "tests/errors.h"
#include "tests/files.h"
#include "tests/golden.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <span>
#include <sstream>

namespace fs = std::filesystem;
using iris::Error;
using iris::ErrorKind;
using iris::test::expect_error;
using iris::test::TempDir;
using namespace iris::model;
using nlohmann::json;

namespace {

const std::string kDemo = std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo";

std::string golden_path(const std::string& rel)
{
    return iris::test::golden_dir() + "/" + rel;
}

std::string read_text(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string quoted(const std::string& s)
{
    return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

// The language-model GGUF iris quantize writes for a checkpoint folder.
std::string export_llm(const std::string& dir, const std::string& type, const TempDir& tmp)
{
    QuantizeOptions o;
    o.type = type;
    o.out_dir = tmp.path().string();
    return quantize_checkpoint(dir, o).llm_path;
}

const std::vector<detail::AddedToken>& added_tokens(const Tokenizer& t)
{
    return dynamic_cast<const detail::TokenizerBase&>(t).added_tokens();
}

// Text of every kind, every added token embedded in text, the goldens' and tokenizer_test's
// prompts, ill-formed UTF-8 and random byte strings.
std::vector<std::string> corpus(const Tokenizer& hf)
{
    std::vector<std::string> texts = {
        "",
        " ",
        "  ",
        "\n",
        "\n\n\n",
        "Hello",
        " Hello",
        "   Hello   world   ",
        "Hello, world! 🚀🦙 😶‍🌫️ 👩🏽‍💻 🇫🇷",
        "你好，世界！这是一个测试。\n第二行\t制表符",
        "图中有什么？请描述这张图片。",
        "こんにちは 안녕하세요 Привет مرحبا שלום नमस्ते ไทย",
        "  leading and trailing  \n\n\n\t\t  multiple   spaces   ",
        "line1\r\nline2\rline3\u2028line4\u00a0nbsp\u3000ideographic\u000bvt\u000cff",
        "I'm sure they'LL do it, DON'T 'S x'y ſ'ſ",
        "ﬁ ① Ａ ½ Ⅻ ²³ ٣ 𝔘𝔫𝔦 cafe\u0301 nai\u0308ve",
        "1234567890 3.14159 -1,000,000 0x1F 2024-05-17 12:30",
        std::string("nul\0byte", 8),
        "\U0010FFFF \uFFFD \uFEFF zero\u200Bwidth",
        "def f(x):\n    return {\"a\": [1, 2]}  # comment\n",
        "\xff\xfe invalid \xc3 utf8 \xe4\xbd \xf0\x9f\x98 end\x80",
        "a\xc0\xaf"
        "b\xed\xa0\x80"
        "c",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<img><IMG_CONTEXT><IMG_CONTEXT></img>\nWhat is it?<|im_end|>\n<|im_start|>assistant\n",
        "<img><IMG_CONTEXT></img>",
        "<|im_start|>user\nPlease describe the image shortly.<|im_end|>\n",
        "<ref>the cat</ref><box>[[10, 20, 30, 40]]</box> <quad>x</quad>",
        "<s>text</s><unk>",
        "<|im_end|>The answer is 42.<|im_end|>",
        "The answer is 42.<|im_end|>",
        "<|plugin|><|interpreter|><|action_start|>x<|action_end|>",
        "<|endoftext|>a<|endoftext|>",
        std::string(500, 'a') + std::string(300, ' ') + std::string(200, '!') + "你好你好",
    };
    for (const auto& a : added_tokens(hf)) {
        const std::string& t = a.content;
        for (std::string s : {t, " " + t + " ", "a" + t + "b", t + t, "\n" + t + "\n",
                              "x " + t + "y" + t + " z", "  " + t})
            texts.push_back(std::move(s));
    }
    if (iris::test::have_golden()) {
        const json g = json::parse(read_text(golden_path("tokenizers/tokenizer_goldens.json")));
        for (const auto& [name, spec] : g["tokenizers"].items())
            for (const auto& c : spec["cases"]) texts.push_back(c["text"].get<std::string>());
    }
    std::mt19937 rng(7);
    const std::vector<std::string> pieces
        = {"a",  "Z", " ",    "  ",       "\n", "\t", "1", "23", "'s", "é", "中",
           "文", "🚀", "\xff", "\xe4\xbd", ".",  "!?", "<", ">",  "|",  "▁", "\u3000"};
    for (int i = 0; i < 200; ++i) {
        std::string s;
        const int n = int(rng() % 24);
        for (int k = 0; k < n; ++k) {
            if (rng() % 8 == 0 && !added_tokens(hf).empty())
                s += added_tokens(hf)[rng() % added_tokens(hf).size()].content;
            else
                s += pieces[rng() % pieces.size()];
        }
        texts.push_back(std::move(s));
    }
    return texts;
}

// `gguf` behaves as `hf` on the corpus and on every id; `special_differs` are ids the
// converter marks control although the checkpoint does not call them special (GGUF cannot say
// otherwise): only is_special and decode(skip_special) see them differently.
void expect_same(const Tokenizer& hf, const Tokenizer& gguf, const char* name,
                 const std::set<int32_t>& special_differs = {})
{
    ASSERT_EQ(gguf.size(), hf.size()) << name;
    EXPECT_EQ(gguf.bos_id(), hf.bos_id()) << name;
    EXPECT_EQ(gguf.adds_bos(), hf.adds_bos()) << name;
    for (int32_t id = -2; id < hf.size() + 8; ++id) {
        ASSERT_EQ(gguf.token_text(id), hf.token_text(id)) << name << " id " << id;
        if (!hf.token_text(id).empty()) {
            ASSERT_EQ(gguf.token_id(hf.token_text(id)), hf.token_id(hf.token_text(id)))
                << name << " id " << id;
        }
        if (special_differs.count(id))
            EXPECT_NE(gguf.is_special(id), hf.is_special(id)) << name << " id " << id;
        else
            ASSERT_EQ(gguf.is_special(id), hf.is_special(id)) << name << " id " << id;
    }
    for (const char* s : {"", "no such token", "<|no_such|>", "[PAD999999]"})
        EXPECT_EQ(gguf.token_id(s), hf.token_id(s)) << name << " " << s;

    auto without_differs = [&](std::vector<int32_t> ids) {
        std::erase_if(ids, [&](int32_t id) { return special_differs.count(id) != 0; });
        return ids;
    };
    // Every id decoded, in runs that mix model and added tokens.
    std::vector<int32_t> all;
    for (int32_t id = -1; id <= hf.size(); ++id) all.push_back(id);
    for (size_t at = 0; at < all.size(); at += 37) {
        const std::span<const int32_t> run(all.data() + at, std::min<size_t>(37, all.size() - at));
        EXPECT_EQ(gguf.decode(run, false), hf.decode(run, false)) << name << " ids from " << at;
        const auto kept = without_differs(std::vector<int32_t>(run.begin(), run.end()));
        EXPECT_EQ(gguf.decode(kept, true), hf.decode(kept, true)) << name << " ids from " << at;
    }

    int compared = 0;
    for (const std::string& text : corpus(hf)) {
        for (bool bos : {false, true}) {
            const auto ids = hf.encode(text, bos);
            ASSERT_EQ(gguf.encode(text, bos), ids)
                << name << " bos " << bos << ": " << quoted(text);
            // Client text: added-token strings stay text in both.
            ASSERT_EQ(gguf.encode_text(text, bos), hf.encode_text(text, bos))
                << name << " bos " << bos << " plain: " << quoted(text);
            EXPECT_EQ(gguf.decode(ids, false), hf.decode(ids, false))
                << name << ": " << quoted(text);
            const auto kept = without_differs(ids);
            EXPECT_EQ(gguf.decode(kept, true), hf.decode(kept, true))
                << name << ": " << quoted(text);
        }
        ++compared;
    }
    std::printf("[ compared ] %s: %d ids, %d strings encoded with and without BOS, identical\n",
                name, int(hf.size()), compared);
}

class TokenizerGguf : public testing::Test
{
protected:
    void SetUp() override { IRIS_REQUIRE_GOLDEN(); }
    TempDir tmp;
};

// ---------------------------------------------------------------------------------------------
// Small hand-made metadata for the error cases: a byte-level BPE and a SentencePiece.

GgufMetadata small_bpe()
{
    GgufMetadata md("small-bpe.gguf");
    md.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    md.set("tokenizer.ggml.pre", GgufValue::string("qwen2"));
    md.set("tokenizer.ggml.tokens",
           GgufValue::string_array({"a", "b", "ab", "Ġ", "Ġab", "<|end|>", "<x>", "[PAD7]"}));
    const std::vector<int32_t> types = {1, 1, 1, 1, 1, 3, 4, 5};
    md.set("tokenizer.ggml.token_type", GgufValue::array(std::span<const int32_t>(types)));
    md.set("tokenizer.ggml.merges", GgufValue::string_array({"a b", "Ġ ab"}));
    md.set("tokenizer.ggml.eos_token_id", GgufValue::u32(5));
    return md;
}

GgufMetadata small_spm(bool with_bytes = false)
{
    GgufMetadata md("small-spm.gguf");
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁ab"};
    std::vector<int32_t> types = {2, 3, 3, 1, 1, 1, 1, 1};
    std::vector<float> scores = {0, 0, 0, -1, -2, -3, -4, -5};
    if (with_bytes)
        for (int b = 0; b < 256; ++b) {
            tokens.push_back(iris::strfmt("<0x%02X>", b));
            types.push_back(6);
            scores.push_back(0);
        }
    tokens.push_back("<|im_end|>");
    types.push_back(3);
    scores.push_back(-1000);
    md.set("tokenizer.ggml.model", GgufValue::string("llama"));
    md.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
    md.set("tokenizer.ggml.scores", GgufValue::array(std::span<const float>(scores)));
    md.set("tokenizer.ggml.token_type", GgufValue::array(std::span<const int32_t>(types)));
    md.set("tokenizer.ggml.bos_token_id", GgufValue::u32(1));
    md.set("tokenizer.ggml.eos_token_id", GgufValue::u32(2));
    return md;
}

void set_types(GgufMetadata& md, std::vector<int32_t> types)
{
    md.set("tokenizer.ggml.token_type", GgufValue::array(std::span<const int32_t>(types)));
}

void expect_rejected(const GgufMetadata& md, ErrorKind kind,
                     std::initializer_list<std::string> parts)
{
    expect_error([&] { Tokenizer::from_gguf(md); }, kind, parts);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// The same tokenizer as the checkpoint's

TEST_F(TokenizerGguf, TinyQwen2GgufTokenizesLikeTheCheckpoint)
{
    const std::string dir = golden_path("models/tiny_qwen2");
    const GgufFile f = GgufFile::open(export_llm(dir, "q8_0", tmp));
    ASSERT_EQ(f.metadata().get_string("tokenizer.ggml.model"), "gpt2");
    const auto hf = Tokenizer::load(dir);
    const auto gguf = Tokenizer::from_gguf(f.metadata());
    expect_same(*hf, *gguf, "tiny_qwen2");
    // config.json's bos_token_id is in the file, but Qwen2 has no BOS token.
    EXPECT_TRUE(f.metadata().find("tokenizer.ggml.bos_token_id"));
    EXPECT_EQ(gguf->bos_id(), std::nullopt);
}

TEST_F(TokenizerGguf, TinyInternLM2GgufTokenizesLikeTheCheckpoint)
{
    const std::string dir = golden_path("models/tiny_internlm2");
    const GgufFile f = GgufFile::open(export_llm(dir, "f16", tmp));
    ASSERT_EQ(f.metadata().get_string("tokenizer.ggml.model"), "llama");
    const auto hf = Tokenizer::load(dir);
    const auto gguf = Tokenizer::from_gguf(f.metadata());
    expect_same(*hf, *gguf, "tiny_internlm2");
    EXPECT_EQ(gguf->bos_id(), 1);
    EXPECT_TRUE(gguf->adds_bos());
    // The model's whitespace-only pieces ("▁▁") apply to runs of spaces (its trainer's
    // allow_whitespace_only_pieces, which GGUF does not carry, matters only for training).
    const auto ids = gguf->encode("a   b", false);
    EXPECT_NE(std::find(ids.begin(), ids.end(), *gguf->token_id("▁▁")), ids.end());
}

TEST(TokenizerGgufDemo, DemoModelGgufTokenizesLikeTheCheckpoint)
{
    // The demo model ships with the sources; only the corpus's golden prompts need the golden set.
    TempDir tmp;
    const GgufFile f = GgufFile::open(export_llm(kDemo, "q8_0", tmp));
    ASSERT_EQ(f.metadata().get_string("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(f.metadata().get_bool("tokenizer.ggml.add_space_prefix"), false);
    const auto hf = Tokenizer::load(kDemo);
    const auto gguf = Tokenizer::from_gguf(f.metadata());
    expect_same(*hf, *gguf, "iris-demo");
}

// The real Qwen2 vocabulary (151k tokens and merges) has no checkpoint to export; its metadata
// is written here the way gguf-export.cpp's bpe_vocab and llama.cpp's converter write it, with
// the 262 placeholder ids an InternVL2.5-1B embedding has beyond the tokenizer.
TEST_F(TokenizerGguf, RealQwen2VocabularyInTheConvertersLayoutTokenizesLikeTheFiles)
{
    const std::string dir = golden_path("tokenizers/qwen2_real");
    const auto hf = Tokenizer::load(dir);
    const auto& base = dynamic_cast<const detail::TokenizerBase&>(*hf);
    const int32_t n_vocab = hf->size() + 262;
    std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
    std::vector<int32_t> types(static_cast<size_t>(n_vocab), 5);
    for (int32_t i = 0; i < n_vocab; ++i) {
        tokens[size_t(i)] = iris::strfmt("[PAD%d]", i);
        if (i < base.model_vocab_size()) {
            tokens[size_t(i)] = hf->token_text(i);
            types[size_t(i)] = 1;
        }
    }
    std::set<int32_t> special_differs;
    for (const auto& a : base.added_tokens()) {
        const bool looks_special = a.content.starts_with("<|") && a.content.ends_with("|>");
        tokens[size_t(a.id)] = a.content;
        types[size_t(a.id)] = a.special || looks_special ? 3 : 4;
        if (!a.special && looks_special) special_differs.insert(a.id);
    }
    std::vector<std::string> merges;
    std::istringstream lines(read_text(dir + "/merges.txt"));
    for (std::string line; std::getline(lines, line);) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (!line.empty() && !line.starts_with("#version")) merges.push_back(line);
    }
    GgufMetadata md(dir + " (as GGUF)");
    md.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    md.set("tokenizer.ggml.pre", GgufValue::string("qwen2"));
    md.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
    md.set("tokenizer.ggml.token_type", GgufValue::array(std::span<const int32_t>(types)));
    md.set("tokenizer.ggml.merges", GgufValue::string_array(merges));
    md.set("tokenizer.ggml.bos_token_id", GgufValue::u32(uint32_t(*hf->token_id("<|endoftext|>"))));
    md.set("tokenizer.ggml.eos_token_id", GgufValue::u32(uint32_t(*hf->token_id("<|im_end|>"))));
    md.set("tokenizer.ggml.padding_token_id",
           GgufValue::u32(uint32_t(*hf->token_id("<|endoftext|>"))));

    const auto gguf = Tokenizer::from_gguf(md);
    // Qwen2.5's <|fim_prefix|> ... <|file_sep|> are added tokens with special=false that the
    // converter writes as control.
    EXPECT_EQ(special_differs.size(), 6u);
    expect_same(*hf, *gguf, "qwen2_real", special_differs);
    for (int32_t id : special_differs) {
        EXPECT_TRUE(gguf->is_special(id));
        EXPECT_EQ(gguf->decode(std::vector<int32_t> {id}, true), "");
        EXPECT_EQ(hf->decode(std::vector<int32_t> {id}, true), hf->token_text(id));
    }
}

TEST(TokenizerGgufSmall, HandMadeVocabulariesEncode)
{
    const auto bpe = Tokenizer::from_gguf(small_bpe());
    EXPECT_EQ(bpe->size(), 7); // [PAD7] is no token
    EXPECT_EQ(bpe->encode("ab ab<|end|>b<x>", true), (std::vector<int32_t> {2, 4, 5, 1, 6}));
    EXPECT_TRUE(bpe->is_special(5));
    EXPECT_FALSE(bpe->is_special(6));
    EXPECT_EQ(bpe->token_text(7), "");
    EXPECT_EQ(bpe->bos_id(), std::nullopt);

    GgufMetadata md = small_spm();
    const auto spm = Tokenizer::from_gguf(md);
    EXPECT_EQ(spm->size(), 9);
    EXPECT_EQ(spm->encode("ab a<|im_end|>", true), (std::vector<int32_t> {1, 7, 6, 8}));
    EXPECT_EQ(spm->decode(spm->encode("ab a<|im_end|>", true), false), "<s>ab a<|im_end|>");
    md.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(false));
    md.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
    const auto bare = Tokenizer::from_gguf(md);
    EXPECT_FALSE(bare->adds_bos());
    EXPECT_EQ(bare->encode("ab", true), (std::vector<int32_t> {4, 5}));
    // Byte fallback once the 256 byte pieces are there.
    const auto bytes = Tokenizer::from_gguf(small_spm(true));
    EXPECT_EQ(bytes->encode("a中", false),
              (std::vector<int32_t> {6, 8 + 0xE4, 8 + 0xB8, 8 + 0xAD}));
    EXPECT_EQ(bytes->decode(bytes->encode("a中", false), false), "a中");
}

// A GGUF's pieces may skip ids (an unused token between them): size() stays above every id that
// encode emits, as with a vocab.json, which must number its tokens without gaps.
TEST(TokenizerGgufSmall, PiecesWithAGapKeepSizeAboveEveryId)
{
    GgufMetadata md("gap-bpe.gguf");
    md.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    md.set("tokenizer.ggml.pre", GgufValue::string("qwen2"));
    md.set("tokenizer.ggml.tokens", GgufValue::string_array({"a", "[UNUSED1]", "b", "ab"}));
    set_types(md, {1, 5, 1, 1});
    md.set("tokenizer.ggml.merges", GgufValue::string_array({"a b"}));
    const auto tok = Tokenizer::from_gguf(md);
    EXPECT_EQ(tok->encode("abba", false), (std::vector<int32_t> {3, 2, 0}));
    EXPECT_EQ(tok->size(), 4);
}

// ---------------------------------------------------------------------------------------------
// Hostile metadata

TEST(TokenizerGgufSmall, MissingOrMistypedKeysAreErrorsNamingTheKey)
{
    GgufMetadata none("empty.gguf");
    expect_rejected(none, ErrorKind::invalid_input, {"empty.gguf", "tokenizer.ggml.model"});

    GgufMetadata md = small_bpe();
    md.set("tokenizer.ggml.model", GgufValue::string("bert"));
    expect_rejected(md, ErrorKind::unsupported, {"small-bpe.gguf", "tokenizer.ggml.model", "bert"});
    md.set("tokenizer.ggml.model", GgufValue::u32(2));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.model"});
    md = small_bpe();
    md.set("tokenizer.ggml.pre", GgufValue::string("llama-bpe"));
    expect_rejected(md, ErrorKind::unsupported, {"tokenizer.ggml.pre", "llama-bpe"});
    md.set("tokenizer.ggml.pre", GgufValue::u32(1));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.pre"});

    for (const char* key :
         {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}) {
        GgufMetadata m("missing.gguf");
        const GgufMetadata full = small_bpe();
        for (const auto& [k, v] : full.entries())
            if (k != key) m.set(k, v);
        expect_rejected(m, ErrorKind::invalid_input, {"missing.gguf", key});
    }
    {
        GgufMetadata m("missing.gguf");
        const GgufMetadata full = small_spm();
        for (const auto& [k, v] : full.entries())
            if (k != "tokenizer.ggml.scores") m.set(k, v);
        expect_rejected(m, ErrorKind::invalid_input, {"tokenizer.ggml.scores"});
    }
    const std::vector<int32_t> ints = {1, 2, 3};
    for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"}) {
        md = small_bpe();
        md.set(key, GgufValue::array(std::span<const int32_t>(ints)));
        expect_rejected(md, ErrorKind::invalid_input, {key, "string[]"});
    }
    md = small_bpe();
    md.set("tokenizer.ggml.token_type", GgufValue::string_array({"1", "1"}));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.token_type"});
    md = small_spm();
    md.set("tokenizer.ggml.scores", GgufValue::string("0"));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.scores"});
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"}) {
        md = small_spm();
        md.set(key, GgufValue::string("1"));
        expect_rejected(md, ErrorKind::invalid_input, {key});
    }
    for (const char* key : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                            "tokenizer.ggml.add_space_prefix"}) {
        md = small_spm();
        md.set(key, GgufValue::u32(1));
        expect_rejected(md, ErrorKind::invalid_input, {key});
    }
}

TEST(TokenizerGgufSmall, InconsistentArraysAndIdsAreErrorsNamingTheKey)
{
    GgufMetadata md = small_bpe();
    set_types(md, {1, 1, 1});
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.token_type", "3", "8 tokens"});
    md = small_spm();
    const std::vector<float> three = {0, 0, 0};
    md.set("tokenizer.ggml.scores", GgufValue::array(std::span<const float>(three)));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.scores", "3 entries"});
    md = small_spm();
    std::vector<float> nan(9, 0.f);
    nan[4] = std::nanf("");
    md.set("tokenizer.ggml.scores", GgufValue::array(std::span<const float>(nan)));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.scores[4]"});

    md = small_bpe();
    set_types(md, {1, 1, 1, 1, 1, 3, 9, 5});
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.token_type[6]"});
    set_types(md, {1, 1, 1, 1, 1, 3, 0, 5});
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.token_type[6]"});
    set_types(md, {3, 3, 3, 3, 3, 3, 4, 5});
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.token_type", "no normal"});

    md = small_bpe();
    md.set("tokenizer.ggml.tokens",
           GgufValue::string_array({"a", "b", "ab", "Ġ", "Ġab", "<|end|>", "a", "[PAD7]"}));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.tokens[0] and [6]", "'a'"});
    md.set("tokenizer.ggml.tokens",
           GgufValue::string_array({"a", "b", "ab", "Ġ", "", "<|end|>", "<x>", "[PAD7]"}));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.tokens[4]", "empty"});
    md.set("tokenizer.ggml.tokens", GgufValue::string_array({}));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.tokens", "empty"});

    for (int64_t id : {int64_t(8), int64_t(-1), int64_t(1) << 40}) {
        md = small_bpe();
        md.set("tokenizer.ggml.eos_token_id", GgufValue::i64(id));
        expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.eos_token_id", "outside"});
    }
    // An id on a [PAD] placeholder is taken as that id.
    md = small_bpe();
    md.set("tokenizer.ggml.padding_token_id", GgufValue::u32(7));
    const auto tok = Tokenizer::from_gguf(md);
    EXPECT_EQ(tok->token_id("[PAD7]"), 7);
    EXPECT_TRUE(tok->is_special(7));
}

TEST(TokenizerGgufSmall, BadMergesAreErrorsNamingTheEntry)
{
    for (const char* bad : {"ab", "a  b", " a", "a ", "a b c", ""}) {
        GgufMetadata md = small_bpe();
        md.set("tokenizer.ggml.merges", GgufValue::string_array({"a b", bad}));
        expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.merges[1]"});
    }
    for (const char* unknown : {"a c", "<|end|> a", "a [PAD7]"}) {
        GgufMetadata md = small_bpe();
        md.set("tokenizer.ggml.merges", GgufValue::string_array({unknown}));
        expect_rejected(md, ErrorKind::invalid_input,
                        {"tokenizer.ggml.merges[0]", "not a token of the vocabulary"});
    }
}

TEST(TokenizerGgufSmall, SentencePieceInconsistenciesAreErrorsNotAborts)
{
    GgufMetadata md = small_spm();
    set_types(md, {1, 3, 3, 1, 1, 1, 1, 1, 3});
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.token_type", "no unknown"});
    md.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(1)); // <s>, a control token
    EXPECT_EQ(Tokenizer::from_gguf(md)->encode("ab", false), (std::vector<int32_t> {7}));
    md.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(4)); // "a", a normal token
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.unknown_token_id"});
    md = small_spm();
    set_types(md, {2, 3, 3, 2, 1, 1, 1, 1, 3});
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.token_type", "0 and 3"});
    // Byte pieces that are not all 256 / not "<0xXX>": SentencePiece's own checks, reported.
    set_types(md, {2, 3, 3, 1, 6, 1, 1, 1, 3});
    expect_rejected(md, ErrorKind::invalid_input,
                    {"small-spm.gguf", "tokenizer.ggml.tokens", "SentencePiece"});
    md = small_spm(true);
    std::vector<int32_t> types = md.get_i32_array("tokenizer.ggml.token_type");
    types[20] = 1;
    set_types(md, types);
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.tokens", "256 byte pieces"});
}

TEST(TokenizerGgufSmall, HugeCountsAreRefusedBeforeTheyAreUsed)
{
    GgufMetadata md = small_bpe();
    md.set(
        "tokenizer.ggml.tokens",
        GgufValue::string_array(std::vector<std::string>((size_t(1) << 21) + 1, std::string("x"))));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.tokens", "more than"});
    md.set("tokenizer.ggml.tokens", GgufValue::string_array({std::string(70000, 'a')}));
    expect_rejected(md, ErrorKind::invalid_input, {"tokenizer.ggml.tokens[0]", "70000 bytes"});
}

TEST(TokenizerGgufSmall, MetadataReadBackFromGgufBytesGivesTheSameTokenizer)
{
    // Through the file format: GgufWriter, bytes, GgufFile::from_bytes.
    TempDir tmp;
    GgufWriter w;
    const GgufMetadata with_bytes = small_spm(true);
    for (const auto& [k, v] : with_bytes.entries()) w.set(k, v);
    w.write(tmp.file("t.gguf"));
    const std::string bytes = iris::test::read_bytes(tmp.file("t.gguf"));
    const GgufFile f
        = GgufFile::from_bytes(std::vector<uint8_t>(bytes.begin(), bytes.end()), "mem.gguf");
    const auto a = Tokenizer::from_gguf(f.metadata());
    const auto b = Tokenizer::from_gguf(small_spm(true));
    for (const char* text : {"ab a", "a中 b", "<|im_end|>a"})
        EXPECT_EQ(a->encode(text, true), b->encode(text, true)) << text;

    // A mistyped array in a real file is named with the file.
    GgufWriter bad;
    const GgufMetadata plain = small_spm();
    for (const auto& [k, v] : plain.entries()) bad.set(k, v);
    bad.set("tokenizer.ggml.token_type", GgufValue::string_array({"x"}));
    bad.write(tmp.file("bad.gguf"));
    const std::string bad_bytes = iris::test::read_bytes(tmp.file("bad.gguf"));
    const GgufFile g = GgufFile::from_bytes(
        std::vector<uint8_t>(bad_bytes.begin(), bad_bytes.end()), "bad-mem.gguf");
    expect_rejected(g.metadata(), ErrorKind::invalid_input,
                    {"bad-mem.gguf", "tokenizer.ggml.token_type"});
}

// Random corruptions of real metadata: each loads or is an iris::Error, never a crash.
TEST_F(TokenizerGguf, RandomlyCorruptedMetadataNeverCrashes)
{
    std::mt19937 rng(11);
    for (const char* model : {"tiny_internlm2", "tiny_qwen2"}) {
        TempDir out;
        const GgufFile f = GgufFile::open(export_llm(golden_path("models/") + model, "f16", out));
        const GgufMetadata& base = f.metadata();
        int loaded = 0, rejected = 0;
        for (int round = 0; round < 150; ++round) {
            GgufMetadata md("corrupt.gguf");
            for (const auto& [k, v] : base.entries()) md.set(k, v);
            auto tokens = base.get_string_array("tokenizer.ggml.tokens");
            auto types = base.get_i32_array("tokenizer.ggml.token_type");
            const size_t n = tokens.size();
            for (int k = 0, edits = 1 + int(rng() % 4); k < edits; ++k) {
                const size_t i = rng() % n;
                switch (rng() % 6) {
                case 0:
                    types[i] = int32_t(rng() % 8);
                    break;
                case 1:
                    tokens[i] = tokens[rng() % n];
                    break;
                case 2:
                    tokens[i] = iris::strfmt("<0x%02X>", unsigned(rng() % 300));
                    break;
                case 3:
                    tokens[i] = std::string(1 + rng() % 3, char(rng() % 256));
                    break;
                case 4:
                    md.set("tokenizer.ggml.bos_token_id",
                           GgufValue::i64(int64_t(rng() % (n + 4)) - 2));
                    break;
                default:
                    types.resize(n - rng() % 2);
                    break;
                }
            }
            md.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
            set_types(md, types);
            try {
                const auto tok = Tokenizer::from_gguf(md);
                (void)tok->encode("Hello 你好 <|im_end|> <img>\xff", true);
                ++loaded;
            } catch (const Error& e) {
                EXPECT_NE(std::string(e.what()).find("corrupt.gguf"), std::string::npos)
                    << e.what();
                ++rejected;
            }
        }
        std::printf("[ corrupt  ] %s: %d loaded, %d rejected\n", model, loaded, rejected);
        EXPECT_GT(rejected, 0);
    }
}
