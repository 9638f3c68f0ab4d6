// memory — what Iris remembers: a short-term window of recent frames and text, and a long-term
// store of entries (one per clip) kept in SQLite, with a FAISS index over their embeddings.
//
//   namespace mem = iris::memory;
//   mem::Store store = mem::Store::open("/home/me/.iris/memory", {.dim = 256});
//   int64_t id = store.add(mem::Entry{.t_start_us = t0, .t_end_us = t1, .caption = "a cat",
//                                     .key_frames = {{.t_us = t0, .jpeg = jpeg}},
//                                     .embedding = vec});  // durable once it returns
//
//   mem::Retriever retriever(store);
//   mem::Query q{.text = "where did I leave my keys", .embedding = query_vec, .k = 5};
//   if (auto when = mem::parse_time_phrase("in the last 10 minutes", now_wall_us)) {
//       q.t_from_us = when->range.from_us;
//       q.t_to_us = when->range.to_us;
//   }
//   for (const mem::Hit& hit : retriever.search(q)) use(hit.entry);
//
// A store is a directory: memory.db (with its -wal and -shm files) is the source of truth;
// index.faiss caches the embedding index and is rebuilt from memory.db whenever it is missing,
// stale or corrupt; LOCK keeps a second writing process out.
//
// Times are wall-clock microseconds since the Unix epoch; time phrases use the local time zone.
//
// Thread safety: Store, Retriever and ShortTerm may be used from any number of threads. Writes
// (add, remove) run one at a time; reads run alongside them and only ever see whole entries
// (each read is one SQLite snapshot). One process at a time may open a store for writing, and
// any number may open it read-only.
#pragma once

#include "core/bus.h"
#include "core/core.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iris::memory {

inline constexpr int64_t kTimeMin = std::numeric_limits<int64_t>::min();
inline constexpr int64_t kTimeMax = std::numeric_limits<int64_t>::max();

// ---------------------------------------------------------------------------------------------
// Long-term entries

struct KeyFrame
{
    int64_t t_us = 0; // when the frame was seen
    Buffer jpeg; // the bytes of a JPEG file
    uint32_t crc32 = 0; // of jpeg: set by Store::add, checked by every read
};

// One remembered clip.
struct Entry
{
    int64_t id = 0; // set by Store::add: > 0, increasing, never reused
    int64_t t_start_us = 0; // the time range the clip covers; t_start_us <= t_end_us
    int64_t t_end_us = 0;
    std::string caption; // UTF-8
    std::string transcript; // UTF-8, may be empty
    std::vector<KeyFrame> key_frames;
    std::vector<float> embedding; // [dim]; add stores it scaled to unit length
};

// What Store::open did with index.faiss.
enum class IndexOpen {
    created, // a new store
    loaded, // the file matched memory.db
    caught_up, // the file lacked only the newest entries; they were added from memory.db
    rebuilt, // the file was missing, corrupt or out of date; rebuilt from memory.db
};
const char* index_open_name(IndexOpen value); // "created", "loaded", ...

struct StoreOptions
{
    // Embedding length. 0 takes it from an existing store; creating a store needs it.
    int dim = 0;
    // Opens an existing store without writing to it (e.g. to recall while another process
    // ingests): the index is brought up to date in memory only.
    bool read_only = false;
    // index.faiss is rewritten after max(index_save_min, count / 10) changes (by the add or
    // remove that reaches it: about 5 s at 1M entries), and on close. A crash costs only the
    // re-indexing of the changes made since.
    int64_t index_save_min = 1000;
    // Below ivf_threshold entries the index is exact. On reaching it, the index becomes an IVF
    // index with ivf_nlist lists, trained on the embeddings stored then, and each search scans
    // the ivf_nprobe lists nearest to the query (see memory/index-faiss.cpp).
    int64_t ivf_threshold = 20000;
    int ivf_nlist = 512;
    int ivf_nprobe = 16;
};

