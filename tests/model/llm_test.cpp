// The Qwen2 / InternLM2 decoders against the official LLM-only goldens
// (shared/golden/llm), the KV cache, RoPE details and the bf16 checkpoint.
#include "model/cpu/ops.h"
#include "model/network-impl.h"
#include "network-golden.h"

#include <cmath>
#include <thread>

namespace iris::test {
namespace {

struct LlmCase
{
    std::string name;
    std::string model;
    std::vector<int32_t> ids;
    std::vector<float> logits; // [T, V]
    std::vector<float> logits_incremental; // [T, V]
};

std::vector<LlmCase> llm_cases()
{
    std::vector<LlmCase> out;
    for (const auto& [name, cs] : golden_index()["cases"]["llm_only"].items()) {
        GoldenFile f(cs["file"].get<std::string>());
        out.push_back({name, cs["model"].get<std::string>(), f.ids("input_ids"), f.f32("logits"),
                       f.f32("logits_incremental")});
    }
    return out;
}

std::vector<float> run_chunks(const model::InternVL& net, std::span<const int32_t> ids,
                              const std::vector<int>& chunks, model::KvCache& cache)
{
    std::vector<float> all;
    size_t at = 0;
    for (int n : chunks) {
        auto logits = net.forward(cache, ids.subspan(at, size_t(n)), {}, -1, true);
        all.insert(all.end(), logits.begin(), logits.end());
        at += size_t(n);
    }
    return all;
}

TEST(LlmGolden, FullSequenceLogitsMatchTheOfficialForwardWithin1e4)
{
    IRIS_REQUIRE_GOLDEN();
    for (const auto& c : llm_cases()) {
        SCOPED_TRACE(c.name);
        auto net = golden_model(c.model);
        auto cache = net->new_cache();
        int64_t t0 = now_us();
        auto logits = net->forward(*cache, c.ids, {}, -1, /*all_logits=*/true);
        std::printf("[ timing   ] %s: prefill of %zu tokens %.2f ms\n", c.name.c_str(),
                    c.ids.size(), double(now_us() - t0) / 1000.0);
        double err = max_abs_diff(logits, c.logits);
        report("llm/" + c.name + " logits", err);
        EXPECT_LE(err, kTolerance);
        EXPECT_EQ(cache->n_tokens(), int(c.ids.size()));
    }
}

TEST(LlmGolden, IncrementalDecodeThroughTheKvCacheMatchesBothOfficialLogits)
{
    IRIS_REQUIRE_GOLDEN();
    for (const auto& c : llm_cases()) {
        SCOPED_TRACE(c.name);
        auto net = golden_model(c.model);
        auto cache = net->new_cache();
        const size_t vocab = size_t(net->config().llm.vocab_size);
        std::vector<float> inc;
        int64_t t0 = now_us();
        for (int32_t id : c.ids) {
            auto logits = net->forward(*cache, {&id, 1}, {}, -1);
            ASSERT_EQ(logits.size(), vocab);
            inc.insert(inc.end(), logits.begin(), logits.end());
        }
        std::printf("[ timing   ] %s: %zu decode steps %.3f ms per token\n", c.name.c_str(),
                    c.ids.size(), double(now_us() - t0) / 1000.0 / double(c.ids.size()));
        double err_inc = max_abs_diff(inc, c.logits_incremental);
        double err_full = max_abs_diff(inc, c.logits);
        report("llm/" + c.name + " logits_incremental", err_inc);
        report("llm/" + c.name + " incremental vs official full logits", err_full);
        EXPECT_LE(err_inc, kTolerance);
        EXPECT_LE(err_full, kTolerance);

        // Our own incremental and full-sequence passes agree too.
        auto full_cache = net->new_cache();
        auto full = net->forward(*full_cache, c.ids, {}, -1, true);
        double err_self = max_abs_diff(inc, full);
        report("llm/" + c.name + " incremental vs our full forward", err_self);
        EXPECT_LE(err_self, kTolerance);
    }
}

TEST(LlmGolden, ChunkedPrefillEqualsTheSingleForward)
{
    IRIS_REQUIRE_GOLDEN();
    for (const auto& c : llm_cases()) {
        SCOPED_TRACE(c.name);
        auto net = golden_model(c.model);
        auto cache = net->new_cache();
        std::vector<float> chunked = run_chunks(*net, c.ids, {1, 20, 7, 36}, *cache);
        EXPECT_LE(max_abs_diff(chunked, c.logits), kTolerance);
    }
}

TEST(KvCache, TruncateRollsBackSoThatTheSameTokensGiveTheSameLogits)
{
    IRIS_REQUIRE_GOLDEN();
    for (const auto& c : llm_cases()) {
        SCOPED_TRACE(c.name);
        auto net = golden_model(c.model);
        auto cache = net->new_cache();
        std::span<const int32_t> ids(c.ids);
        net->forward(*cache, ids, {}, -1);
        EXPECT_EQ(cache->n_tokens(), 64);
        cache->truncate(32);
        EXPECT_EQ(cache->n_tokens(), 32);
        // A different continuation first, then roll back again and replay the original one.
        std::vector<int32_t> other(ids.begin() + 40, ids.end());
        net->forward(*cache, other, {}, -1);
        cache->truncate(32);
        std::vector<float> replay = run_chunks(*net, ids.subspan(32), {32}, *cache);
        const size_t vocab = size_t(net->config().llm.vocab_size);
        std::span<const float> want = std::span<const float>(c.logits).subspan(32 * vocab);
        EXPECT_LE(max_abs_diff(replay, want), kTolerance);

        EXPECT_GT(cache->bytes(), size_t(0));
        EXPECT_THROW(cache->truncate(65), Error);
        EXPECT_THROW(cache->truncate(-1), Error);
        cache->clear();
        EXPECT_EQ(cache->n_tokens(), 0);
    }
}

TEST(KvCache, GrowsBlockByBlockAcrossManyChunks)
{
    IRIS_REQUIRE_GOLDEN();
    auto net = golden_model("models/tiny_qwen2");
    auto cache = net->new_cache();
    // 600 tokens in chunks of 50 fill ten 64-token blocks, most chunks straddling two; the last
    // logits must equal a single forward of the same sequence.
    std::vector<int32_t> ids(600);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919) % 950);
    std::vector<float> last;
    for (size_t i = 0; i < ids.size(); i += 50) {
        auto l = net->forward(*cache, std::span<const int32_t>(ids).subspan(i, 50), {}, -1);
        last.assign(l.begin(), l.end());
    }
    auto ref_cache = net->new_cache();
    auto ref = net->forward(*ref_cache, ids, {}, -1);
    EXPECT_LE(max_abs_diff(last, ref), kTolerance);
    EXPECT_EQ(cache->n_tokens(), 600);
}

