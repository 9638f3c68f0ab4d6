// SKVQ calibration (docs/skvq.md §2): the channel order and clipping factors of the skvq KV
// cache, computed from keys and values of calibration prompts, and their sidecar file.
//
// Deviations from SKVQ's calibration.py, for the attention kernel's sake: clusters are formed
// inside each KV head (attention dequantizes one head at a time) and hold exactly `group`
// channels (every row then has the same layout), so the k-means is a balanced one: points go to
// their nearest centroid with room, closest pairs first. The features are SKVQ's "minmax":
// each channel's (min, max) over the calibration tokens. Keys are the cached, rotated ones
// (network-impl.h says why). Clipping is the paper's group-wise variant: per group and bit
// width, the α of 0.80, 0.82, ..., 1.00 with the least squared error over the tokens.
#include "model/cpu/ops.h"
#include "model/network-impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>

namespace iris::model {

namespace {

constexpr const char* kFormat = "iris-kv-calibration";
constexpr int kGroupOptions[] = {32, 64, 128};
constexpr float kKeyBits[] = {2.f, 4.f, 8.f};
constexpr float kValueBits[] = {1.5f, 2.f, 4.f, 8.f};

// The distinct group sizes the options give for this head_dim (e.g. {32, 64} for D = 64).
std::vector<int> group_sizes(int head_dim)
{
    std::vector<int> out;
    for (int g : kGroupOptions) {
        const int eff = cpu::skvq_format(2.f, g, head_dim).group;
        if (std::find(out.begin(), out.end(), eff) == out.end()) out.push_back(eff);
    }
    return out;
}

std::string perm_name(int g, char side)
{
    return strfmt("g%d.%c.perm", g, side);
}

std::string clip_name(int g, char side, float bits)
{
    return strfmt("g%d.%c%g", g, side, double(bits));
}

// Squared error of one group of n tokens (x [n, stride], the group's channels `ch`) quantized
// with clipping a: the formulas of cpu::skvq_quantize_row with fp16 parameters.
double group_error(const float* x, int64_t n, int64_t stride, const int32_t* ch, int g, int levels,
                   float a)
{
    const float max_int = float(levels - 1);
    double err = 0;
    for (int64_t t = 0; t < n; ++t) {
        const float* row = x + t * stride;
        float mn = INFINITY, mx = -INFINITY;
        for (int j = 0; j < g; ++j) {
            mn = std::min(mn, row[ch[j]]);
            mx = std::max(mx, row[ch[j]]);
        }
        const float gmin = a * mn, scale = std::max((a * mx - gmin) / max_int, 1e-5f);
        const float s16 = f16_to_f32(f32_to_f16(scale)), z16 = f16_to_f32(f32_to_f16(gmin));
        for (int j = 0; j < g; ++j) {
            const float v = row[ch[j]], u = (v - gmin) / scale;
            const float q = std::nearbyint(u > 0.f ? std::min(u, max_int) : 0.f);
            const double e = double(q * s16 + z16) - double(v);
            err += e * e;
        }
    }
    return err;
}

[[noreturn]] void bad_file(const std::string& path, const std::string& what)
{
    throw Error(ErrorKind::invalid_input,
                strfmt("KV calibration %s: %s (delete it or run iris calibrate-kv again)",
                       path.c_str(), what.c_str()));
}

} // namespace

// Balanced k-means of the channels with features (lo, hi): the stored order lists the clusters
// by their centre, each cluster's channels ascending.
std::vector<int32_t> cluster_channels(const std::vector<float>& lo, const std::vector<float>& hi,
                                      int g)
{
    const int d = int(lo.size()), k = d / g;
    std::vector<int> order(static_cast<size_t>(d)), label(static_cast<size_t>(d));
    std::iota(order.begin(), order.end(), 0);
    auto mid = [&](int c) { return lo[size_t(c)] + hi[size_t(c)]; };
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return mid(a) < mid(b); });
    for (int i = 0; i < d; ++i) label[size_t(order[size_t(i)])] = i / g;
    std::vector<float> cx(static_cast<size_t>(k)), cy(static_cast<size_t>(k));
    struct Pair
    {
        float dist;
        int c, cluster;
    };
    std::vector<Pair> pairs;
    for (int iter = 0; iter < 20; ++iter) {
        std::fill(cx.begin(), cx.end(), 0.f);
        std::fill(cy.begin(), cy.end(), 0.f);
        for (int c = 0; c < d; ++c) {
            cx[size_t(label[size_t(c)])] += lo[size_t(c)] / float(g);
            cy[size_t(label[size_t(c)])] += hi[size_t(c)] / float(g);
        }
        pairs.clear();
        for (int c = 0; c < d; ++c)
            for (int j = 0; j < k; ++j) {
                const float dx = lo[size_t(c)] - cx[size_t(j)], dy = hi[size_t(c)] - cy[size_t(j)];
                pairs.push_back({dx * dx + dy * dy, c, j});
            }
        std::stable_sort(pairs.begin(), pairs.end(),
                         [](const Pair& a, const Pair& b) { return a.dist < b.dist; });
        std::vector<int> next(static_cast<size_t>(d), -1), room(static_cast<size_t>(k), g);
        for (const Pair& p : pairs)
            if (next[size_t(p.c)] < 0 && room[size_t(p.cluster)] > 0) {
                next[size_t(p.c)] = p.cluster;
                --room[size_t(p.cluster)];
            }
        if (next == label) break;
        label = next;
    }
    std::vector<int> clusters(static_cast<size_t>(k));
    std::iota(clusters.begin(), clusters.end(), 0);
    std::vector<float> centre(static_cast<size_t>(k), 0.f);
    for (int c = 0; c < d; ++c) centre[size_t(label[size_t(c)])] += mid(c);
    std::stable_sort(clusters.begin(), clusters.end(),
                     [&](int a, int b) { return centre[size_t(a)] < centre[size_t(b)]; });
    std::vector<int32_t> perm;
    for (int j : clusters)
        for (int c = 0; c < d; ++c)
            if (label[size_t(c)] == j) perm.push_back(c);
    return perm;
}

