#include "perception/perception.h"

#include "media.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

using iris::Error;
using iris::ErrorKind;
using iris::perception::VideoFrame;
using iris::perception::VideoOptions;
using iris::perception::VideoSource;
using iris::test::ScratchDir;

namespace {

// The kind of the Error that opening `input` throws, and its message.
std::optional<std::pair<ErrorKind, std::string>> open_error(const std::string& input)
{
    try {
        VideoSource source(input);
    } catch (const Error& e) {
        return std::make_pair(e.kind(), std::string(e.what()));
    }
    return std::nullopt;
}

std::string read_all(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

TEST(VideoSource, DecodesEveryFrameOfTheSampleClipAsRgbWithTimestamps)
{
    VideoSource video(iris::test::kClipVideo);
    EXPECT_EQ(video.info().codec, "h264");
    EXPECT_EQ(video.info().width, 224);
    EXPECT_NEAR(video.info().fps, 12.0, 1e-6);
    EXPECT_NEAR(double(video.info().duration_us), 10e6, 1e5);
    EXPECT_FALSE(video.info().live);

    int n = 0;
    int64_t last_pts = -1;
    while (std::optional<VideoFrame> f = video.read()) {
        ASSERT_EQ(f->image.width, 224);
        ASSERT_EQ(f->image.height, 224);
        ASSERT_EQ(f->image.rgb.size(), size_t(224 * 224 * 3));
        EXPECT_GT(f->pts_us, last_pts);
        EXPECT_NEAR(double(f->pts_us), n * 1e6 / 12, 1.0) << "frame " << n;
        last_pts = f->pts_us;
        ++n;
    }
    EXPECT_EQ(n, 120);
    EXPECT_EQ(video.stats().n_decoded, 120u);
    EXPECT_EQ(video.stats().n_corrupt, 0u);
    EXPECT_FALSE(video.read()) << "the end stays the end";
}

TEST(VideoSource, DecodedColoursMatchTheImagesTheClipWasMadeFrom)
{
    IRIS_REQUIRE_FFMPEG_CLI();
    // clip-frame1.png is frame 10 of the clip before H.264 compression; ffmpeg's PNG decoder
    // gives its exact RGB.
    ScratchDir dir("video_colours");
    const std::string raw = dir.file("frame10.rgb");
    ASSERT_TRUE(iris::test::ffmpeg("-i " + iris::test::kSamples
                                   + "clip-frame1.png -f rawvideo -pix_fmt rgb24 " + raw));
    const std::string expected = read_all(raw);
    ASSERT_EQ(expected.size(), size_t(224 * 224 * 3));

    VideoSource video(iris::test::kClipVideo);
    std::optional<VideoFrame> f = video.read(10 * 1'000'000 / 12);
    ASSERT_TRUE(f);
    double diff[3] = {0, 0, 0};
    for (size_t i = 0; i < expected.size(); ++i)
        diff[i % 3] += std::abs(int(f->image.rgb.data()[i]) - int(uint8_t(expected[i])));
    for (int c = 0; c < 3; ++c)
        EXPECT_LT(diff[c] / (224 * 224), 4.0) << "channel " << c; // compression error only
}

TEST(VideoSource, FramesBeforeTheWantedTimeAreDecodedButNotConverted)
{
    VideoSource video(iris::test::kClipVideo);
    std::optional<VideoFrame> f = video.read(3'000'000);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->pts_us, 3'000'000);
    EXPECT_EQ(video.stats().n_decoded, 37u);
    EXPECT_EQ(video.stats().n_converted, 1u);
}

TEST(VideoSource, ScalesToTheAskedWidthKeepingTheAspectRatio)
{
    VideoSource video(iris::test::kClipVideo, {.width = 112});
    std::optional<VideoFrame> f = video.read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->image.width, 112);
    EXPECT_EQ(f->image.height, 112);
    EXPECT_EQ(f->image.rgb.size(), size_t(112 * 112 * 3));
}

