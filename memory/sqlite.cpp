// Thin RAII over the SQLite C API: connections, statements, transactions, a reader pool.
#include "memory/memory-impl.h"

#include <sys/stat.h>

namespace iris::memory {

[[noreturn]] void sqlite_fail(sqlite3* db, int rc, const std::string& what)
{
    ErrorKind kind = ErrorKind::internal;
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
        kind = ErrorKind::invalid_input;
        break;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
        kind = ErrorKind::io;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        kind = ErrorKind::timeout;
        break;
    case SQLITE_NOMEM:
        kind = ErrorKind::resource;
        break;
    default:
        break;
    }
    // The connection's message is more specific than the code's, when it is about this code.
    const char* msg = db && sqlite3_errcode(db) == rc ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw Error(kind, what + ": " + msg);
}

namespace {

Db open_connection(const std::string& name, int flags, const std::string& path)
{
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(name.c_str(), &raw, flags, nullptr);
    Db db(raw);
    if (rc != SQLITE_OK) sqlite_fail(db.get(), rc, "cannot open " + path);
    sqlite3_extended_result_codes(db.get(), 1);
    // Readers wait for a checkpoint or recovery in another connection instead of failing.
    sqlite3_busy_timeout(db.get(), 10000);
    return db;
}

// "file:" URI of a path: '%', '?' and '#' would otherwise be read as URI syntax.
std::string file_uri(const std::string& path)
{
    std::string uri = "file:";
    for (char c : path) {
        if (c == '%' || c == '?' || c == '#')
            uri += strfmt("%%%02X", unsigned(static_cast<unsigned char>(c)));
        else
            uri += c;
    }
    return uri;
}

} // namespace

Db sqlite_open(const std::string& path, bool writable, bool create)
{
    // Each connection is used by one thread at a time (the writer under its mutex, readers
    // leased from the pool), so SQLite's own per-connection mutex is not needed.
    int flags = SQLITE_OPEN_NOMUTEX
        | (writable ? SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)
                    : SQLITE_OPEN_READONLY);
    Db db = open_connection(path, flags, path);
    if (!writable) {
        // A WAL reader needs memory.db-shm: in a folder it may not write, where the last
        // writer's clean close removed -wal and -shm, the first read fails. memory.db then holds
        // every commit and no writer can be at work there (it could not create its -wal), so it
        // is read as immutable, without the shared memory (SQLite's wal.html, "read-only").
        int rc = sqlite3_exec(db.get(), "SELECT count(*) FROM sqlite_master", nullptr, nullptr,
                              nullptr);
        int primary = rc & 0xff;
        if (primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN) {
            // Commits still in a -wal file would be missed.
            struct stat wal;
            if (::stat((path + "-wal").c_str(), &wal) == 0 && wal.st_size > 0)
                throw Error(ErrorKind::io,
                            "cannot read " + path
                                + ": its -wal file holds commits, and this user may not create "
                                  "the -shm file that reading them needs");
            db = open_connection(file_uri(path) + "?immutable=1", flags | SQLITE_OPEN_URI, path);
        }
    }
    if (writable) {
        // WAL lets readers work while the writer commits; FULL syncs the WAL on every commit,
        // which is what makes an acknowledged entry survive a power cut, not only a crash.
        sqlite_exec(db.get(), "PRAGMA journal_mode = WAL");
        sqlite_exec(db.get(), "PRAGMA synchronous = FULL");
    }
    return db;
}

void sqlite_exec(sqlite3* db, const char* sql)
{
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        throw Error(rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? ErrorKind::invalid_input
                                                                : ErrorKind::io,
                    std::string("SQLite '") + sql + "': " + msg);
    }
}

Stmt::Stmt(sqlite3* db, const char* sql)
    : db_(db)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
    if (rc != SQLITE_OK) sqlite_fail(db, rc, std::string("cannot prepare '") + sql + "'");
}

Stmt::~Stmt()
{
    sqlite3_finalize(stmt_);
}

Stmt& Stmt::bind(int i, int64_t v)
{
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
}

Stmt& Stmt::bind(int i, std::string_view text)
{
    sqlite3_bind_text64(stmt_, i, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    return *this;
}

Stmt& Stmt::bind_blob(int i, const void* data, size_t size)
{
    // SQLITE_STATIC: the caller's bytes stay alive until the statement has run.
    sqlite3_bind_blob64(stmt_, i, size ? data : "", size, SQLITE_STATIC);
    return *this;
}

bool Stmt::step()
{
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    sqlite_fail(db_, rc, std::string("SQLite '") + sqlite3_sql(stmt_) + "'");
}

void Stmt::run()
{
    while (step()) { }
}

void Stmt::reset()
{
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

bool Stmt::is_null(int col) const
{
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

int64_t Stmt::int64(int col) const
{
    return sqlite3_column_int64(stmt_, col);
}

std::string Stmt::text(int col) const
{
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p
        ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(stmt_, col)))
        : std::string();
}

std::span<const uint8_t> Stmt::blob(int col) const
{
    const void* p = sqlite3_column_blob(stmt_, col);
    return {static_cast<const uint8_t*>(p), p ? size_t(sqlite3_column_bytes(stmt_, col)) : 0};
}

ReaderPool::Lease ReaderPool::acquire()
{
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            Db db = std::move(idle_.back());
            idle_.pop_back();
            return Lease(*this, std::move(db));
        }
    }
    return Lease(*this, sqlite_open(path_, false, false));
}

void ReaderPool::close_idle()
{
    std::lock_guard lock(mutex_);
    idle_.clear();
}

ReaderPool::Lease::~Lease()
{
    if (!db_) return;
    std::lock_guard lock(pool_->mutex_);
    pool_->idle_.push_back(std::move(db_));
}

Transaction::Transaction(sqlite3* db, bool write)
    : db_(db)
    , write_(write)
{
    // IMMEDIATE takes the write lock up front, so a writer never fails half-way on a lock.
    sqlite_exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
}

Transaction::~Transaction()
{
    if (done_) return;
    // A read transaction has nothing to undo; a write that did not commit must leave no trace.
    sqlite3_exec(db_, write_ ? "ROLLBACK" : "COMMIT", nullptr, nullptr, nullptr);
}

void Transaction::commit()
{
    int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) sqlite_fail(db_, rc, "commit failed");
    done_ = true;
}

} // namespace iris::memory