TEST(LlmConcurrency, TwoSessionsOnOneModelInTwoThreadsBothMatchTheGolden)
{
    IRIS_REQUIRE_GOLDEN();
    for (const auto& c : llm_cases()) {
        SCOPED_TRACE(c.name);
        auto net = golden_model(c.model);
        double err[2] = {1, 1};
        auto session = [&](int i) {
            auto cache = net->new_cache();
            std::vector<float> all;
            for (int rep = 0; rep < 3; ++rep) {
                cache->clear();
                auto l = net->forward(*cache, c.ids, {}, -1, true);
                all.assign(l.begin(), l.end());
            }
            err[i] = max_abs_diff(all, c.logits);
        };
        std::thread other(session, 1);
        session(0);
        other.join();
        EXPECT_LE(err[0], kTolerance);
        EXPECT_LE(err[1], kTolerance);
    }
}

TEST(LlmErrors, BadIdsAndImageTokenCountsAreRejectedWithoutTouchingTheCache)
{
    IRIS_REQUIRE_GOLDEN();
    auto net = golden_model("models/tiny_qwen2");
    auto cache = net->new_cache();
    const int vocab = net->config().llm.vocab_size, h = net->config().llm.hidden_size;
    std::vector<int32_t> ok = {1, 2, 3};
    net->forward(*cache, ok, {}, -1);
    std::vector<int32_t> bad = {1, vocab};
    EXPECT_THROW(net->forward(*cache, bad, {}, -1), Error);
    std::vector<int32_t> neg = {-5};
    EXPECT_THROW(net->forward(*cache, neg, {}, -1), Error);
    std::vector<int32_t> two_ctx = {961, 961};
    std::vector<float> one_row(static_cast<size_t>(h));
    EXPECT_THROW(net->forward(*cache, two_ctx, one_row, 961), Error);
    EXPECT_THROW(net->forward(*cache, std::span<const int32_t>(), {}, -1), Error);
    EXPECT_EQ(cache->n_tokens(), 3);

    // The image rows land, in order, exactly where the context ids are.
    std::vector<float> visual(2 * size_t(h));
    for (size_t i = 0; i < visual.size(); ++i) visual[i] = float(i);
    std::vector<int32_t> ids = {5, 961, 7, 961};
    std::vector<float> emb = net->embed(ids, visual, 961);
    EXPECT_EQ(emb[size_t(h) + 3], 3.f);
    EXPECT_EQ(emb[3 * size_t(h) + 3], float(h + 3));
}

