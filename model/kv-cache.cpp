// The paged KV cache of a decoding session (network-impl.h describes the block layout). The
// network only uses reserve(), store() and runs(); the row formats are in cpu/kv-quant.cpp.
#include "model/network-impl.h"

#include <algorithm>
#include <cstring>

namespace iris::model {

namespace {

constexpr KvType kKvTypes[] = {KvType::f32, KvType::f16, KvType::q8, KvType::q4};

} // namespace

const char* kv_type_name(KvType type)
{
    switch (type) {
    case KvType::f32:
        return "f32";
    case KvType::f16:
        return "f16";
    case KvType::q8:
        return "q8";
    case KvType::q4:
        return "q4";
    }
    return "?";
}

KvType kv_type_from_name(std::string_view name)
{
    for (KvType t : kKvTypes)
        if (name == kv_type_name(t)) return t;
    throw Error(
        ErrorKind::invalid_argument,
        strfmt("unknown KV cache type '%.*s' (f32, f16, q8 or q4)", int(name.size()), name.data()));
}

KvCache::Impl::Impl(int n_layers_, int n_kv_heads_, int head_dim_, int max_position_embeddings,
                    const KvCacheOptions& options_)
    : n_layers(n_layers_)
    , n_kv_heads(n_kv_heads_)
    , head_dim(head_dim_)
    , options(options_)
    , k_row_bytes(cpu::kv_row_bytes(options_.k_type, head_dim_))
    , v_row_bytes(cpu::kv_row_bytes(options_.v_type, head_dim_))
    , blocks(size_t(n_layers_))
    , rope_len(max_position_embeddings)
{
    if (options.block_tokens < 1 || options.block_tokens > 65536)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("KV cache: %d tokens per block is outside 1..65536", options.block_tokens));
    const size_t rows = size_t(n_kv_heads) * size_t(options.block_tokens);
    // Value rows start 64-byte aligned, so that f32 rows are aligned floats whatever K holds.
    v_offset = (rows * k_row_bytes + 63) / 64 * 64;
    block_bytes = v_offset + rows * v_row_bytes;
}

void KvCache::Impl::reserve(int n_total)
{
    const size_t need
        = (size_t(n_total) + size_t(options.block_tokens) - 1) / size_t(options.block_tokens);
    for (auto& layer : blocks)
        while (layer.size() < need)
            layer.push_back(std::make_unique_for_overwrite<uint8_t[]>(block_bytes));
}

void KvCache::Impl::store(int layer, int pos0, int n, const float* k_new, const float* v_new)
{
    const int bt = options.block_tokens;
    const size_t d = size_t(head_dim);
    const auto& layer_blocks = blocks[size_t(layer)];
    for (int t = 0; t < n; ++t) {
        const int pos = pos0 + t;
        uint8_t* block = layer_blocks[size_t(pos / bt)].get();
        const size_t slot = size_t(pos % bt);
        for (int h = 0; h < n_kv_heads; ++h) {
            const size_t row = size_t(h) * size_t(bt) + slot;
            const size_t src = (size_t(t) * size_t(n_kv_heads) + size_t(h)) * d;
            cpu::kv_quantize_row(options.k_type, k_new + src, head_dim, block + row * k_row_bytes);
            cpu::kv_quantize_row(options.v_type, v_new + src, head_dim,
                                 block + v_offset + row * v_row_bytes);
        }
    }
}

void KvCache::Impl::truncate(int n)
{
    n_tokens = n;
    const size_t keep
        = (size_t(n) + size_t(options.block_tokens) - 1) / size_t(options.block_tokens);
    for (auto& layer : blocks)
        if (layer.size() > keep) layer.resize(keep);
}

std::span<const cpu::KvRun> KvCache::Impl::runs(int layer, int n)
{
    const int bt = options.block_tokens;
    auto& out = scratch.runs;
    out.clear();
    const auto& layer_blocks = blocks[size_t(layer)];
    for (int b = 0; b * bt < n; ++b) {
        const uint8_t* block = layer_blocks[size_t(b)].get();
        out.push_back({block, block + v_offset, size_t(bt) * k_row_bytes, size_t(bt) * v_row_bytes,
                       std::min(bt, n - b * bt), options.k_type, options.v_type});
    }
    return out;
}

size_t KvCache::Impl::bytes_per_token() const
{
    return size_t(n_layers) * size_t(n_kv_heads) * (k_row_bytes + v_row_bytes);
}

size_t KvCache::Impl::bytes() const
{
    size_t total = 0;
    for (const auto& layer : blocks)
        total += layer.size() * block_bytes + layer.capacity() * sizeof(layer[0]);
    const Scratch& s = scratch;
    for (const auto* b : {&s.embed, &s.x, &s.h, &s.q, &s.kn, &s.vn, &s.attn, &s.gate, &s.up,
                          &s.logits, &s.cos, &s.sin, &s.inv_freq})
        total += b->capacity() * sizeof(float);
    for (const auto& b : s.attention) total += b.capacity() * sizeof(float);
    total += s.pos.capacity() * sizeof(int64_t) + s.runs.capacity() * sizeof(cpu::KvRun);
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
    impl_->truncate(n);
}

size_t KvCache::bytes() const
{
    return impl_->bytes();
}

size_t KvCache::bytes_per_token() const
{
    return impl_->bytes_per_token();
}

const KvCacheOptions& KvCache::options() const
{
    return impl_->options;
}

} // namespace iris::model
