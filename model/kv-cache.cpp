// The paged KV cache of a decoding session (network-impl.h describes the block layout). The
// network only uses reserve(), store() and runs(); the row formats are in cpu/kv-quant.cpp and
// the rows are written through the backend.
#include "model/cpu/ops.h"
#include "model/network-impl.h"

#include <algorithm>
#include <cstring>

namespace iris::model {

namespace {

constexpr KvType kKvTypes[] = {KvType::f32, KvType::f16, KvType::q8, KvType::q4, KvType::skvq};

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
    case KvType::skvq:
        return "skvq";
    }
    return "?";
}

KvType kv_type_from_name(std::string_view name)
{
    for (KvType t : kKvTypes)
        if (name == kv_type_name(t)) return t;
    throw Error(ErrorKind::invalid_argument,
                strfmt("unknown KV cache type '%.*s' (f32, f16, q8, q4 or skvq)", int(name.size()),
                       name.data()));
}

void parse_kv_bits(std::string_view text, KvSkvqOptions& out)
{
    auto bad = [&] {
        return Error(ErrorKind::invalid_argument,
                     strfmt("KV bits '%.*s' is not K<2|4|8>V<1.5|2|4|8>, e.g. K2V1.5",
                            int(text.size()), text.data()));
    };
    auto upper = [](char c) { return char(c >= 'a' && c <= 'z' ? c - 32 : c); };
    const size_t v = text.find_first_of("Vv");
    if (text.size() < 4 || upper(text[0]) != 'K' || v == std::string_view::npos || v < 2)
        throw bad();
    const std::string_view k_part = text.substr(1, v - 1), v_part = text.substr(v + 1);
    auto value = [&](std::string_view p, std::initializer_list<std::string_view> allowed) {
        for (std::string_view a : allowed)
            if (p == a) return std::stof(std::string(a));
        throw bad();
    };
    out.k_bits = value(k_part, {"2", "4", "8"});
    out.v_bits = value(v_part, {"1.5", "2", "4", "8"});
}

std::string kv_bits_name(const KvSkvqOptions& o)
{
    return strfmt("K%gV%g", double(o.k_bits), double(o.v_bits));
}

std::string kv_cache_name(const KvCacheOptions& o)
{
    if (o.k_type == KvType::skvq) {
        std::string name = strfmt("skvq %s g%d w%d s%d", kv_bits_name(o.skvq).c_str(), o.skvq.group,
                                  o.skvq.window, o.skvq.sink);
        if (o.skvq.clip > 0) name += strfmt(" clip%g", double(o.skvq.clip));
        return name;
    }
    if (o.k_type == o.v_type) return kv_type_name(o.k_type);
    return strfmt("%s/%s", kv_type_name(o.k_type), kv_type_name(o.v_type));
}

namespace {

size_t row_bytes(KvType type, const SkvqFormat& f, int head_dim)
{
    return type == KvType::skvq ? cpu::skvq_row_bytes(f, head_dim)
                                : cpu::kv_row_bytes(type, head_dim);
}

const KvSkvqOptions& checked_skvq(const KvCacheOptions& o)
{
    if ((o.k_type == KvType::skvq) != (o.v_type == KvType::skvq))
        throw Error(ErrorKind::invalid_argument,
                    "KV cache: skvq stores keys and values alike (use --kv skvq and --kv-bits "
                    "for their widths)");
    const KvSkvqOptions& s = o.skvq;
    if (s.sink < 0 || s.sink > 65536 || s.window < 0 || s.window > 1 << 20)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("SKVQ: sink %d or window %d outside 0..65536 / 0..1048576", s.sink, s.window));
    if (!(s.clip == 0.f || (s.clip >= 0.5f && s.clip <= 1.f)))
        throw Error(ErrorKind::invalid_argument,
                    strfmt("SKVQ: clipping factor %g outside [0.5, 1]", double(s.clip)));
    return s;
}

} // namespace

KvCache::Impl::Impl(int n_layers_, int n_kv_heads_, int head_dim_, int max_position_embeddings,
                    const KvCacheOptions& options_, const KvCalibration* calibration,
                    Backend& backend_)
    : backend(backend_)
    , n_layers(n_layers_)
    , n_kv_heads(n_kv_heads_)
    , head_dim(head_dim_)
    , options(options_)
    , skvq((checked_skvq(options_), options_.k_type == KvType::skvq))
    , k_fmt(skvq ? cpu::skvq_format(options_.skvq.k_bits, options_.skvq.group, head_dim_)
                 : SkvqFormat {})
    , v_fmt(skvq ? cpu::skvq_format(options_.skvq.v_bits, options_.skvq.group, head_dim_)
                 : SkvqFormat {})
    , k_row_bytes(row_bytes(options_.k_type, k_fmt, head_dim_))
    , v_row_bytes(row_bytes(options_.v_type, v_fmt, head_dim_))
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
    if (!skvq) return;
    q_end = options.skvq.sink;
    fp.resize(size_t(n_layers));
    fp_block_floats = 2 * rows * size_t(head_dim);
    skvq_tables(calibration);
    k_perm_b = backend.wrap(k_perm.data(), k_perm.size() * sizeof(int32_t));
    v_perm_b = backend.wrap(v_perm.data(), v_perm.size() * sizeof(int32_t));
    k_clip_b = backend.wrap(k_clip.data(), k_clip.size() * sizeof(float));
    v_clip_b = backend.wrap(v_clip.data(), v_clip.size() * sizeof(float));
}

