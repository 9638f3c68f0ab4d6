// InternViT (docs/model.md §4), pixel shuffle (§5) and the mlp1 projector (§6) on a backend.
#include "model/arch.h"
#include "model/network-impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace iris::model {

namespace {

int pixel_shuffle_factor(const ModelConfig& c)
{
    // downsample_ratio 0.5 -> merge 2×2 patches. Only reciprocals of integers make sense.
    int r = int(std::lround(1.0 / double(c.downsample_ratio)));
    if (r < 1 || std::fabs(1.0 / double(r) - double(c.downsample_ratio)) > 1e-6)
        throw Error(ErrorKind::unsupported,
                    strfmt("downsample_ratio %g is not the reciprocal of an integer",
                           double(c.downsample_ratio)));
    return r;
}

// Index into hidden_states (0 = embeddings, i = output of layer i) that select_layer picks,
// with Python's negative indexing as extract_feature uses it.
int selected_hidden_state(const ModelConfig& c)
{
    int n_layers = c.vision.num_hidden_layers;
    int idx = c.select_layer < 0 ? n_layers + 1 + c.select_layer : c.select_layer;
    if (idx < 0 || idx > n_layers)
        throw Error(
            ErrorKind::unsupported,
            strfmt("select_layer %d is outside the %d vision layers", c.select_layer, n_layers));
    return idx;
}

void norm(Backend& be, const VisionConfig& vc, const Weight& w, const Weight& b, const float* x,
          int64_t rows, int64_t cols, float eps, float* y)
{
    if (vc.rms_norm) {
        be.rms_norm(x, rows, cols, w.data, eps, y);
    } else {
        be.layer_norm(x, rows, cols, w.data, b ? b.data : nullptr, eps, y);
    }
}

} // namespace

