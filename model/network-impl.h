// Private to the model module: the weights and forward passes of the InternVL network
// (vision.cpp, llm.cpp, kv-cache.cpp, internvl.cpp). The public API is in model/model.h. The
// forward passes and the cache run on a Backend (model/backend.h) and nothing else.
#pragma once

#include "model/backend.h"
#include "model/cpu/quant.h"
#include "model/gguf.h"
#include "model/model.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iris::model {

// A weight tensor. Small tensors (norm gains, biases, position embeddings) are f32: `data`
// is a view into a memory-mapped F32 tensor or an owned converted copy. Matrices that go
// through Backend::linear (and the token embedding, whose rows are widened on lookup) come from
// WeightLoader::get_matrix and keep their stored type in `mat`: BF16/F16 stay in the mapped
// file (half the memory of f32, and half the bytes streamed per decoded token), and so do
// quantized blocks; `data` is then null unless the matrix is F32. Move-only (`data` and `mat`
// may point into `owned` or `owned_raw`, the stored bytes, whose buffers survive a move).
// Loading fills them on the host; place() then points `data` and `mat` into backend memory.
struct Weight
{
    const float* data = nullptr;
    WeightMatrix mat;
    std::vector<float> owned;
    std::vector<uint8_t> owned_raw;
    std::vector<int64_t> shape;
    Buffer placed; // the backend's copy (the CPU backend's: a view of the host bytes)

    Weight() = default;
    Weight(Weight&&) noexcept = default;
    Weight& operator=(Weight&&) noexcept = default;
    Weight(const Weight&) = delete;
    Weight& operator=(const Weight&) = delete;

    explicit operator bool() const { return data != nullptr || mat.data != nullptr; }
    int64_t numel() const;
    // Takes ownership of values with the given shape.
    static Weight from_values(std::vector<float> values, std::vector<int64_t> shape);
    // Moves the weight to the backend: wraps its bytes there (a view on the CPU, a copy made
    // once on a device) and points `data` and `mat` at them.
    void place(Backend& backend);
};

// What a language-model matrix is, for choosing its quantized type (llama.cpp's tensor
// categories). Layer counts are those of the decoder.
struct TensorRole
{
    enum Kind {
        keep,
        token_embd,
        output,
        attn_q,
        attn_k,
        attn_v,
        attn_output,
        ffn_gate,
        ffn_up,
        ffn_down
    };
    Kind kind = keep;
    int layer = 0, n_layers = 0;
};

// A llama.cpp file type ("q8_0", "q4_K_M", ...) and the type it gives each tensor
// (quant-mix.cpp: llama-quantize's rules without an importance matrix).
struct QuantMix
{
    const char* name = nullptr; // as llama.cpp spells it
    cpu::WeightType base = cpu::WeightType::q8_0;

    // Throws Error(invalid_argument) listing the names for an unknown one (case-insensitive).
    static QuantMix parse(std::string_view name);
    // The type of a matrix with rows of `cols` values in that role; n_gqa = heads / KV heads.
    // The input embedding is the output's role when tied.
    cpu::WeightType type_for(const TensorRole& role, int64_t cols, int n_gqa) const;
};

// A tensor as the loader sees it, from a safetensors or a GGUF file.
struct SourceTensor
{
    std::string file_name; // the name in the file, for messages
    std::vector<int64_t> shape; // outermost first
    // nullopt: a type weights cannot have (I32, I64, U8; a ggml type Iris cannot compute on)
    std::optional<cpu::WeightType> type;
    std::string type_name; // as the file spells it, for messages
    const uint8_t* data = nullptr;
    size_t nbytes = 0;

    int64_t numel() const;
};

// The tensors of a model by their GGUF names (model/arch.h), whichever files hold them: a
// checkpoint's safetensors, read through the architecture's table, or llama.cpp's language
// model and mmproj GGUF files, whose names are those already. The files must outlive it.
class TensorSource
{
public:
    static TensorSource from_checkpoint(const WeightSet& weights, const ModelConfig& config,
                                        std::string origin);
    static TensorSource from_gguf(const GgufFile& llm, const GgufFile& mmproj);

    const SourceTensor* find(std::string_view name) const;
    // "FILE: tensor NAME" with the file and name a tensor has, or would have, in the files (the
    // checkpoint's name for a checkpoint), for messages.
    std::string describe(const std::string& name) const;
    const std::string& origin() const { return origin_; }
    size_t total_bytes() const;
    InternVL::FileWeights stats() const;
    // Whether the files are llama.cpp's: q and k rows of an architecture whose LlmArchInfo says
    // gguf_rope_pairs are in adjacent-pair order, and fused matrices come in parts.
    bool gguf() const { return gguf_; }

private:
    std::string origin_, mmproj_origin_; // the folder, or the two GGUF files
    bool gguf_ = false;
    std::map<std::string, SourceTensor, std::less<>> tensors_;
    std::map<std::string, std::string, std::less<>> hf_names_; // a checkpoint's names
};