void KvCache::Impl::skvq_tables(const KvCalibration* calibration)
{
    const size_t heads = size_t(n_layers) * size_t(n_kv_heads), d = size_t(head_dim);
    const size_t n_groups = d / size_t(k_fmt.group); // K and V share the group size
    k_perm.resize(heads * d);
    for (size_t i = 0; i < k_perm.size(); ++i) k_perm[i] = int32_t(i % d);
    v_perm = k_perm;
    const float clip = options.skvq.clip > 0 ? options.skvq.clip : kSkvqDefaultClip;
    k_clip.assign(heads * n_groups, clip);
    v_clip.assign(heads * n_groups, clip);
    if (!calibration) return;
    if (calibration->n_layers != n_layers || calibration->n_kv_heads != n_kv_heads
        || calibration->head_dim != head_dim)
        throw Error(ErrorKind::invalid_argument, "SKVQ: the calibration is of another model shape");
    auto find = [&](const auto& map, const auto& key, const char* what) -> const auto&
    {
        auto it = map.find(key);
        if (it == map.end())
            throw Error(ErrorKind::invalid_argument,
                        strfmt("SKVQ: the calibration has no %s", what));
        return it->second;
    };
    const int g = k_fmt.group;
    k_perm = find(calibration->k_perm, g, strfmt("key order for groups of %d", g).c_str());
    v_perm = find(calibration->v_perm, g, strfmt("value order for groups of %d", g).c_str());
    if (options.skvq.clip > 0) return;
    const std::string k_key = strfmt("g%d.k%g", g, double(options.skvq.k_bits));
    const std::string v_key = strfmt("g%d.v%g", g, double(options.skvq.v_bits));
    k_clip = find(calibration->clip, k_key, ("clipping " + k_key).c_str());
    v_clip = find(calibration->clip, v_key, ("clipping " + v_key).c_str());
}

void KvCache::Impl::reserve(int n_total)
{
    const size_t need
        = (size_t(n_total) + size_t(options.block_tokens) - 1) / size_t(options.block_tokens);
    for (auto& layer : blocks)
        while (layer.size() < need) layer.push_back(backend.alloc(block_bytes));
}

void KvCache::Impl::store(int layer, int pos0, int n, const float* k_new, const float* v_new)
{
    const int bt = options.block_tokens;
    const int64_t d = head_dim, width = int64_t(n_kv_heads) * d;
    const auto& layer_blocks = blocks[size_t(layer)];
    // Token t's head h goes to row h·T + slot of its block: one call per token and side.
    for (int t = 0; t < n; ++t) {
        const int pos = pos0 + t;
        const size_t slot = size_t(pos % bt);
        if (skvq) {
            auto& f = fp[size_t(layer)];
            if (f.size() <= size_t(pos / bt)) f.resize(size_t(pos / bt) + 1);
            Buffer& block = f[size_t(pos / bt)];
            if (!block) block = backend.alloc(fp_block_floats * sizeof(float));
            auto* k_rows = block.as<uint8_t>() + slot * size_t(d) * sizeof(float);
            const size_t ld = size_t(bt) * size_t(d) * sizeof(float);
            backend.kv_store(KvType::f32, k_new + t * width, n_kv_heads, d, head_dim, k_rows, ld);
            backend.kv_store(KvType::f32, v_new + t * width, n_kv_heads, d, head_dim,
                             k_rows + fp_block_floats / 2 * sizeof(float), ld);
            continue;
        }
        uint8_t* block = layer_blocks[size_t(pos / bt)].as<uint8_t>();
        backend.kv_store(options.k_type, k_new + t * width, n_kv_heads, d, head_dim,
                         block + slot * k_row_bytes, size_t(bt) * k_row_bytes);
        backend.kv_store(options.v_type, v_new + t * width, n_kv_heads, d, head_dim,
                         block + v_offset + slot * v_row_bytes, size_t(bt) * v_row_bytes);
    }
}

