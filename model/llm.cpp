// The decoder (docs/model.md §7): Qwen2 and InternLM2 share one pre-norm block; they differ only in
// tensor names, InternLM2's fused wqkv (split at load, §7.2) and which biases exist.
#include "model/arch.h"
#include "model/network-impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace iris::model {

namespace {

// InternLM2's wqkv rows are [kv_head][q_0..q_{G-1}, k, v][D] (docs/model.md §7.2). Splits a weight
// [(Nh + 2Nkv)·D, cols] (cols = 1 for the bias) into contiguous q [Nh·D], k and v [Nkv·D] rows,
// query head kvh·G + g coming from slot g of group kvh. The rows keep their stored precision
// (a matrix from get_matrix) or are f32 (a bias from get).
void split_wqkv(const Weight& wqkv, int n_heads, int n_kv, int d, int64_t cols, Weight& q,
                Weight& k, Weight& v)
{
    const bool is_matrix = bool(wqkv.mat);
    const cpu::WeightType type = is_matrix ? wqkv.mat.type : cpu::WeightType::f32;
    const size_t row_bytes = is_matrix ? wqkv.mat.row_bytes() : size_t(cols) * sizeof(float);
    const auto* src = static_cast<const char*>(is_matrix ? wqkv.mat.data : wqkv.data);
    const int g = n_heads / n_kv;
    const size_t slot_bytes = size_t(d) * row_bytes; // one head slot: d rows
    auto make = [&](int64_t rows, auto&& fill) {
        Weight w;
        w.shape = cols == 1 ? std::vector<int64_t> {rows} : std::vector<int64_t> {rows, cols};
        char* dst;
        if (type == cpu::WeightType::f32) {
            w.owned.resize(size_t(rows * cols));
            dst = reinterpret_cast<char*>(w.owned.data());
            w.data = w.owned.data();
        } else {
            w.owned_raw.resize(size_t(rows) * row_bytes);
            dst = reinterpret_cast<char*>(w.owned_raw.data());
        }
        fill(dst);
        if (is_matrix) w.mat = {dst, type, rows, cols, wqkv.mat.bf16_activations};
        return w;
    };
    q = make(int64_t(n_heads) * d, [&](char* dst) {
        for (int h = 0; h < n_kv; ++h)
            for (int j = 0; j < g; ++j)
                std::memcpy(dst + size_t(h * g + j) * slot_bytes,
                            src + size_t(h * (g + 2) + j) * slot_bytes, slot_bytes);
    });
    k = make(int64_t(n_kv) * d, [&](char* dst) {
        for (int h = 0; h < n_kv; ++h)
            std::memcpy(dst + size_t(h) * slot_bytes, src + size_t(h * (g + 2) + g) * slot_bytes,
                        slot_bytes);
    });
    v = make(int64_t(n_kv) * d, [&](char* dst) {
        for (int h = 0; h < n_kv; ++h)
            std::memcpy(dst + size_t(h) * slot_bytes,
                        src + size_t(h * (g + 2) + g + 1) * slot_bytes, slot_bytes);
    });
}

} // namespace

