// Where the reference outputs of the official implementation are (../shared/golden), and the
// skip every golden test uses when they are absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace iris::test {

// IRIS_GOLDEN_DIR from the environment wins over the path compiled in by iris_add_test.
inline std::string golden_dir()
{
    if (const char* env = std::getenv("IRIS_GOLDEN_DIR"); env && *env) return env;
    return IRIS_GOLDEN_DIR;
}

inline bool have_golden()
{
    return std::filesystem::exists(golden_dir() + "/index.json");
}

} // namespace iris::test

#define IRIS_REQUIRE_GOLDEN()                                                                      \
    do {                                                                                           \
        if (!::iris::test::have_golden())                                                          \
            GTEST_SKIP() << "golden set not found (" << ::iris::test::golden_dir()                 \
                         << "/index.json); set IRIS_GOLDEN_DIR to shared/golden";                  \
    } while (0)