TEST(Rope, InverseFrequenciesFollowTorchFp32Rounding)
{
    float inv[32];
    model::cpu::rope_inv_freq(64, 1e6, inv);
    EXPECT_EQ(inv[0], 1.0f);
    for (int i = 0; i < 32; ++i) {
        double exact = 1.0 / std::pow(1e6, 2.0 * i / 64.0);
        EXPECT_NEAR(inv[i], exact, 4 * std::numeric_limits<float>::epsilon() * exact) << i;
    }
}

TEST(Rope, DynamicNtkBaseFollowsTheReferenceRulesBeyondMaxPositions)
{
    model::LlmConfig c;
    c.head_dim = 128;
    c.rope_theta = 1e6f;
    c.max_position_embeddings = 32768;
    c.rope_scaling_type = "dynamic";
    c.rope_scaling_factor = 2.f;
    auto expect_base = [&](int64_t len) {
        return 1e6 * std::pow(2.0 * double(len) / 32768.0 - 1.0, 128.0 / 126.0);
    };

    // InternLM2: grows with the KV length, never shrinks.
    c.arch = model::LlmArch::internlm2;
    model::KvCache::Impl a(1, 1, 128, c.max_position_embeddings);
    EXPECT_EQ(model::rope_base(c, a, 1000), 1e6);
    EXPECT_EQ(model::rope_base(c, a, 32768), 1e6);
    EXPECT_NEAR(model::rope_base(c, a, 40000), expect_base(40000), 1e-3);
    EXPECT_NEAR(model::rope_base(c, a, 100), expect_base(40000), 1e-3);

    // Qwen2 (transformers dynamic_rope_update): grows, keeps the larger length while above
    // max_position_embeddings, resets once a forward fits again.
    c.arch = model::LlmArch::qwen2;
    model::KvCache::Impl b(1, 1, 128, c.max_position_embeddings);
    EXPECT_NEAR(model::rope_base(c, b, 50000), expect_base(50000), 1e-3);
    EXPECT_NEAR(model::rope_base(c, b, 40000), expect_base(50000), 1e-3);
    EXPECT_EQ(model::rope_base(c, b, 100), 1e6);
    EXPECT_EQ(model::rope_base(c, b, 40000 - 1) > 1e6, true);

    // Without rope_scaling nothing changes, at any length.
    c.rope_scaling_type.clear();
    EXPECT_EQ(model::rope_base(c, b, 1 << 20), 1e6);
}

TEST(LlmGolden, Bf16CheckpointGivesTheSameLogitsAsItsF32Twin)
{
    IRIS_REQUIRE_GOLDEN();
    const std::string bf16_dir = "models/tiny_qwen2_bf16";
    if (!std::filesystem::exists(golden_dir() + "/" + bf16_dir)) GTEST_SKIP() << "no " << bf16_dir;
    auto net = golden_model(bf16_dir);
    EXPECT_GT(net->weight_bytes_owned(), size_t(0)); // converted at load
    for (const auto& c : llm_cases()) {
        if (c.model != "models/tiny_qwen2") continue;
        auto cache = net->new_cache();
        auto logits = net->forward(*cache, c.ids, {}, -1, true);
        const size_t vocab = size_t(net->config().llm.vocab_size);
        // README: cosine > 0.999 and the same argmax at every position ...
        for (size_t t = 0; t < c.ids.size(); ++t) {
            auto ours = logits.subspan(t * vocab, vocab);
            auto want = std::span<const float>(c.logits).subspan(t * vocab, vocab);
            EXPECT_GT(cosine(ours, want), 0.999) << "position " << t;
            EXPECT_EQ(argmax(ours), argmax(want)) << "position " << t;
        }
        // ... and since every stored value is exactly representable in bf16, the converted
        // weights equal the f32 ones: the fp32 tolerance holds as well.
        double err = max_abs_diff(logits, c.logits);
        report("llm/tiny_qwen2 with tiny_qwen2_bf16 weights", err);
        EXPECT_LE(err, kTolerance);
    }
}

} // namespace
} // namespace iris::test
