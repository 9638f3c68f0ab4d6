// Store: the SQLite side — round trips, validation, schema checks, corrupt frames, export, and
// readers working while a writer adds.
#include "memory_test_util.h"
#include "tests/errors.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <functional>
#include <grp.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using iris::Error;
using iris::ErrorKind;
using namespace iris::memory;
using iris::test::embedding_near;
using iris::test::make_entry;
using iris::test::RawDb;
using iris::test::TempDir;
using iris::test::thrown_kind;

namespace {

constexpr int kDim = 16;

} // namespace

TEST(MemoryStore, AddedEntryReadsBackWithItsFramesAndChecksums)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    Entry in = make_entry(1000, "a red bicycle by the wall", embedding_near(kDim, 3, 1), 3,
                          "I left it here");
    int64_t id = store.add(in);
    EXPECT_GT(id, 0);

    std::optional<Entry> out = store.get(id);
    ASSERT_TRUE(out);
    EXPECT_EQ(out->id, id);
    EXPECT_EQ(out->t_start_us, in.t_start_us);
    EXPECT_EQ(out->t_end_us, in.t_end_us);
    EXPECT_EQ(out->caption, in.caption);
    EXPECT_EQ(out->transcript, in.transcript);
    ASSERT_EQ(out->key_frames.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        const KeyFrame& f = out->key_frames[i];
        EXPECT_EQ(f.t_us, in.key_frames[i].t_us);
        ASSERT_EQ(f.jpeg.size(), in.key_frames[i].jpeg.size());
        EXPECT_EQ(0, std::memcmp(f.jpeg.data(), in.key_frames[i].jpeg.data(), f.jpeg.size()));
        EXPECT_NE(f.crc32, 0u);
    }
    // The embedding comes back at unit length, pointing the same way.
    ASSERT_EQ(out->embedding.size(), size_t(kDim));
    double norm = 0, dot = 0, in_norm = 0;
    for (int i = 0; i < kDim; ++i) {
        norm += out->embedding[size_t(i)] * out->embedding[size_t(i)];
        dot += out->embedding[size_t(i)] * in.embedding[size_t(i)];
        in_norm += in.embedding[size_t(i)] * in.embedding[size_t(i)];
    }
    EXPECT_NEAR(norm, 1.0, 1e-5);
    EXPECT_NEAR(dot / std::sqrt(in_norm), 1.0, 1e-5);

    EXPECT_TRUE(store.get(id, false)->key_frames.empty());
    EXPECT_FALSE(store.get(id + 100));
}

TEST(MemoryStore, EntriesSurviveReopeningAndIdsAreNeverReused)
{
    TempDir dir;
    int64_t last = 0;
    {
        Store store = Store::open(dir.path(), {.dim = kDim});
        for (int i = 0; i < 5; ++i)
            last = store.add(make_entry(i * 10, "clip", embedding_near(kDim, i, i)));
        EXPECT_TRUE(store.remove(last));
        EXPECT_FALSE(store.remove(last));
        EXPECT_EQ(store.count(), 4);
    }
    Store store = Store::open(dir.path()); // dim from the store
    EXPECT_EQ(store.dim(), kDim);
    EXPECT_EQ(store.count(), 4);
    EXPECT_FALSE(store.get(last));
    EXPECT_GT(store.add(make_entry(99, "again", embedding_near(kDim, 1, 9))), last);
    StoreStats s = store.stats();
    EXPECT_EQ(s.n_entries, 5);
    EXPECT_EQ(s.n_indexed, 5);
}

TEST(MemoryStore, RemoveTakesTheEntryOutOfEveryTableAndTheIndex)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    int64_t keep = store.add(make_entry(10, "keep this", embedding_near(kDim, 1, 1)));
    int64_t gone = store.add(make_entry(20, "unicorn sighting", embedding_near(kDim, 2, 2)));
    ASSERT_TRUE(store.remove(gone));
    EXPECT_EQ(store.stats().n_indexed, 1);
    RawDb raw(dir.path());
    EXPECT_EQ(raw.text("SELECT count(*) FROM frames WHERE entry_id = " + std::to_string(gone)),
              "0");
    EXPECT_EQ(raw.text("SELECT count(*) FROM entries_fts WHERE entries_fts MATCH 'unicorn'"), "0");
    Retriever r(store);
    auto hits = r.search({.embedding = embedding_near(kDim, 2, 2), .k = 5});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, keep);
}

