// Store: entries in SQLite (the source of truth) and the FAISS index kept equal to them.
//
// memory.db, schema version 1 (PRAGMA user_version):
//   meta(key, value)        'dim' and 'store_id' (random; ties index.faiss to this database)
//   entries(id, t_start_us, t_end_us, caption, transcript, embedding)
//                           id AUTOINCREMENT, so ids are never reused: an index file that
//                           lacks only ids above the highest it holds can be caught up
//   frames(entry_id, n, t_us, crc32, jpeg)
//   entries_fts             FTS5 over caption and transcript, with entries as its external
//                           content; triggers keep it in the transaction that changes entries
#include "memory/memory-impl.h"

#include "core/atomic-file.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace iris::memory {

namespace fs = std::filesystem;

namespace {

constexpr int kSchemaVersion = 1;

constexpr const char* kSchemaSql = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE entries(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t_start_us INTEGER NOT NULL,
    t_end_us INTEGER NOT NULL,
    caption TEXT NOT NULL,
    transcript TEXT NOT NULL,
    embedding BLOB NOT NULL);
CREATE INDEX entries_time ON entries(t_start_us, t_end_us);
CREATE TABLE frames(
    entry_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    t_us INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    jpeg BLOB NOT NULL,
    PRIMARY KEY(entry_id, n));
CREATE VIRTUAL TABLE entries_fts USING fts5(caption, transcript,
    content='entries', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts(rowid, caption, transcript)
        VALUES (new.id, new.caption, new.transcript);
END;
CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts(entries_fts, rowid, caption, transcript)
        VALUES ('delete', old.id, old.caption, old.transcript);
END;
)sql";

// Rows per FAISS add while re-indexing: large enough to amortise, small enough to stream.
constexpr int64_t kReindexChunk = 8192;

int64_t query_int(sqlite3* db, const char* sql)
{
    Stmt s(db, sql);
    return s.step() ? s.int64(0) : 0;
}

int64_t query_int(sqlite3* db, const char* sql, int64_t arg)
{
    Stmt s(db, sql);
    s.bind(1, arg);
    return s.step() ? s.int64(0) : 0;
}

int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_sub_overflow(a, b, &r) ? kTimeMin : r;
}

// A row of memory.db holds what Store::add accepts, unless the file was damaged or edited: an id
// the index can hold and a span that starts after kTimeMin (the index's mark of a removed entry)
// and ends no earlier. Such a row is corrupt like a wrong-sized embedding: an Error naming it.
void check_row(const std::string& dir, int64_t id, int64_t start_us, int64_t end_us)
{
    if (id < 1 || id > kMaxEntryId)
        throw Error(ErrorKind::invalid_input,
                    strfmt("memory store %s: entry id %lld is out of range (1 to %lld)",
                           dir.c_str(), (long long)id, (long long)kMaxEntryId));
    if (start_us == kTimeMin || end_us < start_us)
        throw Error(ErrorKind::invalid_input,
                    strfmt("memory store %s: entry %lld has a bad time span (%lld to %lld)",
                           dir.c_str(), (long long)id, (long long)start_us, (long long)end_us));
}

bool looks_like_jpeg(const Buffer& b)
{
    // Every JPEG file starts with an SOI marker followed by another marker.
    return b.size() >= 3 && b.data()[0] == 0xFF && b.data()[1] == 0xD8 && b.data()[2] == 0xFF;
}

[[noreturn]] void newer_schema(const std::string& db_path, int64_t version)
{
    throw Error(ErrorKind::unsupported,
                strfmt("%s has schema version %lld; this Iris reads up to version %d (upgrade "
                       "Iris to open it)",
                       db_path.c_str(), (long long)version, kSchemaVersion));
}

