#include "perception/perception.h"

#include "media.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

using iris::Buffer;
using iris::perception::ClipEnd;
using iris::perception::ClipEvent;
using iris::perception::FrameEvent;
using iris::perception::FrameSampler;
using iris::perception::SamplerOptions;
using iris::perception::VideoFrame;
using iris::perception::VideoSource;

namespace {

// A flat frame of one grey level, with an optional square of another.
VideoFrame frame_at(int64_t pts_us, uint8_t grey, int square = 0, uint8_t square_grey = 255,
                    int width = 64, int height = 48)
{
    std::vector<uint8_t> rgb(size_t(width) * height * 3, grey);
    for (int y = 0; y < square && y < height; ++y)
        for (int x = 0; x < square && x < width; ++x)
            for (int c = 0; c < 3; ++c) rgb[(size_t(y) * width + x) * 3 + c] = square_grey;
    return VideoFrame {pts_us, {width, height, Buffer::adopt(std::move(rgb))}};
}

// Everything the sampler produced, in publishing order.
struct Sampled
{
    std::vector<FrameEvent> frames;
    std::vector<ClipEvent> clips;

    void take(FrameSampler::Step step)
    {
        if (step.closed_before) clips.push_back(*step.closed_before);
        if (step.sampled) frames.push_back(*step.sampled);
        if (step.closed_after) clips.push_back(*step.closed_after);
    }
};

} // namespace

TEST(FrameSampler, SamplesOneFramePerSecondOfPts)
{
    FrameSampler sampler;
    Sampled run;
    for (int i = 0; i < 150; ++i) { // 5 s at 30 fps
        const int64_t pts = int64_t(i) * 1'000'000 / 30;
        if (pts < sampler.next_pts_us()) continue; // what VideoSource::read(min) skips
        run.take(sampler.offer(frame_at(pts, 100)));
    }
    ASSERT_EQ(run.frames.size(), 5u);
    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(run.frames[i].frame.pts_us, i * 1'000'000);
        EXPECT_EQ(run.frames[i].index_in_clip, i);
        EXPECT_EQ(run.frames[i].clip_id, 0u);
    }
    EXPECT_EQ(sampler.offer(frame_at(4'500'000, 100)).sampled, std::nullopt);
}