TEST(MemoryStore, ListFiltersByTimeAndPages)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    for (int i = 0; i < 10; ++i) store.add(make_entry(100 * i, "clip", embedding_near(kDim, i, i)));
    std::vector<Entry> all = store.list({.limit = -1});
    ASSERT_EQ(all.size(), 10u);
    EXPECT_EQ(all.front().t_start_us, 900'000'000); // newest first
    EXPECT_TRUE(all.front().key_frames.empty());

    // Entries overlapping [302 s, 500 s]: the one starting at 300 s (it ends at 305 s), 400, 500.
    std::vector<Entry> some = store.list({.t_from_us = 302'000'000,
                                          .t_to_us = 500'000'000,
                                          .newest_first = false,
                                          .with_frames = true});
    ASSERT_EQ(some.size(), 3u);
    EXPECT_EQ(some[0].t_start_us, 300'000'000);
    EXPECT_EQ(some[2].t_start_us, 500'000'000);
    EXPECT_EQ(some[0].key_frames.size(), 2u);

    std::vector<Entry> page = store.list({.offset = 2, .limit = 3});
    ASSERT_EQ(page.size(), 3u);
    EXPECT_EQ(page[0].t_start_us, 700'000'000);
}

TEST(MemoryStore, InvalidEntriesAreRejectedAndNothingOfTheBatchIsStored)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    Entry good = make_entry(1, "fine", embedding_near(kDim, 0, 1));
    auto batch_with = [&](Entry bad) { return std::vector<Entry> {good, std::move(bad)}; };

    Entry short_emb = good;
    short_emb.embedding.resize(kDim - 1);
    Entry nan_emb = good;
    nan_emb.embedding[3] = std::nanf("");
    Entry zero_emb = good;
    zero_emb.embedding.assign(kDim, 0.0f);
    Entry backwards = good;
    backwards.t_end_us = backwards.t_start_us - 1;
    Entry not_jpeg = good;
    not_jpeg.key_frames[1].jpeg = iris::Buffer::copy_of("\x89PNG\r\n\x1a\n", 8);

    EXPECT_EQ(thrown_kind([&] { store.add(batch_with(short_emb)); }, "dim is 16"),
              ErrorKind::invalid_argument);
    EXPECT_EQ(thrown_kind([&] { store.add(batch_with(nan_emb)); }, "not finite"),
              ErrorKind::invalid_argument);
    EXPECT_EQ(thrown_kind([&] { store.add(batch_with(zero_emb)); }, "all zeros"),
              ErrorKind::invalid_argument);
    EXPECT_EQ(thrown_kind([&] { store.add(batch_with(backwards)); }, "ends before"),
              ErrorKind::invalid_argument);
    EXPECT_EQ(thrown_kind([&] { store.add(batch_with(not_jpeg)); }, "key frame 1"),
              ErrorKind::invalid_argument);
    EXPECT_EQ(store.count(), 0);
    EXPECT_EQ(store.stats().n_indexed, 0);
}