// Creates the schema and meta rows of a new store in one transaction, so a crash leaves either
// no store or a whole one.
void create_or_check_schema(sqlite3* db, const std::string& db_path, int dim)
{
    Transaction tx(db, true);
    int64_t version = query_int(db, "PRAGMA user_version");
    if (version > kSchemaVersion) newer_schema(db_path, version);
    if (version != 0) return;
    if (query_int(db, "SELECT count(*) FROM sqlite_master") != 0)
        throw Error(ErrorKind::invalid_input, db_path + " is not an Iris memory store");
    if (dim == 0)
        throw Error(ErrorKind::invalid_argument,
                    db_path + " is a new store: its embedding dim must be given");
    sqlite_exec(db, kSchemaSql);
    sqlite_exec(db, strfmt("PRAGMA user_version = %d", kSchemaVersion).c_str());
    std::random_device rd;
    uint64_t store_id = (uint64_t(rd()) << 32) | rd();
    Stmt put(db, "INSERT INTO meta(key, value) VALUES (?, ?)");
    put.bind(1, "dim").bind(2, int64_t(dim)).run();
    put.reset();
    put.bind(1, "store_id").bind(2, int64_t(store_id)).run();
    tx.commit();
}

} // namespace

uint32_t crc32_of_more(uint32_t crc, const void* data, size_t size)
{
    // zlib answers a null pointer (FAISS passes one for an empty vector) with a fresh CRC.
    if (size == 0) return crc;
    return uint32_t(crc32_z(crc, static_cast<const Bytef*>(data), size));
}

uint32_t crc32_of(const void* data, size_t size)
{
    return crc32_of_more(0, data, size);
}

void normalize_embedding(std::vector<float>& v, int dim, const std::string& what)
{
    if (int64_t(v.size()) != dim)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("%s has %zu values, the store's dim is %d", what.c_str(), v.size(), dim));
    double sum = 0;
    for (float x : v) sum += double(x) * double(x);
    if (!std::isfinite(sum))
        throw Error(ErrorKind::invalid_argument, what + " has a value that is not finite");
    if (sum == 0) throw Error(ErrorKind::invalid_argument, what + " is all zeros");
    float scale = float(1.0 / std::sqrt(sum));
    for (float& x : v) x *= scale;
}

const char* index_open_name(IndexOpen value)
{
    switch (value) {
    case IndexOpen::created:
        return "created";
    case IndexOpen::loaded:
        return "loaded";
    case IndexOpen::caught_up:
        return "caught_up";
    case IndexOpen::rebuilt:
        return "rebuilt";
    }
    return "?";
}

// ---------------------------------------------------------------------------------------------
// Reading

std::vector<KeyFrame> read_frames(sqlite3* db, const std::string& dir, int64_t id)
{
    std::vector<KeyFrame> frames;
    Stmt s(db, "SELECT n, t_us, crc32, jpeg FROM frames WHERE entry_id = ? ORDER BY n");
    s.bind(1, id);
    while (s.step()) {
        std::span<const uint8_t> jpeg = s.blob(3);
        uint32_t stored = uint32_t(s.int64(2));
        uint32_t actual = crc32_of(jpeg.data(), jpeg.size());
        if (stored != actual)
            throw Error(ErrorKind::invalid_input,
                        strfmt("memory store %s: key frame %lld of entry %lld is corrupt (CRC-32 "
                               "%08x, expected %08x); delete the entry to clear the error",
                               dir.c_str(), (long long)s.int64(0), (long long)id, actual, stored));
        frames.push_back({s.int64(1), Buffer::copy_of(jpeg.data(), jpeg.size()), stored});
    }
    return frames;
}

Entry Store::Impl::read_entry(sqlite3* db, Stmt& row, bool with_frames) const
{
    Entry e;
    e.id = row.int64(0);
    e.t_start_us = row.int64(1);
    e.t_end_us = row.int64(2);
    check_row(dir, e.id, e.t_start_us, e.t_end_us);
    e.caption = row.text(3);
    e.transcript = row.text(4);
    std::span<const uint8_t> emb = row.blob(5);
    if (emb.size() != size_t(options.dim) * sizeof(float))
        throw Error(ErrorKind::invalid_input,
                    strfmt("memory store %s: entry %lld has a %zu-byte embedding, expected %zu",
                           dir.c_str(), (long long)e.id, emb.size(),
                           size_t(options.dim) * sizeof(float)));
    e.embedding.resize(size_t(options.dim));
    std::memcpy(e.embedding.data(), emb.data(), emb.size());
    if (with_frames) e.key_frames = read_frames(db, dir, e.id);
    return e;
}

