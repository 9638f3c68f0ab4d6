// Time phrases to ranges, against a fixed "now" in a fixed time zone.
#include "memory/memory.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

using namespace iris::memory;

namespace {

constexpr int64_t kS = 1'000'000;

class MemoryTimePhrases : public ::testing::Test
{
protected:
    void SetUp() override { set_zone("UTC"); }
    void TearDown() override
    {
        if (saved_)
            ::setenv("TZ", saved_->c_str(), 1);
        else
            ::unsetenv("TZ");
        ::tzset();
    }
    void set_zone(const char* tz)
    {
        if (!saved_ && std::getenv("TZ")) saved_ = std::string(std::getenv("TZ"));
        ::setenv("TZ", tz, 1);
        ::tzset();
    }
    // Microseconds since the epoch of a UTC date and time.
    static int64_t utc(int y, int mo, int d, int h, int mi)
    {
        std::tm tm {};
        tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d, tm.tm_hour = h, tm.tm_min = mi;
        return int64_t(::timegm(&tm)) * kS;
    }

    const int64_t now = utc(2024, 3, 15, 14, 30); // a Friday afternoon
    std::optional<std::string> saved_;
};

} // namespace

TEST_F(MemoryTimePhrases, LastNUnitsEndsNow)
{
    auto p = parse_time_phrase("what did I see in the last 10 minutes?", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, now - 600 * kS);
    EXPECT_EQ(p->range.to_us, now);
    EXPECT_EQ(p->rest, "what did I see ?");

    EXPECT_EQ(parse_time_phrase("in the last hour", now)->range.from_us, now - 3600 * kS);
    EXPECT_EQ(parse_time_phrase("In The Past Two Hours", now)->range.from_us, now - 7200 * kS);
    EXPECT_EQ(parse_time_phrase("last 30 secs", now)->range.from_us, now - 30 * kS);
    EXPECT_EQ(parse_time_phrase("over the past 3 days", now)->range.from_us, now - 3 * 86400 * kS);
    EXPECT_EQ(parse_time_phrase("in the last minute", now)->range.from_us, now - 60 * kS);
}

TEST_F(MemoryTimePhrases, BetweenClockTimesIsTodayOrYesterday)
{
    auto p = parse_time_phrase("who came between 13:00 and 14:00", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 15, 13, 0));
    EXPECT_EQ(p->range.to_us, utc(2024, 3, 15, 14, 0) - 1);
    EXPECT_EQ(p->rest, "who came");

    // 15:00 has not come yet today: the phrase means yesterday's.
    p = parse_time_phrase("between 15:00 and 16:00", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 14, 15, 0));
    EXPECT_EQ(p->range.to_us, utc(2024, 3, 14, 16, 0) - 1);

    p = parse_time_phrase("between 1 and 2:15pm", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 15, 13, 0));
    EXPECT_EQ(p->range.to_us, utc(2024, 3, 15, 14, 15) - 1);

    p = parse_time_phrase("from 11am to 1pm", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 15, 11, 0));
    EXPECT_EQ(p->range.to_us, utc(2024, 3, 15, 13, 0) - 1);

    // Across midnight.
    p = parse_time_phrase("between 23:00 and 01:30", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 14, 23, 0));
    EXPECT_EQ(p->range.to_us, utc(2024, 3, 15, 1, 30) - 1);
}

TEST_F(MemoryTimePhrases, TodayAndYesterdayAreCalendarDays)
{
    auto p = parse_time_phrase("what happened today", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 15, 0, 0));
    EXPECT_EQ(p->range.to_us, now);
    EXPECT_EQ(p->rest, "what happened");

    p = parse_time_phrase("Yesterday, where was my phone", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 14, 0, 0));
    EXPECT_EQ(p->range.to_us, utc(2024, 3, 15, 0, 0) - 1);
    EXPECT_EQ(p->rest, ", where was my phone");
}

TEST_F(MemoryTimePhrases, LocalZoneAndDaylightSavingAreRespected)
{
    // Central Europe: on 2024-03-31 clocks went from 02:00 to 03:00, so at noon local time
    // (10:00 UTC) "today" began 11 hours earlier, at 23:00 UTC the day before.
    set_zone("CET-1CEST,M3.5.0,M10.5.0/3");
    int64_t noon = utc(2024, 3, 31, 10, 0);
    auto p = parse_time_phrase("today", noon);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 30, 23, 0));
    p = parse_time_phrase("between 9:00 and 10:00", noon);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 31, 7, 0)); // 09:00 CEST
}

TEST_F(MemoryTimePhrases, TextWithoutAPhraseGivesNothing)
{
    EXPECT_FALSE(parse_time_phrase("where are my keys", now));
    EXPECT_FALSE(parse_time_phrase("the last time I saw it", now));
    EXPECT_FALSE(parse_time_phrase("between 25:00 and 26:00", now));
    EXPECT_FALSE(parse_time_phrase("between 13pm and 2pm", now));
    EXPECT_FALSE(parse_time_phrase("todays", now));
    EXPECT_FALSE(parse_time_phrase("", now));
}

TEST_F(MemoryTimePhrases, TheFirstPhraseWins)
{
    auto p = parse_time_phrase("yesterday or in the last 5 minutes", now);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->range.from_us, utc(2024, 3, 14, 0, 0));
    EXPECT_EQ(p->rest, "or in the last 5 minutes");
}
