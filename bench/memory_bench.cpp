// memory_bench — long-term memory at scale: ingest rate, bytes on disk, hybrid retrieval latency.
//
//   memory_bench                 1,000,000 entries (needs ~6 GB of disk and ~3 GB of memory)
//   memory_bench --n 100000      a smaller store
//   options: --dim 256  --batch 1000  --queries 1000  --frame-bytes 4096  --recall 100
//            --dir DIR (default: a temporary directory, removed afterwards)  --keep
//
// Entries are synthetic, made without the model: captions and transcripts of words drawn with a
// Zipf law from a 5,000-word vocabulary, one key frame of --frame-bytes random bytes, and
// embeddings around 1,000 random centres (clustered, as real embeddings are) in --dim dimensions.
// Clips are 5 s long and back to back.
//
// Ingest calls Store::add with --batch entries per call: one transaction and one fsync per
// batch (a live stream commits one entry per clip, every few seconds, and is far from this
// limit; a batch is how an import or a catch-up would write). The rate includes SQLite, FTS5,
// the FAISS add and the one-off IVF training at the store's ivf_threshold.
//
// Queries run against the reopened store, k = 10 with key frames, each on text of 2-4 words
// drawn like the captions' and on a noisy copy of a random entry's embedding. The recall row
// compares the vector search (IVF, nprobe lists) with an exact scan, on --recall queries.
#include "memory/memory.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <time.h>

namespace fs = std::filesystem;
namespace mem = iris::memory;
using Clock = std::chrono::steady_clock;

namespace {

struct Options
{
    int64_t n = 1'000'000;
    int dim = 256;
    int64_t batch = 1000;
    int queries = 1000;
    size_t frame_bytes = 4096;
    int recall = 100;
    std::string dir;
    bool keep = false;
};

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time of the calling thread or of the process: unlike wall time, it does not count the
// time other programs had the CPU (this benchmark is often run on a busy machine).
double cpu_seconds(clockid_t clock)
{
    timespec ts {};
    clock_gettime(clock, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Deterministic synthetic data: entry i is the same in every run.
class Corpus
{
public:
    Corpus(int dim, uint32_t seed)
        : dim_(dim)
    {
        std::mt19937 rng(seed);
        const char* onsets[]
            = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st"};
        const char* vowels[] = {"a", "e", "i", "o", "u", "ai", "ou"};
        while (words_.size() < 5000) {
            std::string w;
            for (int s = 0, n = 2 + int(rng() % 2); s < n; ++s)
                w += std::string(onsets[rng() % 16]) + vowels[rng() % 7];
            if (std::find(words_.begin(), words_.end(), w) == words_.end()) words_.push_back(w);
        }
        double sum = 0;
        for (size_t r = 0; r < words_.size(); ++r) cdf_.push_back(sum += 1.0 / double(r + 1));
        for (double& c : cdf_) c /= sum;
        std::normal_distribution<float> g;
        centres_.resize(1000 * size_t(dim));
        for (float& x : centres_) x = g(rng);
    }

    std::string words(std::mt19937& rng, int n) const
    {
        std::uniform_real_distribution<double> u;
        std::string s;
        for (int i = 0; i < n; ++i) {
            size_t r = size_t(std::lower_bound(cdf_.begin(), cdf_.end(), u(rng)) - cdf_.begin());
            s += (i ? " " : "") + words_[std::min(r, words_.size() - 1)];
        }
        return s;
    }

    // Unit vector near one of the centres.
    std::vector<float> embedding(std::mt19937& rng, float noise) const
    {
        std::normal_distribution<float> g(0.0f, noise);
        const float* c = &centres_[(rng() % 1000) * size_t(dim_)];
        std::vector<float> v(static_cast<size_t>(dim_));
        double norm = 0;
        for (int i = 0; i < dim_; ++i) norm += double(v[size_t(i)] = c[i] + g(rng)) * v[size_t(i)];
        for (float& x : v) x = float(x / std::sqrt(norm));
        return v;
    }

    mem::Entry entry(int64_t i, size_t frame_bytes) const
    {
        std::mt19937 rng(uint32_t(i) * 2654435761u + 1);
        mem::Entry e;
        e.t_start_us = kT0Us + i * 5'000'000;
        e.t_end_us = e.t_start_us + 5'000'000;
        e.caption = words(rng, 8 + int(rng() % 7));
        if (rng() % 2) e.transcript = words(rng, 5 + int(rng() % 20));
        e.embedding = embedding(rng, 0.7f);
        std::vector<uint8_t> jpeg(std::max<size_t>(frame_bytes, 4));
        for (uint8_t& b : jpeg) b = uint8_t(rng());
        jpeg[0] = 0xFF, jpeg[1] = 0xD8, jpeg[2] = 0xFF;
        e.key_frames.push_back({e.t_start_us, iris::Buffer::adopt(std::move(jpeg)), 0});
        return e;
    }

    static constexpr int64_t kT0Us = 1'704'067'200'000'000; // 2024-01-01 00:00 UTC

private:
    int dim_;
    std::vector<std::string> words_;
    std::vector<double> cdf_;
    std::vector<float> centres_;
};

struct Latency
{
    std::vector<double> ms;
    double at(double q)
    {
        std::sort(ms.begin(), ms.end());
        return ms[std::min(ms.size() - 1, size_t(q * double(ms.size())))];
    }
};

uint64_t dir_bytes(const std::string& dir)
{
    uint64_t n = 0;
    for (const auto& f : fs::directory_iterator(dir))
        if (f.is_regular_file()) n += f.file_size();
    return n;
}

Options parse(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "memory_bench: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--n")
            o.n = std::atoll(next());
        else if (a == "--dim")
            o.dim = std::atoi(next());
        else if (a == "--batch")
            o.batch = std::atoll(next());
        else if (a == "--queries")
            o.queries = std::atoi(next());
        else if (a == "--frame-bytes")
            o.frame_bytes = size_t(std::atoll(next()));
        else if (a == "--recall")
            o.recall = std::atoi(next());
        else if (a == "--dir")
            o.dir = next();
        else if (a == "--keep")
            o.keep = true;
        else {
            std::fprintf(stderr,
                         "memory_bench: unknown option '%s' (see the top of memory_bench.cpp)\n",
                         a.c_str());
            std::exit(2);
        }
    }
    if (o.n < 1 || o.dim < 1 || o.batch < 1 || o.queries < 1) {
        std::fprintf(stderr, "memory_bench: --n, --dim, --batch and --queries must be positive\n");
        std::exit(2);
    }
    return o;
}

} // namespace