// Which entries list() returns: those overlapping [t_from_us, t_to_us], ordered by start time.
struct ListOptions
{
    int64_t t_from_us = kTimeMin;
    int64_t t_to_us = kTimeMax;
    int64_t offset = 0;
    int64_t limit = 100; // < 0: no limit
    bool newest_first = true;
    bool with_frames = false; // key frames are the bulk of the data; leave them out by default
};

struct StoreStats
{
    int64_t n_entries = 0; // entries in memory.db
    // Vectors in the index: equal to n_entries whenever no call is running. (A read-only store
    // indexes the entries there were when it opened; text search also finds later ones.)
    int64_t n_indexed = 0;
    int64_t max_id = 0;
    int dim = 0;
    int index_nlist = 0; // 1: exact search; more: IVF lists
    IndexOpen index_open = IndexOpen::created;
};

class Store
{
public:
    // Opens the store in directory `dir`, creating both unless options.read_only.
    // Throws Error with kind
    //   not_found         the store does not exist and read_only is set
    //   resource          another process (or Store) has the store open for writing
    //   unsupported       memory.db was written by a newer Iris (a higher schema version)
    //   invalid_input     memory.db is not an Iris store, or SQLite finds it corrupt
    //   invalid_argument  options.dim differs from the store's, or is 0 for a new store
    //   io                the directory or files cannot be created, read or written
    static Store open(const std::string& dir, const StoreOptions& options = {});

    Store(Store&&) noexcept;
    Store& operator=(Store&&) noexcept;
    // Saves the index if it changed since the last save (errors are logged: memory.db already
    // holds everything, so the next open rebuilds what was lost).
    ~Store();

    // Adds the entries in one SQLite transaction and returns their ids once it has committed
    // with synchronous=FULL: an id returned is an acknowledgement that the entry survives a
    // crash or power cut. Entries are validated first and nothing is stored if one is invalid:
    // Error(invalid_argument) for an embedding that is not [dim], not finite or all zero, a
    // time range that ends before it starts, or a key frame that is not a JPEG file.
    // Error(io) when the commit fails (nothing was stored); Error(invalid_argument) on a store
    // opened read-only.
    // If updating the in-memory index fails after the commit (out of memory), the entries are
    // stored and the exception propagates; the next open re-indexes them.
    int64_t add(const Entry& entry);
    std::vector<int64_t> add(std::span<const Entry> entries);

    // The entry, or nullopt if there is none with this id. Throws Error(invalid_input) naming
    // the entry and frame when a key frame's checksum does not match its bytes.
    std::optional<Entry> get(int64_t id, bool with_frames = true) const;
    std::vector<Entry> list(const ListOptions& options = {}) const;
    // Removes the entry and its key frames; false if there was none. Error(invalid_argument) on
    // a store opened read-only.
    bool remove(int64_t id);

    int64_t count() const;
    StoreStats stats() const;
    int dim() const;
    const std::string& dir() const;

    // Writes out_dir/entries.jsonl (one JSON object per entry, in id order, with every field;
    // key frames as file names) and out_dir/frames/<id>-<n>.jpg, from one snapshot. Checks each
    // frame's checksum (Error(invalid_input) when one is corrupt). Returns the entries written.
    int64_t export_to(const std::string& out_dir) const;

