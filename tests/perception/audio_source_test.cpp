#include "perception/perception.h"

#include "media.h"

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

using iris::Error;
using iris::ErrorKind;
using iris::perception::AudioChunk;
using iris::perception::AudioSource;
using iris::test::ScratchDir;

namespace {

// Every sample of the source, checking that chunk times follow the sample count.
std::vector<int16_t> read_all(AudioSource& audio)
{
    std::vector<int16_t> all;
    while (std::optional<AudioChunk> chunk = audio.read()) {
        EXPECT_EQ(chunk->pts_us, int64_t(all.size()) * 1'000'000 / 16000);
        all.insert(all.end(), chunk->samples.begin(), chunk->samples.end());
    }
    return all;
}

double rms(const std::vector<int16_t>& samples)
{
    double sum = 0;
    for (int16_t s : samples) sum += double(s) * s;
    return std::sqrt(sum / double(samples.size()));
}

} // namespace

TEST(AudioSource, ReadsTheSixteenKilohertzWaveUnchanged)
{
    AudioSource audio(iris::test::kClipWav);
    EXPECT_FALSE(audio.info().live);
    EXPECT_NEAR(double(audio.info().duration_us), 7.502e6, 1e4);
    const std::vector<int16_t> samples = read_all(audio);
    EXPECT_EQ(samples.size(), 120037u);
    EXPECT_EQ(audio.stats().n_samples, 120037u);
    EXPECT_GT(rms(samples), 1000.0);
}

TEST(AudioSource, TakesTheSoundtrackOfAVideoFile)
{
    AudioSource wav(iris::test::kClipWav);
    AudioSource mp4(iris::test::kClipVideo);
    const std::vector<int16_t> reference = read_all(wav);
    const std::vector<int16_t> track = read_all(mp4);
    // AAC adds its priming and frame padding: at most a few frames of 1024 samples.
    EXPECT_NEAR(double(track.size()), double(reference.size()), 3 * 1024.0);
    EXPECT_NEAR(rms(track) / rms(reference), 1.0, 0.15);
}

TEST(AudioSource, ResamplesStereoFortyFourKilohertzToSixteenKilohertzMono)
{
    IRIS_REQUIRE_FFMPEG_CLI();
    ScratchDir dir("audio_resample");
    const std::string path = dir.file("tone.mkv");
    ASSERT_TRUE(iris::test::ffmpeg("-f lavfi -i sine=frequency=440:sample_rate=44100:duration=2 "
                                   "-ac 2 -c:a flac "
                                   + path));
    AudioSource audio(path);
    const std::vector<int16_t> samples = read_all(audio);
    EXPECT_NEAR(double(samples.size()), 32000.0, 200.0);
    int crossings = 0; // a 440 Hz tone crosses zero 880 times a second
    for (size_t i = 1; i < samples.size(); ++i)
        crossings += (samples[i - 1] < 0) != (samples[i] < 0);
    EXPECT_NEAR(crossings / 2.0, 880.0, 10.0);
}

TEST(AudioSource, StopsAtTheAskedDuration)
{
    AudioSource audio(iris::test::kClipWav, {.duration_us = 1'000'000});
    EXPECT_EQ(read_all(audio).size(), 16000u);
}

TEST(AudioSource, RefusesInputsWithoutSoundAndNetworkUrls)
{
    auto kind_of = [](const std::string& input) -> std::optional<ErrorKind> {
        try {
            AudioSource audio(input);
        } catch (const Error& e) {
            EXPECT_GT(std::string(e.what()).size(), 10u);
            return e.kind();
        }
        return std::nullopt;
    };
    EXPECT_EQ(kind_of("testsrc"), ErrorKind::unsupported);
    EXPECT_EQ(kind_of("http://example.com/talk.mp3"), ErrorKind::unsupported);
    EXPECT_EQ(kind_of("/nonexistent/talk.wav"), ErrorKind::not_found);

    IRIS_REQUIRE_FFMPEG_CLI();
    ScratchDir dir("audio_silent_video");
    const std::string path = dir.file("silent.mp4");
    ASSERT_TRUE(iris::test::ffmpeg("-f lavfi -i testsrc=size=64x64:rate=5:duration=1 "
                                   "-pix_fmt yuv420p "
                                   + path));
    EXPECT_EQ(kind_of(path), ErrorKind::invalid_input);
}

TEST(AudioSource, TheMicrophoneOpensOrSaysClearlyWhyNot)
{
    try {
        AudioSource mic("mic", {.chunk_ms = 50});
        EXPECT_TRUE(mic.info().live);
        EXPECT_NE(mic.info().description.find("mic"), std::string::npos);
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("microphone"), std::string::npos) << e.what();
    }
}
