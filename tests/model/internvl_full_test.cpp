// The whole InternVL path (tiles -> ViT -> mlp1 -> <IMG_CONTEXT> merge -> LLM -> greedy decode
// through the KV cache) against the official full-prompt goldens (shared/golden/full).
#include "network-golden.h"
#include "tests/errors.h"
#include "tests/files.h"

#include <cstring>
#include <limits>

namespace iris::test {
namespace {

TEST(InternVlFullGolden, MultimodalPromptLogitsHiddenStatesAndGreedyDecodeMatchTheOfficialRun)
{
    IRIS_REQUIRE_GOLDEN();
    const auto& index = golden_index();
    const auto pre
        = read_json(golden_dir() + "/" + index["cases"]["preprocess"]["json"].get<std::string>());
    ASSERT_FALSE(index["cases"]["full"].empty());
    for (const auto& [name, cs] : index["cases"]["full"].items()) {
        SCOPED_TRACE(name);
        auto net = golden_model(cs["model"].get<std::string>());
        GoldenFile ref(cs["file"].get<std::string>());
        const int32_t img_ctx = cs["img_context_token_id"].get<int32_t>();
        const std::vector<int32_t> ids = ref.ids("input_ids");
        const size_t n = ids.size();
        const size_t vocab = size_t(net->config().llm.vocab_size);
        const size_t hidden = size_t(net->config().llm.hidden_size);
        const int n_layers = net->config().llm.num_hidden_layers;
        ASSERT_EQ(int(n), cs["prompt_length"].get<int>());

        // The image: its tiles as the official dynamic_preprocess cut them.
        std::string image = std::filesystem::path(cs["image"].get<std::string>()).stem().string();
        std::vector<std::string> tiles = tile_list(pre.at(image).at("tiles"));
        ASSERT_EQ(int(tiles.size()), cs["num_tiles"].get<int>());
        int64_t t0 = now_us();
        std::vector<float> visual = net->encode_images(tile_pixel_values(tiles), int(tiles.size()));
        int64_t t1 = now_us();
        ASSERT_EQ(visual.size() / hidden, size_t(cs["num_image_tokens"].get<int>()));

        // Prompt: logits at every position and the hidden states of every layer.
        auto cache = net->new_cache();
        model::LlmTrace trace;
        auto logits = net->forward(*cache, ids, visual, img_ctx, /*all_logits=*/true, &trace);
        int64_t t2 = now_us();
        std::printf("[ timing   ] %s: vision %.1f ms (%zu tiles), prefill %.1f ms (%zu tokens)\n",
                    name.c_str(), double(t1 - t0) / 1000.0, tiles.size(), double(t2 - t1) / 1000.0,
                    n);
        std::vector<float> step0(logits.end() - std::ptrdiff_t(vocab), logits.end());
        double err = max_abs_diff(logits, ref.f32("logits"));
        report("full/" + name + " logits", err);
        EXPECT_LE(err, kTolerance);

        // hidden_states [L+1, T, H]: [0] embeddings after the merge, [i] layer outputs, [L]
        // after the final norm (HF replaces the last one).
        std::vector<float> want_hidden = ref.f32("hidden_states");
        ASSERT_EQ(want_hidden.size(), size_t(n_layers + 1) * n * hidden);
        std::vector<float> ours(trace.hidden_states.begin(),
                                trace.hidden_states.begin()
                                    + std::ptrdiff_t(size_t(n_layers) * n * hidden));
        ours.insert(ours.end(), trace.final_norm.begin(), trace.final_norm.end());
        err = max_abs_diff(ours, want_hidden);
        report("full/" + name + " hidden_states", err);
        EXPECT_LE(err, kTolerance);

        // Greedy decode, EOS ignored, through the KV cache.
        const std::vector<int32_t> want_tokens = ref.ids("greedy_tokens");
        const std::vector<float> want_steps = ref.f32("greedy_step_logits");
        std::vector<int32_t> tokens;
        std::vector<float> steps(step0);
        int32_t next = argmax(step0);
        int64_t t3 = now_us();
        for (size_t i = 0; i < want_tokens.size(); ++i) {
            tokens.push_back(next);
            if (i + 1 == want_tokens.size()) break;
            auto l = net->forward(*cache, {&next, 1}, {}, img_ctx);
            steps.insert(steps.end(), l.begin(), l.end());
            next = argmax(l);
        }
        std::printf("[ timing   ] %s: %.3f ms per decode step\n", name.c_str(),
                    double(now_us() - t3) / 1000.0 / double(want_tokens.size() - 1));
        EXPECT_EQ(tokens, want_tokens);
        err = max_abs_diff(steps, want_steps);
        report("full/" + name + " greedy_step_logits", err);
        EXPECT_LE(err, kTolerance);

        // official generate() = the LLM's bos id, then the same 16 tokens.
        std::vector<int32_t> official = ref.ids("official_generate_tokens");
        ASSERT_EQ(official.size(), want_tokens.size() + 1);
        EXPECT_EQ(std::vector<int32_t>(official.begin() + 1, official.end()), tokens);
    }
}

// --precision bf16 on the bf16 twin of tiny_qwen2 (the same values): the ViT's and the
// prompt's products round their activations to bf16, yet the visual tokens keep a cosine
// similarity of at least 0.9999 with the official ones and the greedy tokens stay the
// official ones.
TEST(InternVlFullGolden, Bf16PrecisionKeepsTheVisualTokensAndTheGreedyTokens)
{
    IRIS_REQUIRE_GOLDEN();
    const std::string bf16_dir = golden_dir() + "/models/tiny_qwen2_bf16";
    if (!std::filesystem::exists(bf16_dir)) GTEST_SKIP() << "no models/tiny_qwen2_bf16";
    auto net = model::InternVL::load(
        bf16_dir, {.progress = {}, .quantize = {}, .precision = model::Precision::bf16});
    const auto& index = golden_index();
    int checked = 0;
    for (const auto& [name, cs] : index["cases"]["vision"].items()) {
        if (cs["model"].get<std::string>() != "models/tiny_qwen2") continue;
        GoldenFile ref(cs["file"].get<std::string>());
        const auto tiles = tile_list(cs["input_tiles"]);
        std::vector<float> visual = net->encode_images(tile_pixel_values(tiles), int(tiles.size()));
        const std::vector<float> want = ref.f32("visual_tokens");
        ASSERT_EQ(visual.size(), want.size()) << name;
        double dot = 0, na = 0, nb = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            dot += double(visual[i]) * want[i];
            na += double(visual[i]) * visual[i];
            nb += double(want[i]) * want[i];
        }
        const double cosine = dot / std::sqrt(na * nb);
        std::printf("[ bf16     ] %s: visual tokens cosine %.7f\n", name.c_str(), cosine);
        EXPECT_GE(cosine, 0.9999) << name;
        ++checked;
    }
    const auto pre
        = read_json(golden_dir() + "/" + index["cases"]["preprocess"]["json"].get<std::string>());
    for (const auto& [name, cs] : index["cases"]["full"].items()) {
        if (cs["model"].get<std::string>() != "models/tiny_qwen2") continue;
        SCOPED_TRACE(name);
        GoldenFile ref(cs["file"].get<std::string>());
        std::string image = std::filesystem::path(cs["image"].get<std::string>()).stem().string();
        std::vector<std::string> tiles = tile_list(pre.at(image).at("tiles"));
        std::vector<float> visual = net->encode_images(tile_pixel_values(tiles), int(tiles.size()));
        const std::vector<int32_t> ids = ref.ids("input_ids");
        const std::vector<int32_t> want_tokens = ref.ids("greedy_tokens");
        auto cache = net->new_cache();
        auto logits = net->forward(*cache, ids, visual, cs["img_context_token_id"].get<int32_t>());
        std::vector<int32_t> tokens;
        int32_t next = argmax(logits);
        for (size_t i = 0; i < want_tokens.size(); ++i) {
            tokens.push_back(next);
            if (i + 1 == want_tokens.size()) break;
            next = argmax(net->forward(*cache, {&next, 1}, {}, -1));
        }
        EXPECT_EQ(tokens, want_tokens);
        ++checked;
    }
    EXPECT_GT(checked, 0);
}

} // namespace
// A copy of the golden tiny_qwen2 folder in `dir` whose model.safetensors has `value` over the
// first `count` floats of `tensor` (an F32 tensor; count -1: all of it).
void damage_copy(const TempDir& dir, const std::string& tensor, int64_t count, float value)
{
    const std::filesystem::path from = golden_dir() + "/models/tiny_qwen2";
    for (const auto& e : std::filesystem::directory_iterator(from)) {
        std::filesystem::copy_file(e.path(), dir.path() / e.path().filename());
        std::filesystem::permissions(dir.path() / e.path().filename(),
                                     std::filesystem::perms(0644));
    }
    std::string bytes = read_bytes(dir.file("model.safetensors"));
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), 8);
    const auto offsets = nlohmann::json::parse(bytes.substr(8, header))[tensor]["data_offsets"];
    const size_t begin = 8 + header + offsets[0].get<size_t>();
    const size_t end = 8 + header + offsets[1].get<size_t>();
    const size_t n = count < 0 ? (end - begin) / 4 : size_t(count);
    for (size_t i = 0; i < n; ++i) std::memcpy(&bytes[begin + 4 * i], &value, 4);
    write_bytes(dir.file("model.safetensors"), bytes);
}

TEST(InternVlWeights, APartlyNanTensorIsNamedInAWarningAndAWhollyNanOneIsRefused)
{
    IRIS_REQUIRE_GOLDEN();
    {
        TempDir dir;
        damage_copy(dir, "language_model.model.norm.weight", 3, std::nanf(""));
        std::vector<std::string> warnings;
        log_set_sink([&](LogLevel level, std::string_view m) {
            if (level == LogLevel::warn) warnings.emplace_back(m);
        });
        auto net = model::InternVL::load(dir.path().string());
        log_set_sink(nullptr);
        ASSERT_EQ(warnings.size(), 1u);
        EXPECT_NE(warnings[0].find("language_model.model.norm.weight"), std::string::npos)
            << warnings[0];
        EXPECT_NE(warnings[0].find("3 NaN or infinite values of 64"), std::string::npos)
            << warnings[0];
    }
    {
        TempDir dir;
        damage_copy(dir, "vision_model.encoder.layers.1.norm2.bias", -1,
                    std::numeric_limits<float>::infinity());
        expect_error([&] { model::InternVL::load(dir.path().string()); }, ErrorKind::invalid_input,
                     {"vision_model.encoder.layers.1.norm2.bias", "only NaN or infinite"});
    }
}

} // namespace iris::test