    // Writes index.faiss now if it changed (temporary file, fsync, rename, fsync of the
    // directory). Does nothing on a read-only store.
    void save_index();

private:
    friend class Retriever;
    struct Impl;
    explicit Store(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Retrieval

struct Query
{
    // Words to find in captions and transcripts (ranked by BM25). Any text is safe: it is split
    // into words and never read as FTS5 query syntax. Common words ("the", "what") are ignored.
    std::string text;
    std::vector<float> embedding; // [dim] or empty; need not be unit length
    int k = 5; // results wanted
    // Only entries overlapping [t_from_us, t_to_us].
    int64_t t_from_us = kTimeMin;
    int64_t t_to_us = kTimeMax;
    // With an embedding: results less similar than this (cosine) are left out.
    float min_similarity = -1.0f;
    bool with_frames = true;
};

struct Hit
{
    Entry entry;
    double score = 0; // reciprocal rank fusion: the sum of 1 / (rrf_k + rank) over both lists
    float similarity = std::nanf(""); // cosine similarity to the query's embedding, if it has one
    int rank_vector = 0; // 1-based rank among the nearest embeddings; 0 if not among them
    int rank_text = 0; // 1-based BM25 rank; 0 if not among the text matches
};

struct RetrieverOptions
{
    int n_candidates = 50; // taken from each ranking before fusion
    int rrf_k = 60;
    // BM25 costs 1-3 microseconds per matching entry, so only the rarest query words whose
    // matches add up to at most this many are ranked by BM25; the more common words add their
    // newest matches after those (see memory/retrieval.cpp).
    int64_t text_budget = 2000;
};

class Retriever
{
public:
    // The store must outlive the retriever.
    explicit Retriever(const Store& store, const RetrieverOptions& options = {});

    // Up to query.k hits, best first: nearest embeddings and BM25 text matches fused by
    // reciprocal rank. A query with neither an embedding nor a word to match returns the
    // newest entries in its time range. Throws Error(invalid_argument) for an embedding that
    // is not [dim], and Error(invalid_input) when a hit's key frame is corrupt.
    std::vector<Hit> search(const Query& query) const;

private:
    const Store::Impl* store_; // stays put when the Store is moved
    RetrieverOptions options_;
};

// ---------------------------------------------------------------------------------------------
// Time phrases

struct TimeRange
{
    int64_t from_us = kTimeMin;
    int64_t to_us = kTimeMax;
};

struct TimePhrase
{
    TimeRange range;
    std::string rest; // the text with the phrase taken out
};

// Finds the first time phrase in `text` and turns it into a range relative to now_us (wall
// clock, local time zone). Understood, in any case:
//   "in the last 10 minutes", "in the past hour", "last 2 days", "in the last ten seconds"
//   "between 15:00 and 16:00", "between 3pm and 4:30 pm"  (today's, or yesterday's if the start
//                                                          is still to come; may cross midnight)
//   "today" (midnight until now), "yesterday" (the whole previous day)
// Returns nullopt when there is none.
std::optional<TimePhrase> parse_time_phrase(std::string_view text, int64_t now_us);

// ---------------------------------------------------------------------------------------------
// Short-term memory

// A sampled video frame and when it was seen.
struct Frame
{
    int64_t t_us = 0;
    Image image;
};

// A caption or a transcript covering [t_start_us, t_end_us].
struct Text
{
    int64_t t_start_us = 0;
    int64_t t_end_us = 0;
    std::string text;
};

struct ShortTermOptions
{
    // Items that end more than this before the newest time seen (of any kind) are dropped.
    int64_t window_us = 60'000'000;
    size_t max_frames = 64; // at most this many of each; the oldest go first
    size_t max_texts = 256;
};

// The recent window: frames share their pixels with the bus (Buffer), nothing is copied.
class ShortTerm
{
public:
    explicit ShortTerm(const ShortTermOptions& options = {});

    void add_frame(Frame frame);
    void add_caption(Text caption);
    void add_transcript(Text transcript);

    // Snapshots, oldest first, of the items at or after since_us (by t_us / t_end_us).
    std::vector<Frame> frames(int64_t since_us = kTimeMin) const;
    std::vector<Frame> latest_frames(size_t n) const;
    std::vector<Text> captions(int64_t since_us = kTimeMin) const;
    std::vector<Text> transcripts(int64_t since_us = kTimeMin) const;
    void clear();

private:
    void evict(int64_t newest_us);

    ShortTermOptions options_;
    mutable std::mutex mutex_;
    std::deque<Frame> frames_;
    std::deque<Text> captions_;
    std::deque<Text> transcripts_;
    int64_t newest_us_ = kTimeMin; // the window ends at the newest time seen
};

} // namespace iris::memory