int main(int argc, char** argv)
{
    Options o = parse(argc, argv);
    bool temp = o.dir.empty();
    if (temp) {
        std::string tmpl = (fs::temp_directory_path() / "iris-memory-bench-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) return 1;
        o.dir = tmpl;
    } else if (fs::exists(o.dir + "/memory.db")) {
        std::fprintf(stderr, "memory_bench: %s already holds a store\n", o.dir.c_str());
        return 2;
    }
    Corpus corpus(o.dim, 7);
    mem::StoreOptions store_options {.dim = o.dim};
    std::printf("memory_bench: %" PRId64 " entries, dim %d, batches of %" PRId64
                ", one %zu-byte key frame each, IVF from %" PRId64
                " entries (%d lists, nprobe %d)\n",
                o.n, o.dim, o.batch, o.frame_bytes, store_options.ivf_threshold,
                store_options.ivf_nlist, store_options.ivf_nprobe);

    // Ingest. The exact recall check needs every embedding; keep them when it is asked for.
    std::vector<float> all;
    if (o.recall > 0) all.reserve(size_t(o.n) * size_t(o.dim));
    double ingest_s = 0, ingest_cpu_s = 0, close_s = 0;
    {
        mem::Store store = mem::Store::open(o.dir, store_options);
        std::vector<mem::Entry> batch;
        auto t_report = Clock::now();
        for (int64_t i = 0; i < o.n; i += o.batch) {
            batch.clear();
            for (int64_t j = i; j < std::min(o.n, i + o.batch); ++j) {
                batch.push_back(corpus.entry(j, o.frame_bytes));
                if (o.recall > 0)
                    all.insert(all.end(), batch.back().embedding.begin(),
                               batch.back().embedding.end());
            }
            auto t0 = Clock::now(); // only the store's time counts, not making the data
            double c0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
            store.add(batch);
            ingest_s += seconds_since(t0);
            ingest_cpu_s += cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
            if (seconds_since(t_report) > 10) {
                std::fprintf(stderr, "  ingested %" PRId64 " of %" PRId64 " (%.0f entries/s)\n",
                             i + int64_t(batch.size()), o.n,
                             double(i + int64_t(batch.size())) / ingest_s);
                t_report = Clock::now();
            }
        }
        auto t0 = Clock::now();
        store.save_index();
        close_s = seconds_since(t0);
    }
    uint64_t bytes = dir_bytes(o.dir);
    uint64_t db_bytes = fs::file_size(o.dir + "/memory.db");
    uint64_t index_bytes = fs::file_size(o.dir + "/index.faiss");

    auto t_open = Clock::now();
    std::optional<mem::Store> store = mem::Store::open(o.dir, {.read_only = true});
    double open_s = seconds_since(t_open);
    mem::Retriever retriever(*store);

    std::printf("\n%-28s %12.0f entries/s  (%.1f s for %" PRId64 "; %.0f entries per CPU second)\n",
                "ingest", double(o.n) / ingest_s, ingest_s, o.n, double(o.n) / ingest_cpu_s);
    std::printf(
        "%-28s %12.0f bytes/entry  (memory.db %.1f MB, index.faiss %.1f MB; key frame %zu)\n",
        "disk", double(bytes) / double(o.n), double(db_bytes) / 1e6, double(index_bytes) / 1e6,
        o.frame_bytes);
    std::printf("%-28s %12.2f s            (saving the index %.2f s)\n", "open (load index)",
                open_s, close_s);

    // Queries.
    const int64_t t_last = Corpus::kT0Us + o.n * 5'000'000;
    struct Kind
    {
        const char* name;
        bool text, vector;
        int64_t window_us; // 0: no time filter
    };
    const Kind kinds[] = {
        {"hybrid", true, true, 0},
        {"hybrid, last hour", true, true, 3600'000'000},
        {"hybrid, last day", true, true, 86400'000'000},
        {"vector only", false, true, 0},
        {"text only", true, false, 0},
    };
    std::printf("\n%-28s %8s %8s %8s %8s %8s %8s\n", "query (k=10, with frames)", "p50 ms",
                "p99 ms", "max ms", "cpu p50", "cpu p99", "hits");
    for (const Kind& kind : kinds) {
        std::mt19937 rng(11);
        Latency lat, cpu;
        int64_t n_hits = 0;
        for (int q = 0; q < o.queries; ++q) {
            mem::Query query {.k = 10};
            if (kind.text) query.text = corpus.words(rng, 2 + int(rng() % 3));
            if (kind.vector) {
                std::mt19937 entry_rng(uint32_t(rng() % uint64_t(o.n)) * 2654435761u + 1);
                query.embedding = corpus.embedding(entry_rng, 0.9f);
            }
            if (kind.window_us) query.t_from_us = t_last - kind.window_us;
            auto t0 = Clock::now();
            double c0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
            n_hits += int64_t(retriever.search(query).size());
            cpu.ms.push_back((cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - c0) * 1e3);
            lat.ms.push_back(seconds_since(t0) * 1e3);
        }
        std::printf("%-28s %8.2f %8.2f %8.2f %8.2f %8.2f %8.1f\n", kind.name, lat.at(0.50),
                    lat.at(0.99), lat.at(1.0), cpu.at(0.50), cpu.at(0.99),
                    double(n_hits) / o.queries);
    }

    if (o.recall > 0) {
        std::mt19937 rng(13);
        double found = 0;
        for (int q = 0; q < o.recall; ++q) {
            std::mt19937 entry_rng(uint32_t(rng() % uint64_t(o.n)) * 2654435761u + 1);
            std::vector<float> v = corpus.embedding(entry_rng, 0.9f);
            std::vector<std::pair<float, int64_t>> exact;
            for (int64_t i = 0; i < o.n; ++i) {
                const float* e = &all[size_t(i) * size_t(o.dim)];
                float dot = 0;
                for (int d = 0; d < o.dim; ++d) dot += v[size_t(d)] * e[d];
                exact.push_back({dot, i + 1}); // ids are 1..n in insertion order
            }
            std::partial_sort(exact.begin(), exact.begin() + 10, exact.end(), std::greater<>());
            for (const mem::Hit& h :
                 retriever.search({.embedding = v, .k = 10, .with_frames = false}))
                for (int j = 0; j < 10; ++j) found += exact[size_t(j)].second == h.entry.id;
        }
        std::printf("%-28s %8.3f  (%d queries)\n", "recall@10 of vector search",
                    found / (10.0 * o.recall), o.recall);
    }

    store.reset();
    if (temp && !o.keep)
        fs::remove_all(o.dir);
    else
        std::printf("\nstore kept in %s\n", o.dir.c_str());
    return 0;
}