int64_t Store::Impl::start_bound(int64_t from_us) const
{
    if (from_us == kTimeMin) return kTimeMin;
    std::shared_lock lock(index_mutex);
    return sat_sub(from_us, index->max_span_us());
}

// ---------------------------------------------------------------------------------------------
// The index: load, catch up or rebuild

IndexParams Store::Impl::index_params() const
{
    return {options.ivf_threshold, options.ivf_nlist, options.ivf_nprobe};
}

namespace {

// Adds every row of `rows` (id, t_start_us, t_end_us, embedding) to the index, in chunks.
void index_rows(VectorIndex& index, Stmt& rows, int64_t n_expected, const std::string& dir)
{
    const size_t dim = size_t(index.dim());
    std::vector<float> x;
    std::vector<int64_t> ids;
    std::vector<TimeSpan> spans;
    int64_t n_done = 0, next_report = 100000;
    auto flush = [&] {
        index.add(int64_t(ids.size()), x.data(), ids.data(), spans.data());
        n_done += int64_t(ids.size());
        x.clear();
        ids.clear();
        spans.clear();
        if (n_done >= next_report) {
            IRIS_LOG_INFO("memory: indexed %lld of %lld entries", (long long)n_done,
                          (long long)n_expected);
            next_report += 100000;
        }
    };
    while (rows.step()) {
        std::span<const uint8_t> emb = rows.blob(3);
        if (emb.size() != dim * sizeof(float))
            throw Error(ErrorKind::invalid_input,
                        strfmt("memory store %s: entry %lld has a %zu-byte embedding", dir.c_str(),
                               (long long)rows.int64(0), emb.size()));
        check_row(dir, rows.int64(0), rows.int64(1), rows.int64(2));
        ids.push_back(rows.int64(0));
        spans.push_back({rows.int64(1), rows.int64(2)});
        x.resize(x.size() + dim);
        std::memcpy(x.data() + x.size() - dim, emb.data(), emb.size());
        if (int64_t(ids.size()) == kReindexChunk) flush();
    }
    if (!ids.empty()) flush();
}

} // namespace

void Store::Impl::catch_up_index(sqlite3* db, int64_t after_id)
{
    Stmt rows(db,
              "SELECT id, t_start_us, t_end_us, embedding FROM entries WHERE id > ? "
              "ORDER BY id");
    rows.bind(1, after_id);
    index_rows(*index, rows, query_int(db, "SELECT count(*) FROM entries WHERE id > ?", after_id),
               dir);
}

void Store::Impl::rebuild_index(sqlite3* db, const std::string& why)
{
    auto t0 = std::chrono::steady_clock::now();
    int64_t n = query_int(db, "SELECT count(*) FROM entries");
    IRIS_LOG_WARN("memory: %s %s; rebuilding it from memory.db (%lld entries)", index_path.c_str(),
                  why.c_str(), (long long)n);
    index.emplace(options.dim, index_params());
    if (n >= options.ivf_threshold && options.ivf_nlist > 1) {
        // Train on an evenly spaced sample: k-means gains nothing from more than 256 points
        // per list (FAISS would subsample anyway).
        int64_t stride = std::max<int64_t>(1, n / (int64_t(options.ivf_nlist) * 256));
        Stmt rows(db, "SELECT embedding FROM entries WHERE id % ? = 0");
        rows.bind(1, stride);
        std::vector<float> sample;
        while (rows.step()) {
            std::span<const uint8_t> emb = rows.blob(0);
            if (emb.size() != size_t(options.dim) * sizeof(float)) continue; // index_rows reports
            sample.resize(sample.size() + size_t(options.dim));
            std::memcpy(sample.data() + sample.size() - size_t(options.dim), emb.data(),
                        emb.size());
        }
        index->train(int64_t(sample.size()) / options.dim, sample.data());
    }
    Stmt rows(db, "SELECT id, t_start_us, t_end_us, embedding FROM entries ORDER BY id");
    index_rows(*index, rows, n, dir);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    IRIS_LOG_INFO("memory: index rebuilt: %lld entries, %d lists, %.1f s", (long long)n,
                  index->nlist(), s);
}

