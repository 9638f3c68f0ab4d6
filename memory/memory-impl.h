// memory-impl — private to memory/: SQLite handles, the FAISS index and Store::Impl.
#pragma once

#include "memory/memory.h"

#include <sqlite3.h>

#include <faiss/IndexIVFFlat.h>

#include <shared_mutex>

namespace iris::memory {

uint32_t crc32_of(const void* data, size_t size);
uint32_t crc32_of_more(uint32_t crc, const void* data, size_t size); // continues crc

// Normalizes v in place to unit length; throws Error(invalid_argument) naming `what` when it is
// not [dim], not finite or all zero.
void normalize_embedding(std::vector<float>& v, int dim, const std::string& what);

// ---------------------------------------------------------------------------------------------
// SQLite (memory/sqlite.cpp)

struct DbClose
{
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbClose>;

// Opens memory.db with the pragmas every connection needs. Throws Error (see sqlite_fail).
Db sqlite_open(const std::string& path, bool writable, bool create);
void sqlite_exec(sqlite3* db, const char* sql);
// Throws Error with a kind that follows the SQLite code (corrupt: invalid_input, full or I/O:
// io, busy: timeout) and a message with `what` and SQLite's own words.
[[noreturn]] void sqlite_fail(sqlite3* db, int rc, const std::string& what);

// A prepared statement; bind indices are 1-based, column indices 0-based.
class Stmt
{
public:
    Stmt(sqlite3* db, const char* sql);
    ~Stmt();
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    Stmt& bind(int i, int64_t v);
    Stmt& bind(int i, std::string_view text);
    Stmt& bind_blob(int i, const void* data, size_t size);
    bool step(); // true: a row is ready; false: done. Throws Error.
    void run(); // steps to the end, for statements without rows
    void reset(); // clears bindings too

    bool is_null(int col) const;
    int64_t int64(int col) const;
    std::string text(int col) const;
    std::span<const uint8_t> blob(int col) const;

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

// A read-only connection borrowed from a pool, returned when it goes out of scope.
class ReaderPool
{
public:
    explicit ReaderPool(std::string path)
        : path_(std::move(path))
    { }

    class Lease
    {
    public:
        Lease(ReaderPool& pool, Db db)
            : pool_(&pool)
            , db_(std::move(db))
        { }
        Lease(Lease&&) = default;
        ~Lease();
        sqlite3* get() const { return db_.get(); }

    private:
        ReaderPool* pool_;
        Db db_;
    };
    Lease acquire();
    void close_idle(); // closes the connections not lent out

private:
    std::string path_;
    std::mutex mutex_;
    std::vector<Db> idle_;
};

// BEGIN on construction, COMMIT (or ROLLBACK when unwinding) on destruction. A read
// transaction pins one snapshot for every statement inside it.
class Transaction
{
public:
    Transaction(sqlite3* db, bool write);
    ~Transaction();
    void commit(); // throws Error; without it the destructor rolls back a write

private:
    sqlite3* db_;
    bool write_;
    bool done_ = false;
};

// ---------------------------------------------------------------------------------------------
// The vector index (memory/index-faiss.cpp)

struct IndexParams
{
    int64_t ivf_threshold = 0;
    int ivf_nlist = 0;
    int ivf_nprobe = 0;
};

struct TimeSpan
{
    int64_t start_us = 0;
    int64_t end_us = 0;
};

// The largest embedding a store holds: 2 × the LLM's hidden size is at most 16384 today.
inline constexpr int kMaxDim = 65536;
// The highest entry id: the index keeps every id's time span in an array (16 bytes an id).
inline constexpr int64_t kMaxEntryId = int64_t(1) << 26;

// What a saved index reflects; compared with memory.db on open.
struct IndexStamp
{
    uint64_t store_id = 0;
    int64_t n_entries = 0;
    int64_t max_id = 0;
};

struct ScoredId
{
    int64_t id = 0;
    float score = 0;
};

// Unit vectors by id, searched by inner product (cosine). Not thread-safe: Store::Impl guards
// it with a shared mutex (searches shared, changes exclusive).
class VectorIndex
{
public:
    VectorIndex(int dim, const IndexParams& params);
    VectorIndex(VectorIndex&&) noexcept;
    VectorIndex& operator=(VectorIndex&&) noexcept;
    ~VectorIndex();

