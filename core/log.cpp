#include "core/core.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace iris {
namespace {

LogLevel initial_level()
{
    const char* env = std::getenv("IRIS_LOG_LEVEL");
    if (!env) return LogLevel::info;
    try {
        return log_level_from_string(env);
    } catch (const Error&) {
        return LogLevel::info;
    }
}

std::atomic<int> g_level {int(initial_level())};
std::mutex g_sink_mutex; // guards g_sink; a sink may be replaced while other threads log
LogSink g_sink;

void default_sink(LogLevel level, std::string_view message)
{
    static const char* prefix[] = {"debug", "info", "warn", "error"};
    std::fprintf(stderr, "iris %s: %.*s\n", prefix[int(level)], int(message.size()),
                 message.data());
}

} // namespace

void log_set_sink(LogSink sink)
{
    std::lock_guard lock(g_sink_mutex);
    g_sink = std::move(sink);
}

void log_set_level(LogLevel level)
{
    g_level.store(int(level), std::memory_order_relaxed);
}
LogLevel log_level()
{
    return LogLevel(g_level.load(std::memory_order_relaxed));
}

LogLevel log_level_from_string(std::string_view name)
{
    if (name == "debug") return LogLevel::debug;
    if (name == "info") return LogLevel::info;
    if (name == "warn" || name == "warning") return LogLevel::warn;
    if (name == "error") return LogLevel::error;
    if (name == "off" || name == "none") return LogLevel::off;
    throw Error(ErrorKind::invalid_argument,
                "unknown log level '" + std::string(name)
                    + "' (use debug, info, warn, error or off)");
}

void log_write(LogLevel level, const char* fmt, ...)
{
    if (int(level) < g_level.load(std::memory_order_relaxed) || level == LogLevel::off) return;
    char stack[512];
    va_list args;
    va_start(args, fmt);
    va_list copy;
    va_copy(copy, args);
    int n = std::vsnprintf(stack, sizeof stack, fmt, copy);
    va_end(copy);
    std::string heap;
    std::string_view message(stack, n < 0 ? 0 : std::min<size_t>(size_t(n), sizeof stack - 1));
    if (n >= int(sizeof stack)) {
        heap.resize(size_t(n));
        std::vsnprintf(heap.data(), heap.size() + 1, fmt, args);
        message = heap;
    }
    va_end(args);
    std::lock_guard lock(g_sink_mutex);
    if (g_sink)
        g_sink(level, message);
    else
        default_sink(level, message);
}

} // namespace iris
