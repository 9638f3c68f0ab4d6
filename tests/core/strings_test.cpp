// core's string helpers: strfmt, trim and base64 (RFC 4648 test vectors).
#include "core/core.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using iris::ErrorKind;

namespace {

std::vector<uint8_t> bytes(std::string_view s)
{
    return {s.begin(), s.end()};
}

} // namespace

TEST(Strings, StrfmtFormatsLikePrintfAtAnyLength)
{
    EXPECT_EQ(iris::strfmt("%s=%d", "n", 42), "n=42");
    EXPECT_EQ(iris::strfmt("%s", ""), "");
    EXPECT_EQ(iris::strfmt("%0500d", 7).size(), 500u);
}

TEST(Strings, TrimRemovesAsciiWhitespaceAtBothEndsOnly)
{
    EXPECT_EQ(iris::trim("  a b\t\r\n"), "a b");
    EXPECT_EQ(iris::trim("\f\va\v"), "a");
    EXPECT_EQ(iris::trim("x"), "x");
    EXPECT_EQ(iris::trim(" \t\n "), "");
    EXPECT_EQ(iris::trim(""), "");
    EXPECT_EQ(iris::trim("\xc2\xa0z"), "\xc2\xa0z"); // no-break space is not ASCII whitespace
}

TEST(Strings, Base64MatchesTheRfcVectorsBothWays)
{
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (auto [plain, coded] : vectors) {
        EXPECT_EQ(iris::base64_encode(bytes(plain)), coded) << plain;
        EXPECT_EQ(iris::base64_decode(coded), bytes(plain)) << coded;
    }
}

TEST(Strings, Base64DecodingTakesUrlSafeTextAndLineBreaks)
{
    const std::vector<uint8_t> all = {0xfb, 0xff, 0xbf};
    EXPECT_EQ(iris::base64_encode(all), "+/+/");
    EXPECT_EQ(iris::base64_decode("-_-_"), all);
    EXPECT_EQ(iris::base64_decode("Zm9v\r\nYmFy"), bytes("foobar"));
}

TEST(Strings, MalformedBase64IsAnInvalidInputError)
{
    for (const char* bad : {"Zm9v!", "Z", "Zm9vY", "Zg==Zg", "Zg==="}) {
        try {
            iris::base64_decode(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const iris::Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::invalid_input) << bad;
        }
    }
}