int KvCache::Impl::quantized_end(int n_total) const
{
    return std::max(q_end, n_total - options.skvq.window);
}

void KvCache::Impl::settle(int layer, int n_total)
{
    if (!skvq || hold) return;
    const int bt = options.block_tokens, end = quantized_end(n_total);
    const int64_t d = head_dim, n_groups = d / k_fmt.group;
    auto& f = fp[size_t(layer)];
    const auto& layer_blocks = blocks[size_t(layer)];
    const size_t lh = size_t(layer) * size_t(n_kv_heads);
    const int32_t* k_perm_l = k_perm_b.as<int32_t>() + lh * size_t(d);
    const int32_t* v_perm_l = v_perm_b.as<int32_t>() + lh * size_t(d);
    const float* k_clip_l = k_clip_b.as<float>() + lh * size_t(n_groups);
    const float* v_clip_l = v_clip_b.as<float>() + lh * size_t(n_groups);
    for (int pos = q_end; pos < end; ++pos) {
        const size_t slot = size_t(pos % bt);
        const float* src = f[size_t(pos / bt)].as<float>() + slot * size_t(d);
        uint8_t* block = layer_blocks[size_t(pos / bt)].as<uint8_t>();
        const int64_t src_ld = int64_t(bt) * d;
        backend.skvq_store(k_fmt, src, n_kv_heads, src_ld, head_dim, k_perm_l, d, k_clip_l,
                           n_groups, block + slot * k_row_bytes, size_t(bt) * k_row_bytes);
        backend.skvq_store(v_fmt, src + fp_block_floats / 2, n_kv_heads, src_ld, head_dim, v_perm_l,
                           d, v_clip_l, n_groups, block + v_offset + slot * v_row_bytes,
                           size_t(bt) * v_row_bytes);
    }
    // Blocks whose tokens are all quantized now (none in the sink) need no f32 copy.
    for (int b = (options.skvq.sink + bt - 1) / bt; (b + 1) * bt <= end && size_t(b) < f.size();
         ++b)
        f[size_t(b)].reset();
}

void KvCache::Impl::settle_all()
{
    if (!skvq || hold) return;
    for (int l = 0; l < n_layers; ++l) settle(l, n_tokens);
    q_end = quantized_end(n_tokens);
}

void KvCache::Impl::truncate(int n)
{
    n_tokens = n;
    const size_t keep
        = (size_t(n) + size_t(options.block_tokens) - 1) / size_t(options.block_tokens);
    for (auto& layer : blocks)
        if (layer.size() > keep) layer.resize(keep);
    if (!skvq) return;
    for (auto& layer : fp)
        if (layer.size() > keep) layer.resize(keep);
    // Tokens quantized before stay so; the window refills with the tokens that come next.
    q_end = std::max(options.skvq.sink, std::min(q_end, n));
}

