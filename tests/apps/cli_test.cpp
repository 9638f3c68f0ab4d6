#include "model/model.h"
#include "tests/apps/shell.h"
#include "tests/golden.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace fs = std::filesystem;
using iris::model::SafeTensors;
using iris::model::SafeTensorsWriter;

namespace {

const fs::path kGolden = iris::test::golden_dir();

using iris::test::quoted;
using iris::test::Result;

// Runs `iris <args>` through the shell; stderr goes to the test log.
Result run_iris(const std::string& args, const std::string& env = "")
{
    return iris::test::run_shell((env.empty() ? "" : env + " ") + std::string(IRIS_BINARY) + " "
                                 + args);
}

std::string q(const fs::path& p)
{
    return quoted(p);
}

fs::path temp_dir()
{
    fs::path d = fs::temp_directory_path() / ("iris_cli_test_" + std::to_string(getpid()));
    fs::create_directories(d);
    return d;
}

nlohmann::json index()
{
    std::ifstream in(kGolden / "index.json");
    return nlohmann::json::parse(in);
}

std::vector<int64_t> json_ids(const std::string& text)
{
    return nlohmann::json::parse(text).get<std::vector<int64_t>>();
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b)
{
    EXPECT_EQ(a.size(), b.size());
    float m = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

} // namespace

TEST(Cli, UnknownCommandsAndOptionsAreUsageErrors)
{
    EXPECT_EQ(run_iris("no-such-command 2>/dev/null").status, 2);
    EXPECT_EQ(run_iris("tokenize --bogus x 2>/dev/null").status, 1);
    EXPECT_EQ(run_iris("ask --model /nonexistent/model 'hi' 2>/dev/null").status, 1);
}

// iris info names the CPU kernels in use, which IRIS_CPU can lower, and claims no GPU backend.
TEST(Cli, InfoNamesTheCpuKernelsAndTheDevices)
{
    auto r = run_iris("info");
    ASSERT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("backends      cpu"), std::string::npos) << r.out;
    std::string devices;
    for (const std::string& d : iris::model::available_devices())
        devices += (devices.empty() ? "" : ", ") + d;
    EXPECT_NE(r.out.find("--device      " + devices + "\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(std::string(iris::model::cpu_kernels_name()) + " kernels"),
              std::string::npos)
        << r.out;
    r = run_iris("info", "IRIS_CPU=portable");
    EXPECT_NE(r.out.find("portable kernels"), std::string::npos) << r.out;
}

// --quantize, --precision and --device: an unknown value is an error naming the choices.
TEST(Cli, LoadOptionsRejectUnknownValues)
{
    auto r = run_iris("ask --quantize q7_0 'hi' 2>&1");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("q4_K_M"), std::string::npos) << r.out;
    r = run_iris("ask --precision fp8 'hi' 2>&1");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("f32 or bf16"), std::string::npos) << r.out;
    r = run_iris("ask --device gpu 'hi' 2>&1");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("unknown device 'gpu': say cpu, cuda or cuda:N"), std::string::npos)
        << r.out;
    r = run_iris("ask 'hi' 2>&1", "IRIS_DEVICE=cuda:7");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("cuda:7"), std::string::npos) << r.out;
}

TEST(Cli, PromptPrintsTheOfficialInputIdsForBothGoldenModels)
{
    IRIS_REQUIRE_GOLDEN();
    const auto idx = index();
    for (auto& [name, c] : idx["cases"]["full"].items()) {
        SCOPED_TRACE(name);
        Result r = run_iris("prompt --json --model " + q(kGolden / c["model"].get<std::string>())
                            + " --image " + q(kGolden / c["image"].get<std::string>()) + " "
                            + q(c["question"].get<std::string>()));
        ASSERT_EQ(r.status, 0);
        auto st = SafeTensors::open((kGolden / c["file"].get<std::string>()).string());
        EXPECT_EQ(json_ids(r.out), st.get("input_ids").to_i64());
    }
}

