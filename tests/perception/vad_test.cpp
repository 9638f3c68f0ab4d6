#include "perception/perception.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

using iris::perception::SpeechSegment;
using iris::perception::Vad;
using iris::perception::VadOptions;

namespace {

constexpr int kRate = 16000;

// A signal of consecutive parts: noise at `db` dBFS (RMS) for `ms` milliseconds.
struct Part
{
    int ms;
    double db;
};

std::vector<int16_t> signal(const std::vector<Part>& parts, uint32_t seed = 1)
{
    std::mt19937 rng(seed);
    std::normal_distribution<double> gauss(0.0, 1.0);
    std::vector<int16_t> out;
    for (const Part& p : parts) {
        const double amplitude = 32768.0 * std::pow(10.0, p.db / 20.0);
        for (int i = 0; i < p.ms * kRate / 1000; ++i)
            out.push_back(int16_t(std::clamp(gauss(rng) * amplitude, -32768.0, 32767.0)));
    }
    return out;
}

// Feeds the samples in chunks of `chunk` and flushes at the end.
std::vector<SpeechSegment> run(const std::vector<int16_t>& samples, size_t chunk,
                               VadOptions options = {})
{
    Vad vad(options);
    std::vector<SpeechSegment> out;
    for (size_t i = 0; i < samples.size(); i += chunk) {
        const size_t n = std::min(chunk, samples.size() - i);
        for (SpeechSegment& s : vad.push({samples.data() + i, n})) out.push_back(std::move(s));
    }
    if (auto last = vad.flush()) out.push_back(std::move(*last));
    return out;
}

} // namespace

TEST(Vad, FindsTwoUtterancesInAQuietRoomWithPadding)
{
    // 1 s room noise, 1.2 s speech, 1 s pause, 0.6 s speech, 1 s room noise.
    const auto samples = signal({{1000, -60}, {1200, -20}, {1000, -60}, {600, -18}, {1000, -60}});
    const std::vector<SpeechSegment> segments = run(samples, 1600);
    ASSERT_EQ(segments.size(), 2u);
    // Speech at 1.0-2.2 s and 3.2-3.8 s, with 200 ms of padding each side.
    EXPECT_NEAR(segments[0].start_us, 800'000, 20'000);
    EXPECT_NEAR(segments[0].end_us, 2'400'000, 20'000);
    EXPECT_NEAR(segments[1].start_us, 3'000'000, 20'000);
    EXPECT_NEAR(segments[1].end_us, 4'000'000, 20'000);
    for (const SpeechSegment& s : segments)
        EXPECT_EQ(int64_t(s.samples.size()), (s.end_us - s.start_us) * kRate / 1'000'000);
    // The samples are the input's.
    EXPECT_EQ(segments[0].samples[0], samples[segments[0].start_us * kRate / 1'000'000]);
}

TEST(Vad, ChunkSizeDoesNotChangeTheSegments)
{
    const auto samples = signal({{700, -55}, {900, -25}, {800, -55}, {400, -22}, {700, -55}}, 7);
    const std::vector<SpeechSegment> reference = run(samples, samples.size());
    ASSERT_EQ(reference.size(), 2u);
    for (size_t chunk : {1u, 37u, 320u, 1024u}) {
        const std::vector<SpeechSegment> segments = run(samples, chunk);
        ASSERT_EQ(segments.size(), reference.size()) << "chunk " << chunk;
        for (size_t i = 0; i < segments.size(); ++i) {
            EXPECT_EQ(segments[i].start_us, reference[i].start_us);
            EXPECT_EQ(segments[i].samples, reference[i].samples);
        }
    }
}

TEST(Vad, IgnoresClicksAndShortPauses)
{
    // A 20 ms click, then speech with a 300 ms pause inside (shorter than end_ms).
    const auto samples = signal(
        {{500, -60}, {20, -10}, {800, -60}, {700, -20}, {300, -60}, {700, -20}, {900, -60}});
    const std::vector<SpeechSegment> segments = run(samples, 800);
    ASSERT_EQ(segments.size(), 1u);
    EXPECT_NEAR(segments[0].start_us, 1'320'000 - 200'000, 20'000);
    EXPECT_NEAR(segments[0].end_us, 3'020'000 + 200'000, 20'000);
}

TEST(Vad, FollowsANoisyRoom)
{
    // A fan at -35 dBFS all along; speech 15 dB above it.
    const auto samples = signal({{1500, -35}, {1000, -20}, {1500, -35}});
    const std::vector<SpeechSegment> segments = run(samples, 1600);
    ASSERT_EQ(segments.size(), 1u);
    EXPECT_NEAR(segments[0].start_us, 1'300'000, 30'000);
}

TEST(Vad, NothingAboveTheAbsoluteFloorIsSpeech)
{
    EXPECT_TRUE(run(signal({{500, -90}, {1000, -58}, {500, -90}}), 1600).empty());
}

TEST(Vad, CutsLongSpeechAndFlushesTheRest)
{
    Vad vad({.max_ms = 1000});
    const auto samples = signal({{300, -60}, {2500, -20}});
    std::vector<SpeechSegment> segments = vad.push(samples);
    ASSERT_TRUE(vad.speech_start_us());
    ASSERT_EQ(segments.size(), 2u);
    EXPECT_EQ(segments[0].end_us - segments[0].start_us, 1'000'000);
    EXPECT_EQ(segments[1].start_us, segments[0].end_us);
    std::optional<SpeechSegment> rest = vad.flush();
    ASSERT_TRUE(rest);
    EXPECT_EQ(rest->start_us, segments[1].end_us);
    EXPECT_EQ(rest->end_us, 2'800'000);
    EXPECT_FALSE(vad.speech_start_us());
    EXPECT_FALSE(vad.flush());
}

TEST(Vad, RejectsOptionsThatCannotWork)
{
    EXPECT_THROW(Vad({.frame_ms = 1}), iris::Error);
    EXPECT_THROW(Vad({.end_ms = 100, .pad_ms = 200}), iris::Error);
    EXPECT_THROW(Vad({.threshold_db = 0}), iris::Error);
}
