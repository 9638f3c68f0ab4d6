#include "core/core.h"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace iris {

Config Config::load(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::not_found, "cannot open configuration file '" + path + "'");
    std::ostringstream text;
    text << in.rdbuf();
    return parse(text.str(), path);
}

Config Config::parse(std::string_view text, const std::string& origin)
{
    Config cfg;
    size_t line_no = 0;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view {} : text.substr(nl + 1);
        ++line_no;
        line = trim(line);
        if (line.empty() || line.front() == '#') continue;
        size_t eq = line.find('=');
        std::string_view key
            = eq == std::string_view::npos ? std::string_view {} : trim(line.substr(0, eq));
        if (key.empty())
            throw Error(ErrorKind::invalid_input,
                        strfmt("%s:%zu: expected 'key = value'", origin.c_str(), line_no));
        cfg.values_[std::string(key)] = std::string(trim(line.substr(eq + 1)));
    }
    return cfg;
}

void Config::apply_overrides(const std::vector<std::string>& overrides)
{
    for (const auto& o : overrides) {
        size_t eq = o.find('=');
        std::string_view key = eq == std::string::npos ? std::string_view {}
                                                       : trim(std::string_view(o).substr(0, eq));
        if (key.empty())
            throw Error(ErrorKind::invalid_argument,
                        "configuration override '" + o + "' is not key=value");
        values_[std::string(key)] = std::string(trim(std::string_view(o).substr(eq + 1)));
    }
}

std::string Config::get(const std::string& key, const std::string& fallback) const
{
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
}

int64_t Config::get_int(const std::string& key, int64_t fallback) const
{
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || errno == ERANGE)
        throw Error(ErrorKind::invalid_argument,
                    "configuration '" + key + "' must be an integer, got '" + it->second + "'");
    return v;
}

double Config::get_double(const std::string& key, double fallback) const
{
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(it->second.c_str(), &end);
    if (it->second.empty() || *end != '\0' || errno == ERANGE)
        throw Error(ErrorKind::invalid_argument,
                    "configuration '" + key + "' must be a number, got '" + it->second + "'");
    return v;
}

bool Config::get_bool(const std::string& key, bool fallback) const
{
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    const std::string& v = it->second;
    if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
    if (v == "0" || v == "false" || v == "no" || v == "off") return false;
    throw Error(ErrorKind::invalid_argument,
                "configuration '" + key + "' must be true or false, got '" + v + "'");
}

} // namespace iris
