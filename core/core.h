// core — errors, logging, clocks and the thread pool shared by every Iris module.
//
//   iris::log_set_sink([](iris::LogLevel lvl, std::string_view msg) { ... });  // optional
//   IRIS_LOG_INFO("loaded %zu tensors in %.1f ms", n, ms);
//
//   iris::ThreadPool pool(4);
//   pool.parallel_for(0, n, [&](int64_t i) { ... });      // blocks until every index ran
//
// Thread safety: logging and ThreadPool::submit/parallel_for may be called from any thread.
//
// The message bus that connects modules is in core/bus.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace iris {

// ---------------------------------------------------------------------------------------------
// Errors

// What went wrong, for callers that react differently (the server maps kinds to HTTP statuses).
enum class ErrorKind {
    invalid_argument, // the caller passed something out of range or malformed
    invalid_input, // a file or payload is corrupt, truncated or unsupported
    unsupported, // a valid input that this build cannot handle
    not_found, // a file, tensor or entry does not exist
    io, // the operating system refused a read or write
    resource, // a limit was hit (memory, queue depth, size cap)
    timeout, // waited longer than allowed
    cancelled, // the operation was cancelled by its caller
    closed, // the object was shut down
    internal, // a bug: an invariant did not hold
};

const char* error_kind_name(ErrorKind kind);

// The one exception type thrown across module boundaries. The message is complete and meant
// for the user: it names the file, tensor, field or value that was wrong.
class Error : public std::runtime_error
{
public:
    Error(ErrorKind kind, const std::string& message)
        : std::runtime_error(message)
        , kind_(kind)
    { }
    ErrorKind kind() const { return kind_; }

private:
    ErrorKind kind_;
};

// printf-style formatting into a std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// s without leading and trailing ASCII whitespace (space, \t, \n, \r, \f, \v).
std::string_view trim(std::string_view s);

// ---------------------------------------------------------------------------------------------
// Logging

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the sink (default: stderr with a level prefix). Pass nullptr to restore the default.
void log_set_sink(LogSink sink);
// Messages below this level are dropped before formatting (default: info, or IRIS_LOG_LEVEL).
void log_set_level(LogLevel level);
LogLevel log_level();
LogLevel log_level_from_string(std::string_view name); // "debug", "info", ...; throws Error
void log_write(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define IRIS_LOG_DEBUG(...) ::iris::log_write(::iris::LogLevel::debug, __VA_ARGS__)
#define IRIS_LOG_INFO(...) ::iris::log_write(::iris::LogLevel::info, __VA_ARGS__)
#define IRIS_LOG_WARN(...) ::iris::log_write(::iris::LogLevel::warn, __VA_ARGS__)
#define IRIS_LOG_ERROR(...) ::iris::log_write(::iris::LogLevel::error, __VA_ARGS__)

// ---------------------------------------------------------------------------------------------
// Thread pool

class ThreadPool
{
public:
    // n_threads <= 0 means one per hardware thread.
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool(); // finishes queued tasks, then joins every worker
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const;
    // Runs task on a worker. Exceptions thrown by the task are logged and dropped; use
    // parallel_for when the caller must see them.
    void submit(std::function<void()> task);
    // Runs fn(i) for every i in [begin, end), split into contiguous chunks over the workers and
    // the calling thread. Blocks until done; rethrows the first exception a chunk threw.
    void parallel_for(int64_t begin, int64_t end, const std::function<void(int64_t)>& fn);
    // Like parallel_for, but fn receives a whole chunk [lo, hi) at once.
    void parallel_for_chunks(int64_t begin, int64_t end,
                             const std::function<void(int64_t lo, int64_t hi)>& fn);

private:
    struct State;
    std::unique_ptr<State> state_;
};

// The process-wide pool used by the engine's kernels (created on first use, sized by
// IRIS_THREADS or the hardware).
ThreadPool& default_thread_pool();
// Resizes the default pool; call before heavy work starts (e.g. from --threads).
void set_default_threads(int n_threads);

// ---------------------------------------------------------------------------------------------
// Base64 (standard alphabet; decoding also takes the URL-safe one and skips line breaks)

std::vector<uint8_t> base64_decode(std::string_view text); // Error(invalid_input) when malformed
std::string base64_encode(std::span<const uint8_t> bytes);

// ---------------------------------------------------------------------------------------------
// Random numbers

// splitmix64: advances `state` and returns the next value of a small, well-mixed generator whose
// sequence depends only on the seed (sampling, random checkpoints: reproducible on every thread
// count and machine).
inline uint64_t splitmix64(uint64_t& state)
{
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// ---------------------------------------------------------------------------------------------
// Clock

// Monotonic time in microseconds since an arbitrary start.
int64_t now_us();
// Wall-clock time in microseconds since the Unix epoch (memory entries, time phrases).
int64_t wall_us();

// Whether the CPU runs the build's baseline, x86-64-v3 (AVX2, FMA and F16C). Safe to call on any
// x86-64: a program refuses to start without it (core/cpu-check.cpp).
bool cpu_runs_x86_64_v3();

// Version string of this build, e.g. "0.1.0".
const char* version();

} // namespace iris
