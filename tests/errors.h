// The kind and message of the iris::Error a call throws, for tests of bad input.
#pragma once

#include "core/core.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <optional>
#include <string>

namespace iris::test {

// Runs f and returns the kind of the iris::Error it threw, checking that the message contains
// `in_message` (what the error is about); nullopt when f returned. Any other exception fails
// the test.
template<class F> std::optional<ErrorKind> thrown_kind(F&& f, const std::string& in_message = "")
{
    try {
        f();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(in_message), std::string::npos) << e.what();
        return e.kind();
    }
    return std::nullopt;
}

// Expects f to throw iris::Error of `kind` whose message holds every one of `parts`. Returns
// the message, for further checks; empty when f returned.
template<class F>
std::string expect_error(F&& f, ErrorKind kind, std::initializer_list<std::string> parts)
{
    try {
        f();
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_EQ(e.kind(), kind) << error_kind_name(e.kind()) << ": " << what;
        for (const std::string& p : parts)
            EXPECT_NE(what.find(p), std::string::npos) << "message lacks \"" << p << "\": " << what;
        return what;
    }
    ADD_FAILURE() << "expected an iris::Error";
    return "";
}

} // namespace iris::test