TEST(Cli, TokenizeReadsFilesByteForByteAndAddsBosWhereTheTokenizerDoes)
{
    IRIS_REQUIRE_GOLDEN();
    std::ifstream in(kGolden / "tokenizers/tokenizer_goldens.json");
    auto goldens = nlohmann::json::parse(in);
    fs::path dir = temp_dir();
    for (const char* name : {"tiny_qwen2", "tiny_internlm2"}) {
        SCOPED_TRACE(name);
        int checked = 0;
        for (auto& c : goldens["tokenizers"][name]["cases"]) {
            if (checked++ == 5) break;
            fs::path f = dir / "text.txt";
            std::ofstream(f, std::ios::binary) << c["text"].get<std::string>();
            Result r = run_iris("tokenize --json --model " + q(kGolden / "models" / name)
                                + " --file " + q(f));
            ASSERT_EQ(r.status, 0);
            EXPECT_EQ(json_ids(r.out), c["ids"].get<std::vector<int64_t>>()) << c["text"];
        }
    }
    Result r = run_iris("tokenize --json --no-bos --model " + q(kGolden / "models/tiny_internlm2")
                        + " 'a'");
    ASSERT_EQ(r.status, 0);
    EXPECT_NE(json_ids(r.out).front(), 1);
}

TEST(Cli, PreprocessWritesTheOfficialPixelValuesAndTheGrid)
{
    IRIS_REQUIRE_GOLDEN();
    fs::path out = temp_dir() / "pv.safetensors";
    ASSERT_EQ(
        run_iris("preprocess --image " + q(kGolden / "images/img_448x448.png") + " --out " + q(out))
            .status,
        0);
    auto got = SafeTensors::open(out.string());
    auto expect
        = SafeTensors::open((kGolden / "preprocess/img_448x448_pixel_values.safetensors").string());
    EXPECT_EQ(got.get("pixel_values").shape, expect.get("pixel_values").shape);
    EXPECT_LE(max_abs_diff(got.get("pixel_values").to_f32(), expect.get("pixel_values").to_f32()),
              1e-6f);
    EXPECT_EQ(got.metadata().at("grid"), "1x1");

    ASSERT_EQ(
        run_iris("preprocess --image " + q(kGolden / "images/img_800x600.png") + " --out " + q(out))
            .status,
        0);
    auto grid = SafeTensors::open(out.string());
    EXPECT_EQ(grid.metadata().at("grid"), "4x3");
    EXPECT_EQ(grid.get("pixel_values").shape, (std::vector<int64_t> {13, 3, 448, 448}));
}

// preprocess -> forward -> generate reproduces the official full-model outputs.
TEST(Cli, ForwardAndGenerateReproduceTheOfficialLogitsAndGreedyTokens)
{
    IRIS_REQUIRE_GOLDEN();
    fs::path dir = temp_dir();
    const auto idx = index();
    for (auto& [name, c] : idx["cases"]["full"].items()) {
        SCOPED_TRACE(name);
        fs::path pv = dir / "pv.safetensors", in = dir / "in.safetensors",
                 out = dir / "out.safetensors";
        ASSERT_EQ(run_iris("preprocess --image " + q(kGolden / c["image"].get<std::string>())
                           + " --out " + q(pv))
                      .status,
                  0);
        auto full = SafeTensors::open((kGolden / c["file"].get<std::string>()).string());
        auto pixels = SafeTensors::open(pv.string());
        SafeTensorsWriter w;
        auto ids = full.get("input_ids").to_i64();
        w.add_i64("input_ids", {int64_t(ids.size())}, ids);
        w.add_f32("pixel_values", pixels.get("pixel_values").shape,
                  pixels.get("pixel_values").to_f32());
        w.write(in.string());

        std::string model = q(kGolden / c["model"].get<std::string>());
        ASSERT_EQ(run_iris("forward --model " + model + " --in " + q(in) + " --out " + q(out)
                           + " 2>/dev/null")
                      .status,
                  0);
        auto got = SafeTensors::open(out.string());
        EXPECT_EQ(got.get("logits").shape, full.get("logits").shape);
        EXPECT_LE(max_abs_diff(got.get("logits").to_f32(), full.get("logits").to_f32()), 1e-4f);

        Result r = run_iris("generate --json --ignore-eos --max-new-tokens 16 --model " + model
                            + " --in " + q(in) + " 2>/dev/null");
        ASSERT_EQ(r.status, 0);
        EXPECT_EQ(json_ids(r.out), full.get("greedy_tokens").to_i64());
    }
}