    int dim() const { return dim_; }
    int64_t size() const;
    int nlist() const;

    // Trains the IVF lists on x [n, dim] (a sample of the store) and switches to them; only on
    // an empty index.
    void train(int64_t n, const float* x);
    // x: [n, dim] unit vectors. Trains the IVF lists first when this reaches ivf_threshold.
    void add(int64_t n, const float* x, const int64_t* ids, const TimeSpan* spans);
    bool remove(int64_t id);
    // The k best ids by inner product among the entries overlapping [from_us, to_us]. With
    // `exhaustive`, every list is scanned: exact, for narrow time ranges.
    std::vector<ScoredId> search(const float* q, int k, int64_t from_us, int64_t to_us,
                                 bool exhaustive) const;
    // Entries overlap a range when they start at most this long before its start.
    int64_t max_span_us() const { return max_span_us_; }
    // True while start times never decrease with the id (a live stream's entries): then the
    // entries starting in a time range have consecutive ids.
    bool time_ordered() const { return time_ordered_; }
    // Ids [lo, hi] that hold every entry overlapping [from_us, to_us]: found by binary search
    // when time_ordered(), else all ids.
    std::pair<int64_t, int64_t> id_range(int64_t from_us, int64_t to_us) const;

    // Replaces `path` atomically and durably with the index, stamped with store_id, its entry
    // count and its highest id; throws Error(io).
    void save(const std::string& path, uint64_t store_id) const;
    // Throws Error(not_found) for a missing file and Error(invalid_input) with the reason for
    // any other problem (truncated, checksum, another dim, FAISS read error). stamp receives
    // what the file records; the caller compares it with memory.db.
    static VectorIndex load(const std::string& path, int dim, const IndexParams& params,
                            IndexStamp& stamp);

private:
    void reset_ivf(int nlist);
    void train_from_lists();
    void note_order(int64_t id, int64_t start_us);

    int dim_;
    IndexParams params_;
    std::unique_ptr<faiss::IndexIVFFlat> ivf_;
    std::vector<TimeSpan> spans_; // by id; removed and unused ids end at kTimeMin
    int64_t max_span_us_ = 0;
    bool time_ordered_ = true;
    int64_t top_id_ = 0; // the highest id added
    int64_t last_start_us_ = kTimeMin; // its start
};

// ---------------------------------------------------------------------------------------------
// The store

struct Store::Impl
{
    std::string dir;
    std::string db_path;
    std::string index_path;
    StoreOptions options;
    uint64_t store_id = 0;
    int lock_fd = -1;

    std::mutex write_mutex; // one writer at a time; guards writer and the counters below
    Db writer; // null when read-only
    mutable ReaderPool readers; // lending a connection changes no state a caller can see
    int64_t n_unsaved = 0; // changes since index.faiss was written
    IndexOpen index_open = IndexOpen::created;

    mutable std::shared_mutex index_mutex;
    std::optional<VectorIndex> index;

    explicit Impl(std::string db)
        : readers(std::move(db))
    { }
    ~Impl();

    IndexParams index_params() const;
    void open_index();
    void rebuild_index(sqlite3* db, const std::string& why);
    void catch_up_index(sqlite3* db, int64_t after_id);
    // Both need write_mutex held, or the store to be not yet (or no longer) shared.
    void save_index_locked();
    void maybe_save_index();
    Entry read_entry(sqlite3* db, Stmt& row, bool with_frames) const;
    // The lowest t_start_us of an entry that can overlap a range starting at from_us: lets
    // time filters use the (t_start_us, t_end_us) index as a bounded range scan.
    int64_t start_bound(int64_t from_us) const;
};

// Reads the frames of entry `id`, checking each checksum.
std::vector<KeyFrame> read_frames(sqlite3* db, const std::string& dir, int64_t id);
// The columns every entry query selects, in read_entry's order.
inline constexpr const char* kEntryColumns
    = "id, t_start_us, t_end_us, caption, transcript, embedding";

} // namespace iris::memory