TEST(MemoryStore, CorruptKeyFrameGivesAClearErrorNamingTheEntry)
{
    TempDir dir;
    int64_t id = 0;
    {
        Store store = Store::open(dir.path(), {.dim = kDim});
        id = store.add(make_entry(5, "a cat on the sofa", embedding_near(kDim, 1, 1), 2));
    }
    {
        // Flip one byte of the second frame's JPEG, as a bad disk sector would.
        RawDb raw(dir.path());
        std::string where = " WHERE entry_id = " + std::to_string(id) + " AND n = 1";
        sqlite3_stmt* s = nullptr;
        ASSERT_EQ(sqlite3_prepare_v2(raw.get(), ("SELECT jpeg FROM frames" + where).c_str(), -1, &s,
                                     nullptr),
                  SQLITE_OK);
        ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
        const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, 0));
        std::vector<uint8_t> jpeg(p, p + sqlite3_column_bytes(s, 0));
        sqlite3_finalize(s);
        jpeg[100] ^= 0x10;
        ASSERT_EQ(sqlite3_prepare_v2(raw.get(), ("UPDATE frames SET jpeg = ?" + where).c_str(), -1,
                                     &s, nullptr),
                  SQLITE_OK);
        sqlite3_bind_blob(s, 1, jpeg.data(), int(jpeg.size()), SQLITE_TRANSIENT);
        ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
        sqlite3_finalize(s);
    }
    Store store = Store::open(dir.path());
    EXPECT_EQ(thrown_kind([&] { store.get(id); },
                          "key frame 1 of entry " + std::to_string(id) + " is corrupt"),
              ErrorKind::invalid_input);
    EXPECT_EQ(store.get(id, false)->caption, "a cat on the sofa"); // the text is still readable
    Retriever r(store);
    EXPECT_EQ(thrown_kind([&] { r.search({.text = "cat"}); }), ErrorKind::invalid_input);
    EXPECT_EQ(r.search({.text = "cat", .with_frames = false}).size(), 1u);
    TempDir out;
    EXPECT_EQ(thrown_kind([&] { store.export_to(out.path()); }), ErrorKind::invalid_input);
    // Deleting the entry clears it.
    EXPECT_TRUE(store.remove(id));
    EXPECT_EQ(store.export_to(out.path()), 0);
}

TEST(MemoryStore, ExportWritesJsonLinesAndTheKeyFrames)
{
    TempDir dir, out;
    Store store = Store::open(dir.path(), {.dim = kDim});
    Entry e = make_entry(42, "caption with \"quotes\"", embedding_near(kDim, 2, 1), 2, "said this");
    int64_t id = store.add(e);
    store.add(make_entry(43, "second", embedding_near(kDim, 3, 1), 1));
    EXPECT_EQ(store.export_to(out.path()), 2);

    std::ifstream in(out.file("entries.jsonl"));
    std::string line;
    ASSERT_TRUE(std::getline(in, line));
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["id"], id);
    EXPECT_EQ(j["caption"], e.caption);
    EXPECT_EQ(j["transcript"], "said this");
    EXPECT_EQ(j["t_start_us"], e.t_start_us);
    EXPECT_EQ(j["embedding"].size(), size_t(kDim));
    ASSERT_EQ(j["key_frames"].size(), 2u);
    std::string file = out.file(j["key_frames"][1]["file"].get<std::string>());
    std::ifstream jpeg(file, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(jpeg)), {});
    ASSERT_EQ(bytes.size(), e.key_frames[1].jpeg.size());
    EXPECT_EQ(0, std::memcmp(bytes.data(), e.key_frames[1].jpeg.data(), bytes.size()));
    ASSERT_TRUE(std::getline(in, line));
    EXPECT_FALSE(std::getline(in, line));
}

// An export over an earlier one replaces each file whole: a copy that shares the earlier file
// (a hard-linked backup, a reader holding it open) keeps its bytes, and an export that fails
// leaves the earlier list and no temporary behind.
TEST(MemoryStore, ExportReplacesFilesWholeAndAFailedOneLeavesNoTrace)
{
    auto bytes_of = [](const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        return std::string((std::istreambuf_iterator<char>(in)), {});
    };
    TempDir first_dir, second_dir, out, backup;
    Store first = Store::open(first_dir.path(), {.dim = kDim});
    first.add(make_entry(100, "first", embedding_near(kDim, 1, 1), 1));
    ASSERT_EQ(first.export_to(out.path()), 1);
    const std::string frame = out.file("frames/1-0.jpg"), kept = backup.file("1-0.jpg");
    std::filesystem::create_hard_link(frame, kept);
    const std::string earlier = bytes_of(frame);

    Store second = Store::open(second_dir.path(), {.dim = kDim});
    second.add(make_entry(200, "second", embedding_near(kDim, 2, 1), 1));
    ASSERT_EQ(second.export_to(out.path()), 1);
    EXPECT_NE(bytes_of(frame), earlier);
    EXPECT_EQ(bytes_of(kept), earlier) << "the frame was rewritten in place";

    // A corrupt key frame in the second entry fails the next export midway.
    const std::string list = bytes_of(out.file("entries.jsonl"));
    second.add(make_entry(300, "third", embedding_near(kDim, 3, 1), 1));
    RawDb(second_dir.path()).exec("UPDATE frames SET crc32 = crc32 + 1 WHERE entry_id = 2");
    EXPECT_EQ(thrown_kind([&] { second.export_to(out.path()); }), ErrorKind::invalid_input);
    EXPECT_EQ(bytes_of(out.file("entries.jsonl")), list);
    EXPECT_EQ(out.listing(), (std::vector<std::string> {"entries.jsonl", "frames"}));
    EXPECT_EQ(TempDir::listing_of(out.file("frames")), (std::vector<std::string> {"1-0.jpg"}));
}