void load_vision(WeightLoader& ld, const ModelConfig& config, VisionWeights& out)
{
    const VisionConfig& vc = config.vision;
    const int64_t c = vc.hidden_size, inter = vc.intermediate_size, p = vc.patch_size;
    if (c <= 0 || inter <= 0 || p <= 0 || vc.num_hidden_layers <= 0 || vc.num_attention_heads <= 0
        || c % vc.num_attention_heads != 0 || vc.image_size % vc.patch_size != 0)
        throw Error(ErrorKind::invalid_input, "vision_config: inconsistent sizes");
    out.patch_w = ld.get_matrix("v.patch_embd.weight", {c, vc.num_channels, p, p});
    out.patch_b = ld.get("v.patch_embd.bias", {c});
    {
        const Weight cls = ld.get("v.class_embd", {1, 1, c});
        const int g0 = vc.image_size / p, grid = config.force_image_size / p;
        const Weight pos = ld.get("v.position_embd.weight", {1, int64_t(g0) * g0 + 1, c});
        std::vector<float> cls_pos(static_cast<size_t>(c));
        std::vector<float> pos_patch(size_t(grid) * size_t(grid) * size_t(c));
        for (int64_t k = 0; k < c; ++k) cls_pos[size_t(k)] = cls.data[k] + pos.data[k];
        const float* stored = pos.data + c; // the patch positions, after the class token's
        if (g0 == grid) {
            std::copy(stored, stored + pos_patch.size(), pos_patch.begin());
        } else {
            // On the host backend: the weights are host memory until they are placed.
            const int64_t n0 = int64_t(g0) * g0, n = int64_t(grid) * grid;
            std::vector<float> chw(size_t(c * n0)), out_chw(size_t(c * n));
            for (int64_t i = 0; i < n0; ++i)
                for (int64_t k = 0; k < c; ++k) chw[size_t(k * n0 + i)] = stored[i * c + k];
            cpu_backend().bicubic_resize(chw.data(), c, g0, g0, grid, grid, out_chw.data());
            for (int64_t i = 0; i < n; ++i)
                for (int64_t k = 0; k < c; ++k)
                    pos_patch[size_t(i * c + k)] = out_chw[size_t(k * n + i)];
        }
        out.cls_pos = Weight::from_values(std::move(cls_pos), {c});
        out.pos_patch = Weight::from_values(std::move(pos_patch), {int64_t(grid) * grid, c});
    }

    const bool has_norm_bias = !vc.rms_norm;
    out.layers.resize(size_t(vc.num_hidden_layers));
    for (int l = 0; l < vc.num_hidden_layers; ++l) {
        VisionLayer& L = out.layers[size_t(l)];
        auto name = [l](const char* pattern) { return layer_name(pattern, l); };
        L.norm1_w = ld.get(name("v.blk.%d.ln1.weight"), {c});
        if (has_norm_bias) L.norm1_b = ld.get(name("v.blk.%d.ln1.bias"), {c});
        if (ld.has(name("v.blk.%d.attn_qkv.weight"))) {
            L.qkv_w = ld.get_matrix(name("v.blk.%d.attn_qkv.weight"), {3 * c, c});
            if (vc.qkv_bias) L.qkv_b = ld.get(name("v.blk.%d.attn_qkv.bias"), {3 * c});
        } else {
            // llama.cpp's converter splits qkv into thirds; they are one matrix again here.
            std::vector<Weight> parts;
            std::vector<float> bias;
            for (const char* part : {"q", "k", "v"}) {
                const std::string pre = strfmt("v.blk.%d.attn_%s.", l, part);
                parts.push_back(ld.get_matrix(pre + "weight", {c, c}));
                if (vc.qkv_bias) {
                    const Weight b = ld.get(pre + "bias", {c});
                    bias.insert(bias.end(), b.data, b.data + c);
                }
            }
            L.qkv_w = ld.stack_rows(std::move(parts));
            if (vc.qkv_bias) L.qkv_b = Weight::from_values(std::move(bias), {3 * c});
        }
        if (vc.qk_normalization) {
            L.q_norm_w = ld.get(name("v.blk.%d.attn_q_norm.weight"), {c});
            L.k_norm_w = ld.get(name("v.blk.%d.attn_k_norm.weight"), {c});
            if (has_norm_bias) {
                L.q_norm_b = ld.get(name("v.blk.%d.attn_q_norm.bias"), {c});
                L.k_norm_b = ld.get(name("v.blk.%d.attn_k_norm.bias"), {c});
            }
        }
        L.proj_w = ld.get_matrix(name("v.blk.%d.attn_out.weight"), {c, c});
        L.proj_b = ld.get(name("v.blk.%d.attn_out.bias"), {c});
        L.ls1 = ld.get(name("v.blk.%d.ls1.weight"), {c});
        L.norm2_w = ld.get(name("v.blk.%d.ln2.weight"), {c});
        if (has_norm_bias) L.norm2_b = ld.get(name("v.blk.%d.ln2.bias"), {c});
        L.fc1_w = ld.get_matrix(name("v.blk.%d.ffn_up.weight"), {inter, c});
        L.fc1_b = ld.get(name("v.blk.%d.ffn_up.bias"), {inter});
        L.fc2_w = ld.get_matrix(name("v.blk.%d.ffn_down.weight"), {c, inter});
        L.fc2_b = ld.get(name("v.blk.%d.ffn_down.bias"), {c});
        L.ls2 = ld.get(name("v.blk.%d.ls2.weight"), {c});
    }

    const int r = pixel_shuffle_factor(config);
    const int64_t in = c * r * r, h = config.llm.hidden_size;
    out.mlp_ln_w = ld.get("mm.model.mlp.0.weight", {in});
    out.mlp_ln_b = ld.get("mm.model.mlp.0.bias", {in});
    out.mlp_fc1_w = ld.get_matrix("mm.model.mlp.1.weight", {h, in});
    out.mlp_fc1_b = ld.get("mm.model.mlp.1.bias", {h});
    out.mlp_fc2_w = ld.get_matrix("mm.model.mlp.3.weight", {h, h});
    out.mlp_fc2_b = ld.get("mm.model.mlp.3.bias", {h});
}

void place(Backend& be, VisionWeights& w)
{
    for (Weight* p : {&w.patch_w, &w.patch_b, &w.cls_pos, &w.pos_patch, &w.mlp_ln_w, &w.mlp_ln_b,
                      &w.mlp_fc1_w, &w.mlp_fc1_b, &w.mlp_fc2_w, &w.mlp_fc2_b})
        p->place(be);
    for (VisionLayer& L : w.layers)
        for (Weight* p : {&L.norm1_w, &L.norm1_b, &L.qkv_w, &L.qkv_b, &L.q_norm_w, &L.q_norm_b,
                          &L.k_norm_w, &L.k_norm_b, &L.proj_w, &L.proj_b, &L.ls1, &L.norm2_w,
                          &L.norm2_b, &L.fc1_w, &L.fc1_b, &L.fc2_w, &L.fc2_b, &L.ls2})
            p->place(be);
}

