// Crash safety: a child process adds entries and reports each acknowledged id; it is killed with
// SIGKILL at random moments, over and over. After every kill, each acknowledged entry must be
// in the store, SQLite must pass its integrity check, and the index must hold exactly the
// entries SQLite holds. The index file is also deleted or damaged between some of the runs.
#include "memory_test_util.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace iris::memory;
using iris::test::RawDb;
using iris::test::TempDir;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Starts the child with its stdout on a pipe; returns its pid and the pipe's read end.
std::pair<pid_t, int> spawn_child(const std::string& dir, uint32_t seed)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    std::string exe = IRIS_MEMORY_CRASH_CHILD, seed_arg = std::to_string(seed);
    char* argv[] = {exe.data(), const_cast<char*>(dir.c_str()), seed_arg.data(), nullptr};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) throw std::runtime_error("cannot start " + exe);
    return {pid, fds[0]};
}

// Reads acknowledged ids from the pipe until the deadline, end of file, or (when want > 0) until
// `want` more have come.
void read_acks(int fd, Clock::time_point deadline, std::string& pending, std::set<int64_t>& acked,
               size_t want = 0)
{
    size_t goal = acked.size() + want;
    char buf[4096];
    while (want == 0 || acked.size() < goal) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p {fd, POLLIN, 0};
        if (::poll(&p, 1, int(std::max<int64_t>(left.count(), 0))) <= 0) return; // deadline
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) return; // the child is gone and the pipe is drained
        pending.append(buf, size_t(n));
        size_t nl;
        while ((nl = pending.find('\n')) != std::string::npos) {
            acked.insert(std::stoll(pending.substr(0, nl)));
            pending.erase(0, nl + 1);
        }
    }
}

} // namespace

TEST(MemoryCrashSafety, EveryAcknowledgedEntrySurvivesKillNine)
{
    constexpr int n_cycles = 120;
    iris::log_set_level(iris::LogLevel::error); // the rebuilds' warnings are expected here
    TempDir dir;
    std::mt19937 rng(20240315);
    std::set<int64_t> acked;
    int n_rebuilt = 0, n_caught_up = 0;

    for (int cycle = 0; cycle < n_cycles; ++cycle) {
        SCOPED_TRACE("cycle " + std::to_string(cycle));
        auto [pid, fd] = spawn_child(dir.path(), uint32_t(cycle));
        std::string pending;
        // A quarter of the kills land at a random time, mostly while the child opens the store
        // (which takes tens of milliseconds); the rest after a random number of acknowledged
        // adds plus a random delay, so every run makes progress however slow the machine is.
        if (rng() % 4 == 0) {
            read_acks(fd, Clock::now() + std::chrono::microseconds(rng() % 50000), pending, acked);
        } else {
            read_acks(fd, Clock::now() + std::chrono::seconds(30), pending, acked, 1 + rng() % 8);
            read_acks(fd, Clock::now() + std::chrono::microseconds(rng() % 10000), pending, acked);
        }
        ::kill(pid, SIGKILL);
        read_acks(fd, Clock::now() + std::chrono::seconds(5), pending, acked);
        ::close(fd);
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited by itself, status " << status;
        // Now and then damage the index file too, as a failing disk or file system might.
        if (fs::exists(dir.file("index.faiss"))) {
            if (cycle % 10 == 3) fs::remove(dir.file("index.faiss"));
            if (cycle % 10 == 7)
                fs::resize_file(dir.file("index.faiss"),
                                fs::file_size(dir.file("index.faiss")) / 2);
        }

        // What a restart sees. Read-only, so the next child finds the store exactly as the
        // killed one left it.
        Store store = Store::open(dir.path(), {.read_only = true});
        StoreStats s = store.stats();
        ASSERT_EQ(s.n_indexed, s.n_entries);
        ASSERT_GE(s.n_entries, int64_t(acked.size()));
        n_rebuilt += s.index_open == IndexOpen::rebuilt;
        n_caught_up += s.index_open == IndexOpen::caught_up;
        for (int64_t id : acked) {
            std::optional<Entry> e = store.get(id); // checks every frame's CRC
            ASSERT_TRUE(e) << "acknowledged entry " << id << " is missing";
            ASSERT_EQ(e->key_frames.size(), 2u);
        }
        ASSERT_EQ(RawDb(dir.path()).text("PRAGMA integrity_check"), "ok");
    }
    // The runs added entries, and both repairs were needed.
    EXPECT_GT(acked.size(), size_t(n_cycles));
    EXPECT_GT(n_rebuilt, 0);
    EXPECT_GT(n_caught_up, 0);

    // A writable open (a real restart) repairs and saves the index; the next one just loads it.
    {
        Store store = Store::open(dir.path());
    }
    Store store = Store::open(dir.path());
    EXPECT_EQ(store.stats().index_open, IndexOpen::loaded);
    EXPECT_EQ(store.stats().n_indexed, store.count());
    std::cout << "[          ] " << acked.size() << " acknowledged entries over " << n_cycles
              << " kills; index rebuilt " << n_rebuilt << "x, caught up " << n_caught_up << "x\n";
}