std::string kv_calibration_path(const std::string& model_dir)
{
    return model_dir + "/kv-calibration.safetensors";
}

void KvCalibration::save(const std::string& path) const
{
    SafeTensorsWriter w;
    w.set_metadata("format", kFormat);
    w.set_metadata("version", "1");
    w.set_metadata("layers", std::to_string(n_layers));
    w.set_metadata("kv_heads", std::to_string(n_kv_heads));
    w.set_metadata("head_dim", std::to_string(head_dim));
    const std::vector<int64_t> perm_shape = {n_layers, n_kv_heads, head_dim};
    for (const auto* side : {&k_perm, &v_perm})
        for (const auto& [g, perm] : *side) {
            const std::vector<int64_t> v(perm.begin(), perm.end());
            w.add_i64(perm_name(g, side == &k_perm ? 'k' : 'v'), perm_shape, v);
        }
    for (const auto& [name, alpha] : clip) {
        const int g = std::atoi(name.c_str() + 1);
        w.add_f32(name, {n_layers, n_kv_heads, head_dim / std::max(g, 1)}, alpha);
    }
    w.write(path);
}

KvCalibration KvCalibration::load(const std::string& path, int n_layers, int n_kv_heads,
                                  int head_dim)
{
    std::optional<SafeTensors> st;
    try {
        st.emplace(SafeTensors::open(path));
    } catch (const Error& e) {
        bad_file(path, e.what());
    }
    auto meta = [&](const char* key) {
        auto it = st->metadata().find(key);
        return it == st->metadata().end() ? std::string() : it->second;
    };
    if (meta("format") != kFormat || meta("version") != "1")
        bad_file(path, strfmt("not a version 1 %s file", kFormat));
    if (meta("layers") != std::to_string(n_layers) || meta("kv_heads") != std::to_string(n_kv_heads)
        || meta("head_dim") != std::to_string(head_dim))
        bad_file(path,
                 strfmt("made for %s layers, %s KV heads of %s channels; this model has "
                        "%d, %d of %d",
                        meta("layers").c_str(), meta("kv_heads").c_str(), meta("head_dim").c_str(),
                        n_layers, n_kv_heads, head_dim));
    KvCalibration c;
    c.n_layers = n_layers;
    c.n_kv_heads = n_kv_heads;
    c.head_dim = head_dim;
    const int64_t heads = int64_t(n_layers) * n_kv_heads;
    auto tensor = [&](const std::string& name, int64_t last) -> const TensorInfo& {
        const TensorInfo* t = st->find(name);
        if (!t) bad_file(path, "no tensor " + name);
        if (t->shape != std::vector<int64_t> {n_layers, n_kv_heads, last})
            bad_file(path, "tensor " + name + " has the wrong shape");
        return *t;
    };
    for (int g : group_sizes(head_dim)) {
        for (char side : {'k', 'v'}) {
            const std::string name = perm_name(g, side);
            const TensorInfo& t = tensor(name, head_dim);
            if (t.dtype != DType::i64) bad_file(path, name + " is not I64");
            const std::vector<int64_t> v = t.to_i64();
            std::vector<int32_t> perm(v.size());
            for (int64_t h = 0; h < heads; ++h) {
                std::vector<bool> seen(static_cast<size_t>(head_dim), false);
                for (int j = 0; j < head_dim; ++j) {
                    const int64_t ch = v[size_t(h * head_dim + j)];
                    if (ch < 0 || ch >= head_dim || seen[size_t(ch)])
                        bad_file(path,
                                 strfmt("%s of layer %lld head %lld is not a permutation",
                                        name.c_str(), (long long)(h / n_kv_heads),
                                        (long long)(h % n_kv_heads)));
                    seen[size_t(ch)] = true;
                    perm[size_t(h * head_dim + j)] = int32_t(ch);
                }
            }
            (side == 'k' ? c.k_perm : c.v_perm)[g] = std::move(perm);
        }
        auto read_clip = [&](char side, float bits) {
            const std::string name = clip_name(g, side, bits);
            const TensorInfo& t = tensor(name, head_dim / g);
            if (t.dtype != DType::f32) bad_file(path, name + " is not F32");
            std::vector<float> alpha = t.to_f32();
            for (float a : alpha)
                if (!(a >= 0.5f && a <= 1.f))
                    bad_file(path,
                             strfmt("%s holds %g, outside [0.5, 1]", name.c_str(), double(a)));
            c.clip[name] = std::move(alpha);
        };
        for (float b : kKeyBits) read_clip('k', b);
        for (float b : kValueBits) read_clip('v', b);
    }
    return c;
}