namespace {

// Activations of one batch of tiles, in backend memory.
struct VisionScratch
{
    Buffer pixels, patches, x, h, qkv, attn, mlp, ps, mid, out;
};

// One encoder layer on x [rows, C] (rows = tiles × P), in place.
void vision_layer(Backend& be, const VisionConfig& vc, const VisionLayer& L, float* x,
                  int64_t n_seq, int64_t n_tok, VisionScratch& s)
{
    const int64_t c = vc.hidden_size, rows = n_seq * n_tok;
    const int n_heads = vc.num_attention_heads, d = int(c / n_heads);
    const float eps = vc.layer_norm_eps;
    float *h = s.h.as<float>(), *qkv = s.qkv.as<float>(), *attn = s.attn.as<float>(),
          *mlp = s.mlp.as<float>();

    norm(be, vc, L.norm1_w, L.norm1_b, x, rows, c, eps, h);
    be.linear(h, rows, L.qkv_w.mat, L.qkv_b ? L.qkv_b.data : nullptr, qkv);
    if (vc.qk_normalization) {
        // InternViT-6B: the norm spans the whole C-wide Q (and K) vector, across all heads.
        const size_t row = size_t(c) * sizeof(float);
        for (int part = 0; part < 2; ++part) {
            const Weight& w = part == 0 ? L.q_norm_w : L.k_norm_w;
            const Weight& b = part == 0 ? L.q_norm_b : L.k_norm_b;
            be.copy_rows(h, row, qkv + part * c, 3 * row, row, rows);
            norm(be, vc, w, b, h, rows, c, eps, h);
            be.copy_rows(qkv + part * c, 3 * row, h, row, row, rows);
        }
    }
    // InternViT: scale = head_dim ** -0.5, no mask.
    be.attention_full(qkv, n_seq, n_tok, n_heads, d, float(1.0 / std::sqrt(double(d))), attn);
    be.linear(attn, rows, L.proj_w.mat, L.proj_b.data, h);
    be.add_rows(x, h, L.ls1.data, rows, c); // x + ls1 ⊙ attn(norm1(x))

    norm(be, vc, L.norm2_w, L.norm2_b, x, rows, c, eps, h);
    be.linear(h, rows, L.fc1_w.mat, L.fc1_b.data, mlp);
    be.gelu_erf(mlp, rows * vc.intermediate_size);
    be.linear(mlp, rows, L.fc2_w.mat, L.fc2_b.data, h);
    be.add_rows(x, h, L.ls2.data, rows, c); // x + ls2 ⊙ mlp(norm2(x))
}

} // namespace

