#include "reasoning/prefix-cache.h"

#include <algorithm>
#include <cstring>

namespace iris::reasoning {
namespace {

// FNV-1a over 32-bit words: a prefix's key is its ids' hash, found for every end in one pass.
constexpr uint64_t kBasis = 0xcbf29ce484222325ull, kPrime = 0x100000001b3ull;

uint64_t mix(uint64_t h, uint32_t word)
{
    return (h ^ word) * kPrime;
}

uint64_t hash_floats(std::span<const float> values)
{
    uint64_t h = kBasis ^ 0x696d616765ull; // apart from the ids' keys
    for (float v : values) {
        uint32_t w;
        std::memcpy(&w, &v, sizeof w);
        h = mix(h, w);
    }
    return h;
}

bool same_floats(std::span<const float> a, std::span<const float> b)
{
    // (memcmp must not see the null data of an empty vector)
    return a.size() == b.size()
        && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

bool same_options(const model::KvCacheOptions& a, const model::KvCacheOptions& b)
{
    if (a.k_type != b.k_type || a.v_type != b.v_type || a.block_tokens != b.block_tokens)
        return false;
    if (a.k_type != model::KvType::skvq) return true;
    const model::KvSkvqOptions &x = a.skvq, &y = b.skvq;
    return x.k_bits == y.k_bits && x.v_bits == y.v_bits && x.group == y.group && x.sink == y.sink
        && x.window == y.window && x.clip == y.clip;
}

} // namespace

bool PrefixCache::Entry::holds(std::span<const int32_t> prefix, std::span<const float> image_rows,
                               const model::KvCacheOptions& options) const
{
    return cache && std::ranges::equal(ids, prefix) && same_options(cache->options(), options)
        && same_floats(visual, image_rows);
}

PrefixCache::PrefixCache(size_t max_bytes)
    : max_bytes_(max_bytes)
{ }

PrefixCache::~PrefixCache() = default;

std::vector<int> PrefixCache::segment_ends(std::span<const int32_t> ids, int32_t sep,
                                           int32_t img_end)
{
    std::vector<int> out;
    for (size_t p = 1; p < ids.size(); ++p)
        if (ids[p - 1] == sep || (img_end >= 0 && ids[p - 1] == img_end)) out.push_back(int(p));
    return out;
}

int PrefixCache::restore(std::span<const int32_t> ids, std::span<const int> ends,
                         std::span<const float> visual, int32_t img_context_id, int hidden,
                         model::KvCache& cache)
{
    if (cache.n_tokens() != 0)
        throw Error(ErrorKind::invalid_argument, "PrefixCache::restore: the cache is not empty");
    // Each end's key and image rows, in one pass over the ids.
    std::vector<uint64_t> keys;
    std::vector<size_t> rows;
    uint64_t h = kBasis;
    size_t row = 0, p = 0;
    for (int e : ends) {
        for (; p < size_t(e); ++p) {
            h = mix(h, uint32_t(ids[p]));
            row += ids[p] == img_context_id;
        }
        keys.push_back(h);
        rows.push_back(row);
    }
    std::shared_ptr<const model::KvCache> found;
    int length = 0;
    {
        std::lock_guard lock(mutex_);
        for (size_t k = ends.size(); k-- > 0 && !found;) {
            const auto prefix = ids.first(size_t(ends[k]));
            if (rows[k] * size_t(hidden) > visual.size()) continue;
            const auto image_rows = visual.first(rows[k] * size_t(hidden));
            auto [lo, hi] = index_.equal_range(keys[k]);
            for (auto it = lo; it != hi; ++it) {
                if (!it->second->holds(prefix, image_rows, cache.options())) continue;
                lru_.splice(lru_.begin(), lru_, it->second);
                found = it->second->cache;
                length = ends[k];
                break;
            }
        }
        if (found) {
            ++stats_.prefix_hits;
            stats_.reused_tokens += length;
        } else {
            ++stats_.prefix_misses;
        }
    }
    if (found) cache.assign(*found); // outside the lock: the entry lives while `found` does
    return length;
}

void PrefixCache::store(std::span<const int32_t> ids, std::span<const float> visual,
                        const model::KvCache& cache, const model::InternVL& network)
{
    uint64_t h = kBasis;
    for (int32_t id : ids) h = mix(h, uint32_t(id));
    {
        std::lock_guard lock(mutex_);
        auto [lo, hi] = index_.equal_range(h);
        for (auto it = lo; it != hi; ++it)
            if (it->second->holds(ids, visual, cache.options())) return;
    }
    auto copy = network.new_cache(cache.options());
    copy->assign(cache);
    Entry e;
    e.key = h;
    e.ids.assign(ids.begin(), ids.end());
    e.visual.assign(visual.begin(), visual.end());
    e.bytes = copy->bytes() + ids.size_bytes() + visual.size_bytes();
    e.cache = std::move(copy);
    insert(std::move(e));
}

EncodedImage PrefixCache::encode(const Engine& engine, const PreparedImage& image)
{
    const std::span<const float> pixels = image.pixel_values;
    const uint64_t h = hash_floats(pixels);
    {
        std::lock_guard lock(mutex_);
        auto [lo, hi] = index_.equal_range(h);
        for (auto it = lo; it != hi; ++it) {
            const Entry& e = *it->second;
            if (e.cache || !same_floats(e.pixels, pixels)) continue;
            lru_.splice(lru_.begin(), lru_, it->second);
            ++stats_.image_hits;
            return {e.n_tiles, e.visual};
        }
        ++stats_.image_misses;
    }
    EncodedImage out = engine.encode(image);
    Entry e;
    e.key = h;
    e.pixels.assign(pixels.begin(), pixels.end());
    e.visual = out.visual;
    e.n_tiles = out.n_tiles;
    e.bytes = (e.pixels.size() + e.visual.size()) * sizeof(float);
    insert(std::move(e));
    return out;
}

void PrefixCache::insert(Entry entry)
{
    if (entry.bytes > max_bytes_) return;
    std::lock_guard lock(mutex_);
    // Another session may have kept the same meanwhile.
    auto [lo, hi] = index_.equal_range(entry.key);
    for (auto it = lo; it != hi; ++it) {
        const Entry& e = *it->second;
        if (entry.cache ? e.holds(entry.ids, entry.visual, entry.cache->options())
                        : !e.cache && same_floats(e.pixels, entry.pixels))
            return;
    }
    while (!lru_.empty() && stats_.bytes + entry.bytes > max_bytes_) {
        const Entry& last = lru_.back();
        auto [first, end] = index_.equal_range(last.key);
        for (auto it = first; it != end; ++it)
            if (&*it->second == &last) {
                index_.erase(it);
                break;
            }
        stats_.bytes -= last.bytes;
        ++stats_.evictions;
        lru_.pop_back();
    }
    stats_.bytes += entry.bytes;
    const uint64_t key = entry.key;
    lru_.push_front(std::move(entry));
    index_.emplace(key, lru_.begin());
}

PrefixCache::Stats PrefixCache::stats() const
{
    std::lock_guard lock(mutex_);
    Stats s = stats_;
    s.entries = lru_.size();
    return s;
}

} // namespace iris::reasoning
