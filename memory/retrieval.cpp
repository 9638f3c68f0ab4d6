// Retriever: nearest embeddings (FAISS) and BM25 text matches (FTS5), fused by reciprocal rank.
//
// Reciprocal rank fusion needs no calibration between cosine similarities and BM25 scores,
// which live on unrelated scales: each list contributes 1 / (rrf_k + rank), so an entry near the
// top of both lists wins, and one list alone can still place an entry.
//
// FTS5's BM25 reads every match of a word to weigh it, then scores every matching row before it
// can sort (1-3 microseconds a row in a store of 1M entries), and a word found in a tenth of a
// million entries matches 100,000 of them. So the text search ranks by BM25 only the rarest query
// words whose matches fit in text_budget together (counting a word's matches stops at the budget,
// which keeps counting cheap); results still missing after those come from the other, common words,
// newest first. BM25 weighs a word by its rarity, so the words left out are the ones that
// would have moved the ranking least (a word in half the entries weighs nothing in FTS5).
#include "memory/memory-impl.h"

#include <algorithm>
#include <cctype>
#include <tuple>
#include <unordered_map>

namespace iris::memory {

namespace {

// A time range holding at most this many entries is searched exhaustively (every IVF list),
// which is exact and costs little when the selector rejects nearly everything.
constexpr int64_t kExactRangeMax = 4096;

// The text search uses at most this many words of the query.
constexpr size_t kMaxWords = 16;

bool is_stopword(std::string_view w)
{
    static constexpr std::string_view words[]
        = {"a",    "about", "am",    "an",    "and",   "any",   "are",   "as",   "at",   "be",
           "been", "but",   "by",    "can",   "could", "did",   "do",    "does", "for",  "from",
           "had",  "has",   "have",  "he",    "her",   "him",   "his",   "how",  "i",    "if",
           "in",   "into",  "is",    "it",    "its",   "me",    "my",    "no",   "not",  "of",
           "on",   "or",    "our",   "she",   "so",    "some",  "than",  "that", "the",  "their",
           "them", "then",  "there", "these", "they",  "this",  "those", "to",   "us",   "was",
           "we",   "were",  "what",  "when",  "where", "which", "while", "who",  "whom", "why",
           "will", "with",  "would", "you",   "your"};
    static_assert(std::is_sorted(std::begin(words), std::end(words)));
    return std::binary_search(std::begin(words), std::end(words), w);
}

// The query's words, each as an FTS5 string ("word"). Words are runs of ASCII letters and
// digits or of non-ASCII bytes (UTF-8 letters); everything else separates them. A word holds no
// '"', so no user text is ever read as FTS5 syntax (NEAR, AND, column filters, '*', '^').
std::vector<std::string> fts_words(std::string_view text)
{
    auto word_byte = [&](size_t j) {
        unsigned char c = static_cast<unsigned char>(text[j]);
        return c >= 0x80 || std::isalnum(c);
    };
    std::vector<std::string> words;
    size_t i = 0;
    while (words.size() < kMaxWords) {
        while (i < text.size() && !word_byte(i)) ++i;
        size_t start = i;
        while (i < text.size() && word_byte(i)) ++i;
        if (i == start) break;
        std::string w(text.substr(start, i - start));
        for (char& c : w) c = char(std::tolower(static_cast<unsigned char>(c)));
        if (is_stopword(w)) continue;
        w = '"' + w + '"';
        if (std::find(words.begin(), words.end(), w) == words.end()) words.push_back(std::move(w));
    }
    return words;
}

std::string join_or(const std::vector<std::string>& words)
{
    std::string q;
    for (const std::string& w : words) q += (q.empty() ? "" : " OR ") + w;
    return q;
}

struct Candidate
{
    double score = 0;
    int rank_vector = 0;
    int rank_text = 0;
};

// The time filter of a query, in the forms the SQL needs.
struct TimeFilter
{
    bool on = false;
    int64_t from_us = kTimeMin, to_us = kTimeMax;
    int64_t start_lo_us = kTimeMin; // lowest start of an entry that can overlap the range
};

// Rowids [lo, hi] that hold every entry of the range, when the store's ids follow start times
// (two index lookups); lo > hi when no entry starts in it.
std::pair<int64_t, int64_t> id_bounds(sqlite3* db, const TimeFilter& t)
{
    Stmt lo(db,
            "SELECT min(id) FROM entries WHERE t_start_us = (SELECT min(t_start_us) FROM "
            "entries WHERE t_start_us >= ?)");
    Stmt hi(db,
            "SELECT max(id) FROM entries WHERE t_start_us = (SELECT max(t_start_us) FROM "
            "entries WHERE t_start_us <= ?)");
    lo.bind(1, t.start_lo_us);
    hi.bind(1, t.to_us);
    if (!lo.step() || !hi.step() || lo.is_null(0) || hi.is_null(0)) return {1, 0};
    return {lo.int64(0), hi.int64(0)};
}

// Entry ids, best first, at most n: those matching the rarer words by BM25, then the newest
// matches of the common ones.
std::vector<int64_t> text_ranking(sqlite3* db, const std::vector<std::string>& words,
                                  const TimeFilter& t, bool time_ordered, int64_t text_budget,
                                  int64_t n)
{
    // A time filter narrows the rowids to scan when ids follow start times; the join below
    // keeps the filter exact either way.
    int64_t lo = 1, hi = kTimeMax;
    if (t.on && time_ordered) {
        std::tie(lo, hi) = id_bounds(db, t);
        if (lo > hi) return {};
    }

    // Count each word's matches in the whole store, stopping past the budget: FTS5's BM25 reads
    // every match of a word to weigh it, whatever the rowid range.
    Stmt count(db,
               "SELECT count(*) FROM (SELECT 1 FROM entries_fts WHERE entries_fts MATCH ? "
               "LIMIT ?)");
    std::vector<std::pair<int64_t, std::string>> counted;
    for (const std::string& w : words) {
        count.reset();
        count.bind(1, w).bind(2, text_budget + 1);
        int64_t c = count.step() ? count.int64(0) : 0;
        if (c > 0) counted.push_back({c, w});
    }
    std::sort(counted.begin(), counted.end());
    std::vector<std::string> rare, common;
    int64_t total = 0;
    for (const auto& [c, w] : counted) {
        if (total + c <= text_budget) {
            total += c;
            rare.push_back(w);
        } else {
            common.push_back(w);
        }
    }

    std::vector<int64_t> ids;
    auto collect = [&](const std::vector<std::string>& use, const char* order) {
        if (use.empty() || int64_t(ids.size()) >= n) return;
        std::string sql = t.on ? "SELECT f.rowid FROM entries_fts f JOIN entries e ON e.id = "
                                 "f.rowid WHERE f.entries_fts MATCH ?1 AND f.rowid BETWEEN ?2 AND "
                                 "?3 AND e.t_start_us BETWEEN ?4 AND ?5 AND e.t_end_us >= ?6"
                               : "SELECT f.rowid FROM entries_fts f WHERE f.entries_fts MATCH ?1 "
                                 "AND f.rowid BETWEEN ?2 AND ?3";
        sql += std::string(" ORDER BY ") + order + " LIMIT ?7";
        Stmt rows(db, sql.c_str());
        // Room for the rows the first list already holds.
        rows.bind(1, join_or(use)).bind(2, lo).bind(3, hi).bind(7, n + int64_t(ids.size()));
        if (t.on) rows.bind(4, t.start_lo_us).bind(5, t.to_us).bind(6, t.from_us);
        while (rows.step() && int64_t(ids.size()) < n) {
            int64_t id = rows.int64(0);
            if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
        }
    };
    collect(rare, "f.rank");
    // Common words weigh little in BM25 and weighing them costs a pass over all their matches;
    // among their matches the newest are the likeliest to be asked about.
    collect(common, "f.rowid DESC");
    return ids;
}

} // namespace

Retriever::Retriever(const Store& store, const RetrieverOptions& options)
    : store_(store.impl_.get())
    , options_(options)
{
    if (options_.n_candidates < 1 || options_.rrf_k < 0 || options_.text_budget < 1)
        throw Error(ErrorKind::invalid_argument, "retriever: bad options");
}

std::vector<Hit> Retriever::search(const Query& query) const
{
    const Store::Impl& m = *store_;
    std::vector<Hit> hits;
    if (query.k <= 0 || query.t_to_us < query.t_from_us) return hits;
    std::vector<float> q = query.embedding;
    if (!q.empty()) normalize_embedding(q, m.options.dim, "the query's embedding");
    const int64_t n_cand = std::max(options_.n_candidates, query.k);
    TimeFilter t;
    t.on = query.t_from_us != kTimeMin || query.t_to_us != kTimeMax;
    t.from_us = query.t_from_us;
    t.to_us = query.t_to_us;
    t.start_lo_us = m.start_bound(query.t_from_us);
    bool time_ordered;
    int64_t n_in_range = kExactRangeMax + 1; // or an upper bound of it
    {
        std::shared_lock lock(m.index_mutex);
        time_ordered = m.index->time_ordered();
        if (t.on && time_ordered) {
            auto [lo, hi] = m.index->id_range(t.from_us, t.to_us);
            n_in_range = std::max<int64_t>(hi - lo + 1, 0);
        }
    }

    ReaderPool::Lease db = m.readers.acquire();
    Transaction snapshot(db.get(), false);
    std::unordered_map<int64_t, Candidate> cands;
    std::vector<int64_t> order; // ids, best first, when no ranking applies

    if (!q.empty() && t.on && !time_ordered) {
        Stmt in_range(db.get(),
                      "SELECT count(*) FROM (SELECT 1 FROM entries WHERE t_start_us "
                      "BETWEEN ? AND ? AND t_end_us >= ? LIMIT ?)");
        in_range.bind(1, t.start_lo_us).bind(2, t.to_us).bind(3, t.from_us);
        in_range.bind(4, kExactRangeMax + 1);
        n_in_range = in_range.step() ? in_range.int64(0) : 0;
    }
    if (!q.empty() && n_in_range > 0) {
        std::vector<ScoredId> near;
        {
            std::shared_lock lock(m.index_mutex);
            near = m.index->search(q.data(), int(n_cand), t.from_us, t.to_us,
                                   n_in_range <= kExactRangeMax);
        }
        int rank = 0;
        for (const ScoredId& s : near) {
            if (s.score < query.min_similarity) break; // sorted: the rest are lower
            Candidate& c = cands[s.id];
            c.rank_vector = ++rank;
            c.score += 1.0 / (options_.rrf_k + rank);
        }
    }

    std::vector<std::string> words = fts_words(query.text);
    if (!words.empty()) {
        int rank = 0;
        for (int64_t id :
             text_ranking(db.get(), words, t, time_ordered, options_.text_budget, n_cand)) {
            Candidate& c = cands[id];
            c.rank_text = ++rank;
            c.score += 1.0 / (options_.rrf_k + rank);
        }
    } else if (q.empty()) {
        // Nothing to rank by: the newest entries in the range ("what happened today?").
        Stmt rows(db.get(),
                  "SELECT id FROM entries WHERE t_start_us BETWEEN ? AND ? AND "
                  "t_end_us >= ? ORDER BY t_start_us DESC, id DESC LIMIT ?");
        rows.bind(1, t.start_lo_us).bind(2, t.to_us).bind(3, t.from_us).bind(4, n_cand);
        while (rows.step()) order.push_back(rows.int64(0));
    }

    if (order.empty()) {
        for (const auto& [id, c] : cands) order.push_back(id);
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
            double sa = cands[a].score, sb = cands[b].score;
            return sa != sb ? sa > sb : a > b; // ties: the newer entry
        });
    }

    Stmt row(db.get(),
             (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE id = ?").c_str());
    for (int64_t id : order) {
        if (int(hits.size()) == query.k) break;
        row.reset();
        row.bind(1, id);
        if (!row.step()) continue; // removed since the index answered
        Hit h;
        h.entry = m.read_entry(db.get(), row, false);
        if (auto it = cands.find(id); it != cands.end()) {
            h.score = it->second.score;
            h.rank_vector = it->second.rank_vector;
            h.rank_text = it->second.rank_text;
        }
        if (!q.empty()) {
            float dot = 0;
            for (size_t i = 0; i < q.size(); ++i) dot += q[i] * h.entry.embedding[i];
            if (dot < query.min_similarity) continue;
            h.similarity = dot;
        }
        if (query.with_frames) h.entry.key_frames = read_frames(db.get(), m.dir, id);
        hits.push_back(std::move(h));
    }
    return hits;
}

} // namespace iris::memory