TEST(VideoSource, PlaysTheTestPatternForTheAskedDuration)
{
    VideoSource video(
        "testsrc",
        {.capture_width = 320, .capture_height = 240, .capture_fps = 10, .duration_us = 1'000'000});
    EXPECT_TRUE(video.info().live);
    int n = 0;
    while (std::optional<VideoFrame> f = video.read()) {
        EXPECT_EQ(f->image.width, 320);
        EXPECT_EQ(f->image.height, 240);
        EXPECT_EQ(f->pts_us, n * 100'000);
        ++n;
    }
    EXPECT_EQ(n, 10);
}

TEST(VideoSource, RealTimePlaybackTakesAtLeastTheStreamTime)
{
    VideoSource video(iris::test::kClipVideo, {.realtime = true, .duration_us = 500'000});
    const int64_t t0 = iris::now_us();
    int n = 0;
    while (video.read()) ++n;
    EXPECT_EQ(n, 6); // 0 .. 5/12 s
    EXPECT_GE(iris::now_us() - t0, 400'000); // the last frame is due 417 ms after the first
}

TEST(VideoSource, AStopRequestEndsTheStream)
{
    std::stop_source stop;
    VideoSource video("testsrc", {.realtime = true}, stop.get_token());
    ASSERT_TRUE(video.read());
    stop.request_stop();
    EXPECT_FALSE(video.read());
}

TEST(VideoSource, RefusesNetworkUrls)
{
    for (const char* url : {"http://example.com/clip.mp4", "rtsp://camera.local/stream",
                            "https://example.com/live.m3u8", "tcp://127.0.0.1:9"}) {
        auto error = open_error(url);
        ASSERT_TRUE(error) << url;
        EXPECT_EQ(error->first, ErrorKind::unsupported) << url;
        EXPECT_NE(error->second.find("only local files"), std::string::npos) << error->second;
    }
}

TEST(VideoSource, RefusesPlaylistsEvenAsLocalFiles)
{
    ScratchDir dir("video_playlist");
    const std::string m3u8 = dir.write("list.m3u8",
                                       "#EXTM3U\n#EXT-X-TARGETDURATION:10\n"
                                       "#EXTINF:10,\n"
                                           + iris::test::kClipVideo + "\n#EXT-X-ENDLIST\n");
    auto error = open_error(m3u8);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->first, ErrorKind::unsupported);
    EXPECT_NE(error->second.find("hls"), std::string::npos) << error->second;
    EXPECT_NE(error->second.find("not playlists"), std::string::npos) << error->second;

    const std::string concat = dir.write(
        "list.ffconcat", "ffconcat version 1.0\nfile '" + iris::test::kClipVideo + "'\n");
    error = open_error(concat);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->first, ErrorKind::unsupported);
    EXPECT_NE(error->second.find("concat"), std::string::npos) << error->second;
}

TEST(VideoSource, AcceptsFileUrls)
{
    VideoSource video("file://" + iris::test::kClipVideo);
    EXPECT_TRUE(video.read());
}

TEST(VideoSource, NamesMissingFilesDevicesAndNonMediaFiles)
{
    auto error = open_error("/nonexistent/clip.mp4");
    ASSERT_TRUE(error);
    EXPECT_EQ(error->first, ErrorKind::not_found);
    EXPECT_NE(error->second.find("/nonexistent/clip.mp4"), std::string::npos);

    error = open_error("/dev/video97");
    ASSERT_TRUE(error);
    EXPECT_EQ(error->first, ErrorKind::not_found);

    ScratchDir dir("video_text");
    error = open_error(dir.write("notes.mp4", "these are not the frames you are looking for\n"));
    ASSERT_TRUE(error);
    EXPECT_EQ(error->first, ErrorKind::invalid_input) << error->second;

    error = open_error(iris::test::kClipWav);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->first, ErrorKind::invalid_input);
    EXPECT_NE(error->second.find("no video stream"), std::string::npos) << error->second;
}

TEST(VideoSource, CorruptPacketsAreSkippedAndCountedNotFatal)
{
    ScratchDir dir("video_corrupt");
    std::string bytes = read_all(iris::test::kClipVideo);
    ASSERT_GT(bytes.size(), 20000u);
    // Garbage over the middle of the file: inside the H.264 packets, not the moov index.
    for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 3000; i += 7) bytes[i] = char(i * 131);
    const std::string path = dir.write("corrupt.mp4", bytes);

    VideoSource video(path);
    int n = 0;
    EXPECT_NO_THROW(while (video.read())++ n);
    const auto stats = video.stats();
    EXPECT_TRUE(stats.n_corrupt > 0 || n < 120)
        << n << " frames, " << stats.n_corrupt << " corrupt";
    EXPECT_GT(n, 0) << "the frames before the damage still decode";
}
