#include "core/core.h"

#include <gtest/gtest.h>

using iris::Config;
using iris::Error;

TEST(Config, ParsesKeyValueLinesAndSkipsCommentsAndBlanks)
{
    Config cfg = Config::parse("# a comment\n\nmodel = /models/x \nthreads=4\n");
    EXPECT_EQ(cfg.get("model"), "/models/x");
    EXPECT_EQ(cfg.get_int("threads", 0), 4);
    EXPECT_FALSE(cfg.has("missing"));
    EXPECT_EQ(cfg.get("missing", "fallback"), "fallback");
}

TEST(Config, CommandLineOverridesReplaceFileValues)
{
    Config cfg = Config::parse("threads = 4\n");
    cfg.apply_overrides({"threads=8", "kv=q8"});
    EXPECT_EQ(cfg.get_int("threads", 0), 8);
    EXPECT_EQ(cfg.get("kv"), "q8");
}

TEST(Config, MalformedLineNamesTheOriginAndLine)
{
    try {
        Config::parse("a = 1\njust words\n", "iris.conf");
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::invalid_input);
        EXPECT_NE(std::string(e.what()).find("iris.conf:2"), std::string::npos) << e.what();
    }
}

TEST(Config, TypedGettersRejectValuesThatDoNotParse)
{
    Config cfg = Config::parse("n = 12x\nf = abc\nb = maybe\n");
    EXPECT_THROW(cfg.get_int("n", 0), Error);
    EXPECT_THROW(cfg.get_double("f", 0), Error);
    EXPECT_THROW(cfg.get_bool("b", false), Error);
    EXPECT_THROW(cfg.apply_overrides({"novalue"}), Error);
}

TEST(Config, MissingFileIsNotFound)
{
    try {
        Config::load("/nonexistent/iris.conf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::not_found);
    }
}
