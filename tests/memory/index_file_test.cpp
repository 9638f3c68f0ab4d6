// The FAISS index file: whatever happens to index.faiss, a reopened store indexes exactly the
// entries in memory.db.
#include "memory_test_util.h"

#include <filesystem>

using namespace iris::memory;
using iris::test::embedding_near;
using iris::test::make_entry;
using iris::test::read_bytes;
using iris::test::TempDir;
using iris::test::write_bytes;
namespace fs = std::filesystem;

namespace {

constexpr int kDim = 16;

// A store with n entries, entry i's embedding along axis i, closed (so index.faiss is saved).
void fill(const std::string& dir, int first, int n, const StoreOptions& options = {.dim = kDim})
{
    Store store = Store::open(dir, options);
    for (int i = first; i < first + n; ++i)
        store.add(
            make_entry(i * 10, "entry " + std::to_string(i), embedding_near(kDim, i, uint32_t(i))));
}

// Opens the store, checks that the index matches memory.db and that it finds entry i by its
// embedding.
StoreStats reopen_and_check(const std::string& dir, int i, const StoreOptions& options = {})
{
    Store store = Store::open(dir, options);
    StoreStats s = store.stats();
    EXPECT_EQ(s.n_indexed, s.n_entries);
    Retriever r(store);
    auto hits = r.search(
        {.embedding = embedding_near(kDim, i, uint32_t(i)), .k = 1, .with_frames = false});
    EXPECT_EQ(hits.size(), 1u);
    if (!hits.empty()) {
        EXPECT_EQ(hits[0].entry.caption, "entry " + std::to_string(i));
    }
    return s;
}

} // namespace

TEST(MemoryIndexFile, IsWrittenOnCloseAndLoadedOnOpen)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    EXPECT_TRUE(fs::exists(dir.file("index.faiss")));
    EXPECT_FALSE(fs::exists(dir.file("index.faiss.tmp")));
    EXPECT_EQ(reopen_and_check(dir.path(), 4).index_open, IndexOpen::loaded);
}

TEST(MemoryIndexFile, MissingFileIsRebuiltFromSqlite)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    fs::remove(dir.file("index.faiss"));
    StoreStats s = reopen_and_check(dir.path(), 7);
    EXPECT_EQ(s.index_open, IndexOpen::rebuilt);
    EXPECT_EQ(s.n_indexed, 10);
    // The rebuilt index was saved: the next open loads it.
    EXPECT_EQ(reopen_and_check(dir.path(), 7).index_open, IndexOpen::loaded);
}

TEST(MemoryIndexFile, TruncatedFileIsRebuilt)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    for (size_t keep : {size_t(0), size_t(20), read_bytes(dir.file("index.faiss")).size() / 2}) {
        std::string bytes = read_bytes(dir.file("index.faiss"));
        fs::resize_file(dir.file("index.faiss"), keep);
        EXPECT_EQ(reopen_and_check(dir.path(), 3).index_open, IndexOpen::rebuilt) << keep;
        EXPECT_EQ(read_bytes(dir.file("index.faiss")), bytes) << "the rebuild writes the same file";
    }
}

TEST(MemoryIndexFile, GarbageOrFlippedBitsAreRebuilt)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    std::string good = read_bytes(dir.file("index.faiss"));
    write_bytes(dir.file("index.faiss"), std::string(good.size(), '\x5a'));
    EXPECT_EQ(reopen_and_check(dir.path(), 2).index_open, IndexOpen::rebuilt);

    for (size_t at : {size_t(30), size_t(100), good.size() - 1}) {
        std::string bad = good;
        bad[at] = char(bad[at] ^ 0x01);
        write_bytes(dir.file("index.faiss"), bad);
        EXPECT_EQ(reopen_and_check(dir.path(), 2).index_open, IndexOpen::rebuilt) << at;
    }
}

TEST(MemoryIndexFile, DirectoryInItsPlaceIsRebuiltAndReplaced)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    fs::remove(dir.file("index.faiss"));
    fs::create_directories(dir.file("index.faiss") + "/inside");
    // A read-only store rebuilds in memory and leaves the folder alone.
    EXPECT_EQ(reopen_and_check(dir.path(), 5, {.read_only = true}).index_open, IndexOpen::rebuilt);
    EXPECT_TRUE(fs::is_directory(dir.file("index.faiss")));
    EXPECT_EQ(reopen_and_check(dir.path(), 5).index_open, IndexOpen::rebuilt);
    EXPECT_TRUE(fs::is_regular_file(dir.file("index.faiss")));
    EXPECT_EQ(reopen_and_check(dir.path(), 5).index_open, IndexOpen::loaded);
}

TEST(MemoryIndexFile, OlderCopyLackingNewEntriesIsCaughtUp)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    std::string old = read_bytes(dir.file("index.faiss"));
    fill(dir.path(), 10, 5);
    write_bytes(dir.file("index.faiss"), old);
    StoreStats s = reopen_and_check(dir.path(), 12);
    EXPECT_EQ(s.index_open, IndexOpen::caught_up);
    EXPECT_EQ(s.n_indexed, 15);
}