// Issue 22, "ids are ids": input_ids without pixel_values run the language model on exactly
// those ids, an <IMG_CONTEXT> id embedded like any other token (the official language_model
// forward); with pixel values the images fill those positions, as above.
TEST(Cli, ForwardWithoutPixelValuesEmbedsEveryIdAsAToken)
{
    IRIS_REQUIRE_GOLDEN();
    fs::path dir = temp_dir();
    const auto idx = index();
    const auto& c = idx["cases"]["full"]["tiny_qwen2"];
    const int64_t ctx = c["img_context_token_id"].get<int64_t>();
    auto full = SafeTensors::open((kGolden / c["file"].get<std::string>()).string());
    const auto golden_ids = full.get("input_ids").to_i64();
    std::vector<int64_t> ids(golden_ids.begin(), golden_ids.begin() + 12);
    ids.insert(ids.end(), {ctx, ctx, golden_ids[5], ctx});
    fs::path in = dir / "in.safetensors", out = dir / "out.safetensors";
    SafeTensorsWriter w;
    w.add_i64("input_ids", {int64_t(ids.size())}, ids);
    w.write(in.string());
    const fs::path model = kGolden / c["model"].get<std::string>();
    Result r
        = run_iris("forward --model " + q(model) + " --in " + q(in) + " --out " + q(out) + " 2>&1");
    ASSERT_EQ(r.status, 0) << r.out;

    auto net = iris::model::InternVL::load(model.string());
    auto cache = net->new_cache({});
    std::vector<int32_t> ids32(ids.begin(), ids.end());
    auto want = net->forward(*cache, ids32, {}, -1, /*all_logits=*/true);
    auto got = SafeTensors::open(out.string());
    EXPECT_EQ(got.get("logits").shape,
              (std::vector<int64_t> {int64_t(ids.size()), net->config().llm.vocab_size}));
    EXPECT_LE(
        max_abs_diff(got.get("logits").to_f32(), std::vector<float>(want.begin(), want.end())),
        1e-5f);
    EXPECT_EQ(got.find("visual_tokens"), nullptr);
    Result g = run_iris("generate --json --max-new-tokens 2 --ignore-eos --model " + q(model)
                        + " --in " + q(in) + " 2>&1");
    EXPECT_EQ(g.status, 0) << g.out;
}