KvCalibration calibrate_kv(const InternVL& net, std::span<const std::vector<float>> prompts,
                           int max_tokens, const std::function<void(float, const char*)>& progress)
{
    const LlmConfig& lc = net.config().llm;
    const int n_layers = lc.num_hidden_layers, n_kv = lc.num_key_value_heads, d = lc.head_dim;
    const int64_t width = int64_t(n_kv) * d, h = lc.hidden_size;
    int64_t total = 0;
    for (const auto& p : prompts) {
        if (p.empty() || p.size() % size_t(h) != 0)
            throw Error(ErrorKind::invalid_argument,
                        "calibrate_kv: a prompt is not a non-empty [n, hidden] embedding");
        total += int64_t(p.size()) / h;
    }
    if (total == 0) throw Error(ErrorKind::invalid_argument, "calibrate_kv: no prompts");
    // Every stride-th token of all prompts, so that at most max_tokens are kept per layer.
    const int64_t stride = (total + max_tokens - 1) / std::max(max_tokens, 1);
    std::vector<std::vector<float>> keys(static_cast<size_t>(n_layers)),
        values(static_cast<size_t>(n_layers));
    int64_t seen = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (progress) progress(0.5f * float(i) / float(prompts.size()), "keys and values");
        const int n = int(prompts[i].size() / size_t(h));
        auto cache = net.new_cache({KvType::f32, KvType::f32, 64});
        net.forward_embeddings(*cache, prompts[i], n);
        const KvCache::Impl& c = cache_impl(*cache);
        std::vector<uint8_t> block(c.block_bytes);
        for (int l = 0; l < n_layers; ++l) {
            for (int t = 0, loaded = -1; t < n; ++t) {
                if ((seen + t) % stride != 0) continue;
                if (t / 64 != loaded) {
                    loaded = t / 64;
                    c.backend.download(block.data(), c.blocks[size_t(l)][size_t(loaded)].data(),
                                       block.size());
                }
                for (int hd = 0; hd < n_kv; ++hd) {
                    const size_t row = size_t(hd) * 64 + size_t(t % 64);
                    const uint8_t* b = block.data();
                    const auto* k = reinterpret_cast<const float*>(b + row * c.k_row_bytes);
                    const auto* v
                        = reinterpret_cast<const float*>(b + c.v_offset + row * c.v_row_bytes);
                    keys[size_t(l)].insert(keys[size_t(l)].end(), k, k + d);
                    values[size_t(l)].insert(values[size_t(l)].end(), v, v + d);
                }
            }
        }
        seen += n;
    }
    const int64_t n_tok = int64_t(keys[0].size()) / width;

    KvCalibration out;
    out.n_layers = n_layers;
    out.n_kv_heads = n_kv;
    out.head_dim = d;
    const std::vector<int> groups = group_sizes(d);
    for (int g : groups) {
        out.k_perm[g].resize(size_t(n_layers) * size_t(width));
        out.v_perm[g].resize(size_t(n_layers) * size_t(width));
        for (float b : kKeyBits)
            out.clip[clip_name(g, 'k', b)].resize(size_t(n_layers * n_kv * d / g));
        for (float b : kValueBits)
            out.clip[clip_name(g, 'v', b)].resize(size_t(n_layers * n_kv * d / g));
    }
    std::mutex progress_mutex;
    int done = 0;
    const int64_t n_jobs = int64_t(n_layers) * n_kv * 2;
    cpu::parallel_range(n_jobs, 1, [&](int64_t j0, int64_t j1) {
        for (int64_t job = j0; job < j1; ++job) {
            const int l = int(job / (2 * n_kv)), hd = int(job / 2 % n_kv);
            const char side = job % 2 ? 'v' : 'k';
            const float* x = (side == 'k' ? keys : values)[size_t(l)].data() + hd * d;
            std::vector<float> lo(static_cast<size_t>(d), INFINITY),
                hi(static_cast<size_t>(d), -INFINITY);
            for (int64_t t = 0; t < n_tok; ++t)
                for (int c = 0; c < d; ++c) {
                    lo[size_t(c)] = std::min(lo[size_t(c)], x[t * width + c]);
                    hi[size_t(c)] = std::max(hi[size_t(c)], x[t * width + c]);
                }
            const size_t lh = size_t(l) * size_t(n_kv) + size_t(hd);
            for (int g : groups) {
                const std::vector<int32_t> perm = cluster_channels(lo, hi, g);
                auto& dst = (side == 'k' ? out.k_perm : out.v_perm)[g];
                std::copy(perm.begin(), perm.end(), dst.begin() + std::ptrdiff_t(lh * size_t(d)));
                const auto& bits_list = side == 'k'
                    ? std::vector<float>(std::begin(kKeyBits), std::end(kKeyBits))
                    : std::vector<float>(std::begin(kValueBits), std::end(kValueBits));
                for (float bits : bits_list) {
                    const int levels = cpu::skvq_format(bits, 32, 32).levels;
                    auto& alpha = out.clip[clip_name(g, side, bits)];
                    for (int grp = 0; grp < d / g; ++grp) {
                        float best_a = 1.f;
                        double best = INFINITY;
                        for (int step = 10; step >= 0; --step) {
                            const float a = float(80 + 2 * step) / 100.f;
                            const double e = group_error(x, n_tok, width, &perm[size_t(grp * g)], g,
                                                         levels, a);
                            if (e < best) {
                                best = e;
                                best_a = a;
                            }
                        }
                        alpha[lh * size_t(d / g) + size_t(grp)] = best_a;
                    }
                }
            }
            if (progress) {
                std::lock_guard lock(progress_mutex);
                progress(0.5f + 0.5f * float(++done) / float(n_jobs), "channel order and clipping");
            }
        }
    });
    return out;
}

} // namespace iris::model