void Store::Impl::open_index()
{
    ReaderPool::Lease db = readers.acquire();
    Transaction snapshot(db.get(), false); // counts and rows below agree with each other
    int64_t n = query_int(db.get(), "SELECT count(*) FROM entries");
    int64_t max_id = query_int(db.get(), "SELECT coalesce(max(id), 0) FROM entries");

    std::string why;
    IndexStamp stamp;
    try {
        index.emplace(VectorIndex::load(index_path, options.dim, index_params(), stamp));
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::not_found && e.kind() != ErrorKind::invalid_input) throw;
        why = e.kind() == ErrorKind::not_found ? "is missing"
                                               : std::string("is unusable: ") + e.what();
    }
    if (why.empty()) {
        if (stamp.store_id != store_id) {
            why = "belongs to another store";
        } else if (stamp.n_entries == n && stamp.max_id == max_id) {
            index_open = IndexOpen::loaded;
            return;
        } else if (stamp.max_id <= max_id
                   && query_int(db.get(), "SELECT count(*) FROM entries WHERE id <= ?",
                                stamp.max_id)
                       == stamp.n_entries) {
            // Ids are never reused, so the file holds exactly the entries up to its max id.
            IRIS_LOG_INFO("memory: %s lacks the %lld newest entries; adding them",
                          index_path.c_str(), (long long)(n - stamp.n_entries));
            catch_up_index(db.get(), stamp.max_id);
            index_open = IndexOpen::caught_up;
            n_unsaved = n - stamp.n_entries;
            return;
        } else {
            why = strfmt("is out of date (%lld entries up to id %lld; memory.db has %lld up to "
                         "%lld)",
                         (long long)stamp.n_entries, (long long)stamp.max_id, (long long)n,
                         (long long)max_id);
        }
    }
    if (n == 0 && !fs::exists(index_path)) {
        index.emplace(options.dim, index_params());
        index_open = IndexOpen::created;
        return;
    }
    rebuild_index(db.get(), why);
    index_open = IndexOpen::rebuilt;
    n_unsaved = std::max<int64_t>(n, 1); // written by the caller, so the next open is quick
}

void Store::Impl::save_index_locked()
{
    std::shared_lock lock(index_mutex);
    index->save(index_path, store_id);
    n_unsaved = 0;
}

void Store::Impl::maybe_save_index()
{
    std::shared_lock lock(index_mutex);
    int64_t due = std::max(options.index_save_min, index->size() / 10);
    lock.unlock();
    if (n_unsaved < due) return;
    try {
        save_index_locked();
    } catch (const Error& e) {
        // memory.db has the entries; the next save (or open) makes up for this one.
        IRIS_LOG_ERROR("memory: cannot save the index: %s", e.what());
    }
}

Store::Impl::~Impl()
{
    if (writer && n_unsaved > 0) {
        try {
            save_index_locked();
        } catch (const std::exception& e) {
            IRIS_LOG_ERROR("memory: cannot save the index on close: %s", e.what());
        }
    }
    // The last connection to close checkpoints the WAL into memory.db and deletes it, but only
    // if it may write: so the readers go first, and the writer before the lock is let go.
    readers.close_idle();
    writer.reset();
    if (lock_fd >= 0) ::close(lock_fd);
}

// ---------------------------------------------------------------------------------------------
// Store

Store::Store(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl))
{ }
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

