// The memory store's rows (memory/store-sqlite.cpp, index-faiss.cpp): a small valid store is
// copied, then the input rewrites it as a damaged or hostile memory folder would be: meta values
// of any type, entries and frames rows with any values (embeddings of any length, wrong CRCs),
// the schema version, and index.faiss replaced, cut or flipped. The store must then open, list,
// get, search and export with an Error for what is wrong, never a crash.
#include "memory/memory.h"
#include "tests/fuzz/fuzz.h"

#include <fuzzer/FuzzedDataProvider.h>
#include <sqlite3.h>

using namespace iris;
namespace fs = std::filesystem;

namespace {

constexpr int kDim = 4;

fs::path template_dir()
{
    return fuzz::scratch_dir() / "template";
}

memory::Entry entry(int64_t t, const char* caption, float x)
{
    memory::Entry e;
    e.t_start_us = t;
    e.t_end_us = t + 5'000'000;
    e.caption = caption;
    e.transcript = "someone said hello";
    const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0xFF, 0xD9};
    e.key_frames = {{t, Buffer::copy_of(jpeg, sizeof jpeg), 0}};
    e.embedding = {x, 1, 0, -x};
    return e;
}

// Binds a value of a type the input chooses: SQLite columns hold whatever is put in them.
void bind_any(sqlite3_stmt* s, int i, FuzzedDataProvider& in, size_t blob_len)
{
    switch (in.ConsumeIntegralInRange(0, 4)) {
    case 0:
        sqlite3_bind_int64(s, i, in.ConsumeIntegral<int64_t>());
        break;
    case 1: {
        std::string t = in.ConsumeRandomLengthString(64);
        sqlite3_bind_text(s, i, t.data(), int(t.size()), SQLITE_TRANSIENT);
        break;
    }
    case 2: {
        std::vector<uint8_t> b = in.ConsumeBytes<uint8_t>(blob_len);
        sqlite3_bind_blob(s, i, b.data(), int(b.size()), SQLITE_TRANSIENT);
        break;
    }
    case 3:
        sqlite3_bind_double(s, i, in.ConsumeFloatingPoint<double>());
        break;
    default:
        sqlite3_bind_null(s, i);
    }
}

void run(sqlite3* db, const char* sql, FuzzedDataProvider& in, int n_params, size_t blob_len)
{
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) fuzz::finding(sql);
    for (int i = 1; i <= n_params; ++i) bind_any(s, i, in, blob_len);
    sqlite3_step(s); // constraint violations are fine: the row just stays as it was
    sqlite3_finalize(s);
}

