// Running `iris watch` as a child process and killing it: shared by tests/apps/memory_cli_test
// and bench/memory_kill_bench. IRIS_BINARY names the iris executable.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <poll.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace iris::test {

struct Child
{
    pid_t pid = -1;
    int out = -1; // the read end of its stdout
};

// Starts `iris ARGS...` with stdout on a pipe and stderr on /dev/null.
inline Child start_iris(const std::vector<std::string>& args)
{
    int fds[2];
    if (pipe(fds) != 0) return {};
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        close(fds[0]);
        std::vector<char*> argv {const_cast<char*>(IRIS_BINARY)};
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(IRIS_BINARY, argv.data());
        _exit(127);
    }
    close(fds[1]);
    return {pid, fds[0]};
}

inline void kill_child(Child& c)
{
    if (c.pid > 0) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
    }
    if (c.out >= 0) close(c.out);
    c = {};
}

// Starts `iris watch ...`, reads whole "stored #N" lines until `after`, then SIGKILLs it (if
// still running). Returns the acknowledged ids.
inline std::vector<int64_t> watch_and_kill(const std::vector<std::string>& args,
                                           std::chrono::milliseconds after)
{
    Child c = start_iris(args);
    if (c.pid <= 0) return {};
    std::vector<int64_t> acked;
    std::string pending;
    auto deadline = std::chrono::steady_clock::now() + after;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd pfd {c.out, POLLIN, 0};
        if (poll(&pfd, 1, int(left.count())) <= 0) continue;
        char buf[4096];
        ssize_t n = read(c.out, buf, sizeof buf);
        if (n <= 0) break; // it finished
        pending.append(buf, size_t(n));
        size_t nl;
        while ((nl = pending.find('\n')) != std::string::npos) {
            long long id = 0;
            if (std::sscanf(pending.substr(0, nl).c_str(), "stored #%lld", &id) == 1)
                acked.push_back(id);
            pending.erase(0, nl + 1);
        }
    }
    kill_child(c);
    return acked;
}

// What SQLite's PRAGMA integrity_check says about the database ("ok" when it is sound).
inline std::string integrity_check(const std::filesystem::path& db)
{
    sqlite3* h = nullptr;
    std::string out = "cannot open";
    if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK
            && sqlite3_step(st) == SQLITE_ROW)
            out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return out;
}

} // namespace iris::test
