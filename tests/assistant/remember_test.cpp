// Remembering with the shipped demo model and a real SQLite + FAISS store: the sample clip's
// frames become an entry with three key frames, the model's caption, the transcript and an
// embedding that finds it again; large frames are stored scaled down.
#include "assistant/assistant.h"
#include "tests/files.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

using namespace iris;
namespace as = iris::assistant;

namespace {

const std::string kSamples = IRIS_SOURCE_DIR "/resources/samples/";

const reasoning::Engine& demo()
{
    static auto engine = reasoning::Engine::load(IRIS_SOURCE_DIR "/resources/models/iris-demo");
    return *engine;
}

// The four frames of the sample clip, a second apart from t0.
as::Clip sample_clip(int64_t t0)
{
    as::Clip clip {.t_start_us = t0, .t_end_us = t0 + 4'000'000};
    for (int i = 0; i < 4; ++i)
        clip.frames.push_back(
            {t0 + i * 1'000'000,
             reasoning::load_image(kSamples + "clip-frame" + std::to_string(i + 1) + ".png")});
    return clip;
}

} // namespace

TEST(AssistantRemember, HeardDuringJoinsTheSpeechThatOverlapsTheWindow)
{
    const std::vector<memory::Text> heard = {
        {.t_start_us = 0, .t_end_us = 999'999, .text = "before"},
        {.t_start_us = 0, .t_end_us = 1'000'000, .text = "ending at the start"},
        {.t_start_us = 1'200'000, .t_end_us = 1'500'000, .text = ""},
        {.t_start_us = 1'500'000, .t_end_us = 2'000'000, .text = "buy milk"},
        {.t_start_us = 2'900'000, .t_end_us = 9'000'000, .text = "running on"},
        {.t_start_us = 3'000'000, .t_end_us = 4'000'000, .text = "after"},
    };
    EXPECT_EQ(as::heard_during(heard, 1'000'000, 3'000'000),
              "ending at the start buy milk running on");
    EXPECT_EQ(as::heard_during(heard, 10'000'000, 20'000'000), "");
    EXPECT_EQ(as::heard_during({}, 0, 1), "");
}

TEST(AssistantRemember, AClipBecomesAnEntryWithKeyFramesCaptionTranscriptAndEmbedding)
{
    const int64_t t0 = wall_us() - 60'000'000;
    as::Clip clip = sample_clip(t0);
    clip.transcript = "buy milk on the way home";
    memory::Entry e = as::clip_entry(demo(), clip);

    EXPECT_EQ(e.t_start_us, clip.t_start_us);
    EXPECT_EQ(e.t_end_us, clip.t_end_us);
    EXPECT_EQ(e.transcript, clip.transcript);
    // The first, middle and last frames, at their times, as the JPEG of each frame.
    const std::vector<size_t> picks = reasoning::clip_key_frames(clip.frames.size());
    ASSERT_EQ(e.key_frames.size(), 3u);
    std::vector<iris::Image> key_images;
    for (size_t i = 0; i < picks.size(); ++i) {
        const memory::Frame& f = clip.frames[picks[i]];
        EXPECT_EQ(e.key_frames[i].t_us, f.t_us);
        key_images.push_back(f.image);
        iris::Image back = reasoning::decode_image(e.key_frames[i].jpeg.bytes());
        EXPECT_EQ(back.width, f.image.width);
        EXPECT_EQ(back.height, f.image.height);
    }
    // The caption and embedding are describe_clip's of those frames.
    reasoning::ClipDescription d = reasoning::describe_clip(demo(), key_images, clip.transcript);
    EXPECT_FALSE(e.caption.empty());
    EXPECT_EQ(e.caption, d.caption);
    EXPECT_EQ(e.embedding, d.embedding);
    EXPECT_EQ(int(e.embedding.size()), as::embedding_dim(demo()));

    // Stored, it is found again by what was said.
    test::TempDir dir;
    memory::Store store = memory::Store::open(dir.path(), {.dim = as::embedding_dim(demo())});
    const int64_t id = store.add(e);
    auto hits = as::find_memories(&demo(), store, "milk", {.k = 1});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, id);
    EXPECT_GT(hits[0].rank_text, 0);
}

TEST(AssistantRemember, LargeFramesAreStoredScaledToTheKeyFrameSideAndSmallOnesAsTheyAre)
{
    const iris::Image sample = reasoning::load_image(kSamples + "scene-shapes.png");
    const int64_t t0 = wall_us();
    for (auto [w, h, want_w, want_h] :
         {std::tuple {896, 672, 448, 336}, std::tuple {600, 2000, 134, 448},
          std::tuple {448, 300, 448, 300}, std::tuple {100, 60, 100, 60}}) {
        as::Clip clip {.t_start_us = t0, .t_end_us = t0};
        clip.frames.push_back({t0, reasoning::resize_bicubic(sample, w, h)});
        memory::Entry e = as::clip_entry(demo(), clip);
        ASSERT_EQ(e.key_frames.size(), 1u);
        iris::Image back = reasoning::decode_image(e.key_frames[0].jpeg.bytes());
        EXPECT_EQ(back.width, want_w) << w << "x" << h;
        EXPECT_EQ(back.height, want_h) << w << "x" << h;
        EXPECT_LE(std::max(back.width, back.height), as::kKeyFrameSide);
    }
}

TEST(AssistantRemember, AClipWithoutFramesIsAnError)
{
    as::Clip clip {.t_start_us = 1, .t_end_us = 2};
    try {
        as::clip_entry(demo(), clip);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    }
}