TEST(MemoryIndexFile, OlderCopyThatStillHoldsRemovedEntriesIsRebuilt)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    std::string old = read_bytes(dir.file("index.faiss"));
    {
        Store store = Store::open(dir.path());
        ASSERT_TRUE(store.remove(store.list({.limit = 1, .newest_first = false})[0].id));
        store.add(make_entry(500, "entry 11", embedding_near(kDim, 11, 11)));
    }
    write_bytes(dir.file("index.faiss"), old);
    StoreStats s = reopen_and_check(dir.path(), 11);
    EXPECT_EQ(s.index_open, IndexOpen::rebuilt);
    EXPECT_EQ(s.n_indexed, 10);
}

TEST(MemoryIndexFile, NewerCopyHoldingEntriesSqliteLacksIsRebuilt)
{
    // E.g. memory.db restored from a backup next to a newer index file.
    TempDir dir;
    fill(dir.path(), 0, 10);
    fs::copy_file(dir.file("memory.db"), dir.file("backup.db"));
    fill(dir.path(), 10, 3);
    fs::copy_file(dir.file("backup.db"), dir.file("memory.db"),
                  fs::copy_options::overwrite_existing);
    EXPECT_FALSE(fs::exists(dir.file("memory.db-wal"))); // closing checkpointed everything
    StoreStats s = reopen_and_check(dir.path(), 5);
    EXPECT_EQ(s.index_open, IndexOpen::rebuilt);
    EXPECT_EQ(s.n_indexed, 10);
}

TEST(MemoryIndexFile, IndexOfAnotherStoreIsNotUsed)
{
    TempDir a, b;
    fill(a.path(), 0, 10);
    fill(b.path(), 0, 10);
    fs::copy_file(b.file("index.faiss"), a.file("index.faiss"),
                  fs::copy_options::overwrite_existing);
    EXPECT_EQ(reopen_and_check(a.path(), 1).index_open, IndexOpen::rebuilt);
}

TEST(MemoryIndexFile, LeftoverTemporaryFileIsRemoved)
{
    TempDir dir;
    fill(dir.path(), 0, 3);
    write_bytes(dir.file("index.faiss.tmp"), "half a file");
    EXPECT_EQ(reopen_and_check(dir.path(), 1).index_open, IndexOpen::loaded);
    EXPECT_FALSE(fs::exists(dir.file("index.faiss.tmp")));
}

TEST(MemoryIndexFile, ReadOnlyStoreCatchesUpInMemoryWithoutWriting)
{
    TempDir dir;
    fill(dir.path(), 0, 10);
    std::string old = read_bytes(dir.file("index.faiss"));
    fill(dir.path(), 10, 5);
    write_bytes(dir.file("index.faiss"), old);
    StoreStats s = reopen_and_check(dir.path(), 13, {.read_only = true});
    EXPECT_EQ(s.index_open, IndexOpen::caught_up);
    EXPECT_EQ(read_bytes(dir.file("index.faiss")), old);
}

TEST(MemoryIndexFile, IsSavedPeriodicallyWhileAdding)
{
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim, .index_save_min = 4});
    for (int i = 0; i < 9; ++i)
        store.add(
            make_entry(i, "entry " + std::to_string(i), embedding_near(kDim, i, uint32_t(i))));
    // Saved after the 4th and 8th adds; the 9th is not in the file yet.
    ASSERT_TRUE(fs::exists(dir.file("index.faiss")));
    TempDir copy;
    fs::copy_file(dir.file("memory.db"), copy.file("memory.db"));
    fs::copy_file(dir.file("memory.db-wal"), copy.file("memory.db-wal"));
    fs::copy_file(dir.file("index.faiss"), copy.file("index.faiss"));
    StoreStats s = reopen_and_check(copy.path(), 8, {.read_only = true});
    EXPECT_EQ(s.index_open, IndexOpen::caught_up);
    EXPECT_EQ(s.n_indexed, 9);
}

TEST(MemoryIndexFile, IvfListsAreTrainedAtTheThresholdAndSurviveReopenAndRebuild)
{
    TempDir dir;
    StoreOptions options {.dim = kDim, .ivf_threshold = 320, .ivf_nlist = 8, .ivf_nprobe = 8};
    {
        Store store = Store::open(dir.path(), options);
        for (int i = 0; i < 360; ++i)
            store.add(
                make_entry(i, "entry " + std::to_string(i), embedding_near(kDim, i, uint32_t(i))));
        EXPECT_EQ(store.stats().index_nlist, 8);
        EXPECT_EQ(store.stats().n_indexed, 360);
        ASSERT_TRUE(store.remove(store.list({.limit = 1})[0].id));
    }
    StoreStats s = reopen_and_check(dir.path(), 5, options);
    EXPECT_EQ(s.index_open, IndexOpen::loaded);
    EXPECT_EQ(s.index_nlist, 8);
    EXPECT_EQ(s.n_indexed, 359);
    fs::remove(dir.file("index.faiss"));
    s = reopen_and_check(dir.path(), 5, options);
    EXPECT_EQ(s.index_open, IndexOpen::rebuilt);
    EXPECT_EQ(s.index_nlist, 8);
    EXPECT_EQ(s.n_indexed, 359);
}