Store Store::open(const std::string& dir, const StoreOptions& options)
{
    if (options.dim < 0 || options.dim > kMaxDim || options.index_save_min < 1
        || options.ivf_nlist < 1 || options.ivf_nprobe < 1 || options.ivf_threshold < 0)
        throw Error(ErrorKind::invalid_argument, "memory store " + dir + ": bad options");
    auto impl = std::make_unique<Impl>(dir + "/memory.db");
    impl->dir = dir;
    impl->db_path = dir + "/memory.db";
    impl->index_path = dir + "/index.faiss";
    impl->options = options;

    if (options.read_only) {
        if (!fs::exists(impl->db_path))
            throw Error(ErrorKind::not_found, "no memory store in " + dir);
    } else {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec)
            throw Error(ErrorKind::io, "cannot create memory store " + dir + ": " + ec.message());
        std::string lock_path = dir + "/LOCK";
        impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (impl->lock_fd < 0)
            throw Error(ErrorKind::io,
                        "cannot open memory store " + dir + " for writing: " + lock_path + ": "
                            + std::strerror(errno));
        if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0)
            throw Error(ErrorKind::resource,
                        "memory store " + dir + " is open for writing by another process");
        impl->writer = sqlite_open(impl->db_path, true, true);
        create_or_check_schema(impl->writer.get(), impl->db_path, options.dim);
        // A crash may leave a half-written index file behind; it was never renamed into place.
        fs::remove(impl->index_path + ".tmp", ec);
    }

    {
        ReaderPool::Lease db = impl->readers.acquire();
        int64_t version = query_int(db.get(), "PRAGMA user_version");
        if (version == 0)
            throw Error(ErrorKind::invalid_input, impl->db_path + " is not an Iris memory store");
        if (version > kSchemaVersion) newer_schema(impl->db_path, version);
        Stmt meta(db.get(), "SELECT key, value FROM meta");
        int64_t stored_dim = 0;
        while (meta.step()) {
            std::string key = meta.text(0);
            if (key == "dim") stored_dim = meta.int64(1);
            if (key == "store_id") impl->store_id = uint64_t(meta.int64(1));
        }
        if (stored_dim <= 0)
            throw Error(ErrorKind::invalid_input, impl->db_path + " has no embedding dim");
        if (stored_dim > kMaxDim)
            throw Error(ErrorKind::invalid_input,
                        strfmt("%s has a bad embedding dim %lld (at most %d)",
                               impl->db_path.c_str(), (long long)stored_dim, kMaxDim));
        if (options.dim != 0 && options.dim != stored_dim)
            throw Error(ErrorKind::invalid_argument,
                        strfmt("memory store %s holds %lld-dim embeddings, not %d", dir.c_str(),
                               (long long)stored_dim, options.dim));
        impl->options.dim = int(stored_dim);
    }

    impl->open_index();
    if (impl->writer && impl->n_unsaved > 0) impl->save_index_locked();
    return Store(std::move(impl));
}

int64_t Store::add(const Entry& entry)
{
    return add(std::span<const Entry>(&entry, 1)).front();
}

