// InternVL: checkpoint loading, the vision → LLM hand-over (<IMG_CONTEXT> replacement,
// docs/model.md §3.1) and the public entry points of the network.
#include "model/arch.h"
#include "model/cpu/ops.h"
#include "model/network-impl.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>

namespace iris::model {

// ---------------------------------------------------------------------------------------------
// Weights

int64_t Weight::numel() const
{
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Weight Weight::from_values(std::vector<float> values, std::vector<int64_t> shape)
{
    Weight w;
    w.owned = std::move(values);
    w.data = w.owned.data();
    w.shape = std::move(shape);
    return w;
}

void Weight::place(Backend& backend)
{
    if (mat) {
        const bool same = data == mat.data;
        placed = backend.wrap(mat.data, mat.bytes());
        mat.data = placed.data();
        if (same) data = placed.as<float>();
    } else if (data) {
        placed = backend.wrap(data, size_t(numel()) * sizeof(float));
        data = placed.as<float>();
    }
}

namespace {

std::string shape_str(const std::vector<int64_t>& shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// GGUF writers keep or drop leading dimensions of 1 ([1, 1, C] or [C]); both are the tensor.
std::span<const int64_t> without_leading_ones(const std::vector<int64_t>& shape)
{
    size_t i = 0;
    while (i + 1 < shape.size() && shape[i] == 1) ++i;
    return std::span<const int64_t>(shape).subspan(i);
}

bool same_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b)
{
    const auto x = without_leading_ones(a), y = without_leading_ones(b);
    return std::equal(x.begin(), x.end(), y.begin(), y.end());
}

bool is_half(cpu::WeightType t)
{
    return t == cpu::WeightType::bf16 || t == cpu::WeightType::f16;
}

// How many of an f32, bf16 or f16 tensor's values are NaN or infinite (all exponent bits set);
// 0 for ggml's blocks, whose scales only a forward pass would widen.
int64_t count_non_finite(const SourceTensor& t)
{
    const int64_t n = t.numel();
    int bytes = 0;
    uint32_t exponent = 0;
    switch (*t.type) {
    case cpu::WeightType::f32:
        bytes = 4, exponent = 0x7F800000u;
        break;
    case cpu::WeightType::bf16:
        bytes = 2, exponent = 0x7F80u;
        break;
    case cpu::WeightType::f16:
        bytes = 2, exponent = 0x7C00u;
        break;
    default:
        return 0;
    }
    std::atomic<int64_t> bad {0};
    cpu::parallel_range(n, 1 << 18, [&](int64_t lo, int64_t hi) {
        int64_t local = 0;
        for (int64_t i = lo; i < hi; ++i) {
            uint32_t bits = 0;
            std::memcpy(&bits, t.data + size_t(i) * size_t(bytes), size_t(bytes));
            local += (bits & exponent) == exponent;
        }
        bad += local;
    });
    return bad;
}

} // namespace

int64_t SourceTensor::numel() const
{
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

WeightLoader::WeightLoader(const TensorSource& source,
                           std::function<void(float, const char*)> progress)
    : source_(source)
    , progress_(std::move(progress))
    , bytes_total_(source.total_bytes())
{ }

bool WeightLoader::has(const std::string& name) const
{
    return source_.find(name) != nullptr;
}

Weight WeightLoader::get_optional(const std::string& name, const std::vector<int64_t>& shape)
{
    if (!has(name)) return {};
    return get(name, shape);
}

Weight WeightLoader::get_matrix_optional(const std::string& name, const std::vector<int64_t>& shape)
{
    if (!has(name)) return {};
    return get_matrix(name, shape);
}

const SourceTensor& WeightLoader::find_checked(const std::string& name,
                                               const std::vector<int64_t>& shape) const
{
    const SourceTensor* t = source_.find(name);
    if (!t) throw Error(ErrorKind::not_found, source_.describe(name) + " is missing");
    if (!same_shape(t->shape, shape))
        throw Error(ErrorKind::invalid_input,
                    strfmt("%s has shape %s, expected %s from the configuration",
                           source_.describe(name).c_str(), shape_str(t->shape).c_str(),
                           shape_str(shape).c_str()));
    if (!t->type)
        throw Error(ErrorKind::unsupported,
                    strfmt("%s has type %s, which Iris cannot compute on",
                           source_.describe(name).c_str(), t->type_name.c_str()));
    return *t;
}

void WeightLoader::done(const SourceTensor& t, const std::string& name)
{
    // PyTorch loads such weights silently and answers with NaN, or garbage where only some rows
    // are hit (a padded vocabulary's unused rows may hold anything): a tensor that is NaN or
    // infinite throughout cannot be meant and is refused; a partly bad one is named.
    if (const int64_t bad = count_non_finite(t); bad > 0) {
        if (bad == t.numel())
            throw Error(
                ErrorKind::invalid_input,
                strfmt("%s holds only NaN or infinite values", source_.describe(name).c_str()));
        IRIS_LOG_WARN("%s holds %lld NaN or infinite values of %lld; outputs that use them will "
                      "be NaN",
                      source_.describe(name).c_str(), (long long)bad, (long long)t.numel());
    }
    bytes_done_ += t.nbytes;
    if (progress_ && bytes_total_ > 0)
        progress_(float(double(bytes_done_) / double(bytes_total_)), name.c_str());
}

Weight WeightLoader::get_matrix(const std::string& name, const std::vector<int64_t>& shape)
{
    const SourceTensor& t = find_checked(name, shape);
    if (shape.size() < 2)
        throw Error(ErrorKind::internal, strfmt("%s is not a matrix", name.c_str()));
    const cpu::WeightType type = *t.type;
    if (type == cpu::WeightType::f32) {
        Weight w = get(name, shape);
        w.mat = WeightMatrix::f32(w.data, shape[0], w.numel() / shape[0]);
        return w;
    }
    Weight w;
    w.shape = shape;
    const void* src = t.data;
    if (reinterpret_cast<uintptr_t>(t.data) % alignof(uint16_t) == 0) {
        // In place: no conversion at load, the pages come from the page cache on first use.
        bytes_mapped_ += t.nbytes;
    } else {
        w.owned_raw.assign(t.data, t.data + t.nbytes);
        src = w.owned_raw.data();
        bytes_owned_ += t.nbytes;
    }
    w.mat = {src, type, shape[0], t.numel() / shape[0],
             type == cpu::WeightType::bf16 && precision_ == Precision::bf16};
    done(t, name);
    return w;
}

Weight WeightLoader::stack_rows(std::vector<Weight> parts)
{
    const WeightMatrix& first = parts.at(0).mat;
    int64_t rows = 0;
    bool in_place = true;
    for (size_t i = 0; i < parts.size(); ++i) {
        const WeightMatrix& m = parts[i].mat;
        if (m.type != first.type || m.cols != first.cols)
            throw Error(ErrorKind::invalid_input,
                        source_.origin() + ": the parts of a fused matrix differ in type or width");
        in_place = in_place && parts[i].owned.empty() && parts[i].owned_raw.empty()
            && (i == 0 || m.data == parts[i - 1].mat.row(parts[i - 1].mat.rows));
        rows += m.rows;
    }
    Weight w;
    w.shape = {rows, first.cols};
    if (in_place) {
        w.mat = first;
        w.mat.rows = rows;
        w.data
            = static_cast<const float*>(first.type == cpu::WeightType::f32 ? first.data : nullptr);
        return w;
    }
    const size_t rb = first.row_bytes();
    uint8_t* dst;
    if (first.type == cpu::WeightType::f32) {
        w.owned.resize(size_t(rows * first.cols));
        dst = reinterpret_cast<uint8_t*>(w.owned.data());
        w.data = w.owned.data();
    } else {
        w.owned_raw.resize(size_t(rows) * rb);
        dst = w.owned_raw.data();
    }
    for (const Weight& p : parts) {
        const size_t n = size_t(p.mat.rows) * rb;
        std::memcpy(dst, p.mat.data, n);
        if (p.owned.empty() && p.owned_raw.empty()) mapped_to_owned(n);
        dst += n;
    }
    w.mat = {w.data ? static_cast<const void*>(w.data) : w.owned_raw.data(), first.type, rows,
             first.cols, first.bf16_activations};
    return w;
}

Weight WeightLoader::quantized(Weight w, const TensorRole& role)
{
    if (!mix_ || role.kind == TensorRole::keep || !w.mat || cpu::is_quantized(w.mat.type)) return w;
    const int64_t rows = w.mat.rows, cols = w.mat.cols;
    const cpu::WeightType type = mix_->type_for(role, cols, n_gqa_);
    if (type == w.mat.type) return w;
    Weight q;
    q.shape = w.shape;
    const size_t rb = cpu::weight_row_bytes(type, cols);
    q.owned_raw.resize(size_t(rows) * rb);
    uint8_t* dst = q.owned_raw.data();
    cpu::parallel_range(rows, 16, [&](int64_t lo, int64_t hi) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = lo; r < hi; ++r) {
            cpu::widen_rows(w.mat, r, r + 1, row.data());
            cpu::quantize_row(type, row.data(), cols, dst + size_t(r) * rb);
        }
    });
    q.mat = {dst, type, rows, cols};
    const size_t before = size_t(rows) * w.mat.row_bytes();
    if (w.owned.empty() && w.owned_raw.empty())
        bytes_mapped_ -= std::min(before, bytes_mapped_);
    else
        bytes_owned_ -= std::min(before, bytes_owned_);
    bytes_owned_ += q.owned_raw.size();
    return q;
}

Weight WeightLoader::get(const std::string& name, const std::vector<int64_t>& shape)
{
    const SourceTensor& t = find_checked(name, shape);
    Weight w;
    w.shape = shape;
    const int64_t n = t.numel();
    const cpu::WeightType type = *t.type;
    if (type == cpu::WeightType::f32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {
        // In place: the pages are read from the file on first use and shared with the page cache.
        w.data = reinterpret_cast<const float*>(t.data);
        bytes_mapped_ += t.nbytes;
    } else if (is_half(type)) {
        // Converted once to f32: only small tensors come here (matrices use get_matrix).
        w.owned.resize(size_t(n));
        float* dst = w.owned.data();
        const uint8_t* src = t.data;
        const bool bf16 = type == cpu::WeightType::bf16;
        cpu::parallel_range(n, 1 << 16, [&](int64_t lo, int64_t hi) {
            for (int64_t i = lo; i < hi; ++i) {
                uint16_t bits;
                std::memcpy(&bits, src + 2 * i, 2);
                dst[i] = bf16 ? bf16_to_f32(bits) : f16_to_f32(bits);
            }
        });
        w.data = dst;
        bytes_owned_ += size_t(n) * sizeof(float);
    } else if (type == cpu::WeightType::f32) {
        w.owned.resize(size_t(n));
        std::memcpy(w.owned.data(), t.data, t.nbytes);
        w.data = w.owned.data();
        bytes_owned_ += size_t(n) * sizeof(float);
    } else {
        // ggml's blocks (a quantized norm or bias, which llama-quantize never writes but a
        // GGUF may hold): dequantized row by row, rows being the innermost dimension.
        const int64_t cols = t.shape.back();
        std::vector<uint8_t> raw(t.data, t.data + t.nbytes); // the mapping may be unaligned
        w.owned.resize(size_t(n));
        cpu::widen_rows({raw.data(), type, n / cols, cols}, 0, n / cols, w.owned.data());
        w.data = w.owned.data();
        bytes_owned_ += size_t(n) * sizeof(float);
    }
    done(t, name);
    return w;
}

// ---------------------------------------------------------------------------------------------
// InternVL

InternVL::InternVL(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl))
{ }

InternVL::~InternVL() = default;

std::unique_ptr<InternVL> InternVL::load(const std::string& model, const LoadOptions& options)
{
    const int64_t t0 = now_us();
    cpu::init_blas();
    const ModelPaths paths = ModelPaths::resolve(model, options.mmproj);
    auto impl = std::make_unique<Impl>();
    impl->backend = &device_backend(options.device); // before the weights: a wrong name fails fast
    std::optional<TensorSource> source;
    if (paths.is_gguf()) {
        if (paths.mmproj.empty())
            throw Error(ErrorKind::not_found,
                        paths.gguf
                            + " is a language model alone, and Iris needs its vision tower too: "
                              "give llama.cpp's mmproj file with --mmproj (no mmproj*.gguf is "
                              "beside it)");
        if (options.progress) options.progress(0.f, "GGUF metadata");
        impl->llm_gguf = GgufFile::open(paths.gguf);
        impl->mmproj_gguf = GgufFile::open(paths.mmproj);
        impl->config = gguf_model_config(*impl->llm_gguf, *impl->mmproj_gguf);
        source = TensorSource::from_gguf(*impl->llm_gguf, *impl->mmproj_gguf);
    } else {
        if (options.progress) options.progress(0.f, "config.json");
        impl->config = ModelConfig::load(paths.dir + "/config.json");
        impl->weights = WeightSet::open_dir(paths.dir);
        source = TensorSource::from_checkpoint(*impl->weights, impl->config, paths.dir);
    }

    impl->file_weights = source->stats();
    WeightLoader loader(*source, options.progress);
    loader.set_precision(options.precision);
    if (!options.quantize.empty()) {
        const LlmConfig& c = impl->config.llm;
        loader.quantize_with(QuantMix::parse(options.quantize),
                             c.num_attention_heads / std::max(1, c.num_key_value_heads));
    }
    load_vision(loader, impl->config, impl->vision);
    load_llm(loader, impl->config.llm, impl->llm);
    place(*impl->backend, impl->vision);
    place(*impl->backend, impl->llm);
    impl->bytes_owned = loader.bytes_owned();
    impl->bytes_mapped = loader.bytes_mapped();
    const std::string calibration = kv_calibration_path(paths.dir);
    if (std::filesystem::exists(calibration)) {
        const LlmConfig& c = impl->config.llm;
        impl->kv_calibration = KvCalibration::load(calibration, c.num_hidden_layers,
                                                   c.num_key_value_heads, c.head_dim);
    }
    if (options.progress) options.progress(1.f, "done");

    IRIS_LOG_INFO("loaded %s (%s, %d+%d layers) in %.0f ms: %.1f MB converted, %.1f MB mapped, "
                  "%d threads",
                  paths.is_gguf() ? paths.gguf.c_str() : paths.dir.c_str(),
                  llm_arch(impl->config.llm.arch).display, impl->config.vision.num_hidden_layers,
                  impl->config.llm.num_hidden_layers, double(now_us() - t0) / 1000.0,
                  double(impl->bytes_owned) / 1e6, double(impl->bytes_mapped) / 1e6,
                  cpu::n_threads());
    // The constructor is private, out of make_unique's reach.
    return std::unique_ptr<InternVL>(new InternVL(std::move(impl)));
}

const char* precision_name(Precision p)
{
    return p == Precision::bf16 ? "bf16" : "f32";
}

Precision precision_from_name(std::string_view name)
{
    if (name == "f32") return Precision::f32;
    if (name == "bf16") return Precision::bf16;
    throw Error(ErrorKind::invalid_argument,
                "unknown precision \"" + std::string(name) + "\"; use f32 or bf16");
}

const ModelConfig& InternVL::config() const
{
    return impl_->config;
}

int InternVL::num_image_token() const
{
    return impl_->config.num_image_token();
}

std::string InternVL::device() const
{
    return std::string(impl_->backend->name());
}

size_t InternVL::weight_bytes_owned() const
{
    return impl_->bytes_owned;
}
size_t InternVL::weight_bytes_mapped() const
{
    return impl_->bytes_mapped;
}

const InternVL::FileWeights& InternVL::file_weights() const
{
    return impl_->file_weights;
}

std::vector<float> InternVL::encode_images(std::span<const float> pixel_values, int n_tiles,
                                           VisionTrace* trace) const
{
    const ModelConfig& c = impl_->config;
    const int64_t s = c.force_image_size;
    const int64_t per_tile = int64_t(c.vision.num_channels) * s * s;
    if (n_tiles < 0 || int64_t(pixel_values.size()) != int64_t(n_tiles) * per_tile)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("encode_images: %zu pixel values for %d tiles of %d×%lld×%lld",
                           pixel_values.size(), n_tiles, c.vision.num_channels, (long long)s,
                           (long long)s));
    const int grid = int(s / c.vision.patch_size);
    const int r = int(std::lround(1.0 / double(c.downsample_ratio)));
    if (s % c.vision.patch_size != 0 || r <= 0 || grid % r != 0)
        throw Error(
            ErrorKind::unsupported,
            strfmt("encode_images: tiles of %lld px do not give a patch grid divisible by %d",
                   (long long)s, r));
    if (n_tiles == 0) return {};
    return vision_forward(*impl_->backend, impl_->vision, c, pixel_values.data(), n_tiles, trace);
}