// The configuration of llama.cpp's InternVL files, from their metadata and tensor shapes:
// the language model's (qwen2 / internlm2 keys) and the mmproj's (clip.vision.*), with what
// GGUF cannot say taken as InternVL2.5 and InternVL3 have it (template internvl2_5, the last
// vision layer, pixel shuffle v2, a thumbnail). Throws Error naming the file and key.
ModelConfig gguf_model_config(const GgufFile& llm, const GgufFile& mmproj);

// Reads tensors by name, checks their shapes, converts small ones to f32 and reports progress
// by bytes.
class WeightLoader
{
public:
    WeightLoader(const TensorSource& source, std::function<void(float, const char*)> progress);

    // The tensor `name` with exactly `shape` (leading 1s aside), as f32. Throws
    // Error(not_found) if absent and Error(invalid_input) naming the tensor, the expected and
    // the actual shape otherwise.
    Weight get(const std::string& name, const std::vector<int64_t>& shape);
    // The same, but an absent tensor gives an empty Weight.
    Weight get_optional(const std::string& name, const std::vector<int64_t>& shape);
    // A matrix for cpu::linear, rows = shape[0], cols = the product of the other dims, in the
    // stored type (F32, BF16, F16 or ggml's blocks) and in place when the mapping is aligned.
    Weight get_matrix(const std::string& name, const std::vector<int64_t>& shape);
    Weight get_matrix_optional(const std::string& name, const std::vector<int64_t>& shape);
    // Matrices of one type stacked by rows ([Σ rows, cols]): in place when they lie back to
    // back in the file, else copied (a fused matrix the GGUF files hold in parts).
    Weight stack_rows(std::vector<Weight> parts);
    // BF16 matrices take bf16 activations in products of many rows (LoadOptions::precision).
    void set_precision(Precision p) { precision_ = p; }
    // Quantizes the language model's matrices as they are loaded (LoadOptions::quantize).
    void quantize_with(const QuantMix& mix, int n_gqa)
    {
        mix_ = mix;
        n_gqa_ = n_gqa;
    }
    // `w` in the type the mix gives its role, quantized row by row from its stored values into
    // owned memory; unchanged without a mix, for TensorRole::keep and when it is quantized
    // already.
    Weight quantized(Weight w, const TensorRole& role);
    // Accounts for a mapped tensor that was copied into owned memory (InternLM2's wqkv split).
    void mapped_to_owned(size_t bytes)
    {
        bytes_mapped_ -= std::min(bytes, bytes_mapped_);
        bytes_owned_ += bytes;
    }
    bool has(const std::string& name) const;
    const TensorSource& source() const { return source_; }

    size_t bytes_owned() const { return bytes_owned_; }
    size_t bytes_mapped() const { return bytes_mapped_; }

private:
    const SourceTensor& find_checked(const std::string& name,
                                     const std::vector<int64_t>& shape) const;
    void done(const SourceTensor& t, const std::string& name);

