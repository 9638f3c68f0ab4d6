// InternViT (spec §4), pixel shuffle (§5) and the mlp1 projector (§6) on the CPU backend.
#include "model/arch.h"
#include "model/cpu/ops.h"
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

void norm(const VisionConfig& vc, const Weight& w, const Weight& b, const float* x, int64_t rows,
          int64_t cols, float eps, float* y)
{
    if (vc.rms_norm) {
        cpu::rms_norm(x, rows, cols, w.data, eps, y);
    } else {
        cpu::layer_norm(x, rows, cols, w.data, b ? b.data : nullptr, eps, y);
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
    out.cls = ld.get("v.class_embd", {1, 1, c});
    out.pos_grid = vc.image_size / vc.patch_size;
    int64_t n_pos = int64_t(out.pos_grid) * out.pos_grid + 1;
    out.pos = ld.get("v.position_embd.weight", {1, n_pos, c});

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

namespace {

// One encoder layer on x [rows, C] (rows = tiles × P), in place.
void vision_layer(const VisionConfig& vc, const VisionLayer& L, float* x, int64_t n_seq,
                  int64_t n_tok, std::vector<float>& h, std::vector<float>& qkv,
                  std::vector<float>& attn, std::vector<float>& mlp)
{
    const int64_t c = vc.hidden_size, inter = vc.intermediate_size, rows = n_seq * n_tok;
    const int n_heads = vc.num_attention_heads, d = int(c / n_heads);
    const float eps = vc.layer_norm_eps;

    norm(vc, L.norm1_w, L.norm1_b, x, rows, c, eps, h.data());
    cpu::linear(h.data(), rows, L.qkv_w.mat, L.qkv_b ? L.qkv_b.data : nullptr, qkv.data());
    if (vc.qk_normalization) {
        // InternViT-6B: the norm spans the whole C-wide Q (and K) vector, across all heads.
        for (int part = 0; part < 2; ++part) {
            const Weight& w = part == 0 ? L.q_norm_w : L.k_norm_w;
            const Weight& b = part == 0 ? L.q_norm_b : L.k_norm_b;
            for (int64_t i = 0; i < rows; ++i)
                std::memcpy(h.data() + i * c, qkv.data() + i * 3 * c + part * c, size_t(c) * 4);
            norm(vc, w, b, h.data(), rows, c, eps, h.data());
            for (int64_t i = 0; i < rows; ++i)
                std::memcpy(qkv.data() + i * 3 * c + part * c, h.data() + i * c, size_t(c) * 4);
        }
    }
    // InternViT: scale = head_dim ** -0.5, no mask.
    cpu::attention_full(qkv.data(), n_seq, n_tok, n_heads, d, float(1.0 / std::sqrt(double(d))),
                        attn.data());
    cpu::linear(attn.data(), rows, L.proj_w.mat, L.proj_b.data, h.data());
    cpu::add_rows(x, h.data(), L.ls1.data, rows, c); // x + ls1 ⊙ attn(norm1(x))

    norm(vc, L.norm2_w, L.norm2_b, x, rows, c, eps, h.data());
    cpu::linear(h.data(), rows, L.fc1_w.mat, L.fc1_b.data, mlp.data());
    cpu::gelu_erf(mlp.data(), rows * inter);
    cpu::linear(mlp.data(), rows, L.fc2_w.mat, L.fc2_b.data, h.data());
    cpu::add_rows(x, h.data(), L.ls2.data, rows, c); // x + ls2 ⊙ mlp(norm2(x))
}

} // namespace

std::vector<float> vision_forward(const VisionWeights& w, const ModelConfig& config,
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

    // Position embedding of the patch grid: the stored g0×g0 grid, bicubically resampled when
    // the tiles are not image_size pixels (the reference recomputes this every forward).
    std::vector<float> pos_patch(size_t(n_patch * c));
    {
        const float* stored = w.pos.data + c; // skip the CLS position
        const int g0 = w.pos_grid;
        if (g0 == grid) {
            std::memcpy(pos_patch.data(), stored, pos_patch.size() * sizeof(float));
        } else {
            std::vector<float> chw(size_t(c) * g0 * g0), out(size_t(c) * n_patch);
            for (int64_t i = 0; i < int64_t(g0) * g0; ++i)
                for (int64_t k = 0; k < c; ++k) chw[size_t(k * g0 * g0 + i)] = stored[i * c + k];
            cpu::bicubic_resize(chw.data(), c, g0, g0, grid, grid, out.data());
            for (int64_t i = 0; i < n_patch; ++i)
                for (int64_t k = 0; k < c; ++k)
                    pos_patch[size_t(i * c + k)] = out[size_t(k * n_patch + i)];
        }
    }

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
    std::vector<float> x(size_t(max_rows * c)), h(size_t(max_rows * c)),
        qkv(size_t(max_rows * 3 * c)), attn(size_t(max_rows * c)),
        mlp(size_t(max_rows * std::max<int64_t>(inter, c)));

    for (int t0 = 0; t0 < n_tiles; t0 += batch) {
        const int nb = std::min(batch, n_tiles - t0);

        // Patch embedding: the stride-p convolution as one GEMM over all patches of the batch.
        {
            const int64_t k = int64_t(ch) * p * p;
            std::vector<float> patches(size_t(nb * n_patch * k));
            cpu::im2col_patches(pixels + int64_t(t0) * ch * s * s, nb, ch, s, p, patches.data());
            cpu::linear(patches.data(), nb * n_patch, w.patch_w.mat, w.patch_b.data, h.data());
        }
        for (int b = 0; b < nb; ++b) {
            float* xt = x.data() + b * n_tok * c;
            for (int64_t k = 0; k < c; ++k) xt[k] = w.cls.data[k] + w.pos.data[k];
            const float* pe = h.data() + b * n_patch * c;
            for (int64_t i = 0; i < n_patch * c; ++i) xt[c + i] = pe[i] + pos_patch[size_t(i)];
        }
        auto save = [&](std::vector<float>& dst, int64_t block, int64_t block_rows) {
            // dst is [blocks, n_tiles, block_rows, C]; this batch's tiles start at t0.
            std::memcpy(dst.data() + ((block * n_tiles + t0) * block_rows) * c, x.data(),
                        size_t(nb * block_rows * c) * sizeof(float));
        };
        if (trace) {
            save(trace->embeddings, 0, n_tok);
            save(trace->hidden_states, 0, n_tok);
        }

        for (int l = 0; l < n_run; ++l) {
            vision_layer(vc, w.layers[size_t(l)], x.data(), nb, n_tok, h, qkv, attn, mlp);
            if (trace) save(trace->hidden_states, l + 1, n_tok);
        }
        if (trace) save(trace->selected, 0, n_tok);

        // Drop CLS, then pixel shuffle [nb, grid, grid, C] -> [nb, n_img_tok, r²C].
        for (int b = 0; b < nb; ++b)
            std::memcpy(h.data() + b * n_patch * c, x.data() + (b * n_tok + 1) * c,
                        size_t(n_patch * c) * sizeof(float));
        const int64_t ps_c = int64_t(r) * r * c;
        std::vector<float> ps(size_t(nb * n_img_tok * ps_c));
        cpu::pixel_shuffle(h.data(), nb, grid, grid, int(c), r, config.ps_version != "v1",
                           ps.data());
        if (trace)
            std::memcpy(trace->pixel_shuffle.data() + t0 * n_img_tok * ps_c, ps.data(),
                        ps.size() * sizeof(float));

        // mlp1: LayerNorm (PyTorch default eps 1e-5, not the ViT's) -> Linear -> GELU -> Linear.
        const int64_t m = nb * n_img_tok;
        cpu::layer_norm(ps.data(), m, ps_c, w.mlp_ln_w.data, w.mlp_ln_b.data, 1e-5f, ps.data());
        std::vector<float> mid(size_t(m * llm_h));
        cpu::linear(ps.data(), m, w.mlp_fc1_w.mat, w.mlp_fc1_b.data, mid.data());
        cpu::gelu_erf(mid.data(), m * llm_h);
        cpu::linear(mid.data(), m, w.mlp_fc2_w.mat, w.mlp_fc2_b.data,
                    result.data() + t0 * n_img_tok * llm_h);
    }
    return result;
}

} // namespace iris::model