void damage(const fs::path& dir, FuzzedDataProvider& in)
{
    sqlite3* db = nullptr;
    if (sqlite3_open((dir / "memory.db").c_str(), &db) != SQLITE_OK) fuzz::finding("sqlite3_open");
    // Triggers would keep the FTS table in step; a damaged store need not be.
    if (in.ConsumeBool())
        sqlite3_exec(db, "DROP TRIGGER entries_fts_insert", nullptr, nullptr, nullptr);
    const int n_ops = in.ConsumeIntegralInRange(0, 8);
    for (int op = 0; op < n_ops && in.remaining_bytes() > 0; ++op) {
        switch (in.ConsumeIntegralInRange(0, 9)) {
        case 0:
            run(db, "UPDATE meta SET value = ? WHERE key = 'dim'", in, 1, 16);
            break;
        case 1:
            run(db, "UPDATE meta SET value = ? WHERE key = 'store_id'", in, 1, 16);
            break;
        case 2:
            run(db,
                "INSERT OR REPLACE INTO entries(id, t_start_us, t_end_us, caption, transcript, "
                "embedding) VALUES (?, ?, ?, ?, ?, ?)",
                in, 6, 4 * kDim + 8);
            break;
        case 3:
            run(db, "UPDATE entries SET embedding = ? WHERE id = (SELECT max(id) FROM entries)", in,
                1, 4 * kDim + 8);
            break;
        case 4:
            run(db,
                "UPDATE entries SET t_start_us = ?, t_end_us = ? WHERE id = "
                "(SELECT min(id) FROM entries)",
                in, 2, 8);
            break;
        case 5:
            run(db,
                "INSERT OR REPLACE INTO frames(entry_id, n, t_us, crc32, jpeg) VALUES (?, ?, ?, ?, "
                "?)",
                in, 5, 32);
            break;
        case 6:
            run(db, "UPDATE frames SET jpeg = ?, crc32 = ? WHERE n = 0", in, 2, 32);
            break;
        case 7:
            run(db, "DELETE FROM entries WHERE id = ?", in, 1, 8);
            break;
        case 8: {
            std::string sql = strfmt("PRAGMA user_version = %d", in.ConsumeIntegralInRange(-2, 3));
            sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
            break;
        }
        default:
            run(db, "UPDATE entries SET caption = ?, transcript = ?", in, 2, 16);
        }
    }
    sqlite3_close(db);

    // index.faiss: kept, cut short, a byte changed, or replaced by the rest of the input.
    const fs::path index = dir / "index.faiss";
    switch (in.ConsumeIntegralInRange(0, 3)) {
    case 1:
        fs::resize_file(index, in.ConsumeIntegralInRange<uintmax_t>(0, fs::file_size(index)));
        break;
    case 2: {
        std::fstream f(index, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(std::streamoff(in.ConsumeIntegralInRange<uintmax_t>(0, fs::file_size(index) - 1)));
        f.put(char(in.ConsumeIntegral<uint8_t>()));
        break;
    }
    case 3: {
        std::vector<uint8_t> rest = in.ConsumeRemainingBytes<uint8_t>();
        fuzz::write_file(index, fuzz::as_text(rest.data(), rest.size()));
        break;
    }
    default:
        break;
    }
}

void use(const memory::Store& store, FuzzedDataProvider& in)
{
    memory::ListOptions lo;
    lo.with_frames = true;
    lo.limit = 10;
    std::vector<memory::Entry> entries;
    fuzz::accepts([&] { entries = store.list(lo); });
    for (const memory::Entry& e : entries) {
        IRIS_FUZZ_CHECK(int(e.embedding.size()) == store.dim(), "entry %lld has %zu values, dim %d",
                        (long long)e.id, e.embedding.size(), store.dim());
        fuzz::accepts([&] { (void)store.get(e.id, true); });
    }
    fuzz::accepts([&] { (void)store.get(in.ConsumeIntegral<int64_t>(), true); });
    (void)store.stats();
    memory::Retriever retriever(store);
    memory::Query q;
    q.text = in.ConsumeRandomLengthString(32);
    if (in.ConsumeBool())
        for (int i = 0; i < store.dim() && i < 64; ++i)
            q.embedding.push_back(in.ConsumeFloatingPoint<float>());
    q.k = in.ConsumeIntegralInRange(1, 8);
    fuzz::accepts([&] {
        auto hits = retriever.search(q);
        IRIS_FUZZ_CHECK(int(hits.size()) <= q.k, "%zu hits for k = %d", hits.size(), q.k);
    });
    const fs::path out = fuzz::scratch_dir() / "export";
    fs::remove_all(out);
    fuzz::accepts([&] { (void)store.export_to(out.string()); });
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    memory::Store s = memory::Store::open(template_dir().string(), {.dim = kDim});
    s.add(entry(1'700'000'000'000'000, "a red cup on a desk", 1));
    s.add(entry(1'700'000'100'000'000, "keys next to the door", -2));
    s.save_index();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    FuzzedDataProvider in(data, size);
    const fs::path dir = fuzz::scratch_dir() / "store";
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"memory.db", "index.faiss"}) fs::copy_file(template_dir() / f, dir / f);
    const bool read_only = in.ConsumeBool();
    damage(dir, in);

    std::optional<memory::Store> store;
    memory::StoreOptions options;
    options.read_only = read_only;
    if (!fuzz::accepts([&] { store.emplace(memory::Store::open(dir.string(), options)); }))
        return 0;
    use(*store, in);
    if (!read_only) {
        fuzz::accepts([&] { store->add(entry(1'700'000'200'000'000, "a new entry", 3)); });
        fuzz::accepts([&] { (void)store->remove(1); });
    }
    return 0;
}