std::span<const KvRun> KvCache::Impl::runs(int layer, int n)
{
    const int bt = options.block_tokens;
    auto& out = run_list;
    out.clear();
    const auto& layer_blocks = blocks[size_t(layer)];
    const size_t k_stride = size_t(bt) * k_row_bytes, v_stride = size_t(bt) * v_row_bytes;
    if (!skvq) {
        for (int b = 0; b * bt < n; ++b) {
            const uint8_t* block = layer_blocks[size_t(b)].as<uint8_t>();
            out.push_back({block, block + v_offset, k_stride, v_stride, std::min(bt, n - b * bt),
                           options.k_type, options.v_type});
        }
        return out;
    }
    const size_t d = size_t(head_dim);
    const size_t lh = size_t(layer) * size_t(n_kv_heads) * d;
    const int sink = options.skvq.sink;
    for (int b = 0; b * bt < n; ++b) {
        const int b1 = std::min(n, (b + 1) * bt);
        for (int p = b * bt; p < b1;) {
            const bool exact = p < sink || p >= q_end;
            const int next = std::min(b1, p < sink ? sink : exact ? b1 : q_end);
            const size_t slot = size_t(p - b * bt);
            if (exact) {
                const float* block = fp[size_t(layer)][size_t(b)].as<float>();
                const auto* k = reinterpret_cast<const uint8_t*>(block + slot * d);
                out.push_back({k, k + fp_block_floats / 2 * sizeof(float),
                               size_t(bt) * d * sizeof(float), size_t(bt) * d * sizeof(float),
                               next - p, KvType::f32, KvType::f32});
            } else {
                const uint8_t* block = layer_blocks[size_t(b)].as<uint8_t>();
                out.push_back({block + slot * k_row_bytes, block + v_offset + slot * v_row_bytes,
                               k_stride, v_stride, next - p, KvType::skvq, KvType::skvq,
                               k_perm_b.as<int32_t>() + lh, v_perm_b.as<int32_t>() + lh, k_fmt,
                               v_fmt});
            }
            p = next;
        }
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
    for (const auto& layer : fp)
        for (const auto& b : layer) total += b.size();
    return total + scratch.bytes() + run_list.capacity() * sizeof(KvRun);
}

size_t ForwardScratch::bytes() const
{
    size_t total = 0;
    for (const Buffer* b : {&embed, &x, &h, &q, &kn, &vn, &attn, &gate, &up, &logits, &cos, &sin})
        total += b->size();
    if (attention) total += attention->bytes();
    return total + logits_host.capacity() * sizeof(float);
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

void KvCache::assign(const KvCache& other)
{
    Impl& c = *impl_;
    const Impl& o = *other.impl_;
    if (&c == &o) return;
    const KvCacheOptions &a = c.options, &b = o.options;
    const bool same_skvq = !c.skvq
        || (a.skvq.k_bits == b.skvq.k_bits && a.skvq.v_bits == b.skvq.v_bits
            && a.skvq.group == b.skvq.group && a.skvq.sink == b.skvq.sink
            && a.skvq.window == b.skvq.window && c.k_perm == o.k_perm && c.v_perm == o.v_perm
            && c.k_clip == o.k_clip && c.v_clip == o.v_clip);
    if (&c.backend != &o.backend || c.n_layers != o.n_layers || c.n_kv_heads != o.n_kv_heads
        || c.head_dim != o.head_dim || a.k_type != b.k_type || a.v_type != b.v_type
        || a.block_tokens != b.block_tokens || c.skvq != o.skvq || !same_skvq)
        throw Error(ErrorKind::invalid_argument,
                    "KV cache: cannot copy a cache of another shape, type or device ("
                        + kv_cache_name(b) + " into " + kv_cache_name(a) + ")");
    c.truncate(0);
    c.reserve(o.n_tokens);
    for (size_t l = 0; l < o.blocks.size(); ++l)
        for (size_t k = 0; k < c.blocks[l].size(); ++k)
            c.backend.copy(c.blocks[l][k].data(), o.blocks[l][k].data(), c.block_bytes);
    for (size_t l = 0; l < o.fp.size(); ++l) {
        c.fp[l].resize(o.fp[l].size());
        for (size_t k = 0; k < o.fp[l].size(); ++k) {
            if (!o.fp[l][k]) continue;
            c.fp[l][k] = c.backend.alloc(o.fp[l][k].size());
            c.backend.copy(c.fp[l][k].data(), o.fp[l][k].data(), o.fp[l][k].size());
        }
    }
    c.n_tokens = o.n_tokens;
    c.q_end = o.q_end;
    c.hold = o.hold;
    c.rope_len = o.rope_len;
}

size_t KvCache::bytes() const
{
    return impl_->bytes();
}

size_t KvCache::bytes_per_token() const
{
    return impl_->bytes_per_token();
}

void KvCache::append_random(int n, uint64_t seed)
{
    Impl& c = *impl_;
    const int width = c.n_kv_heads * c.head_dim, chunk = 512;
    std::vector<float> k(size_t(chunk) * size_t(width)), v(k.size());
    Buffer kb = c.backend.alloc(k.size() * sizeof(float)), vb = c.backend.alloc(kb.size());
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    auto uniform = [&] { // xorshift64*, in [-1, 1)
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
        return float((x * 0x2545F4914F6CDD1Dull) >> 40) / float(1 << 23) - 1.f;
    };
    for (int at = 0; at < n; at += chunk) {
        const int m = std::min(chunk, n - at), pos0 = c.n_tokens;
        c.reserve(pos0 + m);
        for (int l = 0; l < c.n_layers; ++l) {
            for (size_t i = 0; i < size_t(m) * size_t(width); ++i) {
                const float offset = float(int(i % size_t(width) % 5) - 2);
                k[i] = uniform() * (0.5f + float(i % 7)) + offset;
                v[i] = uniform();
            }
            c.backend.upload(kb.data(), k.data(), size_t(m) * size_t(width) * sizeof(float));
            c.backend.upload(vb.data(), v.data(), size_t(m) * size_t(width) * sizeof(float));
            c.store(l, pos0, m, kb.as<float>(), vb.as<float>());
            c.settle(l, pos0 + m);
        }
        if (c.skvq && !c.hold) c.q_end = c.quantized_end(pos0 + m);
        c.n_tokens = pos0 + m;
    }
}

void KvCache::hold_quantization()
{
    impl_->hold = true;
}

void KvCache::release_quantization()
{
    impl_->hold = false;
    impl_->settle_all();
}

const KvCacheOptions& KvCache::options() const
{
    return impl_->options;
}

} // namespace iris::model
