// memory_kill_bench — the kill -9 harness at scale: `iris watch` is killed with SIGKILL at random
// moments and restarted, --cycles times (default 1000); every fifth cycle the FAISS file is first
// deleted or cut in half. At the end every acknowledged entry ("stored #N" on stdout) must be in
// memory.db, PRAGMA integrity_check must say ok and the index must count what SQLite counts.
//
//   memory_kill_bench [--cycles 1000] [--seed 12345] [--dir DIR] [--keep]
//
// Prints the cycles, the entries acknowledged and stored, lost entries (must be 0), the index
// state after reopening, and the time per cycle. Exit status 1 when anything was lost.
#include "memory/memory.h"
#include "tests/apps/kill-harness.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using iris::test::integrity_check;
using iris::test::watch_and_kill;

int main(int argc, char** argv)
{
    int cycles = 1000;
    unsigned seed = 12345;
    fs::path dir;
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--cycles" && i + 1 < argc)
            cycles = std::atoi(argv[++i]);
        else if (a == "--seed" && i + 1 < argc)
            seed = unsigned(std::atoi(argv[++i]));
        else if (a == "--dir" && i + 1 < argc)
            dir = argv[++i];
        else if (a == "--keep")
            keep = true;
        else {
            std::fprintf(stderr,
                         "usage: memory_kill_bench [--cycles N] [--seed S] [--dir DIR] [--keep]\n");
            return 2;
        }
    }
    if (dir.empty())
        dir = fs::temp_directory_path() / ("iris-kill-bench-" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);

    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> ms(30, 1500);
    std::set<int64_t> acked;
    int index_damaged = 0;
    auto t0 = Clock::now();
    for (int i = 0; i < cycles; ++i) {
        if (i % 5 == 4 && fs::exists(dir / "index.faiss")) {
            if (i % 10 == 4)
                fs::remove(dir / "index.faiss");
            else
                fs::resize_file(dir / "index.faiss", fs::file_size(dir / "index.faiss") / 2);
            ++index_damaged;
        }
        for (int64_t id : watch_and_kill({"watch", "--fast", "--video", "testsrc", "--duration",
                                          "60", "--fps", "8", "--db", dir.string()},
                                         std::chrono::milliseconds(ms(rng))))
            acked.insert(id);
        if ((i + 1) % 100 == 0)
            std::fprintf(stderr, "%d cycles, %zu acknowledged\n", i + 1, acked.size());
    }
    double seconds = std::chrono::duration<double>(Clock::now() - t0).count();

    auto store = iris::memory::Store::open(dir.string());
    auto stats = store.stats();
    std::set<int64_t> present;
    for (const auto& e : store.list({.limit = -1})) present.insert(e.id);
    size_t lost = 0;
    for (int64_t id : acked) lost += !present.count(id);
    std::string integrity = integrity_check(dir / "memory.db");

    std::printf("| cycles | index damaged | acknowledged | stored | lost | integrity_check | index "
                "| s per cycle |\n");
    std::printf("|---:|---:|---:|---:|---:|---|---|---:|\n");
    std::printf("| %d | %d | %zu | %lld | %zu | %s | %s, %lld of %lld | %.2f |\n", cycles,
                index_damaged, acked.size(), (long long)stats.n_entries, lost, integrity.c_str(),
                iris::memory::index_open_name(stats.index_open), (long long)stats.n_indexed,
                (long long)stats.n_entries, seconds / cycles);
    if (!keep) fs::remove_all(dir);
    return lost == 0 && integrity == "ok" && stats.n_indexed == stats.n_entries ? 0 : 1;
}