std::unique_ptr<KvCache> InternVL::new_cache(const KvCacheOptions& options) const
{
    const LlmConfig& c = impl_->config.llm;
    auto impl = std::make_unique<KvCache::Impl>(
        c.num_hidden_layers, c.num_key_value_heads, c.head_dim, c.max_position_embeddings, options,
        impl_->kv_calibration ? &*impl_->kv_calibration : nullptr, *impl_->backend);
    return std::unique_ptr<KvCache>(new KvCache(std::move(impl))); // a private constructor
}

const KvCalibration* InternVL::kv_calibration() const
{
    return impl_->kv_calibration ? &*impl_->kv_calibration : nullptr;
}

namespace {

// The embeddings of ids into out [ids.size(), H] in backend memory (see InternVL::embed): rows
// of the table, looked up and widened on the backend a stretch of text tokens at a time, and
// the visual tokens uploaded in place of the <IMG_CONTEXT> ones.
void embed_into(Backend& be, const LlmWeights& w, const LlmConfig& c, std::span<const int32_t> ids,
                std::span<const float> visual, int32_t img_context_id, float* out)
{
    const int64_t h = c.hidden_size;
    if (visual.size() % size_t(h) != 0)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("visual tokens: %zu values is not a multiple of the hidden size %lld",
                           visual.size(), (long long)h));
    const size_t n_visual = visual.size() / size_t(h);
    size_t n_ctx = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= c.vocab_size)
            throw Error(ErrorKind::invalid_argument,
                        strfmt("token id %d at position %zu is outside the vocabulary (%d)", ids[i],
                               i, c.vocab_size));
        n_ctx += ids[i] == img_context_id;
    }
    if (n_ctx != n_visual)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("%zu <IMG_CONTEXT> tokens (id %d) but %zu visual tokens", n_ctx,
                           img_context_id, n_visual));
    const size_t row = size_t(h) * sizeof(float);
    for (size_t i = 0, next_visual = 0; i < ids.size();) {
        size_t j = i;
        if (ids[i] == img_context_id) {
            while (j < ids.size() && ids[j] == img_context_id) ++j;
            be.upload(out + i * size_t(h), visual.data() + next_visual * size_t(h), (j - i) * row);
            next_visual += j - i;
        } else {
            while (j < ids.size() && ids[j] != img_context_id) ++j;
            be.get_rows(w.embed.mat, ids.subspan(i, j - i), out + i * size_t(h));
        }
        i = j;
    }
}

} // namespace

