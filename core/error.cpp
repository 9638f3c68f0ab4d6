#include "core/core.h"

#include <cstdarg>
#include <cstdio>

namespace iris {

const char* error_kind_name(ErrorKind kind)
{
    switch (kind) {
    case ErrorKind::invalid_argument:
        return "invalid argument";
    case ErrorKind::invalid_input:
        return "invalid input";
    case ErrorKind::unsupported:
        return "unsupported";
    case ErrorKind::not_found:
        return "not found";
    case ErrorKind::io:
        return "I/O error";
    case ErrorKind::resource:
        return "resource limit";
    case ErrorKind::timeout:
        return "timeout";
    case ErrorKind::cancelled:
        return "cancelled";
    case ErrorKind::closed:
        return "closed";
    case ErrorKind::internal:
        return "internal error";
    }
    return "unknown";
}

std::string strfmt(const char* fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    va_list copy;
    va_copy(copy, args);
    int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    std::string out(n > 0 ? size_t(n) : 0, '\0');
    if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, args);
    va_end(args);
    return out;
}

std::string_view trim(std::string_view s)
{
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

const char* version()
{
    return IRIS_VERSION;
}

} // namespace iris
