// A live run over pushed frames and audio (as `iris serve` feeds it) with the shipped demo model
// and a real store: clips become entries with what was said, questions are answered from them.
#include "assistant/assistant.h"
#include "reasoning/image.h"
#include "tests/files.h"
#include "tests/perception/media.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

using namespace iris;
using iris::test::TempDir;
namespace as = iris::assistant;
namespace perc = iris::perception;

namespace {

const std::string kSamples = IRIS_SOURCE_DIR "/resources/samples/";

Buffer jpeg_of(const std::string& sample)
{
    return Buffer::adopt(reasoning::encode_jpeg(reasoning::load_image(kSamples + sample)));
}

} // namespace

TEST(AssistantLive, PushedFramesAndSpeechAreRememberedAndAQuestionIsAnswered)
{
    auto engine = reasoning::Engine::load(IRIS_SOURCE_DIR "/resources/models/iris-demo");
    TempDir dir;
    memory::Store store = memory::Store::open(dir.path(), {.dim = as::embedding_dim(*engine)});
    auto feed = std::make_shared<perc::Feed>(perc::FeedOptions {
        .decode = [](const Buffer& b) { return reasoning::decode_image(b.bytes()); },
        .max_frames_queued = 64});
    std::vector<memory::Entry> stored;
    std::vector<perc::Query> asked;
    std::vector<reasoning::AnswerPiece> answers;
    std::string heard;
    std::atomic<bool> heard_any {false};
    as::LiveEvents events {.stored = [&](const memory::Entry& e) { stored.push_back(e); },
                           .heard =
                               [&](const memory::Text& t) {
                                   heard += t.text + " ";
                                   heard_any = true;
                               },
                           .asked = [&](const perc::Query& q) { asked.push_back(q); },
                           .answer
                           = [&](const reasoning::AnswerPiece& a) { answers.push_back(a); }};
    as::Live live(*engine, store, {.feed = feed}, {.latest_frames = 1}, events);
    int64_t n = -1;
    std::thread runner([&] { n = live.run(); });

    // 4 s of a blue square then 4 s of a sign at 5 fps, the speech beside them.
    const Buffer square = jpeg_of("clip-frame2.png"), sign = jpeg_of("document-sign.png");
    for (int i = 0; i < 40; ++i) feed->push_frame(i * 200'000, i < 20 ? square : sign);
    std::vector<int16_t> said = iris::test::samples_of(iris::test::kClipWav);
    said.resize(said.size() + 16000 * 2); // two seconds of silence end the speech
    for (size_t at = 0; at < said.size(); at += 1600)
        feed->push_audio(std::span(said).subspan(at, std::min<size_t>(1600, said.size() - at)));
    // A question stores what was seen until then at once, with what was heard so far: it is
    // asked once the speech (pushed faster than real time) has been heard, as a person would.
    for (int i = 0; i < 600 && !heard_any; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    live.ask("What did I see?");
    feed->close();
    runner.join();

    ASSERT_EQ(n, 2) << "a clip per scene";
    ASSERT_EQ(stored.size(), 2u);
    EXPECT_EQ(store.count(), 2);
    for (const memory::Entry& e : stored) {
        EXPECT_GT(e.id, 0);
        EXPECT_FALSE(e.caption.empty());
        EXPECT_FALSE(e.key_frames.empty());
        EXPECT_EQ(store.get(e.id, false)->caption, e.caption);
    }
    EXPECT_LT(stored[0].t_end_us, stored[1].t_end_us);
    EXPECT_FALSE(heard.empty());
    EXPECT_FALSE((stored[0].transcript + stored[1].transcript).empty())
        << "what was said is in no entry; heard: " << heard;
    ASSERT_EQ(asked.size(), 1u);
    EXPECT_EQ(asked[0].source, perc::QuerySource::typed);
    ASSERT_FALSE(answers.empty());
    const reasoning::AnswerPiece& last = answers.back();
    EXPECT_TRUE(last.done);
    EXPECT_TRUE(last.error.empty()) << last.error;
    EXPECT_FALSE(last.answer.empty());
}