TEST(FrameSampler, KeepsItsGridButRestartsAfterAGap)
{
    FrameSampler sampler({.fps = 2});
    Sampled run;
    for (int64_t pts : {0, 400'000, 520'000, 1'000'000, 7'300'000, 7'700'000, 7'800'000})
        run.take(sampler.offer(frame_at(pts, 50)));
    std::vector<int64_t> sampled;
    for (const FrameEvent& f : run.frames) sampled.push_back(f.frame.pts_us);
    EXPECT_EQ(sampled, (std::vector<int64_t> {0, 520'000, 1'000'000, 7'300'000, 7'800'000}));
}

TEST(FrameSampler, AStillSceneMakesClipsOfSixteenFrames)
{
    FrameSampler sampler;
    Sampled run;
    for (int s = 0; s < 40; ++s) run.take(sampler.offer(frame_at(s * 1'000'000LL, 80)));
    if (auto last = sampler.finish()) run.clips.push_back(*last);
    EXPECT_EQ(sampler.finish(), std::nullopt);

    ASSERT_EQ(run.clips.size(), 3u);
    EXPECT_EQ(run.clips[0].n_frames, 16);
    EXPECT_EQ(run.clips[0].reason, ClipEnd::full);
    EXPECT_EQ(run.clips[0].start_us, 0);
    EXPECT_EQ(run.clips[0].end_us, 16'000'000);
    EXPECT_EQ(run.clips[1].clip_id, 1u);
    EXPECT_EQ(run.clips[1].start_us, 16'000'000);
    EXPECT_EQ(run.clips[2].n_frames, 8);
    EXPECT_EQ(run.clips[2].reason, ClipEnd::end_of_stream);
    EXPECT_EQ(run.clips[2].end_us, 40'000'000);
    EXPECT_EQ(run.frames[16].clip_id, 1u);
    EXPECT_EQ(run.frames[16].index_in_clip, 0);
    for (const FrameEvent& f : run.frames) EXPECT_EQ(f.scene_diff, 0.f);
}

TEST(FrameSampler, ASceneChangeOpensANewClipOnceTheClipHasItsMinimumFrames)
{
    FrameSampler sampler; // clip_frames_min 3, as OmniLive
    Sampled run;
    // Dark, then bright from 1 s, then dark again from 5 s.
    const uint8_t grey[] = {20, 220, 220, 220, 220, 20, 20};
    for (int s = 0; s < 7; ++s) run.take(sampler.offer(frame_at(s * 1'000'000LL, grey[s])));
    if (auto last = sampler.finish()) run.clips.push_back(*last);

    // The cut at 1 s comes before clip 0 has 3 frames, so the third frame of the bright scene
    // opens clip 1; likewise the second dark frame opens clip 2.
    ASSERT_EQ(run.clips.size(), 3u);
    EXPECT_EQ(run.clips[0].n_frames, 3);
    EXPECT_EQ(run.clips[0].reason, ClipEnd::scene_change);
    EXPECT_EQ(run.clips[0].end_us, 3'000'000);
    EXPECT_EQ(run.clips[1].start_us, 3'000'000);
    EXPECT_EQ(run.clips[1].n_frames, 3);
    EXPECT_EQ(run.clips[1].reason, ClipEnd::scene_change);
    EXPECT_EQ(run.clips[2].start_us, 6'000'000);
    EXPECT_EQ(run.clips[2].n_frames, 1);
    EXPECT_EQ(run.clips[2].reason, ClipEnd::end_of_stream);

    EXPECT_NEAR(run.frames[1].scene_diff, 200.0 / 255, 0.01) << "measured against the first frame";
    EXPECT_EQ(run.frames[3].scene_diff, 0.f) << "a clip's first frame";
    EXPECT_EQ(run.frames[3].clip_id, 1u);
}

TEST(FrameSampler, WithoutAMinimumEveryCutOpensAClip)
{
    FrameSampler sampler({.clip_frames_min = 1});
    Sampled run;
    for (int s = 0; s < 4; ++s)
        run.take(sampler.offer(frame_at(s * 1'000'000LL, s % 2 ? 200 : 30)));
    ASSERT_EQ(run.clips.size(), 3u);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(run.frames[i].clip_id, uint64_t(i));
}

TEST(FrameSampler, SceneDifferenceIsTheMeanAbsoluteDifferenceOfGreyThumbnails)
{
    EXPECT_EQ(FrameSampler::scene_difference(frame_at(0, 90), frame_at(0, 90)), 0.f);
    EXPECT_FLOAT_EQ(FrameSampler::scene_difference(frame_at(0, 0), frame_at(0, 255)), 1.f);
    // A white 24x24 square on a black 64x48 frame: 3/16 of the area.
    EXPECT_NEAR(FrameSampler::scene_difference(frame_at(0, 0), frame_at(0, 0, 24, 255)), 0.1875,
                0.01);
    // The measure does not depend on the frame size.
    EXPECT_NEAR(FrameSampler::scene_difference(frame_at(0, 0, 0, 0, 640, 480),
                                               frame_at(0, 128, 0, 0, 64, 48)),
                128.0 / 255, 0.005);
    EXPECT_THROW(FrameSampler::scene_difference(VideoFrame {0, {4, 4, {}}}, frame_at(0, 0)),
                 iris::Error);
}

TEST(FrameSampler, RejectsOptionsThatCannotWork)
{
    EXPECT_THROW(FrameSampler({.fps = 0}), iris::Error);
    EXPECT_THROW(FrameSampler({.scene_threshold = 0}), iris::Error);
    EXPECT_THROW(FrameSampler({.clip_frames_min = 5, .clip_frames_max = 4}), iris::Error);
}

TEST(FrameSampler, TheSampleClipIsSevenFramesInOneClip)
{
    VideoSource video(iris::test::kClipVideo);
    FrameSampler sampler;
    Sampled run;
    while (auto f = video.read(sampler.next_pts_us())) run.take(sampler.offer(*f));
    if (auto last = sampler.finish()) run.clips.push_back(*last);
    ASSERT_EQ(run.frames.size(), 10u);
    for (const FrameEvent& f : run.frames) {
        // The square moves and the star appears, but nothing cuts to another scene.
        EXPECT_LT(f.scene_diff, 0.075f) << "frame at " << f.frame.pts_us;
    }
    ASSERT_EQ(run.clips.size(), 1u);
    EXPECT_EQ(run.clips[0].n_frames, 10);
    EXPECT_EQ(run.clips[0].end_us, 10'000'000);
}
