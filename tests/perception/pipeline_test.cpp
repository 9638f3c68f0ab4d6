#include "perception/perception.h"

#include "media.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

using namespace iris::perception;
using namespace std::chrono_literals;

namespace {

template<class T> std::vector<T> drain(iris::Subscription<T>& sub)
{
    std::vector<T> out;
    while (std::optional<T> m = sub.try_receive()) out.push_back(std::move(*m));
    return out;
}

} // namespace

TEST(Pipeline, WatchesAndListensToTheSampleClip)
{
    iris::Bus bus;
    auto frames = bus.topic<FrameEvent>(kTopicFrames).subscribe({.name = "test"});
    auto clips = bus.topic<ClipEvent>(kTopicClips).subscribe({.name = "test"});
    auto voice = bus.topic<VoiceEvent>(kTopicVoice).subscribe({.name = "test"});
    auto transcripts = bus.topic<Transcript>(kTopicTranscripts).subscribe({.name = "test"});
    auto progress = bus.topic<Progress>(kTopicProgress).subscribe({.name = "test"});

    Pipeline watch(bus,
                   {.video = iris::test::kClipVideo,
                    .audio = iris::test::kClipVideo,
                    .realtime = false,
                    .origin_unix_us = 1'700'000'000'000'000});
    watch.start();
    watch.wait();
    EXPECT_EQ(watch.origin_unix_us(), 1'700'000'000'000'000);

    const auto f = drain(frames);
    ASSERT_EQ(f.size(), 10u);
    for (size_t i = 0; i < f.size(); ++i) {
        EXPECT_EQ(f[i].frame.pts_us, int64_t(i) * 1'000'000);
        EXPECT_EQ(f[i].clip_id, 0u);
        EXPECT_EQ(f[i].origin_unix_us, 1'700'000'000'000'000);
    }
    EXPECT_EQ(f[0].frame.image.rgb.use_count(), 1) << "the only copy is the subscriber's";

    const auto c = drain(clips);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].n_frames, 10);
    EXPECT_EQ(c[0].reason, ClipEnd::end_of_stream);

    const auto v = drain(voice);
    ASSERT_GE(v.size(), 2u);
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i].speaking, i % 2 == 0) << i;

    const auto t = drain(transcripts);
    ASSERT_FALSE(t.empty());
    for (const Transcript& x : t) EXPECT_FALSE(x.text.empty());

    bool video_done = false, audio_done = false;
    for (const Progress& p : drain(progress)) {
        EXPECT_TRUE(p.error.empty()) << p.error;
        if (p.finished) (p.video ? video_done : audio_done) = true;
        if (p.finished && p.video) {
            EXPECT_EQ(p.n_decoded, 120u);
        }
    }
    EXPECT_TRUE(video_done);
    EXPECT_TRUE(audio_done);
}

TEST(Pipeline, AWakePhraseInATranscriptBecomesASpokenQuery)
{
    iris::Bus bus;
    auto transcripts = bus.topic<Transcript>(kTopicTranscripts).subscribe({.name = "test"});
    auto queries = bus.topic<Query>(kTopicQueries).subscribe({.name = "test"});
    // pocketsphinx hears "look the blue square is moving to the riots and really stellar appears
    // remember to my email" in the sample.
    Pipeline listen(
        bus, {.audio = iris::test::kClipWav, .realtime = false, .wake = {.phrase = "blue square"}});
    listen.start();
    listen.wait();
    const auto t = drain(transcripts);
    ASSERT_EQ(t.size(), 1u);
    const auto q = drain(queries);
    ASSERT_EQ(q.size(), 1u) << "heard: " << t[0].text;
    EXPECT_EQ(q[0].source, QuerySource::spoken);
    EXPECT_EQ(q[0].text, t[0].text.substr(t[0].text.find("blue square") + 12));
    EXPECT_EQ(q[0].unix_us, listen.origin_unix_us() + t[0].end_us);
}

TEST(Pipeline, ASlowConsumerSlowsAFileDownInsteadOfLosingFrames)
{
    iris::Bus bus;
    auto frames = bus.topic<FrameEvent>(kTopicFrames).subscribe({.capacity = 1, .name = "slow"});
    Pipeline watch(
        bus,
        {.video = "testsrc",
         .realtime = false,
         .video_options = {.capture_width = 64, .capture_height = 48, .duration_us = 20'000'000}});
    watch.start();
    std::vector<int64_t> seen;
    while (seen.size() < 20) {
        std::optional<FrameEvent> f = frames.receive_for(10s);
        ASSERT_TRUE(f) << "after " << seen.size() << " frames";
        seen.push_back(f->frame.pts_us);
        std::this_thread::sleep_for(5ms);
    }
    watch.wait();
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], int64_t(i) * 1'000'000);
    EXPECT_EQ(frames.stats().dropped, 0u);
}

TEST(Pipeline, StopEndsALiveStreamAndClosesItsClip)
{
    iris::Bus bus;
    auto frames = bus.topic<FrameEvent>(kTopicFrames).subscribe({.name = "test"});
    auto clips = bus.topic<ClipEvent>(kTopicClips).subscribe({.name = "test"});
    Pipeline watch(bus,
                   {.video = "testsrc",
                    .realtime = true,
                    .video_options = {.capture_width = 64, .capture_height = 48}});
    watch.start();
    ASSERT_TRUE(frames.receive_for(10s));
    watch.stop();
    watch.stop(); // idempotent
    const auto c = drain(clips);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].reason, ClipEnd::end_of_stream);
    EXPECT_NO_THROW(watch.wait());
}

TEST(Pipeline, TypedQuestionsGoOnTheBus)
{
    iris::Bus bus;
    auto queries = bus.topic<Query>(kTopicQueries).subscribe({.name = "test"});
    Pipeline watch(bus, {});
    watch.ask("  what moved?  ");
    std::optional<Query> q = queries.try_receive();
    ASSERT_TRUE(q);
    EXPECT_EQ(q->text, "what moved?");
    EXPECT_EQ(q->source, QuerySource::typed);
    EXPECT_THROW(watch.ask(""), iris::Error);
}

TEST(Pipeline, StartReportsBadInputsAtOnce)
{
    iris::Bus bus;
    EXPECT_THROW(Pipeline(bus, {}).start(), iris::Error);
    try {
        Pipeline(bus, {.video = "/nonexistent/clip.mp4"}).start();
        FAIL() << "expected an error";
    } catch (const iris::Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::not_found);
    }
    Pipeline watch(bus, {.video = "testsrc", .realtime = true});
    watch.start();
    EXPECT_THROW(watch.start(), iris::Error);
}
