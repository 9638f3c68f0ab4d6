// A small command-line parser for the iris subcommands: declare the options a command takes,
// then read them. Unknown options and missing values are errors with a clear message.
#pragma once

#include "core/core.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace iris::app {

class Args
{
public:
    // `valued` lists the options that take a value (e.g. "--model", "-p"); `flags` those that
    // don't. Anything else starting with '-' is an error; the rest are positionals.
    Args(int argc, char** argv, const std::vector<std::string>& valued,
         const std::vector<std::string>& flags);

    bool flag(const std::string& name) const { return flags_.count(name) != 0; }
    bool has(const std::string& name) const { return values_.count(name) != 0; }
    std::string str(const std::string& name, const std::string& fallback = "") const;
    std::string required(const std::string& name) const;
    std::vector<std::string> all(const std::string& name) const; // repeated options, in order
    // Typed values, range-checked; errors name the option.
    int64_t integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const;
    double number(const std::string& name, double fallback, double lo, double hi) const;
    const std::vector<std::string>& positionals() const { return positionals_; }

private:
    std::multimap<std::string, std::string> values_;
    std::map<std::string, bool> flags_;
    std::vector<std::string> positionals_;
};

} // namespace iris::app