std::vector<int64_t> Store::add(std::span<const Entry> entries)
{
    Impl& m = *impl_;
    if (!m.writer)
        throw Error(ErrorKind::invalid_argument, "memory store " + m.dir + " is open read-only");
    const size_t dim = size_t(m.options.dim);
    std::vector<float> x(entries.size() * dim);
    std::vector<TimeSpan> spans(entries.size());
    std::vector<std::vector<uint32_t>> crcs(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        std::string what = strfmt("entry %zu of %zu", i + 1, entries.size());
        if (e.t_end_us < e.t_start_us)
            throw Error(ErrorKind::invalid_argument, what + " ends before it starts");
        if (e.t_start_us == kTimeMin) // the index marks removed entries with this time
            throw Error(ErrorKind::invalid_argument, what + " has no start time");
        std::vector<float> v = e.embedding;
        normalize_embedding(v, m.options.dim, what + "'s embedding");
        std::copy(v.begin(), v.end(), x.begin() + ptrdiff_t(i * dim));
        spans[i] = {e.t_start_us, e.t_end_us};
        for (size_t f = 0; f < e.key_frames.size(); ++f) {
            if (!looks_like_jpeg(e.key_frames[f].jpeg))
                throw Error(ErrorKind::invalid_argument,
                            strfmt("%s: key frame %zu is not a JPEG file", what.c_str(), f));
            crcs[i].push_back(crc32_of(e.key_frames[f].jpeg.data(), e.key_frames[f].jpeg.size()));
        }
    }

    std::lock_guard write(m.write_mutex);
    sqlite3* db = m.writer.get();
    std::vector<int64_t> ids(entries.size());
    {
        Transaction tx(db, true);
        Stmt put_entry(db,
                       "INSERT INTO entries(t_start_us, t_end_us, caption, transcript, "
                       "embedding) VALUES (?, ?, ?, ?, ?)");
        Stmt put_frame(db,
                       "INSERT INTO frames(entry_id, n, t_us, crc32, jpeg) "
                       "VALUES (?, ?, ?, ?, ?)");
        for (size_t i = 0; i < entries.size(); ++i) {
            const Entry& e = entries[i];
            put_entry.reset();
            put_entry.bind(1, e.t_start_us).bind(2, e.t_end_us).bind(3, e.caption);
            put_entry.bind(4, e.transcript).bind_blob(5, x.data() + i * dim, dim * sizeof(float));
            put_entry.run();
            ids[i] = sqlite3_last_insert_rowid(db);
            if (ids[i] > kMaxEntryId) // the index could not take it; nothing is committed
                throw Error(ErrorKind::resource,
                            strfmt("memory store %s is full: entry ids go up to %lld",
                                   m.dir.c_str(), (long long)kMaxEntryId));
            for (size_t f = 0; f < e.key_frames.size(); ++f) {
                const KeyFrame& kf = e.key_frames[f];
                put_frame.reset();
                put_frame.bind(1, ids[i]).bind(2, int64_t(f)).bind(3, kf.t_us);
                put_frame.bind(4, int64_t(crcs[i][f])).bind_blob(5, kf.jpeg.data(), kf.jpeg.size());
                put_frame.run();
            }
        }
        tx.commit(); // the acknowledgement: durable from here on
    }
    {
        std::unique_lock lock(m.index_mutex);
        m.index->add(int64_t(ids.size()), x.data(), ids.data(), spans.data());
    }
    m.n_unsaved += int64_t(ids.size());
    m.maybe_save_index();
    return ids;
}