TEST(MemoryStore, NewerSchemaVersionIsRefusedWithAClearError)
{
    TempDir dir;
    Store::open(dir.path(), {.dim = kDim});
    RawDb(dir.path()).exec("PRAGMA user_version = 7");
    EXPECT_EQ(thrown_kind([&] { Store::open(dir.path()); }, "schema version 7"),
              ErrorKind::unsupported);
    EXPECT_EQ(thrown_kind([&] { Store::open(dir.path(), {.read_only = true}); }),
              ErrorKind::unsupported);
}

TEST(MemoryStore, ForeignOrDamagedDatabasesAreRefused)
{
    TempDir other, garbage, empty;
    RawDb(other.path()).exec("CREATE TABLE notes(x)");
    EXPECT_EQ(
        thrown_kind([&] { Store::open(other.path(), {.dim = kDim}); }, "not an Iris memory store"),
        ErrorKind::invalid_input);
    {
        std::ofstream f(garbage.file("memory.db"), std::ios::binary);
        f << std::string(8192, 'x');
    }
    EXPECT_EQ(thrown_kind([&] { Store::open(garbage.path(), {.dim = kDim}); }),
              ErrorKind::invalid_input);
    EXPECT_EQ(thrown_kind([&] { Store::open(empty.file("none"), {.read_only = true}); }),
              ErrorKind::not_found);
    EXPECT_EQ(thrown_kind([&] { Store::open(empty.path()); }, "dim must be given"),
              ErrorKind::invalid_argument);
}

TEST(MemoryStore, DimMustMatchTheStore)
{
    TempDir dir;
    Store::open(dir.path(), {.dim = kDim});
    EXPECT_EQ(thrown_kind([&] { Store::open(dir.path(), {.dim = 32}); }, "16-dim"),
              ErrorKind::invalid_argument);
}

// Found by the memory_store fuzz target: a dim beyond INT_MAX wrapped negative and escaped as
// std::length_error; a large one allocated gigabytes for the index.
TEST(MemoryStore, AStoredDimOutOfRangeIsRefusedNamingIt)
{
    for (const char* dim : {"2147483648", "600000000", "65537"}) {
        TempDir dir;
        Store::open(dir.path(), {.dim = kDim});
        RawDb(dir.path())
            .exec(std::string("UPDATE meta SET value = ") + dim + " WHERE key = 'dim'");
        iris::test::expect_error([&] { Store::open(dir.path()); }, ErrorKind::invalid_input,
                                 {"memory.db", std::string("dim ") + dim});
    }
    TempDir dir;
    iris::test::expect_error([&] { Store::open(dir.path(), {.dim = 65537}); },
                             ErrorKind::invalid_argument, {"bad options"});
}

