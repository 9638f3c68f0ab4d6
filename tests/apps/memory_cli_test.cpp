// iris watch, recall and memory through the real binary: a real video with a spoken soundtrack
// (FFmpeg, pocketsphinx), the demo model's captions, a real SQLite + FAISS store; and the kill -9
// harness: every entry `iris watch` acknowledged survives SIGKILL at random moments.
#include "memory/memory.h"
#include "tests/apps/kill-harness.h"
#include "tests/apps/shell.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <random>
#include <set>
#include <sqlite3.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

const fs::path kSource = IRIS_SOURCE_DIR;
const fs::path kClip = kSource / "resources/samples/clip-shapes.mp4";

using iris::test::integrity_check;
using iris::test::Result;
using iris::test::watch_and_kill;

Result run(const std::string& args)
{
    return iris::test::run_shell(std::string(IRIS_BINARY) + " " + args);
}

std::string q(const fs::path& p)
{
    return iris::test::quoted(p);
}

fs::path temp_dir(const std::string& name)
{
    fs::path d
        = fs::temp_directory_path() / ("iris_memory_cli_test_" + std::to_string(getpid())) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

} // namespace

TEST(MemoryCli, WatchRemembersTheSampleClipWithItsSpeechAndRecallNamesItsTimeRange)
{
    fs::path db = temp_dir("sample");
    auto w = run("watch --fast --video " + q(kClip) + " --audio " + q(kClip) + " --db " + q(db));
    ASSERT_EQ(w.status, 0);
    EXPECT_NE(w.out.find("stored #1 "), std::string::npos) << w.out;

    auto l = run("memory list --json --db " + q(db));
    ASSERT_EQ(l.status, 0);
    auto entries = nlohmann::json::parse(l.out);
    ASSERT_GE(entries.size(), 1u);
    std::string heard;
    for (const auto& e : entries) {
        EXPECT_FALSE(e["caption"].get<std::string>().empty());
        auto shown
            = run("memory show " + std::to_string(e["id"].get<int64_t>()) + " --db " + q(db));
        ASSERT_EQ(shown.status, 0);
        EXPECT_GE(nlohmann::json::parse(shown.out)["key_frames"].get<int>(), 1);
        EXPECT_LE(e["t_start_us"].get<int64_t>(), e["t_end_us"].get<int64_t>());
        heard += e["transcript"].get<std::string>();
    }
    EXPECT_FALSE(heard.empty()) << "the soundtrack's speech was not transcribed into memory";

    auto r = run("recall --json --db " + q(db) + " 'What did I see?'");
    ASSERT_EQ(r.status, 0);
    auto answer = nlohmann::json::parse(r.out);
    ASSERT_FALSE(answer["used"].empty());
    const auto& used = answer["used"][0];
    bool same_range = false;
    for (const auto& e : entries)
        same_range |= e["id"] == used["id"] && e["t_start_us"] == used["t_start_us"]
            && e["t_end_us"] == used["t_end_us"];
    EXPECT_TRUE(same_range) << answer.dump();
}

TEST(MemoryCli, ShowWritesKeyFramesExportWritesEverythingAndDeleteRemoves)
{
    fs::path db = temp_dir("manage");
    ASSERT_EQ(run("watch --fast --video testsrc --duration 6 --fps 4 --db " + q(db) + " >/dev/null")
                  .status,
              0);
    auto entries = nlohmann::json::parse(run("memory list --json --db " + q(db)).out);
    ASSERT_GE(entries.size(), 2u);
    int64_t id = entries[0]["id"];

    fs::path frames = temp_dir("frames");
    auto s = run("memory show " + std::to_string(id) + " --out " + q(frames) + " --db " + q(db));
    ASSERT_EQ(s.status, 0);
    auto shown = nlohmann::json::parse(s.out);
    ASSERT_FALSE(shown["key_frame_files"].empty());
    for (const auto& f : shown["key_frame_files"]) {
        std::ifstream in(f.get<std::string>(), std::ios::binary);
        unsigned char magic[2] = {};
        in.read(reinterpret_cast<char*>(magic), 2);
        EXPECT_EQ(magic[0], 0xFF);
        EXPECT_EQ(magic[1], 0xD8);
    }

    fs::path out = temp_dir("export");
    ASSERT_EQ(run("memory export --out " + q(out) + " --db " + q(db)).status, 0);
    std::ifstream jsonl(out / "entries.jsonl");
    size_t lines = 0;
    for (std::string line; std::getline(jsonl, line);) lines += !line.empty();
    EXPECT_EQ(lines, entries.size());

    EXPECT_EQ(run("memory delete " + std::to_string(id) + " --db " + q(db)).status, 0);
    EXPECT_NE(run("memory delete " + std::to_string(id) + " --db " + q(db) + " 2>/dev/null").status,
              0);
    EXPECT_NE(run("memory show " + std::to_string(id) + " --db " + q(db) + " 2>/dev/null").status,
              0);
    auto after = nlohmann::json::parse(run("memory list --json --db " + q(db)).out);
    EXPECT_EQ(after.size(), entries.size() - 1);
}

