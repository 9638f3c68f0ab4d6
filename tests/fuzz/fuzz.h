// Shared by the libFuzzer targets: a scratch folder in memory, files written there, and the rule
// every target checks: bad input ends in an iris::Error of a kind a user can act on, never in
// another exception (libFuzzer reports an uncaught one as a crash), a crash or an
// Error(internal), which is a broken invariant.
#pragma once

#include "core/core.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unistd.h>

namespace iris::fuzz {

// Stops the run with a message: libFuzzer saves the input as a crash.
[[noreturn]] inline void finding(const std::string& what)
{
    std::fprintf(stderr, "FINDING: %s\n", what.c_str());
    std::abort();
}

#define IRIS_FUZZ_CHECK(cond, ...)                                                                 \
    do {                                                                                           \
        if (!(cond)) ::iris::fuzz::finding(::iris::strfmt(__VA_ARGS__));                           \
    } while (0)

// Runs f; an Error of any kind but internal is the expected answer to bad input.
template<class F> bool accepts(F&& f)
{
    try {
        f();
        return true;
    } catch (const Error& e) {
        if (e.kind() == ErrorKind::internal) finding(std::string("Error(internal): ") + e.what());
        return false;
    }
}

// A folder of this process under /dev/shm (tmpfs: no disk writes per execution), emptied first.
inline const std::filesystem::path& scratch_dir()
{
    static const std::filesystem::path dir = [] {
        std::filesystem::path base = std::filesystem::exists("/dev/shm")
            ? std::filesystem::path("/dev/shm")
            : std::filesystem::temp_directory_path();
        std::filesystem::path d = base / ("iris-fuzz-" + std::to_string(::getpid()));
        std::filesystem::remove_all(d);
        std::filesystem::create_directories(d);
        // Removed at exit; a crashed run leaves it for the next run of the same pid to clear.
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(scratch_dir(), ec);
        });
        return d;
    }();
    return dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out) finding("cannot write " + path.string());
}

inline std::string_view as_text(const uint8_t* data, size_t size)
{
    return {reinterpret_cast<const char*>(data), size};
}

// Logging off: a target's expected errors would otherwise be logged on every execution.
inline void quiet()
{
    log_set_level(LogLevel::off);
}

} // namespace iris::fuzz