void load_llm(WeightLoader& ld, const LlmConfig& c, LlmWeights& out)
{
    const int64_t h = c.hidden_size, f = c.intermediate_size, d = c.head_dim, vocab = c.vocab_size;
    const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads;
    if (h <= 0 || f <= 0 || nh <= 0 || nkv <= 0 || nh % nkv != 0 || d <= 0 || d % 2 != 0
        || vocab <= 0 || c.num_hidden_layers <= 0)
        throw Error(ErrorKind::invalid_input, "llm_config: inconsistent sizes");
    const bool internlm2 = c.arch == LlmArch::internlm2;

    // docs/model.md §2.5: InternVLChatConfig forces untied embeddings; the reference builds its own
    // lm_head and expects it in the file. If it is missing the reference would run with random
    // weights; tying is our best guess, and it must be loud.
    const bool tied = !ld.has("output.weight");
    const int nl = c.num_hidden_layers;
    auto role = [nl](TensorRole::Kind kind, int layer = 0) { return TensorRole {kind, layer, nl}; };

    out.embed = ld.quantized(ld.get_matrix("token_embd.weight", {vocab, h}),
                             role(tied ? TensorRole::output : TensorRole::token_embd));
    out.layers.resize(size_t(nl));
    for (int l = 0; l < nl; ++l) {
        LlmLayer& L = out.layers[size_t(l)];
        auto name = [l](const char* pattern) { return layer_name(pattern, l); };
        auto matrix = [&](const char* pattern, std::vector<int64_t> shape, TensorRole::Kind kind) {
            return ld.quantized(ld.get_matrix(name(pattern), shape), role(kind, l));
        };
        L.attn_norm = ld.get(name("blk.%d.attn_norm.weight"), {h});
        if (ld.has(name("blk.%d.attn_qkv.weight"))) {
            // InternLM2's checkpoints: one wqkv, split here (llama.cpp's files hold the parts).
            Weight wqkv = ld.get_matrix(name("blk.%d.attn_qkv.weight"), {(nh + 2 * nkv) * d, h});
            split_wqkv(wqkv, int(nh), int(nkv), int(d), h, L.q_w, L.k_w, L.v_w);
            if (wqkv.owned.empty() && wqkv.owned_raw.empty())
                ld.mapped_to_owned(size_t(wqkv.mat.rows) * wqkv.mat.row_bytes());
            L.q_w = ld.quantized(std::move(L.q_w), role(TensorRole::attn_q, l));
            L.k_w = ld.quantized(std::move(L.k_w), role(TensorRole::attn_k, l));
            L.v_w = ld.quantized(std::move(L.v_w), role(TensorRole::attn_v, l));
            if (c.attention_bias) {
                Weight bqkv = ld.get(name("blk.%d.attn_qkv.bias"), {(nh + 2 * nkv) * d});
                split_wqkv(bqkv, int(nh), int(nkv), int(d), 1, L.q_b, L.k_b, L.v_b);
            }
        } else {
            L.q_w = matrix("blk.%d.attn_q.weight", {nh * d, h}, TensorRole::attn_q);
            L.k_w = matrix("blk.%d.attn_k.weight", {nkv * d, h}, TensorRole::attn_k);
            L.v_w = matrix("blk.%d.attn_v.weight", {nkv * d, h}, TensorRole::attn_v);
            // Qwen2: q/k/v always carry biases; InternLM2 when `bias`.
            if (!internlm2 || c.attention_bias) {
                L.q_b = ld.get(name("blk.%d.attn_q.bias"), {nh * d});
                L.k_b = ld.get(name("blk.%d.attn_k.bias"), {nkv * d});
                L.v_b = ld.get(name("blk.%d.attn_v.bias"), {nkv * d});
            }
        }
        L.o_w = matrix("blk.%d.attn_output.weight", {h, nh * d}, TensorRole::attn_output);
        // Qwen2's o_proj never has a bias; InternLM2's wo has one with `bias` (llama.cpp's
        // internlm2 may leave it out).
        if (internlm2 && c.attention_bias)
            L.o_b = ld.source().gguf() ? ld.get_optional(name("blk.%d.attn_output.bias"), {h})
                                       : ld.get(name("blk.%d.attn_output.bias"), {h});
        L.ffn_norm = ld.get(name("blk.%d.ffn_norm.weight"), {h});
        L.gate_w = matrix("blk.%d.ffn_gate.weight", {f, h}, TensorRole::ffn_gate);
        L.up_w = matrix("blk.%d.ffn_up.weight", {f, h}, TensorRole::ffn_up);
        L.down_w = matrix("blk.%d.ffn_down.weight", {h, f}, TensorRole::ffn_down);
    }
    out.norm = ld.get("output_norm.weight", {h});
    out.rope_pairs = ld.source().gguf() && llm_arch(c.arch).gguf_rope_pairs;

    if (!tied)
        out.lm_head
            = ld.quantized(ld.get_matrix("output.weight", {vocab, h}), role(TensorRole::output));
    if (!out.lm_head) {
        const std::string head = ld.source().describe("output.weight");
        if (c.tie_word_embeddings) {
            IRIS_LOG_INFO("%s is absent: tied to the input embedding (tie_word_embeddings)",
                          head.c_str());
        } else {
            IRIS_LOG_WARN("%s is MISSING although tie_word_embeddings is false: "
                          "using the input embedding as the output projection. The reference "
                          "implementation would not do this; check the top-1 logits against it.",
                          head.c_str());
        }
    }
}

