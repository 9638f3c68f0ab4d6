// Continuous batching (reasoning/batcher.h): sessions on their own threads, joining and leaving
// the running batch at different times, answer exactly as they do alone; a cancelled one leaves
// without disturbing the others; a bad pass fails only its own request.
#include "reasoning/batcher.h"
#include "reasoning/engine.h"
#include "tests/golden.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <string>
#include <thread>
#include <vector>

namespace iris::test {
namespace {

using reasoning::Answer;
using reasoning::AskOptions;
using reasoning::Batcher;
using reasoning::Engine;
using reasoning::Session;

struct Request
{
    std::string question;
    AskOptions options;
    int cancel_after = 0; // pieces of text, then on_text says stop; 0: never
};

std::vector<Request> requests()
{
    std::vector<Request> out;
    const char* questions[] = {
        "What colour is the square?",
        "Describe the scene in one long sentence, naming every object you can see in it.",
        "Hi",
        "Count the circles and say where each one is.",
        "Which shape is largest?",
    };
    for (int i = 0; i < 5; ++i) {
        Request r {questions[i], {}, 0};
        r.options.sampling.max_new_tokens = 24 + 8 * i;
        r.options.ignore_eos = true;
        if (i == 3) { // sampled, with a seed
            r.options.sampling.temperature = 0.8f;
            r.options.sampling.top_k = 20;
            r.options.sampling.seed = 7;
        }
        out.push_back(r);
    }
    return out;
}

Answer ask(const Engine& engine, const Request& r, const std::function<void()>& first_piece = {})
{
    Session session(engine);
    int pieces = 0;
    return session.ask(r.question, std::vector<Image> {}, r.options, [&](std::string_view) {
        if (++pieces == 1 && first_piece) first_piece();
        return r.cancel_after == 0 || pieces < r.cancel_after;
    });
}

// Every request on its own thread through one batcher, joining 3 ms apart. Each waits, at its
// first piece of text, until every request has one (or has ended without), so that they decode
// together from there on whatever order they joined in.
std::vector<Answer> ask_together(const Engine& engine, Batcher& batcher, std::vector<Request> rs)
{
    std::vector<Answer> out(rs.size());
    std::latch all_started(std::ptrdiff_t(rs.size()));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < rs.size(); ++i) {
        rs[i].options.batcher = &batcher;
        threads.emplace_back([&, i] {
            std::this_thread::sleep_for(std::chrono::milliseconds(3 * i));
            bool arrived = false;
            out[i] = ask(engine, rs[i], [&] {
                arrived = true;
                all_started.arrive_and_wait();
            });
            if (!arrived) all_started.count_down();
        });
    }
    for (auto& t : threads) t.join();
    return out;
}

void expect_same_answers(const Engine& engine, const std::vector<Request>& rs)
{
    Batcher batcher(engine.network());
    const std::vector<Answer> together = ask_together(engine, batcher, rs);
    for (size_t i = 0; i < rs.size(); ++i) {
        SCOPED_TRACE("request " + std::to_string(i) + ": " + rs[i].question);
        const Answer alone = ask(engine, rs[i]);
        EXPECT_EQ(together[i].tokens, alone.tokens);
        EXPECT_EQ(together[i].text, alone.text);
        EXPECT_EQ(together[i].finish_reason, alone.finish_reason);
    }
    const Batcher::Stats stats = batcher.stats();
    EXPECT_GE(stats.max_batch, 2) << "the requests never shared a step";
    EXPECT_LT(stats.steps, stats.passes);
}

TEST(Batcher, SessionsOnManyThreadsAnswerAsTheyDoAlone)
{
    IRIS_REQUIRE_GOLDEN();
    for (const char* model : {"tiny_qwen2", "tiny_internlm2"}) {
        SCOPED_TRACE(model);
        const auto engine = Engine::load(golden_dir() + "/models/" + model);
        expect_same_answers(*engine, requests());
    }
}

TEST(Batcher, TheDemoModelAnswersAsItDoesAlone)
{
    const auto engine = Engine::load(std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo");
    expect_same_answers(*engine, requests());
}

TEST(Batcher, ACancelledRequestLeavesAndTheOthersFinishAsAlone)
{
    IRIS_REQUIRE_GOLDEN();
    const auto engine = Engine::load(golden_dir() + "/models/tiny_qwen2");
    std::vector<Request> rs = requests();
    rs[1].cancel_after = 3;
    expect_same_answers(*engine, rs);
    Batcher batcher(engine->network());
    const auto together = ask_together(*engine, batcher, rs);
    EXPECT_EQ(together[1].finish_reason, "cancelled");
    EXPECT_EQ(together[1].tokens.size(), 3u);
}

TEST(Batcher, ABadPassFailsOnlyItsOwnRequest)
{
    IRIS_REQUIRE_GOLDEN();
    const auto engine = Engine::load(golden_dir() + "/models/tiny_qwen2");
    const model::InternVL& net = engine->network();
    Batcher batcher(net);
    auto good_cache = net.new_cache(), bad_cache = net.new_cache();
    const std::vector<int32_t> good = {1, 2, 3}, bad = {1, net.config().llm.vocab_size};
    std::vector<float> got;
    std::string error;
    {
        Batcher::Member a(batcher), b(batcher);
        std::latch ready(2);
        std::thread t([&] {
            ready.arrive_and_wait();
            const auto logits = a.forward(*good_cache, good, {}, -1);
            got.assign(logits.begin(), logits.end());
        });
        ready.arrive_and_wait();
        try {
            b.forward(*bad_cache, bad, {}, -1);
        } catch (const Error& e) {
            error = e.what();
        }
        t.join();
    }
    EXPECT_NE(error.find("outside the vocabulary"), std::string::npos) << error;
    EXPECT_EQ(bad_cache->n_tokens(), 0);
    auto alone = net.new_cache();
    const auto want = net.forward(*alone, good, {}, -1);
    EXPECT_EQ(got, std::vector<float>(want.begin(), want.end()));
    EXPECT_EQ(good_cache->n_tokens(), 3);
}

} // namespace
} // namespace iris::test