    const TensorSource& source_;
    std::function<void(float, const char*)> progress_;
    std::optional<QuantMix> mix_;
    Precision precision_ = Precision::f32;
    int n_gqa_ = 1;
    size_t bytes_total_ = 0;
    size_t bytes_done_ = 0;
    size_t bytes_owned_ = 0;
    size_t bytes_mapped_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Vision encoder (InternViT) and projector (mlp1)

struct VisionLayer
{
    Weight norm1_w, norm1_b; // [C] (bias absent for RMSNorm)
    Weight qkv_w, qkv_b; // [3C, C], [3C] (bias optional)
    Weight q_norm_w, q_norm_b; // [C] when qk_normalization
    Weight k_norm_w, k_norm_b; // [C]
    Weight proj_w, proj_b; // [C, C], [C]
    Weight ls1; // [C]
    Weight norm2_w, norm2_b; // [C]
    Weight fc1_w, fc1_b; // [I, C], [I]
    Weight fc2_w, fc2_b; // [C, I], [C]
    Weight ls2; // [C]
};

struct VisionWeights
{
    Weight patch_w, patch_b; // [C, 3, p, p], [C]
    // The class token plus its position, and the position embedding of the tiles' patch grid
    // [grid², C]: the stored g0×g0 grid, bicubically resampled at load when the tiles are not
    // image_size pixels (the reference does this every forward, with the same result).
    Weight cls_pos, pos_patch;
    std::vector<VisionLayer> layers;
    // mlp1: LayerNorm(r²C, eps 1e-5) -> Linear(r²C -> H) -> GELU -> Linear(H -> H)
    Weight mlp_ln_w, mlp_ln_b, mlp_fc1_w, mlp_fc1_b, mlp_fc2_w, mlp_fc2_b;
};

void load_vision(WeightLoader& loader, const ModelConfig& config, VisionWeights& out);
void place(Backend& backend, VisionWeights& w);

// pixels [n_tiles, 3, S, S] (host) -> [n_tiles · num_image_token, H] (host).
std::vector<float> vision_forward(Backend& backend, const VisionWeights& w,
                                  const ModelConfig& config, const float* pixels, int n_tiles,
                                  VisionTrace* trace);

// ---------------------------------------------------------------------------------------------
// Language model (Qwen2 / InternLM2 decoder)

struct LlmLayer
{
    Weight attn_norm; // [H]
    Weight q_w, q_b; // [Nh·D, H], [Nh·D] (bias: Qwen2 always, InternLM2 when `bias`)
    Weight k_w, k_b; // [Nkv·D, H]
    Weight v_w, v_b; // [Nkv·D, H]
    Weight o_w, o_b; // [H, Nh·D], [H] (bias: InternLM2 with `bias` only)
    Weight ffn_norm; // [H]
    Weight gate_w; // [F, H]
    Weight up_w; // [F, H]
    Weight down_w; // [H, F]
};

struct LlmWeights
{
    Weight embed; // [V, H]
    std::vector<LlmLayer> layers;
    Weight norm; // [H]
    Weight lm_head; // [V, H]; empty when tied to `embed`
    // q and k rows in llama.cpp's adjacent-pair RoPE order (an InternLM2 GGUF), rotated so.
    bool rope_pairs = false;
    // The rows up to which every product of the decoder gives each row the bits it gets alone
    // on the backend it is placed on (Backend::exact_rows): how many rows a batched step packs.
    int64_t exact_rows = Backend::kExactRows;
    const WeightMatrix& lm_head_matrix() const { return lm_head ? lm_head.mat : embed.mat; }
};

void load_llm(WeightLoader& loader, const LlmConfig& config, LlmWeights& out);
void place(Backend& backend, LlmWeights& w);

// The RoPE base for a forward that brings the cache to total_len tokens: rope_theta, or the
// dynamic-NTK base (docs/model.md §7.1) past max_position_embeddings. Updates the
// cache's rope_len with the reference's rules (InternLM2: grows, never shrinks; Qwen2: grows,
// resets when a forward fits again).
double rope_base(const LlmConfig& config, KvCache::Impl& cache, int64_t total_len);

struct ForwardScratch; // below, with the KV cache

// One sequence of a decoder pass: n tokens appended to its cache.
struct LlmSequence
{
    KvCache::Impl* cache;
    int n;
};

// Runs the sequences' tokens (embeddings [Σn, H] in backend memory, one sequence after the
// other) through the decoder in one pass over the weights, appending them to the caches, and
// returns logits in host memory `scratch` owns: of each sequence's last token [sequences, V],
// or with all_logits (one sequence) of every token [n, V]. Products take the rows of a
// sequence longer than w.exact_rows alone, and shorter sequences together up to that many rows,
// so that every sequence gets the bits it gets alone. A trace needs one sequence.
std::span<const float> llm_forward(const LlmWeights& w, const LlmConfig& config,
                                   std::span<const LlmSequence> sequences, Backend& backend,
                                   ForwardScratch& scratch, const float* embeddings,
                                   bool all_logits, LlmTrace* trace);

// ---------------------------------------------------------------------------------------------
// KV cache

// The paged cache. Each layer's tokens live in blocks of T = options.block_tokens tokens:
// block b of layer l (blocks[l][b]) holds tokens [b·T, (b+1)·T) as, per KV head, T key rows,
// then (from v_offset) per KV head T value rows, each row one token's D values of one head in
// the K or V type (cpu::kv_row_bytes). One head's keys in a block are thus a contiguous
// [T, D] matrix that attention reads in place (f32) or dequantizes into a small buffer.
// Blocks are allocated as the context grows and never move; truncate() frees the blocks past
// the new end.
//
// SKVQ (docs/skvq.md §4) keeps the same blocks for its quantized rows (cpu::skvq_row_bytes,
// in the layer's channel order). Tokens [0, sink) and [q_end, n_tokens) are held in f32
// instead, in fp[l][b]: a block of the same shape in f32, allocated when a token of the block
// is stored and freed once every token of it is quantized. store() writes new tokens there;
// settle() quantizes, after the layer's attention, the tokens that left the window, so the
// prefill attends to its own tokens in full precision. runs() cuts each block into f32 and
// quantized runs. Keys are cached after RoPE, like the other types: with dynamic NTK the
// reference keeps cached keys in their old rotation (docs/model.md §7.1), which re-rotating
// pre-RoPE keys would change, and a per-position rotation table read with every cached key
// would outweigh the 2-bit key rows in memory traffic.
// Scratch of a forward pass in backend memory, grown on demand and reused (decoding allocates
// nothing), and the logits handed back when the backend's are not host memory. Each cache has
// one for forward(), each Batch one for forward_batch().
struct ForwardScratch
{
    Buffer embed, x, h, q, kn, vn, attn, gate, up, logits, cos, sin;
    std::unique_ptr<Workspace> attention;
    std::vector<float> logits_host;