// Found by the memory_store fuzz target: rows written by hand, with spans that overflow a
// subtraction or ids the index would need terabytes for.
TEST(MemoryStore, RowsWithABadSpanOrIdAreRefusedNamingTheEntry)
{
    struct Damage
    {
        std::string sql, message;
    };
    const Damage damages[] = {
        {"UPDATE entries SET t_start_us = -9223372036854775808, t_end_us = 0 WHERE id = 1",
         "entry 1 has a bad time span"},
        {"UPDATE entries SET t_start_us = 10, t_end_us = 9 WHERE id = 1",
         "entry 1 has a bad time span"},
        {"INSERT INTO entries(id, t_start_us, t_end_us, caption, transcript, embedding) SELECT "
         "1099511627776, t_start_us, t_end_us, caption, transcript, embedding FROM entries",
         "entry id 1099511627776 is out of range"},
    };
    for (const Damage& d : damages) {
        TempDir dir;
        {
            Store store = Store::open(dir.path(), {.dim = kDim});
            store.add(make_entry(5, "a cat on the sofa", embedding_near(kDim, 1, 1)));
        }
        RawDb(dir.path()).exec(d.sql);
        // The saved index still matches memory.db's count for an update; without it the rows
        // are read to rebuild it.
        std::filesystem::remove(dir.file("index.faiss"));
        iris::test::expect_error([&] { Store::open(dir.path()); }, ErrorKind::invalid_input,
                                 {dir.path(), d.message});
    }
}

TEST(MemoryStore, AddBeyondTheHighestIdIsRefusedAndStoresNothing)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    store.add(make_entry(5, "first", embedding_near(kDim, 1, 1)));
    RawDb(dir.path()).exec("UPDATE sqlite_sequence SET seq = 67108864 WHERE name = 'entries'");
    iris::test::expect_error(
        [&] { store.add(make_entry(6, "second", embedding_near(kDim, 2, 2))); },
        ErrorKind::resource, {dir.path(), "is full"});
    EXPECT_EQ(store.count(), 1);
    EXPECT_EQ(store.stats().n_indexed, 1);
}

// A span from far before 1970 to far after is valid, but its length overflows int64_t: it once
// wrapped negative, so searches by time missed the entry.
TEST(MemoryStore, AnEntrySpanningAllTimeIsFoundByTime)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    Entry all = make_entry(0, "the whole of time", embedding_near(kDim, 1, 1));
    all.t_start_us = -(int64_t(1) << 62);
    all.t_end_us = int64_t(1) << 62;
    int64_t id = store.add(all);
    store.add(make_entry(10, "a later moment", embedding_near(kDim, 2, 2)));
    const int64_t t = int64_t(1) << 61;
    std::vector<Entry> listed = store.list({.t_from_us = t, .t_to_us = t + 1});
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].id, id);
    std::vector<Hit> hits = Retriever(store).search(
        {.embedding = embedding_near(kDim, 2, 2), .t_from_us = t, .t_to_us = t + 1});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, id);
}

TEST(MemoryStore, OnlyOneWriterAtATimeButReadersMayJoin)
{
    TempDir dir;
    Store writer = Store::open(dir.path(), {.dim = kDim});
    writer.add(make_entry(1, "first", embedding_near(kDim, 0, 1)));
    EXPECT_EQ(thrown_kind([&] { Store::open(dir.path()); }, "open for writing"),
              ErrorKind::resource);
    Store reader = Store::open(dir.path(), {.read_only = true});
    EXPECT_EQ(reader.count(), 1);
    EXPECT_EQ(thrown_kind([&] { reader.add(make_entry(2, "x", embedding_near(kDim, 0, 2))); },
                          "read-only"),
              ErrorKind::invalid_argument);
    writer.add(make_entry(3, "later", embedding_near(kDim, 0, 3)));
    EXPECT_EQ(reader.count(), 2); // SQLite reads see new commits at once
}