TEST(MemoryCli, EveryAcknowledgedEntrySurvivesAHundredKillNines)
{
    fs::path db = temp_dir("kill");
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> ms(30, 1500);
    std::set<int64_t> acked;
    // At least 100 kills; more while too few entries were acknowledged (a loaded machine starts
    // the program slowly, so early kills land before the first entry).
    int cycles = 0;
    for (int i = 0; i < 100 || (acked.size() < 50 && i < 300); ++i, ++cycles) {
        // Every fifth cycle the FAISS file is deleted or truncated first: it must be rebuilt.
        if (i % 5 == 4 && fs::exists(db / "index.faiss")) {
            if (i % 10 == 4)
                fs::remove(db / "index.faiss");
            else
                fs::resize_file(db / "index.faiss", fs::file_size(db / "index.faiss") / 2);
        }
        for (int64_t id : watch_and_kill({"watch", "--fast", "--video", "testsrc", "--duration",
                                          "60", "--fps", "8", "--db", db.string()},
                                         std::chrono::milliseconds(ms(rng))))
            acked.insert(id);
    }
    ASSERT_GT(acked.size(), 20u) << "too few entries were stored to test anything";
    auto entries
        = nlohmann::json::parse(run("memory list --json --limit 1000000 --db " + q(db)).out);
    std::set<int64_t> present;
    for (const auto& e : entries) present.insert(e["id"].get<int64_t>());
    for (int64_t id : acked)
        EXPECT_TRUE(present.count(id)) << "acknowledged entry #" << id << " lost";
    EXPECT_EQ(integrity_check(db / "memory.db"), "ok");
    auto store = iris::memory::Store::open(db.string());
    auto stats = store.stats();
    EXPECT_EQ(stats.n_indexed, stats.n_entries);
    EXPECT_EQ(stats.n_entries, int64_t(entries.size()));
    std::printf("%d kills, %zu acknowledged entries, %lld stored, index %s\n", cycles, acked.size(),
                (long long)stats.n_entries, iris::memory::index_open_name(stats.index_open));
}

// Readers run while `iris watch` writes: recall, list and show never fail and only ever see whole
// entries (a caption, a valid time range, key frames that pass their checksums), and each reader
// sees at least as many entries as the one before it.
TEST(MemoryCli, RecallListAndShowDuringIngestionSeeOnlyWholeEntries)
{
    fs::path db = temp_dir("readers");
    iris::test::Child watch
        = iris::test::start_iris({"watch", "--fast", "--video", "testsrc", "--duration", "120",
                                  "--fps", "8", "--db", db.string()});
    ASSERT_GT(watch.pid, 0);
    const int out = watch.out;
    // Wait for the first acknowledged entry.
    std::string first;
    char c;
    while (first.find("stored #") == std::string::npos && read(out, &c, 1) == 1) first += c;
    ASSERT_NE(first.find("stored #"), std::string::npos) << "iris watch stored nothing";
    // Keep draining its stdout so that it never blocks on a full pipe.
    std::thread drain([fd = out] {
        char buf[4096];
        while (read(fd, buf, sizeof buf) > 0) { }
    });

    size_t seen = 0;
    for (int round = 0; round < 8; ++round) {
        SCOPED_TRACE(round);
        Result list = run("memory list --json --limit 100000 --db " + q(db));
        ASSERT_EQ(list.status, 0);
        auto entries = nlohmann::json::parse(list.out);
        EXPECT_GE(entries.size(), seen);
        seen = entries.size();
        for (const auto& e : entries) {
            EXPECT_FALSE(e["caption"].get<std::string>().empty()) << e.dump();
            EXPECT_LE(e["t_start_us"].get<int64_t>(), e["t_end_us"].get<int64_t>());
        }
        ASSERT_FALSE(entries.empty());
        // The newest entry, with its key frames read back and checked.
        int64_t newest = entries.front()["id"].get<int64_t>();
        Result show = run("memory show --db " + q(db) + " " + std::to_string(newest));
        ASSERT_EQ(show.status, 0) << show.out;
        EXPECT_GE(nlohmann::json::parse(show.out)["key_frames"].get<int>(), 1);

        Result recall = run("recall --json --k 3 --db " + q(db) + " 'What did I see?'");
        ASSERT_EQ(recall.status, 0) << recall.out;
        auto r = nlohmann::json::parse(recall.out);
        EXPECT_FALSE(r["used"].empty());
        for (const auto& u : r["used"]) EXPECT_FALSE(u["caption"].get<std::string>().empty());
    }
    kill(watch.pid, SIGKILL); // the drain thread sees the end of its stdout
    drain.join();
    iris::test::kill_child(watch);
    EXPECT_EQ(integrity_check(db / "memory.db"), "ok");
    std::printf("%zu entries seen by the last reader\n", seen);
}
