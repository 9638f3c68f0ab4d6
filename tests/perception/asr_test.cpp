#include "perception/perception.h"

#include "media.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using iris::perception::AudioSource;
using iris::perception::Recognizer;
using iris::perception::SpeechSegment;
using iris::perception::Transcript;
using iris::perception::Vad;

namespace {

// Source -> VAD -> recognizer, as the pipeline runs them.
std::vector<Transcript> transcribe(const std::string& input, Recognizer& asr)
{
    AudioSource audio(input);
    Vad vad;
    std::vector<SpeechSegment> segments;
    while (auto chunk = audio.read())
        for (SpeechSegment& s : vad.push(chunk->samples)) segments.push_back(std::move(s));
    if (auto last = vad.flush()) segments.push_back(std::move(*last));
    std::vector<Transcript> out;
    for (const SpeechSegment& s : segments) out.push_back(asr.recognize(s));
    return out;
}

std::string joined(const std::vector<Transcript>& transcripts)
{
    std::string text;
    for (const Transcript& t : transcripts) text += t.text + " ";
    return text;
}

} // namespace

// pocketsphinx's general US English model on espeak-ng's synthetic voice (en-us+f2, 140 words a
// minute): measured WER 0.39 on the WAV ("look the blue square is moving to the riots and really
// stellar appears remember to my email") and 0.72 on the 32 kb/s AAC soundtrack (Debian 12's
// pocketsphinx 5prealpha; bench/perception_bench prints the figures). The decoder is
// deterministic; the bounds catch a broken chain (wrong rate or sample format, silence).
constexpr double kMaxWerWav = 0.45;
constexpr double kMaxWerMp4 = 0.8;

TEST(Recognizer, TranscribesTheSpokenSampleWithTimes)
{
    Recognizer asr;
    const std::vector<Transcript> transcripts = transcribe(iris::test::kClipWav, asr);
    ASSERT_FALSE(transcripts.empty());
    int64_t last_end = 0;
    for (const Transcript& t : transcripts) {
        EXPECT_GE(t.start_us, last_end);
        EXPECT_LT(t.start_us, t.end_us);
        EXPECT_LE(t.end_us, 7'700'000);
        last_end = t.end_us;
    }
    const double wer
        = iris::perception::word_error_rate(iris::test::kClipSpeech, joined(transcripts));
    RecordProperty("wer_wav", std::to_string(wer));
    EXPECT_LE(wer, kMaxWerWav) << "heard: " << joined(transcripts);
}

TEST(Recognizer, TranscribesTheSoundtrackOfTheSampleClip)
{
    Recognizer asr;
    const std::string heard = joined(transcribe(iris::test::kClipVideo, asr));
    const double wer = iris::perception::word_error_rate(iris::test::kClipSpeech, heard);
    RecordProperty("wer_mp4", std::to_string(wer));
    EXPECT_LE(wer, kMaxWerMp4) << "heard: " << heard;
}

TEST(Recognizer, AnEmptySegmentHasNoWords)
{
    Recognizer asr;
    const Transcript t = asr.recognize(SpeechSegment {1'000'000, 1'000'000, {}});
    EXPECT_TRUE(t.text.empty());
    EXPECT_EQ(t.start_us, 1'000'000);
}

TEST(Recognizer, AMissingModelIsNamed)
{
    try {
        Recognizer asr({.model_dir = "/nonexistent/model"});
        FAIL() << "expected an error";
    } catch (const iris::Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::not_found);
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("pocketsphinx-en-us"), std::string::npos);
    }
}
