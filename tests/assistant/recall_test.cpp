// Recalling with the shipped demo model and a real SQLite + FAISS store: questions find entries
// by words, embedding and time phrase; recall, the answer and the composer's pool are made from
// what was found.
#include "assistant/assistant.h"
#include "tests/files.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>

using namespace iris;
namespace as = iris::assistant;

namespace {

// The pixels as a vector: comparisons that fail print where they differ.
std::vector<uint8_t> pixels(const Image& image)
{
    return {image.rgb.begin(), image.rgb.end()};
}

const std::string kSamples = IRIS_SOURCE_DIR "/resources/samples/";
constexpr int64_t kMinute = 60'000'000;

const reasoning::Engine& demo()
{
    static auto engine = reasoning::Engine::load(IRIS_SOURCE_DIR "/resources/models/iris-demo");
    return *engine;
}

// A store holding, oldest first: a red circle three days ago, then a blue square, "buy milk" and
// a green star in the last few minutes. Each has its sample as key frames (none for the speech)
// and the demo model's memory embedding.
class AssistantRecall : public testing::Test
{
protected:
    void SetUp() override
    {
        store_.emplace(memory::Store::open(dir_.path(), {.dim = as::embedding_dim(demo())}));
        const int64_t now = wall_us();
        old_ = add(now - 3 * 24 * 60 * kMinute, "a red circle", "", "clip-frame1.png", 1);
        square_ = add(now - 3 * kMinute, "a blue square", "", "clip-frame2.png", 3);
        milk_ = add(now - 2 * kMinute, "", "buy milk", "", 0);
        star_ = add(now - 1 * kMinute, "a green star", "", "clip-frame4.png", 2);
    }

    int64_t add(int64_t t_start_us, const std::string& caption, const std::string& transcript,
                const std::string& frame, int n_frames)
    {
        memory::Entry e {.t_start_us = t_start_us,
                         .t_end_us = t_start_us + 5'000'000,
                         .caption = caption,
                         .transcript = transcript};
        std::vector<iris::Image> images;
        for (int i = 0; i < n_frames; ++i) {
            // Each key frame a different size, so that the middle one can be told apart.
            iris::Image image = reasoning::resize_bicubic(reasoning::load_image(kSamples + frame),
                                                          100 + 10 * i, 100);
            e.key_frames.push_back({.t_us = t_start_us + i * 1'000'000,
                                    .jpeg = Buffer::adopt(reasoning::encode_jpeg(image))});
            images.push_back(std::move(image));
        }
        e.embedding = reasoning::memory_embedding(demo(), images, caption + " " + transcript);
        return store_->add(e);
    }

    std::vector<int64_t> ids(const std::vector<memory::Hit>& hits)
    {
        std::vector<int64_t> out;
        for (const auto& h : hits) out.push_back(h.entry.id);
        return out;
    }

    test::TempDir dir_;
    std::optional<memory::Store> store_;
    int64_t old_ = 0, square_ = 0, milk_ = 0, star_ = 0;
};

} // namespace

TEST_F(AssistantRecall, FindsAnEntryByItsWordsAndItsEmbedding)
{
    auto hits = as::find_memories(&demo(), *store_, "a green star", {.k = 2});
    ASSERT_EQ(hits.size(), 2u);
    EXPECT_EQ(hits[0].entry.id, star_);
    EXPECT_GT(hits[0].rank_text, 0);
    EXPECT_GT(hits[0].rank_vector, 0);
    EXPECT_FALSE(std::isnan(hits[0].similarity));
    EXPECT_TRUE(hits[0].entry.key_frames.empty()); // without frames unless asked
    auto with_frames = as::find_memories(&demo(), *store_, "a green star", {.with_frames = true});
    ASSERT_FALSE(with_frames.empty());
    EXPECT_EQ(with_frames[0].entry.key_frames.size(), 2u);
}

TEST_F(AssistantRecall, ATimePhraseNarrowsTheRangeAndARangeGivenWithTheQuestion)
{
    auto all = ids(as::find_memories(&demo(), *store_, "a red circle", {.k = 10}));
    ASSERT_EQ(all.size(), 4u);
    EXPECT_EQ(all[0], old_);
    auto recent
        = ids(as::find_memories(&demo(), *store_, "a red circle in the last hour", {.k = 10}));
    EXPECT_EQ(recent.size(), 3u);
    EXPECT_EQ(std::count(recent.begin(), recent.end(), old_), 0);
    // The phrase narrows a range given with the question; it never widens it.
    const int64_t now = wall_us();
    auto both
        = ids(as::find_memories(&demo(), *store_, "a shape in the last hour",
                                {.k = 10, .t_from_us = now - 150 * 1'000'000, .t_to_us = now}));
    EXPECT_EQ(both.size(), 2u);
    EXPECT_EQ(std::count(both.begin(), both.end(), square_), 0);
    auto old = ids(as::find_memories(
        &demo(), *store_, "shapes",
        {.k = 10, .t_from_us = now - 4 * 24 * 60 * kMinute, .t_to_us = now - 24 * 60 * kMinute}));
    EXPECT_EQ(old, std::vector<int64_t> {old_});
}

