// reasoning/prefix-cache — prompt prefixes and encoded images shared between sessions, so that
// requests with the same system prompt, the same earlier turns or the same image do not compute
// them again.
//
//   PrefixCache shared(512 << 20);                       // the bytes it may hold
//   Session chat(engine, system, std::nullopt, &shared); // every request's session
//
// A session with a prefix cache feeds its prompt in segments that end after each separator
// token (<|im_end|>) and each image (</img>), every segment a forward pass of its own, so a
// prefix's keys and values depend on that prefix alone. When its cache starts empty it resumes
// from the longest stored prefix of its prompt (the same ids, the same image rows, the same KV
// settings), and it stores its cache after the system prompt, after each image and before the
// answer's role tag. A request's answer is therefore the same bits whether its prefix was
// computed now or taken from here. Images are encoded one at a time and kept by their pixels.
// The least recently used entries go first when max_bytes would be passed. One prefix cache
// serves the sessions of one engine.
//
// Thread safety: every member may be called from several threads at once.
#pragma once

#include "model/model.h"
#include "reasoning/engine.h"

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

namespace iris::reasoning {

class PrefixCache
{
public:
    explicit PrefixCache(size_t max_bytes);
    ~PrefixCache();
    PrefixCache(const PrefixCache&) = delete;
    PrefixCache& operator=(const PrefixCache&) = delete;

    // Where a prompt may be cut: after each `sep` and each `img_end` id (-1: none), the end of
    // the prompt excluded, ascending.
    static std::vector<int> segment_ends(std::span<const int32_t> ids, int32_t sep,
                                         int32_t img_end);

    // Copies into `cache` (empty) the longest stored prefix ids[0, e), e one of `ends`, whose
    // image rows are the first rows of `visual` (one per img_context_id among those ids) and
    // whose cache has `cache`'s options; returns e, or 0 when none is stored.
    int restore(std::span<const int32_t> ids, std::span<const int> ends,
                std::span<const float> visual, int32_t img_context_id, int hidden,
                model::KvCache& cache);
    // Keeps a copy of `cache`, which holds exactly `ids` with these image rows (a prefix that
    // ends at a segment end), unless an equal one is kept.
    void store(std::span<const int32_t> ids, std::span<const float> visual,
               const model::KvCache& cache, const model::InternVL& network);

    // The image through the vision tower: what the engine gives, from here when the same
    // pixels were encoded before.
    EncodedImage encode(const Engine& engine, const PreparedImage& image);

    struct Stats
    {
        int64_t prefix_hits = 0, prefix_misses = 0, reused_tokens = 0;
        int64_t image_hits = 0, image_misses = 0;
        int64_t evictions = 0;
        size_t bytes = 0, entries = 0;
    };
    Stats stats() const;
    size_t max_bytes() const { return max_bytes_; }

private:
    struct Entry
    {
        uint64_t key = 0;
        std::vector<int32_t> ids; // a prefix: its ids
        std::vector<float> pixels; // an image: its pixel values
        std::vector<float> visual; // the prefix's image rows, or the image's visual tokens
        int n_tiles = 0; // an image's
        std::shared_ptr<const model::KvCache> cache; // a prefix's
        size_t bytes = 0;
        // A prefix of these ids, image rows and cache settings.
        bool holds(std::span<const int32_t> prefix, std::span<const float> image_rows,
                   const model::KvCacheOptions& options) const;
    };
    using Lru = std::list<Entry>; // most recently used first
    // Adds the entry unless it does not fit at all, evicting from the back.
    void insert(Entry entry);

    const size_t max_bytes_;
    mutable std::mutex mutex_;
    Lru lru_;
    std::unordered_multimap<uint64_t, Lru::iterator> index_;
    Stats stats_;
};

} // namespace iris::reasoning
