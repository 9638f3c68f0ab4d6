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

namespace {

// The feeds' frames in these tests are one byte, a grey level; 255 is a frame decode refuses.
iris::Image grey_frame(const iris::Buffer& bytes)
{
    if (bytes.size() != 1 || bytes[0] == 255)
        throw iris::Error(iris::ErrorKind::invalid_input, "not a frame");
    return iris::Image::adopt(64, 48, std::vector<uint8_t>(64 * 48 * 3, bytes[0]));
}

iris::Buffer grey(uint8_t level)
{
    return iris::Buffer::copy_of(&level, 1);
}

} // namespace

// A pushed stream is perceived as a file is: frames sampled into clips at its own times, the
// same words heard in the same audio.
TEST(Pipeline, PerceivesAPushedStreamAsItPerceivesAFile)
{
    iris::Bus bus;
    auto frames = bus.topic<FrameEvent>(kTopicFrames).subscribe({.name = "test"});
    auto clips = bus.topic<ClipEvent>(kTopicClips).subscribe({.name = "test"});
    auto transcripts = bus.topic<Transcript>(kTopicTranscripts).subscribe({.name = "test"});
    auto feed = std::make_shared<Feed>(FeedOptions {.decode = grey_frame, .max_frames_queued = 64});
    Pipeline live(bus, {.feed = feed});
    live.start();
    const std::vector<int16_t> speech = iris::test::samples_of(iris::test::kClipWav);
    for (int i = 0; i < 30; ++i) // 6 s at 5 fps; another scene from 3 s; the frame at 1 s is bad
        feed->push_frame(i * 200'000, grey(i == 5 ? 255 : i < 15 ? 20 : 200));
    for (size_t at = 0; at < speech.size(); at += 1600)
        feed->push_audio(std::span(speech).subspan(at, std::min<size_t>(1600, speech.size() - at)));
    feed->close();
    live.wait();

    const auto c = drain(clips);
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].reason, ClipEnd::scene_change);
    EXPECT_EQ(c[1].start_us, 3'000'000);
    const auto f = drain(frames);
    EXPECT_EQ(f.size(), size_t(c[0].n_frames + c[1].n_frames));
    for (const FrameEvent& e : f) EXPECT_NE(e.frame.pts_us, 1'000'000) << "the bad frame";
    const FeedStats s = feed->stats();
    EXPECT_EQ(s.n_frames, 30u);
    EXPECT_EQ(s.n_corrupt, 1u);
    EXPECT_EQ(s.n_decoded, f.size());
    EXPECT_EQ(s.n_skipped + s.n_decoded + s.n_corrupt, 30u);
    EXPECT_EQ(s.n_dropped, 0u);
    EXPECT_EQ(s.n_samples, speech.size());

    iris::Bus file_bus;
    auto file_transcripts
        = file_bus.topic<Transcript>(kTopicTranscripts).subscribe({.name = "test"});
    Pipeline file(file_bus, {.audio = iris::test::kClipWav, .realtime = false});
    file.start();
    file.wait();
    const auto heard = drain(transcripts), expected = drain(file_transcripts);
    ASSERT_EQ(heard.size(), expected.size());
    ASSERT_FALSE(heard.empty());
    for (size_t i = 0; i < heard.size(); ++i) {
        EXPECT_EQ(heard[i].text, expected[i].text);
        EXPECT_EQ(heard[i].start_us, expected[i].start_us);
    }
}

// Back-pressure: frames that wait too long are dropped and counted; audio is never dropped, and
// audio that comes faster than it can wait is refused whole.
TEST(Pipeline, AFeedDropsOldFramesButNeverAudio)
{
    Feed feed({.decode = grey_frame, .max_frames_queued = 4, .max_audio_queued_us = 1'000'000});
    for (int i = 0; i < 20; ++i) feed.push_frame(i * 100'000, grey(uint8_t(i)));
    std::vector<int16_t> half_second(8000, 100);
    feed.push_audio(half_second);
    feed.push_audio(half_second);
    try {
        feed.push_audio(std::vector<int16_t>(1, 0));
        FAIL() << "more than a second of audio was taken";
    } catch (const iris::Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::resource);
    }
    FeedStats s = feed.stats();
    EXPECT_EQ(s.n_dropped, 16u);
    EXPECT_EQ(s.n_samples, 16000u);
    EXPECT_EQ(s.audio_queued_us, 1'000'000);
    feed.close();
    feed.push_frame(5'000'000, grey(1)); // after the end: ignored
    std::stop_source stop;
    std::vector<int64_t> seen;
    while (auto f = feed.read_frame(0, stop.get_token())) seen.push_back(f->pts_us);
    EXPECT_EQ(seen, (std::vector<int64_t> {1'600'000, 1'700'000, 1'800'000, 1'900'000}));
    int64_t n = 0;
    while (auto a = feed.read_audio(stop.get_token())) {
        EXPECT_EQ(a->pts_us, n * 1'000'000 / kSampleRate);
        n += int64_t(a->samples.size());
    }
    EXPECT_EQ(n, 16000);
    EXPECT_THROW(Feed({}), iris::Error);
}

// A reader waiting on an open feed returns when stop is requested.
TEST(Pipeline, StopEndsAPipelineWaitingOnAFeed)
{
    iris::Bus bus;
    auto feed = std::make_shared<Feed>(FeedOptions {.decode = grey_frame});
    Pipeline live(bus, {.feed = feed});
    live.start();
    std::this_thread::sleep_for(100ms);
    const auto t0 = std::chrono::steady_clock::now();
    live.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_THROW(Pipeline(bus, {.video = "testsrc", .feed = feed}).start(), iris::Error);
}