TEST_F(AssistantRecall, WithoutAnEngineOrWithAnotherModelsStoreOnlyWordsMatch)
{
    auto hits = as::find_memories(nullptr, *store_, "milk", {.k = 10});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, milk_);
    EXPECT_TRUE(std::isnan(hits[0].similarity));

    test::TempDir other_dir;
    memory::Store other = memory::Store::open(other_dir.path(), {.dim = 8});
    memory::Entry e {.t_start_us = 1, .t_end_us = 2, .caption = "a green star"};
    e.embedding.assign(8, 1.0f);
    const int64_t id = other.add(e);
    auto other_hits = as::find_memories(&demo(), other, "green star", {.k = 10});
    ASSERT_EQ(other_hits.size(), 1u);
    EXPECT_EQ(other_hits[0].entry.id, id);
    EXPECT_EQ(other_hits[0].rank_vector, 0);
}

TEST_F(AssistantRecall, RecallShowsTheHitsAsThePromptDoes)
{
    auto hits = as::find_memories(&demo(), *store_, "When did I see a green star?", {.k = 3});
    auto used = as::recall(&demo(), *store_, "When did I see a green star?", 3);
    ASSERT_EQ(used.size(), hits.size());
    ASSERT_EQ(used.size(), 3u);
    for (size_t i = 0; i < used.size(); ++i) {
        EXPECT_EQ(used[i].id, hits[i].entry.id);
        EXPECT_EQ(used[i].t_start_us, hits[i].entry.t_start_us);
        EXPECT_EQ(used[i].t_end_us, hits[i].entry.t_end_us);
        EXPECT_EQ(used[i].caption, hits[i].entry.caption);
        EXPECT_EQ(used[i].transcript, hits[i].entry.transcript);
    }
    EXPECT_EQ(used[0].id, star_);
}

TEST_F(AssistantRecall, AnswersFromTheMemoriesItFinds)
{
    const std::string question = "When did I see a green star?";
    std::string streamed;
    as::Recollection r
        = as::answer_from_memory(demo(), *store_, question, 5, {}, [&](std::string_view piece) {
              streamed += piece;
              return true;
          });
    ASSERT_EQ(r.hits.size(), 4u);
    EXPECT_EQ(r.hits[0].entry.id, star_);
    EXPECT_EQ(r.answer.finish_reason, "stop");
    EXPECT_FALSE(r.answer.text.empty());
    // The answer a session gives to the memory prompt of the recalled entries.
    reasoning::Session direct(demo());
    reasoning::Answer expect
        = direct.ask(reasoning::memory_prompt(as::recall(&demo(), *store_, question, 5), question),
                     std::vector<iris::Image> {}, {}, {});
    EXPECT_EQ(r.answer.text, expect.text);
    EXPECT_NE(streamed.find(r.answer.text), std::string::npos);
}

TEST_F(AssistantRecall, TheComposerPoolHasTheMiddleKeyFrameOfEachEntryWithFrames)
{
    auto pool = as::memory_pool(&demo(), *store_, "Write about the shapes I saw.");
    ASSERT_EQ(pool.size(), 3u); // the speech has no key frame
    std::vector<std::string> names;
    for (const auto& p : pool) names.push_back(p.name);
    for (int64_t id : {old_, square_, star_})
        EXPECT_EQ(std::count(names.begin(), names.end(), "memory " + std::to_string(id)), 1);
    for (const auto& p : pool) {
        auto e = store_->get(std::stoll(p.name.substr(7)), true);
        ASSERT_TRUE(e);
        const Buffer& middle = e->key_frames[e->key_frames.size() / 2].jpeg;
        iris::Image expect = reasoning::decode_image(middle.bytes());
        EXPECT_EQ(p.image.width, expect.width);
        EXPECT_EQ(pixels(p.image), pixels(expect));
    }
    // k and a time phrase limit it as they limit find_memories.
    auto star = as::memory_pool(&demo(), *store_, "a green star", 1);
    ASSERT_EQ(star.size(), 1u);
    EXPECT_EQ(star[0].name, "memory " + std::to_string(star_));
    auto recent
        = as::memory_pool(&demo(), *store_, "Write about the shapes I saw in the last hour.");
    EXPECT_EQ(recent.size(), 2u);
    for (const auto& p : recent) EXPECT_NE(p.name, "memory " + std::to_string(old_));
}