std::optional<Entry> Store::get(int64_t id, bool with_frames) const
{
    ReaderPool::Lease db = impl_->readers.acquire();
    Transaction snapshot(db.get(), false);
    Stmt row(db.get(),
             (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE id = ?").c_str());
    row.bind(1, id);
    if (!row.step()) return std::nullopt;
    return impl_->read_entry(db.get(), row, with_frames);
}

std::vector<Entry> Store::list(const ListOptions& options) const
{
    std::string sql = std::string("SELECT ") + kEntryColumns
        + " FROM entries WHERE t_start_us BETWEEN ? AND ? AND t_end_us >= ? ORDER BY t_start_us "
        + (options.newest_first ? "DESC, id DESC" : "ASC, id ASC") + " LIMIT ? OFFSET ?";
    ReaderPool::Lease db = impl_->readers.acquire();
    Transaction snapshot(db.get(), false);
    Stmt rows(db.get(), sql.c_str());
    rows.bind(1, impl_->start_bound(options.t_from_us)).bind(2, options.t_to_us);
    rows.bind(3, options.t_from_us)
        .bind(4, options.limit)
        .bind(5, std::max<int64_t>(0, options.offset));
    std::vector<Entry> out;
    while (rows.step()) out.push_back(impl_->read_entry(db.get(), rows, options.with_frames));
    return out;
}

bool Store::remove(int64_t id)
{
    Impl& m = *impl_;
    if (!m.writer)
        throw Error(ErrorKind::invalid_argument, "memory store " + m.dir + " is open read-only");
    std::lock_guard write(m.write_mutex);
    sqlite3* db = m.writer.get();
    {
        Transaction tx(db, true);
        Stmt(db, "DELETE FROM entries WHERE id = ?").bind(1, id).run();
        if (sqlite3_changes(db) == 0) return false;
        Stmt(db, "DELETE FROM frames WHERE entry_id = ?").bind(1, id).run();
        tx.commit();
    }
    {
        std::unique_lock lock(m.index_mutex);
        m.index->remove(id);
    }
    m.n_unsaved++;
    m.maybe_save_index();
    return true;
}

int64_t Store::count() const
{
    ReaderPool::Lease db = impl_->readers.acquire();
    return query_int(db.get(), "SELECT count(*) FROM entries");
}

StoreStats Store::stats() const
{
    StoreStats s;
    {
        ReaderPool::Lease db = impl_->readers.acquire();
        Transaction snapshot(db.get(), false);
        s.n_entries = query_int(db.get(), "SELECT count(*) FROM entries");
        s.max_id = query_int(db.get(), "SELECT coalesce(max(id), 0) FROM entries");
    }
    std::shared_lock lock(impl_->index_mutex);
    s.n_indexed = impl_->index->size();
    s.index_nlist = impl_->index->nlist();
    s.dim = impl_->options.dim;
    s.index_open = impl_->index_open;
    return s;
}

int Store::dim() const
{
    return impl_->options.dim;
}

const std::string& Store::dir() const
{
    return impl_->dir;
}

void Store::save_index()
{
    if (!impl_->writer) return;
    std::lock_guard write(impl_->write_mutex);
    if (impl_->n_unsaved > 0) impl_->save_index_locked();
}

int64_t Store::export_to(const std::string& out_dir) const
{
    std::error_code ec;
    fs::create_directories(fs::path(out_dir) / "frames", ec);
    if (ec) throw Error(ErrorKind::io, "cannot create " + out_dir + ": " + ec.message());
    ReaderPool::Lease db = impl_->readers.acquire();
    Transaction snapshot(db.get(), false);
    Stmt rows(db.get(),
              (std::string("SELECT ") + kEntryColumns + " FROM entries ORDER BY id").c_str());
    int64_t n = 0;
    // Every file appears whole or not at all; entries.jsonl last, once the key frames it names
    // are durable, so a failed or interrupted export leaves no list of missing frames.
    write_file_atomically(out_dir + "/entries.jsonl", [&](const TempFile& jsonl) {
        std::string lines;
        while (rows.step()) {
            Entry e = impl_->read_entry(db.get(), rows, true);
            nlohmann::json frames = nlohmann::json::array();
            for (size_t f = 0; f < e.key_frames.size(); ++f) {
                const KeyFrame& k = e.key_frames[f];
                std::string name = strfmt("frames/%lld-%zu.jpg", (long long)e.id, f);
                write_file_atomically(
                    out_dir + "/" + name,
                    [&](const TempFile& jpeg) { jpeg.write(k.jpeg.data(), k.jpeg.size()); },
                    Sync::later);
                frames.push_back(
                    {{"t_us", k.t_us}, {"file", name}, {"crc32", strfmt("%08x", k.crc32)}});
            }
            nlohmann::json line = {{"id", e.id},
                                   {"t_start_us", e.t_start_us},
                                   {"t_end_us", e.t_end_us},
                                   {"caption", e.caption},
                                   {"transcript", e.transcript},
                                   {"key_frames", std::move(frames)},
                                   {"embedding", e.embedding}};
            // Replace invalid UTF-8 rather than fail the export on one bad caption.
            lines += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
            if (lines.size() >= (1u << 20)) {
                jsonl.write(lines.data(), lines.size());
                lines.clear();
            }
            n++;
        }
        jsonl.write(lines.data(), lines.size());
        sync_filesystem(out_dir);
    });
    return n;
}

} // namespace iris::memory
