// Running commands from the command-line tests, as a user's shell would.
#pragma once

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <sys/wait.h>

namespace iris::test {

struct Result
{
    int status = -1; // the exit status; -1 when the command did not exit normally
    std::string out; // what it wrote to stdout
};

// Runs `cmd` through /bin/sh; stdout is captured, stderr goes to the test log.
inline Result run_shell(const std::string& cmd)
{
    Result r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

// The path in single quotes, for a shell command line.
inline std::string quoted(const std::filesystem::path& p)
{
    // Appended piece by piece: "'" + str + "'" trips GCC 12's false -Wrestrict warning.
    std::string q = "'";
    q += p.string();
    q += '\'';
    return q;
}

} // namespace iris::test