std::vector<float> InternVL::embed(std::span<const int32_t> ids, std::span<const float> visual,
                                   int32_t img_context_id) const
{
    Backend& be = *impl_->backend;
    const size_t n = ids.size() * size_t(impl_->config.llm.hidden_size);
    Buffer buf = be.alloc(n * sizeof(float));
    embed_into(be, impl_->llm, impl_->config.llm, ids, visual, img_context_id, buf.as<float>());
    std::vector<float> out(n);
    be.download(out.data(), buf.data(), n * sizeof(float));
    return out;
}

std::span<const float> InternVL::forward(KvCache& cache, std::span<const int32_t> ids,
                                         std::span<const float> visual, int32_t img_context_id,
                                         bool all_logits, LlmTrace* trace) const
{
    const LlmConfig& c = impl_->config.llm;
    if (ids.empty()) throw Error(ErrorKind::invalid_argument, "forward: no tokens");
    KvCache::Impl& kv = cache_impl(cache);
    // The embeddings go to the cache's scratch: a decode step allocates nothing.
    float* buf = grow<float>(kv.backend, kv.scratch.embed, ids.size() * size_t(c.hidden_size));
    embed_into(kv.backend, impl_->llm, c, ids, visual, img_context_id, buf);
    const LlmSequence seq {&kv, int(ids.size())};
    return llm_forward(impl_->llm, c, {&seq, 1}, kv.backend, kv.scratch, buf, all_logits, trace);
}