TEST(Cli, AskStreamsAnAnswerAndRejectsACorruptImage)
{
    IRIS_REQUIRE_GOLDEN();
    fs::path dir = temp_dir();
    std::string model = q(kGolden / "models/tiny_qwen2");
    Result r = run_iris("ask --model " + model + " --max-new-tokens 4 --image "
                        + q(kGolden / "images/img_448x448.png") + " 'What is it?' 2>/dev/null");
    EXPECT_EQ(r.status, 0);
    EXPECT_FALSE(r.out.empty());

    fs::path bad = dir / "bad.png";
    {
        std::ifstream src(kGolden / "images/img_448x448.png", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(src)), {});
        std::ofstream(bad, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    Result b = run_iris("ask --model " + model + " --image " + q(bad) + " 'What is it?' 2>&1");
    EXPECT_EQ(b.status, 1);
    EXPECT_NE(b.out.find("bad.png"), std::string::npos) << b.out;
}

// Issue 22: a prompt past --max-prompt-tokens (default 8192) or the model's 32768 positions is an
// error before it is run, not minutes of prefill ending in an empty answer.
TEST(Cli, PromptsLongerThanTheLimitOrTheModelsPositionsAreRefused)
{
    fs::path dir = temp_dir();
    {
        std::ofstream long_question(dir / "long.txt"); // 34,001 tokens of the demo model's
        for (int i = 0; i < 34000; ++i) long_question << "a ";
        long_question << "a";
    }
    const std::string question = "\"$(cat " + q(dir / "long.txt") + ")\"";
    Result r = run_iris("ask " + question + " 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("iris ask: the prompt has 34027 tokens, more than the 8192 allowed"),
              std::string::npos)
        << r.out;
    r = run_iris("ask --max-prompt-tokens 100000 " + question + " 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("more than the model's 32768 positions"), std::string::npos) << r.out;

    r = run_iris("ask --max-prompt-tokens 10 'What colour is the square?' 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("more than the 10 allowed"), std::string::npos) << r.out;
    EXPECT_EQ(run_iris("ask --max-prompt-tokens 0 'x' 2>/dev/null").status, 1);
    // chat answers the next turn after one that was too long.
    r = run_iris("chat --max-prompt-tokens 40 --max-new-tokens 4 2>&1 <<'EOF'\n"
                 "Tell me about the red square and the blue circle and the green hexagon and the "
                 "yellow triangle and the purple star and the orange oval, every one of them.\n"
                 "Hi\n/quit\nEOF");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("error: the prompt has"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("error:"), r.out.rfind("error:")) << r.out;
}

TEST(Cli, SkvqCacheOptionsCalibrateKvAndKvEvalRunOnATinyModel)
{
    IRIS_REQUIRE_GOLDEN();
    const fs::path dir = temp_dir() / "skvq-model";
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(kGolden / "models/tiny_qwen2"))
        if (!fs::exists(dir / e.path().filename()))
            fs::create_symlink(e.path(), dir / e.path().filename());
    const std::string model = q(dir), image = q(kGolden / "images/img_448x448.png");
    Result r = run_iris("ask --model " + model
                        + " --max-new-tokens 4 --kv skvq --kv-bits K4V4 "
                          "--kv-window 0 --kv-group 32 --image "
                        + image + " 'What is it?' 2>/dev/null");
    EXPECT_EQ(r.status, 0);
    EXPECT_FALSE(r.out.empty());
    const std::pair<const char*, const char*> bad[]
        = {{"--kv skvq --kv-bits K3V2", "K3V2"},
           {"--kv f16 --kv-bits K2V2", "need --kv skvq"},
           {"--kv skvq --kv-group 48", "--kv-group"},
           {"--kv-k skvq --kv-v f16", "alike"}};
    for (const auto& [args, says] : bad) {
        Result b = run_iris("ask --model " + model + " " + args + " 'hi' 2>&1");
        EXPECT_EQ(b.status, 1) << args;
        EXPECT_NE(b.out.find(says), std::string::npos) << b.out;
    }

    const fs::path text = temp_dir() / "calibration.txt";
    std::ofstream(text) << "The red circle is left of the blue square. The green star is above.";
    r = run_iris("calibrate-kv --model " + model + " --data " + image + " " + q(text)
                 + " --min-tokens 400 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("from 2 prompts"), std::string::npos) << r.out;
    ASSERT_TRUE(fs::exists(dir / "kv-calibration.safetensors"));

    r = run_iris("kv-eval --model " + model + " --data " + q(text) + " --steps 4 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("calibrated (kv-calibration.safetensors)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| skvq K2V1.5 g32 w128 s5 |"), std::string::npos) << r.out;

    std::ofstream(dir / "kv-calibration.safetensors") << "corrupt";
    Result c = run_iris("ask --model " + model + " --max-new-tokens 2 'hi' 2>&1");
    EXPECT_EQ(c.status, 1);
    EXPECT_NE(c.out.find("KV calibration"), std::string::npos) << c.out;
}

TEST(Cli, QuantizeWritesBothGgufFilesAndReplacesThemOnlyWithForce)
{
    IRIS_REQUIRE_GOLDEN();
    const std::string model = q(kGolden / "models" / "tiny_internlm2");
    const fs::path out = temp_dir() / "quantize";
    fs::remove_all(out);
    Result h = run_iris("quantize --help");
    EXPECT_EQ(h.status, 0);
    EXPECT_NE(h.out.find("usage: iris quantize"), std::string::npos) << h.out;

    Result r = run_iris("quantize --model " + model + " --type q4_k_m --out " + q(out)
                        + " --threads 2 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    const fs::path llm = out / "tiny_internlm2-Q4_K_M.gguf";
    EXPECT_NE(r.out.find(llm.string()), std::string::npos) << r.out;
    EXPECT_TRUE(fs::exists(out / "mmproj-tiny_internlm2-F16.gguf"));
    const auto written = fs::last_write_time(llm);

    Result again
        = run_iris("quantize --model " + model + " --type q4_K_M --out " + q(out) + " 2>&1");
    EXPECT_EQ(again.status, 1);
    EXPECT_NE(again.out.find("--force"), std::string::npos) << again.out;
    EXPECT_EQ(fs::last_write_time(llm), written);
    EXPECT_EQ(run_iris("quantize --model " + model + " --type q4_K_M --out " + q(out)
                       + " --force 2>/dev/null")
                  .status,
              0);

    Result bad = run_iris("quantize --model " + model + " --type q2_K --out " + q(out) + " 2>&1");
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.out.find("use one of q8_0, q4_0"), std::string::npos) << bad.out;
    fs::remove_all(out);
}