// The RoPE base for a forward whose sequence ends at total_len tokens, following the
// reference's dynamic-NTK state rules (docs/model.md §7.1); plain rope_theta while the sequence
// fits in max_position_embeddings.
double rope_base(const LlmConfig& c, KvCache::Impl& cache, int64_t total_len)
{
    if (c.rope_scaling_type != "dynamic") return double(c.rope_theta);
    const int64_t max_pos = c.max_position_embeddings;
    if (c.arch == LlmArch::internlm2) {
        // InternLM2DynamicNTKScalingRotaryEmbedding rebuilds its cos/sin cache for the current
        // KV length whenever that exceeds the cached length, and never shrinks it.
        cache.rope_len = std::max(cache.rope_len, total_len);
    } else {
        // transformers' dynamic_rope_update: grow with max(position)+1, and reset to the
        // original frequencies once a forward fits in max_position_embeddings again.
        if (total_len > cache.rope_len) cache.rope_len = total_len;
        if (total_len < max_pos && cache.rope_len > max_pos) cache.rope_len = max_pos;
    }
    const int64_t len = cache.rope_len;
    if (len <= max_pos) return double(c.rope_theta);
    const double f = double(c.rope_scaling_factor), d = double(c.head_dim);
    return double(c.rope_theta)
        * std::pow(f * double(len) / double(max_pos) - (f - 1.0), d / (d - 2.0));
}

void place(Backend& be, LlmWeights& w)
{
    w.embed.place(be);
    for (LlmLayer& L : w.layers)
        for (Weight* p : {&L.attn_norm, &L.q_w, &L.q_b, &L.k_w, &L.k_b, &L.v_w, &L.v_b, &L.o_w,
                          &L.o_b, &L.ffn_norm, &L.gate_w, &L.up_w, &L.down_w})
            p->place(be);
    w.norm.place(be);
    w.lm_head.place(be);
    w.exact_rows = be.exact_rows(w.lm_head_matrix());
    for (const LlmLayer& L : w.layers)
        for (const Weight* p : {&L.q_w, &L.k_w, &L.v_w, &L.o_w, &L.gate_w, &L.up_w, &L.down_w})
            w.exact_rows = std::min(w.exact_rows, be.exact_rows(p->mat));
}

namespace {

// Rows of the products: a sequence longer than `exact` rows (LlmWeights::exact_rows) on its own,
// as when it runs alone; shorter neighbours packed together up to that many rows, where each row
// gets the bits it gets alone. `rows(i)` is sequence i's row count.
struct RowGroup
{
    int64_t row0, rows;
};

template<typename Rows>
void row_groups(size_t n_seq, Rows rows, int64_t exact, std::vector<RowGroup>& out)
{
    out.clear();
    int64_t row = 0;
    for (size_t i = 0; i < n_seq; ++i) {
        const int64_t n = rows(i);
        if (!out.empty() && n <= exact && out.back().rows + n <= exact)
            out.back().rows += n;
        else
            out.push_back({row, n});
        row += n;
    }
}

} // namespace

