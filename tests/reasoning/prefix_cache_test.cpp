// The prefix cache (reasoning/prefix-cache.h): requests that share a system prompt, earlier
// turns or an image resume from what an earlier request computed and answer exactly as they do
// with nothing cached, for every KV cache type, on the golden models and the demo model; what is
// kept stays within its bytes; caches of other settings are never mixed.
#include "reasoning/batcher.h"
#include "reasoning/engine.h"
#include "reasoning/image.h"
#include "reasoning/prefix-cache.h"
#include "tests/golden.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace iris::test {
namespace {

using model::KvCacheOptions;
using model::KvType;
using reasoning::Answer;
using reasoning::AskOptions;
using reasoning::Engine;
using reasoning::load_image;
using reasoning::PrefixCache;
using reasoning::Session;

// A request as a client sends it whole: the system prompt, finished turns, then the question.
struct Request
{
    std::string system;
    std::vector<std::pair<std::string, std::string>> turns; // question, answer
    std::string question;
    std::vector<Image> images; // the question's
};

Answer ask(const Engine& engine, const Request& r, const KvCacheOptions& kv, PrefixCache& shared,
           int max_new_tokens = 12)
{
    Session session(engine, r.system, kv, &shared);
    for (const auto& [q, a] : r.turns) session.add_turn(q, {}, a);
    AskOptions opts;
    opts.sampling.max_new_tokens = max_new_tokens;
    opts.ignore_eos = true;
    return session.ask(r.question, r.images, opts, {});
}

std::vector<KvCacheOptions> cache_types()
{
    KvCacheOptions skvq {KvType::skvq, KvType::skvq, 16};
    skvq.skvq.window = 8;
    skvq.skvq.sink = 2;
    return {{},
            {KvType::f16, KvType::f16, 16},
            {KvType::q8, KvType::q4, 16},
            {KvType::q4, KvType::q4, 64},
            skvq};
}

// Each request answered through one shared cache, in order, equals it answered with an empty
// cache of its own; returns the shared cache's reused tokens per request.
std::vector<int> expect_same_as_cold(const Engine& engine, const std::vector<Request>& rs,
                                     const KvCacheOptions& kv, size_t max_bytes = 64u << 20)
{
    PrefixCache shared(max_bytes);
    std::vector<int> reused;
    for (size_t i = 0; i < rs.size(); ++i) {
        SCOPED_TRACE("request " + std::to_string(i) + ": " + rs[i].question);
        const Answer warm = ask(engine, rs[i], kv, shared);
        PrefixCache empty(max_bytes);
        const Answer cold = ask(engine, rs[i], kv, empty);
        EXPECT_EQ(warm.tokens, cold.tokens);
        EXPECT_EQ(warm.text, cold.text);
        EXPECT_EQ(cold.stats.n_reused_tokens, 0);
        EXPECT_EQ(warm.stats.n_prompt_tokens, cold.stats.n_prompt_tokens);
        reused.push_back(warm.stats.n_reused_tokens);
        EXPECT_LE(shared.stats().bytes, max_bytes);
    }
    return reused;
}

std::vector<Request> text_requests()
{
    const std::string sys = "You are a careful assistant. Answer in one short sentence.";
    return {
        {sys, {}, "What colour is the sky?", {}},
        {sys, {}, "Name a large animal.", {}}, // the system prompt again
        {sys, {{"What colour is the sky?", "Blue, mostly."}}, "And at night?", {}}, // a replay
        {"Another system prompt.", {}, "What colour is the sky?", {}}, // nothing shared
        {sys,
         {{"What colour is the sky?", "Blue, mostly."}, {"And at night?", "Dark."}},
         "Why?",
         {}},
    };
}

TEST(PrefixCache, RequestsAnswerAsWithNothingCachedForEveryCacheType)
{
    IRIS_REQUIRE_GOLDEN();
    // The golden tiny models as stored (f32, bf16) and quantized at load, where products of
    // more than a few rows need not give a row the bits it gets alone.
    for (std::string name : {"tiny_qwen2", "tiny_internlm2", "tiny_qwen2:q8_0",
                             "tiny_internlm2:q4_K_M", "tiny_qwen2_bf16"}) {
        reasoning::EngineOptions options;
        if (const size_t colon = name.find(':'); colon != std::string::npos) {
            options.load.quantize = name.substr(colon + 1);
            name.resize(colon);
        }
        const auto engine = Engine::load(golden_dir() + "/models/" + name, options);
        for (const KvCacheOptions& kv : cache_types()) {
            SCOPED_TRACE(name + ":" + options.load.quantize + ", cache "
                         + model::kv_cache_name(kv));
            const std::vector<int> reused = expect_same_as_cold(*engine, text_requests(), kv);
            EXPECT_EQ(reused[0], 0);
            EXPECT_GT(reused[1], 0) << "the system prompt was not reused";
            EXPECT_GT(reused[2], reused[1]) << "the replayed turn was not reused";
            EXPECT_EQ(reused[3], 0);
            EXPECT_GT(reused[4], reused[2]);
        }
    }
}

TEST(PrefixCache, TheDemoModelAnswersAsWithNothingCached)
{
    const auto engine = Engine::load(std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo");
    const std::vector<int> reused = expect_same_as_cold(*engine, text_requests(), {});
    EXPECT_GT(reused[1], 0);
    EXPECT_GT(reused[2], reused[1]);
}

// The same image with another question: encoded once, and the prompt resumes after it.
TEST(PrefixCache, TheSameImageIsEncodedOnceAndItsPrefixReused)
{
    IRIS_REQUIRE_GOLDEN();
    const auto engine = Engine::load(golden_dir() + "/models/tiny_qwen2");
    const Image image = load_image(golden_dir() + "/images/img_640x320.png");
    const Image other = load_image(golden_dir() + "/images/img_448x448.png");
    const std::vector<Request> rs = {
        {"", {}, "Describe it.", {image}},
        {"", {}, "What is at the left?", {image}},
        {"", {}, "Describe it.", {other}},
        {"", {}, "Compare them.", {image, other}},
    };
    for (const KvCacheOptions& kv : cache_types()) {
        SCOPED_TRACE("cache " + model::kv_cache_name(kv));
        const std::vector<int> reused = expect_same_as_cold(*engine, rs, kv);
        const int image_tokens = reasoning::preprocess_image(image, engine->tiling(0)).grid.n_tiles
            * engine->network().num_image_token();
        EXPECT_GT(reused[1], image_tokens) << "the image's prefix was not reused";
        EXPECT_LT(reused[2], image_tokens) << "another image took the first one's prefix";
    }
    PrefixCache shared(64u << 20);
    for (const Request& r : rs) ask(*engine, r, {}, shared);
    const PrefixCache::Stats s = shared.stats();
    EXPECT_EQ(s.image_misses, 2); // each image encoded once
    EXPECT_EQ(s.image_hits, 3);
}

// A cache of other settings holds other bits: never resumed from.
TEST(PrefixCache, APrefixIsResumedOnlyWithTheSameCacheSettings)
{
    IRIS_REQUIRE_GOLDEN();
    const auto engine = Engine::load(golden_dir() + "/models/tiny_qwen2");
    const Request r = text_requests()[0];
    PrefixCache shared(64u << 20);
    ask(*engine, r, {}, shared);
    EXPECT_EQ(ask(*engine, r, {KvType::q8, KvType::q8, 64}, shared).stats.n_reused_tokens, 0);
    EXPECT_EQ(ask(*engine, r, {KvType::f32, KvType::f32, 16}, shared).stats.n_reused_tokens, 0);
    EXPECT_GT(ask(*engine, r, {}, shared).stats.n_reused_tokens, 0);
}

// Under a budget that holds about one prompt, older entries go and answers stay the same.
TEST(PrefixCache, ItStaysWithinItsBytesAndDropsTheLeastRecentlyUsed)
{
    IRIS_REQUIRE_GOLDEN();
    const auto engine = Engine::load(golden_dir() + "/models/tiny_qwen2");
    PrefixCache probe(64u << 20);
    ask(*engine, text_requests()[0], {}, probe);
    const size_t one = probe.stats().bytes;
    ASSERT_GT(one, 0u);
    const size_t budget = one + one / 2;
    expect_same_as_cold(*engine, text_requests(), {}, budget);
    PrefixCache small(budget);
    for (const Request& r : text_requests()) ask(*engine, r, {}, small);
    EXPECT_GT(small.stats().evictions, 0);
    EXPECT_LE(small.stats().bytes, budget);
    PrefixCache none(16); // smaller than any entry: nothing is kept, nothing breaks
    for (const Request& r : text_requests())
        EXPECT_EQ(ask(*engine, r, {}, none).stats.n_reused_tokens, 0);
    EXPECT_EQ(none.stats().entries, 0u);
}

// Sessions on several threads, decoded together by a batcher, restore, store and encode through
// one cache at once (the TSan job runs this) and still answer as with nothing cached.
TEST(PrefixCache, SessionsOnManyThreadsShareItAndAnswerAsWithNothingCached)
{
    IRIS_REQUIRE_GOLDEN();
    const auto engine = Engine::load(golden_dir() + "/models/tiny_qwen2");
    const Image image = load_image(golden_dir() + "/images/img_448x448.png");
    std::vector<Request> rs = text_requests();
    rs.push_back({"", {}, "Describe it.", {image}});
    rs.push_back({"", {}, "What is in the corner?", {image}});
    std::vector<Answer> cold;
    for (const Request& r : rs) {
        PrefixCache empty(64u << 20);
        cold.push_back(ask(*engine, r, {}, empty));
    }
    PrefixCache shared(64u << 20);
    reasoning::Batcher batcher(engine->network());
    for (int round = 0; round < 2; ++round) {
        std::vector<Answer> warm(rs.size());
        std::vector<std::thread> threads;
        for (size_t i = 0; i < rs.size(); ++i)
            threads.emplace_back([&, i] {
                Session session(*engine, rs[i].system, std::nullopt, &shared);
                for (const auto& [q, a] : rs[i].turns) session.add_turn(q, {}, a);
                AskOptions opts;
                opts.sampling.max_new_tokens = 12;
                opts.ignore_eos = true;
                opts.batcher = &batcher;
                warm[i] = session.ask(rs[i].question, rs[i].images, opts, {});
            });
        for (auto& t : threads) t.join();
        for (size_t i = 0; i < rs.size(); ++i)
            EXPECT_EQ(warm[i].tokens, cold[i].tokens)
                << "round " << round << ", " << rs[i].question;
    }
    EXPECT_GT(shared.stats().prefix_hits, 0);
    EXPECT_GT(shared.stats().image_hits, 0);
}

} // namespace
} // namespace iris::test