std::span<const float> InternVL::forward_embeddings(KvCache& cache,
                                                    std::span<const float> embeddings, int n_tokens,
                                                    bool all_logits, LlmTrace* trace) const
{
    const LlmConfig& c = impl_->config.llm;
    if (n_tokens <= 0 || embeddings.size() != size_t(n_tokens) * size_t(c.hidden_size))
        throw Error(ErrorKind::invalid_argument,
                    strfmt("forward_embeddings: %zu values for %d tokens of width %d",
                           embeddings.size(), n_tokens, c.hidden_size));
    KvCache::Impl& kv = cache_impl(cache);
    float* buf = grow<float>(kv.backend, kv.scratch.embed, embeddings.size());
    kv.backend.upload(buf, embeddings.data(), embeddings.size() * sizeof(float));
    const LlmSequence seq {&kv, n_tokens};
    return llm_forward(impl_->llm, c, {&seq, 1}, kv.backend, kv.scratch, buf, all_logits, trace);
}

Batch::Batch(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl))
{ }
Batch::~Batch() = default;

size_t Batch::bytes() const
{
    return impl_->scratch.bytes();
}

std::unique_ptr<Batch> InternVL::new_batch() const
{
    return std::unique_ptr<Batch>(new Batch(std::make_unique<Batch::Impl>()));
}

