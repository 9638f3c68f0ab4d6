// ShortTerm: a bounded, thread-safe window that drops the oldest items.
#include "memory/memory.h"

#include <gtest/gtest.h>

#include <thread>

using namespace iris::memory;

namespace {

Frame frame_at(int64_t t_us, const iris::Buffer& pixels = {})
{
    return Frame {t_us, {2, 2, pixels}};
}

} // namespace

TEST(MemoryShortTerm, KeepsAtMostMaxFramesDroppingTheOldest)
{
    ShortTerm st({.window_us = 1'000'000'000, .max_frames = 3});
    for (int i = 0; i < 5; ++i) st.add_frame(frame_at(i));
    std::vector<Frame> f = st.frames();
    ASSERT_EQ(f.size(), 3u);
    EXPECT_EQ(f[0].t_us, 2);
    EXPECT_EQ(f[2].t_us, 4);
    ASSERT_EQ(st.latest_frames(2).size(), 2u);
    EXPECT_EQ(st.latest_frames(2)[0].t_us, 3);
    EXPECT_EQ(st.latest_frames(10).size(), 3u);
}

TEST(MemoryShortTerm, DropsItemsOlderThanTheWindow)
{
    ShortTerm st({.window_us = 10});
    st.add_frame(frame_at(0));
    st.add_caption({0, 5, "old caption"});
    st.add_transcript({0, 15, "still inside"});
    st.add_frame(frame_at(20)); // the window is now [10, 20]
    EXPECT_EQ(st.frames().size(), 1u);
    EXPECT_TRUE(st.captions().empty());
    ASSERT_EQ(st.transcripts().size(), 1u);
    EXPECT_EQ(st.transcripts()[0].text, "still inside");
}

TEST(MemoryShortTerm, SinceSelectsTheRecentItems)
{
    ShortTerm st;
    for (int i = 0; i < 10; ++i) {
        st.add_frame(frame_at(i * 1000));
        st.add_caption({i * 1000, i * 1000 + 500, std::to_string(i)});
    }
    EXPECT_EQ(st.frames(7000).size(), 3u);
    ASSERT_EQ(st.captions(8400).size(), 2u);
    EXPECT_EQ(st.captions(8400)[0].text, "8");
    st.clear();
    EXPECT_TRUE(st.frames().empty());
    EXPECT_TRUE(st.captions().empty());
}

TEST(MemoryShortTerm, FramesSharePixelsInsteadOfCopying)
{
    iris::Buffer pixels = iris::Buffer::copy_of("0123456789ab", 12);
    ShortTerm st;
    st.add_frame(frame_at(1, pixels));
    std::vector<Frame> f = st.frames();
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].image.rgb.data(), pixels.data());
    EXPECT_EQ(pixels.use_count(), 3); // ours, the window's, the snapshot's
}

TEST(MemoryShortTerm, ConcurrentWritersAndReadersStayWithinBounds)
{
    ShortTerm st({.window_us = 1'000'000'000, .max_frames = 16, .max_texts = 8});
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 2000; ++i) {
                st.add_frame(frame_at(i));
                st.add_transcript({i, i, std::to_string(t)});
                EXPECT_LE(st.frames().size(), 16u);
                EXPECT_LE(st.transcripts().size(), 8u);
            }
        });
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(st.frames().size(), 16u);
    EXPECT_EQ(st.transcripts().size(), 8u);
}
