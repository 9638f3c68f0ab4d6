#include "apps/args.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace iris::app {

Args::Args(int argc, char** argv, const std::vector<std::string>& valued,
           const std::vector<std::string>& flags)
{
    auto contains = [](const std::vector<std::string>& v, const std::string& s) {
        return std::find(v.begin(), v.end(), s) != v.end();
    };
    bool only_positionals = false;
    for (int i = 0; i < argc; ++i) {
        std::string a = argv[i];
        if (only_positionals || a.size() < 2 || a[0] != '-' || (a[1] >= '0' && a[1] <= '9')) {
            positionals_.push_back(a);
            continue;
        }
        if (a == "--") {
            only_positionals = true;
            continue;
        }
        std::string value;
        bool inline_value = false;
        if (size_t eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
            inline_value = true;
        }
        if (contains(valued, a)) {
            if (!inline_value) {
                if (i + 1 >= argc)
                    throw Error(ErrorKind::invalid_argument, "option " + a + " needs a value");
                value = argv[++i];
            }
            values_.emplace(a, value);
        } else if (contains(flags, a) && !inline_value) {
            flags_[a] = true;
        } else {
            throw Error(ErrorKind::invalid_argument, "unknown option '" + a + "' (see --help)");
        }
    }
}

std::string Args::str(const std::string& name, const std::string& fallback) const
{
    auto range = values_.equal_range(name);
    if (range.first == range.second) return fallback;
    return std::prev(range.second)->second; // the last one wins
}

std::string Args::required(const std::string& name) const
{
    if (!has(name)) throw Error(ErrorKind::invalid_argument, "missing required option " + name);
    return str(name);
}

std::vector<std::string> Args::all(const std::string& name) const
{
    std::vector<std::string> out;
    auto range = values_.equal_range(name);
    for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
    return out;
}

int64_t Args::integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const
{
    if (!has(name)) return fallback;
    std::string s = str(name);
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("%s must be an integer in [%lld, %lld], got '%s'", name.c_str(),
                           (long long)lo, (long long)hi, s.c_str()));
    return v;
}

double Args::number(const std::string& name, double fallback, double lo, double hi) const
{
    if (!has(name)) return fallback;
    std::string s = str(name);
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno == ERANGE || !(v >= lo && v <= hi))
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("%s must be a number in [%g, %g], got '%s'", name.c_str(), lo, hi, s.c_str()));
    return v;
}

} // namespace iris::app
