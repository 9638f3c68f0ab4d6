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
#include <cstring>
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

TEST(MemoryCli, OutFoldersThatCannotBeMadeAreErrorsNamingThemNotCrashes)
{
    fs::path db = temp_dir("bad-out");
    ASSERT_EQ(run("watch --fast --video testsrc --duration 2 --fps 2 --db " + q(db) + " >/dev/null")
                  .status,
              0);
    fs::path file = temp_dir("bad-out-file") / "a-file";
    std::ofstream(file) << "not a folder";
    // A file where the folder should be, a folder below a file, a place nobody may write (even
    // root may not create folders in /proc).
    for (const fs::path& out : {file, file / "x", fs::path("/proc/iris-test-out")}) {
        SCOPED_TRACE(out);
        auto r = run("memory show 1 --db " + q(db) + " --out " + q(out) + " 2>&1");
        EXPECT_EQ(r.status, 1) << r.out;
        EXPECT_NE(r.out.find("iris memory: "), std::string::npos) << r.out;
        EXPECT_NE(r.out.find(out.string()), std::string::npos) << r.out;
    }
    // The web page's folder is made before the model is loaded and the page written.
    auto c = run("compose webpage --instruction x --out " + q(file / "x/page.html") + " 2>&1");
    EXPECT_EQ(c.status, 1) << c.out;
    EXPECT_NE(c.out.find((file / "x").string()), std::string::npos) << c.out;
    EXPECT_EQ(c.out.find("loading"), std::string::npos) << c.out;
    std::ifstream in(file);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "not a folder");
}

TEST(MemoryCli, RecallAndComposeRefuseAPromptPastTheLimitBeforeRunningIt)
{
    fs::path db = temp_dir("limit");
    ASSERT_EQ(run("watch --fast --video testsrc --duration 2 --fps 2 --db " + q(db) + " >/dev/null")
                  .status,
              0);
    auto r = run("recall --max-prompt-tokens 10 --db " + q(db) + " 'what did I see?' 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("iris recall: the prompt has"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("more than the 10 allowed"), std::string::npos) << r.out;
    // A 100,000-character question: its time phrases, words and embedding are looked at, and
    // its prompt (22,000 tokens) is refused instead of run.
    fs::path long_question = temp_dir("limit-question") / "q.txt";
    {
        std::ofstream out(long_question);
        const char* words[] = {"red ", "square ", "what ", "did ", "I ", "see ", "today "};
        for (size_t n = 0, i = 0; n < 100'000; n += std::strlen(words[i % 7]), ++i)
            out << words[i % 7];
    }
    r = run("recall --db " + q(db) + " \"$(cat " + q(long_question) + ")\" 2>&1");
    EXPECT_EQ(r.status, 1) << r.out.substr(0, 2000);
    EXPECT_NE(r.out.find("more than the 8192 allowed"), std::string::npos) << r.out.substr(0, 2000);

    fs::path page = temp_dir("limit-page") / "page.html";
    r = run("compose webpage --max-prompt-tokens 10 --instruction 'a page about fruit' --out "
            + q(page) + " 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("more than the 10 allowed"), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(page));
}

// Runs the command as a user who may only read the memory: root ignores permissions, so a
// root test runs iris as nobody.
Result run_as_reader(const std::string& args)
{
    std::string as = geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "";
    return iris::test::run_shell(as + IRIS_BINARY + " " + args);
}

TEST(MemoryCli, AMemoryFolderTheUserMayOnlyReadIsListedShownRecalledButNotChanged)
{
    fs::path db = temp_dir("read-only");
    ASSERT_EQ(run("watch --fast --video testsrc --duration 2 --fps 2 --db " + q(db) + " >/dev/null")
                  .status,
              0);
    ASSERT_FALSE(fs::exists(db / "memory.db-shm")); // gone with the writer's clean close
    for (const auto& e : fs::directory_iterator(db))
        if (e.is_regular_file()) fs::permissions(e.path(), fs::perms(0444));
    fs::permissions(db, fs::perms(0555));

    auto l = run_as_reader("memory list --json --db " + q(db));
    EXPECT_EQ(l.status, 0);
    if (l.status == 0) {
        auto entries = nlohmann::json::parse(l.out);
        ASSERT_GE(entries.size(), 1u);
        auto shown = run_as_reader("memory show " + std::to_string(entries[0]["id"].get<int64_t>())
                                   + " --db " + q(db));
        EXPECT_EQ(shown.status, 0);
    }
    // The reader gets its own copy of the demo model: the checkout may sit in a folder only
    // its owner may enter (mktemp -d).
    const fs::path model = temp_dir("read-only-model") / "iris-demo";
    fs::copy(kSource / "resources/models/iris-demo", model);
    auto r = run_as_reader("recall --json --max-new-tokens 4 --model " + q(model) + " --db " + q(db)
                           + " 'what did I see?'");
    EXPECT_EQ(r.status, 0);
    if (r.status == 0) {
        EXPECT_FALSE(nlohmann::json::parse(r.out)["used"].empty()) << r.out;
    }
    auto d = run_as_reader("memory delete 1 --db " + q(db) + " 2>&1");
    EXPECT_EQ(d.status, 1) << d.out;
    EXPECT_NE(d.out.find(db.string()), std::string::npos) << d.out;
    EXPECT_EQ(fs::status(db).permissions() & fs::perms::all, fs::perms(0555));
    EXPECT_FALSE(fs::exists(db / "memory.db-shm"));
    fs::permissions(db, fs::perms(0755)); // for the cleanup
}

TEST(MemoryCli, EveryAcknowledgedEntrySurvivesAHundredKillNines)
{
    fs::path db = temp_dir("kill");
    // Under a sanitizer `iris watch` starts and stores 2-3 times slower: fewer, later kills.
    const int kills = IRIS_SANITIZED ? 30 : 100, slowdown = IRIS_SANITIZED ? 3 : 1;
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> ms(30 * slowdown, 1500 * slowdown);
    std::set<int64_t> acked;
    // More kills while too few entries were acknowledged (a loaded machine starts the program
    // slowly, so early kills land before the first entry).
    int cycles = 0;
    for (int i = 0; i < kills || (acked.size() < 50 && i < 3 * kills); ++i, ++cycles) {
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