// f's result in a child process run as a user who may only read what the test made read-only
// (root ignores permissions, so a root test runs the child as nobody): what f writes to `out`
// comes back as the message when it fails.
std::pair<int, std::string> as_reader(const std::function<int(std::string& out)>& f)
{
    int fds[2];
    if (::pipe(fds) != 0) return {-1, "pipe failed"};
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        std::string out;
        int rc = 99;
        if (::geteuid() != 0
            || (::setgroups(0, nullptr) == 0 && ::setgid(65534) == 0 && ::setuid(65534) == 0)) {
            try {
                rc = f(out);
            } catch (const std::exception& e) {
                out += e.what();
                rc = 98;
            }
        } else {
            out = "cannot become nobody";
        }
        (void)!::write(fds[1], out.data(), out.size());
        ::_exit(rc);
    }
    ::close(fds[1]);
    std::string out;
    char buf[512];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(MemoryStore, AFolderTheUserMayOnlyReadIsListedAndSearchedButNotWritten)
{
    TempDir dir;
    const std::string db = dir.file("memory");
    {
        Store store = Store::open(db, {.dim = kDim});
        for (int i = 0; i < 3; ++i)
            store.add(make_entry(i * 10, "entry " + std::to_string(i) + (i == 1 ? " red kite" : ""),
                                 embedding_near(kDim, i, uint32_t(i))));
    }
    // The writer's clean close removed memory.db-wal and -shm: a reader would have to create
    // the -shm file.
    ASSERT_FALSE(std::filesystem::exists(db + "/memory.db-shm"));
    namespace fs = std::filesystem;
    fs::permissions(dir.path(), fs::perms(0755));
    for (const auto& e : fs::directory_iterator(db))
        if (e.is_regular_file()) fs::permissions(e.path(), fs::perms(0444));
    fs::permissions(db, fs::perms(0555));
    auto [rc, message] = as_reader([&](std::string& out) {
        Store store = Store::open(db, {.read_only = true});
        if (store.count() != 3 || store.list({}).size() != 3) return 1;
        auto by_vector = Retriever(store).search(
            {.embedding = embedding_near(kDim, 2, 2), .k = 1, .with_frames = true});
        if (by_vector.size() != 1 || by_vector[0].entry.caption != "entry 2") return 2;
        auto by_text = Retriever(store).search({.text = "kite", .k = 1});
        if (by_text.size() != 1 || by_text[0].entry.id != 2) return 3;
        if (!store.get(1, true) || store.get(1, true)->key_frames.size() != 2) return 4;
        try {
            Store::open(db);
        } catch (const Error& e) {
            out = e.what();
            return e.kind() == ErrorKind::io && out.find(db) != std::string::npos ? 0 : 5;
        }
        return 6;
    });
    EXPECT_EQ(rc, 0) << message;
    fs::permissions(db, fs::perms(0755)); // for TempDir's cleanup
}

TEST(MemoryStore, ReadersDuringIngestionSeeOnlyWholeEntries)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim, .index_save_min = 50});
    Retriever retriever(store);
    constexpr int n_entries = 300, n_frames = 3;
    std::atomic<bool> done {false};
    std::atomic<int> n_reads {0};
    std::atomic<int> n_errors {0};
    std::string first_error;
    std::mutex error_mutex;
    auto fail = [&](const std::string& what) {
        std::lock_guard lock(error_mutex);
        if (n_errors++ == 0) first_error = what;
    };
    auto check = [&](const Entry& e) {
        if (e.key_frames.size() != n_frames || e.caption != "clip " + std::to_string(e.t_start_us))
            fail("half-written entry " + std::to_string(e.id));
    };

    std::thread writer([&] {
        try {
            for (int i = 0; i < n_entries; ++i) {
                Entry e = make_entry(i, "", embedding_near(kDim, i, uint32_t(i)), n_frames);
                e.caption = "clip " + std::to_string(e.t_start_us);
                store.add(e);
            }
        } catch (const std::exception& e) {
            fail(e.what());
        }
        done = true;
    });
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t)
        readers.emplace_back([&, t] {
            try {
                while (!done) {
                    if (t == 0) {
                        for (const Entry& e : store.list({.limit = 20, .with_frames = true}))
                            check(e);
                    } else {
                        Query q {
                            .text = "clip", .embedding = embedding_near(kDim, t * 7, 3), .k = 10};
                        for (const Hit& h : retriever.search(q)) check(h.entry);
                    }
                    n_reads++;
                }
            } catch (const std::exception& e) {
                fail(e.what());
            }
        });
    writer.join();
    for (std::thread& r : readers) r.join();
    EXPECT_EQ(n_errors.load(), 0) << first_error;
    EXPECT_GT(n_reads.load(), 0);
    StoreStats s = store.stats();
    EXPECT_EQ(s.n_entries, n_entries);
    EXPECT_EQ(s.n_indexed, n_entries);
}
