#include "perception/perception.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using iris::perception::Query;
using iris::perception::QuerySource;
using iris::perception::Transcript;
using iris::perception::WakeDetector;
using iris::perception::words_of;

namespace {

Transcript said(const std::string& text, int64_t start_s, int64_t end_s)
{
    return Transcript {start_s * 1'000'000, end_s * 1'000'000, text, 1'700'000'000'000'000};
}

} // namespace

TEST(Words, AreLowerCaseAndSplitOnAnythingButLettersDigitsAndApostrophes)
{
    EXPECT_EQ(words_of("Hey, Iris! What's   on\tthe 2nd shelf?"),
              (std::vector<std::string> {"hey", "iris", "what's", "on", "the", "2nd", "shelf"}));
    EXPECT_TRUE(words_of(" ,.!? ").empty());
}

TEST(WordErrorRate, CountsSubstitutionsDeletionsAndInsertions)
{
    using iris::perception::word_error_rate;
    EXPECT_EQ(word_error_rate("buy milk", "Buy milk."), 0.0);
    EXPECT_DOUBLE_EQ(word_error_rate("remember to buy milk", "remember buy silk today"), 0.75);
    EXPECT_EQ(word_error_rate("buy milk", ""), 1.0);
    EXPECT_EQ(word_error_rate("", ""), 0.0);
}

TEST(TypedQuery, IsTrimmedAndStampedWithTheWallClock)
{
    const Query q = iris::perception::typed_query("  what did I see?\n");
    EXPECT_EQ(q.text, "what did I see?");
    EXPECT_EQ(q.source, QuerySource::typed);
    EXPECT_GT(q.unix_us, 1'600'000'000'000'000); // after 2020
    EXPECT_THROW(iris::perception::typed_query(" \t\n"), iris::Error);
}

TEST(WakeDetector, TheWordsAfterTheWakePhraseAreTheQuery)
{
    WakeDetector wake;
    EXPECT_FALSE(wake.feed(said("the blue square is moving", 0, 2)));
    std::optional<Query> q = wake.feed(said("okay hey iris what appeared in the video", 3, 6));
    ASSERT_TRUE(q);
    EXPECT_EQ(q->text, "what appeared in the video");
    EXPECT_EQ(q->source, QuerySource::spoken);
    EXPECT_EQ(q->unix_us, 1'700'000'000'000'000 + 6'000'000);
}

TEST(WakeDetector, ABareWakePhraseMakesTheNextTranscriptTheQuery)
{
    WakeDetector wake({.follow_us = 5'000'000});
    EXPECT_FALSE(wake.feed(said("Hey Iris.", 10, 11)));
    std::optional<Query> q = wake.feed(said("where are my keys", 13, 15));
    ASSERT_TRUE(q);
    EXPECT_EQ(q->text, "where are my keys");
    EXPECT_FALSE(wake.feed(said("and my phone", 16, 17))) << "one query per wake phrase";

    EXPECT_FALSE(wake.feed(said("hey iris", 20, 21)));
    EXPECT_FALSE(wake.feed(said("too late", 30, 31))) << "more than follow_us later";
}

TEST(WakeDetector, TheWakePhraseIsConfigurable)
{
    WakeDetector wake({.phrase = "OK computer"});
    EXPECT_FALSE(wake.feed(said("hey iris what time is it", 0, 2)));
    std::optional<Query> q = wake.feed(said("ok computer what time is it", 3, 5));
    ASSERT_TRUE(q);
    EXPECT_EQ(q->text, "what time is it");
    EXPECT_THROW(WakeDetector({.phrase = "?!"}), iris::Error);
}