std::span<const float> InternVL::forward_batch(Batch& batch, std::span<const BatchItem> items) const
{
    const LlmConfig& c = impl_->config.llm;
    Backend& be = *impl_->backend;
    if (items.empty()) throw Error(ErrorKind::invalid_argument, "forward_batch: no items");
    size_t n = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        const BatchItem& item = items[i];
        if (!item.cache || item.ids.empty())
            throw Error(
                ErrorKind::invalid_argument,
                strfmt("forward_batch: item %zu has no %s", i, item.cache ? "tokens" : "cache"));
        if (&cache_impl(*item.cache).backend != &be)
            throw Error(ErrorKind::invalid_argument,
                        strfmt("forward_batch: the cache of item %zu is on %s, the model on %s", i,
                               std::string(cache_impl(*item.cache).backend.name()).c_str(),
                               std::string(be.name()).c_str()));
        for (size_t j = 0; j < i; ++j)
            if (items[j].cache == item.cache)
                throw Error(ErrorKind::invalid_argument,
                            strfmt("forward_batch: items %zu and %zu share a cache", j, i));
        n += item.ids.size();
    }
    // Every item embedded (and so checked) before any cache changes.
    ForwardScratch& s = batch.impl_->scratch;
    float* buf = grow<float>(be, s.embed, n * size_t(c.hidden_size));
    auto& seqs = batch.impl_->sequences;
    seqs.clear();
    size_t row = 0;
    for (const BatchItem& item : items) {
        embed_into(be, impl_->llm, c, item.ids, item.visual, item.img_context_id,
                   buf + row * size_t(c.hidden_size));
        seqs.push_back({&cache_impl(*item.cache), int(item.ids.size())});
        row += item.ids.size();
    }
    return llm_forward(impl_->llm, c, seqs, be, s, buf, false, nullptr);
}

} // namespace iris::model