    size_t bytes() const;
};

struct KvCache::Impl
{
    // calibration: the SKVQ channel order and clipping (null: identity, options.skvq.clip).
    // The blocks and the scratch live on `backend`.
    Impl(int n_layers, int n_kv_heads, int head_dim, int max_position_embeddings,
         const KvCacheOptions& options = {}, const KvCalibration* calibration = nullptr,
         Backend& backend = cpu_backend());

    Backend& backend;

    int n_layers;
    int n_kv_heads;
    int head_dim;
    KvCacheOptions options;
    bool skvq;
    SkvqFormat k_fmt, v_fmt; // skvq
    size_t k_row_bytes, v_row_bytes; // one token of one KV head
    size_t v_offset; // where a block's value rows start (64-byte aligned)
    size_t block_bytes;
    int n_tokens = 0;
    std::vector<std::vector<Buffer>> blocks; // [layer][block]

    // SKVQ: per [layer][head], the channel order [D] and clipping factors [D/g] of K and V.
    std::vector<int32_t> k_perm, v_perm;
    std::vector<float> k_clip, v_clip;
    Buffer k_perm_b, v_perm_b, k_clip_b, v_clip_b; // the four in backend memory
    int q_end = 0; // tokens [sink, q_end) are quantized
    bool hold = false; // KvCache::hold_quantization: settle() waits
    std::vector<std::vector<Buffer>> fp; // [layer][block], f32, empty when unused
    size_t fp_block_floats = 0; // 2·n_kv_heads·T·D

    // Sequence length the rotary frequencies were last computed for, for the dynamic-NTK rules
    // of docs/model.md §7.1 (the reference keeps this state across calls).
    int64_t rope_len;

    // The scratch of forward() on this cache, and the run list of runs().
    ForwardScratch scratch;
    std::vector<KvRun> run_list;

    // Allocates the blocks that tokens [0, n_total) need in every layer.
    void reserve(int n_total);
    // Quantizes and stores the rotated keys and values of n tokens at positions pos0.. of a
    // layer (reserved): k_new, v_new [n, n_kv_heads·D]. SKVQ stores them in f32.
    void store(int layer, int pos0, int n, const float* k_new, const float* v_new);
    // SKVQ: the end of the quantized tokens once the layer holds n_total tokens.
    int quantized_end(int n_total) const;
    // SKVQ: quantizes the layer's tokens [q_end, quantized_end(n_total)) and frees the f32
    // blocks no token needs any more. The forward then sets q_end (no-op for other types, and
    // while held).
    void settle(int layer, int n_total);
    // SKVQ: settles every layer at n_tokens and moves q_end (release_quantization, append).
    void settle_all();
    // Keeps the first n tokens and frees the blocks past them.
    void truncate(int n);
    // The layer's first n tokens as attention runs, one per block (in run_list); SKVQ
    // blocks give one run per stretch of f32 or quantized tokens.
    std::span<const KvRun> runs(int layer, int n);
    size_t bytes_per_token() const;
    size_t bytes() const;

private:
    // SKVQ: the identity order and default clipping, or the calibration's.
    void skvq_tables(const KvCalibration* calibration);
};

// The state behind a cache, which model.h keeps private.
inline KvCache::Impl& cache_impl(KvCache& cache)
{
    return *cache.impl_;
}

// SKVQ calibration (kv-calibrate.cpp), exposed for tests: the channel order of one head whose
// channels span [lo[c], hi[c]] over the calibration tokens, as balanced clusters of g channels
// (stored position j holds channel perm[j]).
std::vector<int32_t> cluster_channels(const std::vector<float>& lo, const std::vector<float>& hi,
                                      int g);

// ---------------------------------------------------------------------------------------------

struct Batch::Impl
{
    ForwardScratch scratch;
    std::vector<LlmSequence> sequences;
};

struct InternVL::Impl
{
    Backend* backend = &cpu_backend(); // the weights' and every cache's
    ModelConfig config;
    // The files the mapped tensors point into: a checkpoint's, or the GGUF pair.
    std::optional<WeightSet> weights;
    std::optional<GgufFile> llm_gguf, mmproj_gguf;
    VisionWeights vision;
    LlmWeights llm;
    size_t bytes_owned = 0;
    size_t bytes_mapped = 0;
    FileWeights file_weights;
    std::optional<KvCalibration> kv_calibration;
};

} // namespace iris::model
