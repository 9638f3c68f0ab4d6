// The kind of iris::Error a call throws, for tests of bad input.
#pragma once

#include "core/core.h"

#include <gtest/gtest.h>

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

} // namespace iris::test