std::span<const float> llm_forward(const LlmWeights& w, const LlmConfig& c,
                                   std::span<const LlmSequence> seqs, Backend& be,
                                   ForwardScratch& s, const float* embeddings, bool all_logits,
                                   LlmTrace* trace)
{
    const int64_t h = c.hidden_size, f = c.intermediate_size, d = c.head_dim, vocab = c.vocab_size;
    const int nh = c.num_attention_heads, nkv = c.num_key_value_heads;
    const int64_t qw = nh * d, kw = nkv * d;
    const int n_layers = c.num_hidden_layers;
    if (seqs.size() != 1 && (all_logits || trace))
        throw Error(ErrorKind::internal, "llm_forward: all_logits and traces take one sequence");
    int64_t n = 0; // rows of every sequence
    for (const LlmSequence& seq : seqs) n += seq.n;
    for (const LlmSequence& seq : seqs) seq.cache->reserve(seq.cache->n_tokens + seq.n);

    thread_local std::vector<RowGroup> groups;
    row_groups(
        seqs.size(), [&](size_t i) { return int64_t(seqs[i].n); }, w.exact_rows, groups);
    // y[rows, out] = x[rows, in] · Wᵀ + b, group by group.
    auto linear
        = [&](const float* x, int64_t in, const Weight& W, const Weight& b, float* y, int64_t out) {
              for (const RowGroup& g : groups)
                  be.linear(x + g.row0 * in, g.rows, in, W.mat, b ? b.data : nullptr,
                            y + g.row0 * out, out);
          };

    float* x = grow<float>(be, s.x, size_t(n * h));
    float* hb = grow<float>(be, s.h, size_t(n * std::max(h, qw)));
    float* q = grow<float>(be, s.q, size_t(n * qw));
    float* kn = grow<float>(be, s.kn, size_t(n * kw));
    float* vn = grow<float>(be, s.vn, size_t(n * kw));
    float* attn = grow<float>(be, s.attn, size_t(n * qw));
    float* gate = grow<float>(be, s.gate, size_t(n * f));
    float* up = grow<float>(be, s.up, size_t(n * f));
    if (!s.attention) s.attention = be.workspace();
    be.copy(x, embeddings, size_t(n * h) * sizeof(float));

    // Rotary tables for each sequence's positions.
    float* cos_t = grow<float>(be, s.cos, size_t(n * d / 2));
    float* sin_t = grow<float>(be, s.sin, size_t(n * d / 2));
    const float pos_scale = c.rope_scaling_type == "linear" ? c.rope_scaling_factor : 1.0f;
    for (int64_t i = 0, row = 0; i < int64_t(seqs.size()); row += seqs[size_t(i)].n, ++i) {
        KvCache::Impl& cache = *seqs[size_t(i)].cache;
        const int pos0 = cache.n_tokens, m = seqs[size_t(i)].n;
        be.rope_tables(pos0, m, rope_base(c, cache, pos0 + m), int(d), pos_scale,
                       cos_t + row * d / 2, sin_t + row * d / 2);
    }

    if (trace) {
        trace->hidden_states.assign(size_t((n_layers + 1) * n * h), 0.f);
        be.download(trace->hidden_states.data(), x, size_t(n * h) * sizeof(float));
        trace->attention.assign(size_t(n_layers) * size_t(n * qw), 0.f);
    }
    // Eager attention divides q·kᵀ by sqrt(head_dim).
    const float scale = float(1.0 / std::sqrt(double(d)));

    for (int l = 0; l < n_layers; ++l) {
        const LlmLayer& L = w.layers[size_t(l)];
        // Attention block: x += o(attn(rope(q), rope(k), v)) of RMSNorm(x).
        be.rms_norm(x, n, h, L.attn_norm.data, c.rms_norm_eps, hb);
        linear(hb, h, L.q_w, L.q_b, q, qw);
        linear(hb, h, L.k_w, L.k_b, kn, kw);
        linear(hb, h, L.v_w, L.v_b, vn, kw);
        be.rope(q, n, nh, int(d), qw, cos_t, sin_t, w.rope_pairs);
        be.rope(kn, n, nkv, int(d), kw, cos_t, sin_t, w.rope_pairs);
        // Each sequence attends over its own cache.
        for (int64_t i = 0, row = 0; i < int64_t(seqs.size()); row += seqs[size_t(i)].n, ++i) {
            KvCache::Impl& cache = *seqs[size_t(i)].cache;
            const int pos0 = cache.n_tokens, m = seqs[size_t(i)].n;
            cache.store(l, pos0, m, kn + row * kw, vn + row * kw);
            be.attention_causal(q + row * qw, qw, m, pos0, nh, nkv, int(d), cache.runs(l, pos0 + m),
                                scale, attn + row * qw, *s.attention);
            cache.settle(l, pos0 + m); // SKVQ: the prefill saw its tokens in full precision
        }
        if (trace)
            be.download(trace->attention.data() + size_t(l) * size_t(n * qw), attn,
                        size_t(n * qw) * sizeof(float));
        linear(attn, qw, L.o_w, L.o_b, hb, h);
        be.add_rows(x, hb, nullptr, n, h);

        // MLP block: x += down(silu(gate(h)) ⊙ up(h)), h = RMSNorm(x).
        be.rms_norm(x, n, h, L.ffn_norm.data, c.rms_norm_eps, hb);
        linear(hb, h, L.gate_w, {}, gate, f);
        linear(hb, h, L.up_w, {}, up, f);
        be.silu_mul(gate, up, gate, n * f);
        linear(gate, f, L.down_w, {}, hb, h);
        be.add_rows(x, hb, nullptr, n, h);

        if (trace)
            be.download(trace->hidden_states.data() + (l + 1) * n * h, x,
                        size_t(n * h) * sizeof(float));
    }

    // Final norm and lm_head: only for the rows whose logits are wanted, every row of the one
    // sequence or the last of each.
    if (trace) {
        trace->final_norm.assign(size_t(n * h), 0.f);
        float* normed = grow<float>(be, s.gate, size_t(n * std::max(h, f)));
        be.rms_norm(x, n, h, w.norm.data, c.rms_norm_eps, normed);
        be.download(trace->final_norm.data(), normed, size_t(n * h) * sizeof(float));
    }
    const int64_t n_out = all_logits ? n : int64_t(seqs.size());
    const float* last = x + (n - 1) * h;
    if (!all_logits && seqs.size() > 1) {
        float* rows = grow<float>(be, s.gate, size_t(n * std::max(h, f)));
        for (int64_t i = 0, row = 0; i < int64_t(seqs.size()); ++i) {
            row += seqs[size_t(i)].n;
            be.copy(rows + i * h, x + (row - 1) * h, size_t(h) * sizeof(float));
        }
        last = rows;
    }
    be.rms_norm(all_logits ? x : last, n_out, h, w.norm.data, c.rms_norm_eps, hb);
    float* logits = grow<float>(be, s.logits, size_t(n_out * vocab));
    if (all_logits)
        row_groups(
            1, [&](size_t) { return n_out; }, w.exact_rows, groups);
    else
        row_groups(
            seqs.size(), [](size_t) { return int64_t(1); }, w.exact_rows, groups);
    for (const RowGroup& g : groups)
        be.linear(hb + g.row0 * h, g.rows, h, w.lm_head_matrix(), nullptr, logits + g.row0 * vocab,
                  vocab);

    for (const LlmSequence& seq : seqs) {
        KvCache::Impl& cache = *seq.cache;
        const int end = cache.n_tokens + seq.n;
        if (cache.skvq && !cache.hold) cache.q_end = cache.quantized_end(end);
        cache.n_tokens = end;
    }
    const size_t n_logits = size_t(n_out * vocab);
    if (s.logits.host()) return {logits, n_logits};
    s.logits_host.resize(n_logits);
    be.download(s.logits_host.data(), logits, n_logits * sizeof(float));
    return s.logits_host;
}

} // namespace iris::model
