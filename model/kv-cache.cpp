// The f32 KV cache of a decoding session. A paged / quantized cache (spec/skvq.md) will replace
// KvCache::Impl; the network only uses reserve(), store() and the per-head key/value blocks.
#include "model/network-impl.h"

#include <algorithm>
#include <cstring>

namespace iris::model {

KvCache::Impl::Impl(int n_layers_, int n_kv_heads_, int head_dim_, int max_position_embeddings)
    : n_layers(n_layers_)
    , n_kv_heads(n_kv_heads_)
    , head_dim(head_dim_)
    , k(size_t(n_layers_))
    , v(size_t(n_layers_))
    , rope_len(max_position_embeddings)
{ }

void KvCache::Impl::reserve(int n_total)
{
    if (n_total <= capacity) return;
    int new_cap = std::max(n_total, capacity + capacity / 2);
    new_cap = (new_cap + kChunk - 1) / kChunk * kChunk;
    const size_t d = size_t(head_dim);
    for (int l = 0; l < n_layers; ++l) {
        for (auto* buf : {&k[size_t(l)], &v[size_t(l)]}) {
            std::vector<float> grown(size_t(n_kv_heads) * size_t(new_cap) * d);
            // Each head's block moves to its new, longer slot; only the valid rows are copied.
            for (int h = 0; h < n_kv_heads && n_tokens > 0; ++h)
                std::memcpy(grown.data() + size_t(h) * new_cap * d,
                            buf->data() + size_t(h) * capacity * d,
                            size_t(n_tokens) * d * sizeof(float));
            *buf = std::move(grown);
        }
    }
    capacity = new_cap;
}

void KvCache::Impl::store(int layer, int pos0, int n, const float* k_new, const float* v_new)
{
    const size_t d = size_t(head_dim);
    float* kl = k[size_t(layer)].data();
    float* vl = v[size_t(layer)].data();
    for (int t = 0; t < n; ++t)
        for (int h = 0; h < n_kv_heads; ++h) {
            size_t dst = (size_t(h) * capacity + size_t(pos0 + t)) * d;
            size_t src = (size_t(t) * n_kv_heads + size_t(h)) * d;
            std::memcpy(kl + dst, k_new + src, d * sizeof(float));
            std::memcpy(vl + dst, v_new + src, d * sizeof(float));
        }
}

size_t KvCache::Impl::bytes() const
{
    size_t total = 0;
    for (int l = 0; l < n_layers; ++l)
        total += (k[size_t(l)].capacity() + v[size_t(l)].capacity()) * sizeof(float);
    const Scratch& s = scratch;
    for (const auto* b : {&s.embed, &s.x, &s.h, &s.q, &s.kn, &s.vn, &s.attn, &s.gate, &s.up,
                          &s.logits, &s.cos, &s.sin, &s.inv_freq})
        total += b->capacity() * sizeof(float);
    for (const auto& b : s.attention) total += b.capacity() * sizeof(float);
    total += s.pos.capacity() * sizeof(int64_t);
    return total;
}

// ---------------------------------------------------------------------------------------------

KvCache::KvCache(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl))
{ }

KvCache::~KvCache() = default;

int KvCache::n_tokens() const
{
    return impl_->n_tokens;
}

void KvCache::truncate(int n)
{
    if (n < 0 || n > impl_->n_tokens)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("KV cache: cannot truncate to %d tokens, it holds %d", n, impl_->n_tokens));
    // The rows past n are simply overwritten by the next tokens.
    impl_->n_tokens = n;
}

size_t KvCache::bytes() const
{
    return impl_->bytes();
}

} // namespace iris::model