std::vector<float> vision_forward(Backend& be, const VisionWeights& w, const ModelConfig& config,
                                  const float* pixels, int n_tiles, VisionTrace* trace)
{
    const VisionConfig& vc = config.vision;
    const int s = config.force_image_size, p = vc.patch_size, ch = vc.num_channels;
    const int grid = s / p;
    const int64_t c = vc.hidden_size, inter = vc.intermediate_size;
    const int64_t n_patch = int64_t(grid) * grid, n_tok = n_patch + 1;
    const int r = pixel_shuffle_factor(config);
    const int64_t n_img_tok = n_patch / (int64_t(r) * r), llm_h = config.llm.hidden_size;
    const int n_run = selected_hidden_state(config);
    const int64_t ps_c = int64_t(r) * r * c, patch_k = int64_t(ch) * p * p;

    // Tiles go through the encoder in batches: every product then has >= 1025 rows (full
    // GEMM efficiency) while the activations stay bounded (4 tiles: ~70 MB for InternViT-300M).
    const int max_batch = 4;
    const int n_batches = (n_tiles + max_batch - 1) / max_batch;
    const int batch = (n_tiles + n_batches - 1) / n_batches;

    if (trace) {
        trace->embeddings.assign(size_t(n_tiles * n_tok * c), 0.f);
        trace->hidden_states.assign(size_t((n_run + 1) * n_tiles * n_tok * c), 0.f);
        trace->selected.assign(size_t(n_tiles * n_tok * c), 0.f);
        trace->pixel_shuffle.assign(size_t(n_tiles * n_img_tok * r * r * c), 0.f);
    }

    std::vector<float> result(size_t(n_tiles * n_img_tok * llm_h));
    const int64_t max_rows = int64_t(batch) * n_tok;
    VisionScratch sc;
    sc.x = be.alloc(size_t(max_rows * c) * sizeof(float));
    sc.h = be.alloc(size_t(max_rows * c) * sizeof(float));
    sc.qkv = be.alloc(size_t(max_rows * 3 * c) * sizeof(float));
    sc.attn = be.alloc(size_t(max_rows * c) * sizeof(float));
    sc.mlp = be.alloc(size_t(max_rows * std::max(inter, c)) * sizeof(float));
    sc.pixels = be.alloc(size_t(int64_t(batch) * ch * s * s) * sizeof(float));
    sc.patches = be.alloc(size_t(batch * n_patch * patch_k) * sizeof(float));
    sc.ps = be.alloc(size_t(batch * n_img_tok * ps_c) * sizeof(float));
    sc.mid = be.alloc(size_t(batch * n_img_tok * llm_h) * sizeof(float));
    sc.out = be.alloc(size_t(batch * n_img_tok * llm_h) * sizeof(float));
    float *x = sc.x.as<float>(), *h = sc.h.as<float>(), *ps = sc.ps.as<float>(),
          *mid = sc.mid.as<float>(), *out = sc.out.as<float>();
    const size_t f = sizeof(float);

    for (int t0 = 0; t0 < n_tiles; t0 += batch) {
        const int nb = std::min(batch, n_tiles - t0);

        // Patch embedding: the stride-p convolution as one GEMM over all patches of the batch.
        float* px = sc.pixels.as<float>();
        be.upload(px, pixels + int64_t(t0) * ch * s * s, size_t(int64_t(nb) * ch * s * s) * f);
        be.im2col_patches(px, nb, ch, s, p, sc.patches.as<float>());
        be.linear(sc.patches.as<float>(), nb * n_patch, w.patch_w.mat, w.patch_b.data, h);
        for (int b = 0; b < nb; ++b) {
            float* xt = x + b * n_tok * c;
            be.copy(xt, w.cls_pos.data, size_t(c) * f);
            be.copy(xt + c, h + b * n_patch * c, size_t(n_patch * c) * f);
            be.add_rows(xt + c, w.pos_patch.data, nullptr, n_patch, c);
        }
        auto save = [&](std::vector<float>& dst, int64_t block, int64_t block_rows) {
            // dst is [blocks, n_tiles, block_rows, C]; this batch's tiles start at t0.
            be.download(dst.data() + ((block * n_tiles + t0) * block_rows) * c, x,
                        size_t(nb * block_rows * c) * f);
        };
        if (trace) {
            save(trace->embeddings, 0, n_tok);
            save(trace->hidden_states, 0, n_tok);
        }

        for (int l = 0; l < n_run; ++l) {
            vision_layer(be, vc, w.layers[size_t(l)], x, nb, n_tok, sc);
            if (trace) save(trace->hidden_states, l + 1, n_tok);
        }
        if (trace) save(trace->selected, 0, n_tok);

        // Drop CLS, then pixel shuffle [nb, grid, grid, C] -> [nb, n_img_tok, r²C].
        for (int b = 0; b < nb; ++b)
            be.copy(h + b * n_patch * c, x + (b * n_tok + 1) * c, size_t(n_patch * c) * f);
        be.pixel_shuffle(h, nb, grid, grid, int(c), r, config.ps_version != "v1", ps);
        if (trace)
            be.download(trace->pixel_shuffle.data() + t0 * n_img_tok * ps_c, ps,
                        size_t(nb * n_img_tok * ps_c) * f);

        // mlp1: LayerNorm (PyTorch default eps 1e-5, not the ViT's) -> Linear -> GELU -> Linear.
        const int64_t m = nb * n_img_tok;
        be.layer_norm(ps, m, ps_c, w.mlp_ln_w.data, w.mlp_ln_b.data, 1e-5f, ps);
        be.linear(ps, m, w.mlp_fc1_w.mat, w.mlp_fc1_b.data, mid);
        be.gelu_erf(mid, m * llm_h);
        be.linear(mid, m, w.mlp_fc2_w.mat, w.mlp_fc2_b.data, out);
        be.download(result.data() + t0 * n_img_tok * llm_h, out, size_t(m * llm_h) * f);
    }
    return result;
}

} // namespace iris::model
