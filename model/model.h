// model — weight files, configuration, tokenizers and the InternVL network (InternViT, pixel
// shuffle, mlp1, Qwen2 / InternLM2) on the CPU.
//
//   auto st = iris::model::SafeTensors::open("model.safetensors");   // validated, mmapped
//   const auto& t = st.get("mlp1.1.weight");                        // throws if absent
//
//   auto cfg = iris::model::ModelConfig::load("checkpoint/config.json");
//   auto tok = iris::model::Tokenizer::load("checkpoint/");          // Qwen2 BPE or SentencePiece
//   std::vector<int32_t> ids = tok->encode("Hello", /*add_bos=*/true);
//
// Every failure on bad input is an iris::Error naming the file, tensor or field.
// Thread safety: loaded objects are immutable and may be shared between threads.
#pragma once

#include "core/core.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iris::model {

class GgufMetadata; // model/gguf.h

// =============================================================================================
// Tensors in safetensors files

// u8 is raw bytes (ggml's quantized blocks, for one); no conversion reads it.
enum class DType { f32, f16, bf16, i32, i64, u8 };

size_t dtype_size(DType dtype);
// "F32", "F16", "BF16", "I32", "I64", "U8" (the safetensors spelling).
const char* dtype_name(DType dtype);

// A tensor stored in a file. `data` points into the memory-mapped file and stays valid as long
// as the SafeTensors (or WeightSet) that returned it lives.
struct TensorInfo
{
    std::string name;
    DType dtype = DType::f32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;

    int64_t numel() const;
    // Converts (F32, F16, BF16) to float32; throws Error(unsupported) for integer tensors.
    std::vector<float> to_f32() const;
    // Converts integer tensors (I32, I64) to int64; throws Error(unsupported) for floats and U8.
    std::vector<int64_t> to_i64() const;
};

// One .safetensors file, memory-mapped read-only. open() validates the whole header before
// anything is allocated from it: header length cap, UTF-8 and JSON, tensor-count cap, known
// dtypes, shape x dtype arithmetic without overflow, offsets sorted, contiguous, inside the
// file and non-overlapping.
class SafeTensors
{
public:
    static SafeTensors open(const std::string& path);
    SafeTensors(SafeTensors&&) noexcept;
    SafeTensors& operator=(SafeTensors&&) noexcept;
    ~SafeTensors();

    const std::string& path() const;
    const std::vector<TensorInfo>& tensors() const; // in file order
    const TensorInfo* find(std::string_view name) const;
    const TensorInfo& get(std::string_view name) const; // throws Error(not_found) naming the file
    const std::map<std::string, std::string>& metadata() const; // the __metadata__ object

private:
    SafeTensors();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The weights of a checkpoint folder: a single model.safetensors, or the shards listed by
// model.safetensors.index.json (every shard validated; a tensor listed but missing is an error).
class WeightSet
{
public:
    static WeightSet open_dir(const std::string& dir);
    WeightSet(WeightSet&&) noexcept;
    WeightSet& operator=(WeightSet&&) noexcept;
    ~WeightSet();

    const TensorInfo* find(std::string_view name) const;
    const TensorInfo& get(std::string_view name) const; // throws Error(not_found) naming the folder
    std::vector<std::string> names() const;

private:
    WeightSet();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Writes a safetensors file. write() goes through a temporary file, fsync and rename, so a
// crash never leaves a partial file under the final name.
class SafeTensorsWriter
{
public:
    void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
             size_t nbytes);
    void add_f32(const std::string& name, std::vector<int64_t> shape,
                 std::span<const float> values);
    void add_i64(const std::string& name, std::vector<int64_t> shape,
                 std::span<const int64_t> values);
    void set_metadata(const std::string& key, const std::string& value);
    void write(const std::string& path) const;

private:
    struct Entry
    {
        std::string name;
        DType dtype;
        std::vector<int64_t> shape;
        std::vector<uint8_t> bytes;
    };
    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
};

// Where a model's files are: a Hugging Face checkpoint folder (config.json, safetensors and
// the tokenizer files), or llama.cpp's two GGUF files, the language model with its tokenizer
// and the mmproj with the vision tower and projector.
struct ModelPaths
{
    std::string dir; // the checkpoint folder, or the folder of the language-model GGUF
    std::string gguf; // the language-model GGUF; empty for a checkpoint
    std::string mmproj; // the mmproj GGUF; empty when none was given or found

    bool is_gguf() const { return !gguf.empty(); }
    // A name for the model: the folder's, or the GGUF file's without ".gguf".
    std::string name() const;

    // `model` is a checkpoint folder, a .gguf file, or a folder with no config.json that holds
    // one language-model GGUF (and an mmproj*.gguf beside it). `mmproj` names the mmproj file;
    // when empty, the one mmproj*.gguf beside the language model is taken if there is exactly
    // one. Throws Error(not_found) for a path that does not exist or a folder with neither a
    // checkpoint nor a GGUF, and Error(invalid_argument) when a folder holds several language
    // models or mmproj files to choose from, or when `mmproj` is given for a checkpoint.
    static ModelPaths resolve(const std::string& model, const std::string& mmproj = {});
};

// The instruction set of the CPU kernels this machine runs: "avx512-vnni", "avx2" or
// "portable" (IRIS_CPU=avx2 or =portable chooses a lesser one).
const char* cpu_kernels_name();

// bf16 / f16 <-> f32 conversions (round to nearest even).
float bf16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float v);
float f16_to_f32(uint16_t v);
uint16_t f32_to_f16(float v);

// =============================================================================================
// Configuration (config.json of an `internvl_chat` checkpoint)

enum class LlmArch { qwen2, internlm2 };

struct VisionConfig
{
    int hidden_size = 0;
    int num_hidden_layers = 0;
    int num_attention_heads = 0;
    int intermediate_size = 0;
    int patch_size = 14;
    int image_size = 448;
    int num_channels = 3;
    float layer_norm_eps = 1e-6f;
    bool rms_norm = false; // norm_type "rms_norm" (InternViT-6B) instead of "layer_norm"
    bool qkv_bias = true;
    bool qk_normalization = false;
};

struct LlmConfig
{
    LlmArch arch = LlmArch::qwen2;
    int hidden_size = 0;
    int intermediate_size = 0;
    int num_hidden_layers = 0;
    int num_attention_heads = 0;
    int num_key_value_heads = 0;
    int head_dim = 0; // hidden_size / num_attention_heads
    int vocab_size = 0;
    int max_position_embeddings = 32768;
    float rms_norm_eps = 1e-6f;
    float rope_theta = 10000.f;
    std::string rope_scaling_type; // "" (none), "dynamic" or "linear"
    float rope_scaling_factor = 1.f;
    bool attention_bias = false; // Qwen2: q/k/v biases (always on); InternLM2: the `bias` field
    bool tie_word_embeddings = false;
};

struct ModelConfig
{
    VisionConfig vision;
    LlmConfig llm;
    int force_image_size = 448;
    float downsample_ratio = 0.5f;
    int select_layer = -1;
    std::string ps_version = "v2";
    std::string template_name = "internvl2_5";
    std::optional<std::string> system_message; // absent or null in the file: template default
    int min_dynamic_patch = 1;
    int max_dynamic_patch = 12;
    bool use_thumbnail = true;
    bool dynamic_image_size = true;

    // (image_size / patch_size)^2 * downsample_ratio^2, e.g. 256 for 448 / 14 / 0.5.
    int num_image_token() const;

    // Throws Error naming the field for anything missing, malformed or unsupported.
    static ModelConfig load(const std::string& config_json_path);
    // The configuration of a checkpoint's config.json, or of llama.cpp's GGUF pair's metadata.
    static ModelConfig of(const ModelPaths& paths);
    static ModelConfig parse(std::string_view json_text, const std::string& origin);
};

// =============================================================================================
// Tokenizers

// InternLM2 (SentencePiece tokenizer.model) or Qwen2 (byte-level BPE from vocab.json +
// merges.txt, or tokenizer.json), with the checkpoint's added tokens (tokenizer_config.json
// added_tokens_decoder, added_tokens.json, tokenizer.json added_tokens) matched first.
class Tokenizer
{
public:
    virtual ~Tokenizer() = default;

    // Loads from a folder holding the tokenizer files (a checkpoint folder, or only those
    // files), or from llama.cpp's language-model GGUF (a .gguf file, or a folder holding one and
    // no tokenizer files; see ModelPaths::resolve) by from_gguf.
    static std::unique_ptr<Tokenizer> load(const std::string& dir);
    // The tokenizer a llama.cpp GGUF language model carries in its tokenizer.ggml.* metadata:
    // "gpt2" (Qwen2's byte-level BPE) or "llama" (SentencePiece, InternLM2). Control and
    // user-defined tokens become added tokens (special when control), matched first as the
    // Hugging Face tokenizer does; bos/eos from tokenizer.ggml.bos_token_id / eos_token_id,
    // add_bos from tokenizer.ggml.add_bos_token (default: Qwen2 no, InternLM2 yes). For the
    // files iris quantize writes from an InternVL checkpoint (as llama.cpp's converter does),
    // encode() and decode() give what load() gives on the checkpoint (tokenizer-gguf.cpp lists
    // what GGUF cannot carry). Throws Error(invalid_input) naming the key for missing, mistyped or
    // inconsistent metadata, Error(unsupported) for another tokenizer.ggml.model or a gpt2
    // tokenizer.ggml.pre other than "qwen2".
    static std::unique_ptr<Tokenizer> from_gguf(const GgufMetadata& metadata);

    // Encodes text exactly like the official slow tokenizer. With add_bos, the BOS token is
    // prepended where the model's tokenizer does so (InternLM2's <s>; Qwen2 adds nothing); it
    // stands for HF's add_special_tokens, so an EOS is appended too if the config's
    // add_eos_token says so. Never throws on any input: ill-formed UTF-8 is first replaced by
    // U+FFFD (one per maximal ill-formed subpart, like Python's errors="replace").
    virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
    // A prompt part: template text (special: the strings of added tokens in it become their
    // ids) or client text (plain: they stay ordinary text, as HF's split_special_tokens=True
    // encodes them, so a user's "<|im_end|>" can never close a turn).
    struct TextPart
    {
        std::string_view text;
        bool special = false;
    };
    // Encodes the parts as one prompt: the text between added tokens runs on across part
    // boundaries, so the ids equal encode(concatenation) whenever no plain part holds an
    // added-token string. encode(text, add_bos) is the one-special-part case.
    virtual std::vector<int32_t> encode(std::span<const TextPart> parts, bool add_bos) const = 0;
    // Client text alone (one plain part): captions, transcripts, answers to score.
    std::vector<int32_t> encode_text(std::string_view text, bool add_bos) const
    {
        const TextPart part {text, false};
        return encode(std::span<const TextPart>(&part, 1), add_bos);
    }
    // Decodes ids to UTF-8 (invalid sequences replaced by U+FFFD). skip_special drops added
    // special tokens and control tokens. Ids outside the vocabulary are ignored. The text
    // between two added tokens is decoded on its own, so SentencePiece's dummy-prefix space that
    // encode() puts at the start of each segment is removed again: decode(encode(t, false), false)
    // == t for valid UTF-8 t (Qwen2: NFC(t); SentencePiece: a byte-fallback model, t without
    // U+2581, which SentencePiece reads as a space).
    virtual std::string decode(std::span<const int32_t> ids, bool skip_special) const = 0;
    // Decodes exactly like the official slow tokenizer's decode() (transformers 4.37.2, the
    // version InternVL pins), quirks included: InternLM2 puts a space before a leading special
    // token and joins added tokens beyond the SentencePiece vocabulary with spaces ("Hello"
    // with <s> decodes to " <s>Hello"). For comparing with reference outputs; show decode().
    virtual std::string decode_hf(std::span<const int32_t> ids, bool skip_special) const = 0;
    // Whether decode(..., skip_special=true) drops the id: added tokens marked special, the
    // special tokens of the tokenizer config (bos, eos, unk, pad, additional_special_tokens) and
    // SentencePiece control/unknown pieces.
    virtual bool is_special(int32_t id) const = 0;
    // The token's own string (e.g. "Ġthe", "▁the", "<|im_end|>"); empty if out of range.
    virtual std::string token_text(int32_t id) const = 0;
    // The id of a token given its exact string (added tokens and vocabulary entries).
    virtual std::optional<int32_t> token_id(std::string_view token) const = 0;
    // Number of ids (vocabulary plus added tokens), i.e. len(tokenizer).
    virtual int32_t size() const = 0;
    virtual std::optional<int32_t> bos_id() const = 0;
    virtual bool adds_bos() const = 0;
};

// =============================================================================================
// The InternVL network: InternViT + pixel shuffle + mlp1 + a Qwen2 or InternLM2 decoder, fp32
// on the CPU (model/cpu/ops.h is the reference backend).
//
//   auto net = iris::model::InternVL::load("InternVL2_5-1B/", {.progress = on_progress});
//   // pixel values [n_tiles, 3, 448, 448], ImageNet-normalised, thumbnail last:
//   std::vector<float> visual = net->encode_images(pixels, n_tiles); // [n_tiles·256, hidden]
//   auto cache = net->new_cache({.k_type = KvType::q8, .v_type = KvType::q8}); // {}: f32
//   auto logits = net->forward(*cache, prompt_ids, visual, img_context_id); // [vocab], last token
//   int32_t next = argmax(logits);
//   logits = net->forward(*cache, {&next, 1}, {}, -1);   // one decode step: generated ids are text
//
// Weights: F32 tensors are used in place from the memory-mapped files; BF16/F16 tensors are
// converted to f32 at load (twice their file size in memory). InternLM2's fused wqkv is split
// into q/k/v at load (docs/model.md §7.2). A missing lm_head falls back to the input embedding
// with a warning (docs/model.md §2.5).
// Threads: iris::default_thread_pool() (sized by IRIS_THREADS); OpenBLAS is set to 1 thread.
// Thread safety: an InternVL is immutable after load and may be used from several threads at
// once, each with its own KvCache; one KvCache must not be used by two threads at once.

// The precision of the activations in products of many rows (prompts, images) with BF16
// weights: f32, the exact products of the stored weights (the default: the official outputs,
// to fp32 rounding), or bf16, rounded to bf16 for AVX512_BF16's dot products, about twice as
// fast on CPUs that have them (a no-op elsewhere). Decoding reads each weight once and keeps
// f32 either way.
enum class Precision { f32, bf16 };
const char* precision_name(Precision p); // "f32", "bf16"
// The precision of a name precision_name gives; throws Error(invalid_argument) otherwise.
Precision precision_from_name(std::string_view name);

// Where the network runs: "cpu", then "cuda:0", "cuda:1", ... for the GPUs this build (CUDA
// backend compiled in) and this machine (driver and device present) can use.
std::vector<std::string> available_devices();

struct LoadOptions
{
    // Called during load with the fraction done in [0, 1] and what is being loaded.
    std::function<void(float fraction, const char* what)> progress;
    // A llama.cpp file type ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q4_K_S",
    // "q4_K_M", "q5_K_S", "q5_K_M", "q6_K") to quantize the language model's matrices to at load,
    // each tensor getting the type llama-quantize would give it; empty: as stored. The vision
    // tower and projector stay as stored (they run as matrix products, where quantized weights
    // save memory but no time).
    std::string quantize;
    Precision precision = Precision::f32;
    // The mmproj GGUF of a language-model GGUF (ModelPaths::resolve): empty to find it beside.
    std::string mmproj;
    // Where the weights go and the network runs: "cpu", "cuda" (the first GPU) or "cuda:N"
    // (available_devices()); empty: $IRIS_DEVICE, else the CPU (so IRIS_DEVICE=cuda runs the
    // test suite on a GPU). A device this build or machine lacks is an Error naming those it has.
    std::string device;
};

// Intermediates of encode_images, for tests and debugging. Cv = vision width, P = patches per
// tile + 1 (CLS first), L = vision layers run (up to select_layer).
struct VisionTrace
{
    // [n_tiles, P, Cv]: patch conv + CLS + position embedding
    std::vector<float> embeddings;
    // [L + 1, n_tiles, P, Cv]: each layer's input, then the last layer's output
    std::vector<float> hidden_states;
    // [n_tiles, P, Cv]: the select_layer output (CLS first)
    std::vector<float> selected;
    // [n_tiles, num_image_token, 4·Cv]: CLS dropped, pixel-shuffled
    std::vector<float> pixel_shuffle;
};

// Intermediates of a forward pass over n_new tokens (H = LLM hidden size, L = layers).
struct LlmTrace
{
    // [L + 1, n_new, H]: the input embeddings, then each layer's output
    std::vector<float> hidden_states;
    // [n_new, H]: after the final RMSNorm
    std::vector<float> final_norm;
    // [L, n_new, Nh·D]: each layer's attention output (before o_proj)
    std::vector<float> attention;
};

// How the KV cache stores keys and values (docs/kv-cache.md). Keys are stored after RoPE. The
// quantized types work per token and per head, in groups of channels that never cross a head:
//   f32   4 bytes per value, the reference
//   f16   2 bytes per value (IEEE half, round to nearest even)
//   q8    llama.cpp's q8_0: an fp16 scale and 32 int8 per group, 8.5 bits per value
//   q4    llama.cpp's q4_0: an fp16 scale and 32 nibbles per group, 4.5 bits per value
//   skvq  SKVQ (docs/skvq.md): asymmetric min/scale groups of KvSkvqOptions::group channels after
//         a calibrated channel order, clipped, the first `sink` and the last `window` tokens
//         kept in f32 (K and V are then both skvq)
// q8 and q4 use groups of 32 channels (gcd(head_dim, 32) when 32 does not divide head_dim, e.g.
// 16 in the tiny test models).
enum class KvType { f32, f16, q8, q4, skvq };

const char* kv_type_name(KvType type); // "f32", "f16", "q8", "q4", "skvq"
// The type of a name kv_type_name gives; throws Error(invalid_argument) listing the names.
KvType kv_type_from_name(std::string_view name);

// The SKVQ settings (docs/skvq.md §1). Bits: keys 2, 4 or 8; values 1.5 (three levels, stored in
// 2 bits), 2, 4 or 8. Groups hold min(group, head_dim) channels of one head (the calibrated
// clusters are kept inside a head, so attention dequantizes one head at a time). Scale and
// minimum are fp16. Prefill attention sees the new tokens in full precision; a token is
// quantized when it leaves the window.
struct KvSkvqOptions
{
    float k_bits = 2.f;
    float v_bits = 1.5f;
    int group = 128; // 32, 64 or 128
    int sink = 5; // first tokens never quantized
    int window = 128; // last tokens never quantized
    // The clipping factor α of every group; 0: the calibrated factors of the model's
    // kv-calibration file, or kSkvqDefaultClip without one.
    float clip = 0.f;
};
constexpr float kSkvqDefaultClip = 1.0f;

// "K2V1.5" (also lower case) -> k_bits, v_bits; throws Error(invalid_argument) naming the
// allowed values.
void parse_kv_bits(std::string_view text, KvSkvqOptions& out);
std::string kv_bits_name(const KvSkvqOptions& o); // "K2V1.5"

// The storage of one KV cache. K and V may differ (like llama.cpp's -ctk / -ctv), except that
// skvq is both or neither.
struct KvCacheOptions
{
    KvType k_type = KvType::f32;
    KvType v_type = KvType::f32;
    // Tokens per block: the cache grows and shrinks by whole blocks of every layer.
    int block_tokens = 64;
    KvSkvqOptions skvq; // used when the types are skvq
};

// A short name of the settings: "f16", "q8/q4", "skvq K2V1.5 g32 w128 s5".
std::string kv_cache_name(const KvCacheOptions& options);

// The per-session state of the decoder: the keys and values of every layer, in blocks of
// block_tokens tokens allocated as the context grows (earlier blocks never move) and freed by
// truncate() and the destructor, and the scratch buffers of the forward pass, so that decoding
// allocates nothing but a new block now and then.
class KvCache
{
public:
    struct Impl; // model-internal (model/network-impl.h)
    ~KvCache();
    KvCache(const KvCache&) = delete;
    KvCache& operator=(const KvCache&) = delete;

    // Tokens held, i.e. the position the next token gets.
    int n_tokens() const;
    // Forgets everything after the first n tokens (a session rolling back an answer). Throws
    // Error(invalid_argument) unless 0 <= n <= n_tokens().
    void truncate(int n);
    void clear() { truncate(0); }
    // Becomes a copy of `other`, a cache of the same network and options: its tokens, their keys
    // and values, and the state the next forward depends on, so that going on from the copy
    // gives the bits going on from `other` gives (a prompt prefix shared between sessions,
    // reasoning/prefix-cache.h). Throws Error(invalid_argument) for another shape, options or
    // backend.
    void assign(const KvCache& other);
    // Memory held: the blocks in use and the scratch.
    size_t bytes() const;
    // Bytes of keys and values one token takes in every layer, quantization scales included
    // (SKVQ: a quantized token; the f32 sink and window are beside them).
    size_t bytes_per_token() const;
    // SKVQ: while held, tokens that leave the window stay in full precision, so that a prompt
    // fed in several chunks attends to all of itself in full precision; release() quantizes
    // what left the window meanwhile. No-ops for the other types.
    void hold_quantization();
    void release_quantization();
    // For benchmarks: appends n tokens of random keys and values (key-like per-channel offsets
    // and scales) without running the network, stored as a prompt's would be.
    void append_random(int n, uint64_t seed);
    const KvCacheOptions& options() const;

private:
    friend class InternVL; // makes caches (new_cache)
    friend Impl& cache_impl(KvCache& cache); // the model module's access (model/network-impl.h)
    explicit KvCache(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The SKVQ calibration of a model (docs/skvq.md §2): per layer, K/V and KV head, the channel
// order that puts channels of similar range into one group, and a clipping factor per group
// for each bit width. Groups are clusters of exactly `group` channels of one head (SKVQ's
// k-means clusters span heads and vary in size; see kv-calibrate.cpp). Stored beside the model
// as kv-calibration.safetensors and loaded with it.
struct KvCalibration
{
    int n_layers = 0, n_kv_heads = 0, head_dim = 0;
    // Per effective group size g (min(group, head_dim)): perm [layer][head][D] (stored channel
    // j of a head row is channel perm[j]) for "k" and "v".
    std::map<int, std::vector<int32_t>> k_perm, v_perm;
    // Per "g<g>.k<bits>" / "g<g>.v<bits>" (e.g. "g32.v1.5"): α [layer][head][D/g].
    std::map<std::string, std::vector<float>> clip;

    // Throws Error(invalid_input) naming the file and what is wrong: not safetensors, another
    // model's shape, a tensor missing or of the wrong shape, a perm that is not a permutation,
    // a clipping factor outside [0.5, 1].
    static KvCalibration load(const std::string& path, int n_layers, int n_kv_heads, int head_dim);
    void save(const std::string& path) const; // atomically (temporary file and rename)
};

// The sidecar file of a model folder: DIR/kv-calibration.safetensors.
std::string kv_calibration_path(const std::string& model_dir);

// One sequence's part of a batched step (InternVL::forward_batch): tokens appended to its
// cache, as forward() takes them.
struct BatchItem
{
    KvCache* cache = nullptr;
    std::span<const int32_t> ids;
    std::span<const float> visual;
    int32_t img_context_id = -1;
};

// The scratch of batched steps (InternVL::new_batch), kept by whoever schedules them and
// reused from step to step; the logits of a step live in it until the next.
class Batch
{
public:
    struct Impl; // model-internal (model/network-impl.h)
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    // Scratch memory held.
    size_t bytes() const;

private:
    friend class InternVL;
    explicit Batch(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

class InternVL
{
public:
    // Loads config.json and the safetensors weights of a checkpoint folder, or llama.cpp's
    // language-model and mmproj GGUF files (`model` and options.mmproj as ModelPaths::resolve
    // takes them; the configuration then comes from their metadata), and the SKVQ calibration
    // kv-calibration.safetensors when the folder has one. GGUF tensors of every weight type
    // are used in place from the mapped files. Throws Error (not_found, invalid_input,
    // unsupported) naming the file or tensor: missing tensors, shapes that disagree with the
    // config, unsupported architectures or types, a GGUF without its mmproj.
    static std::unique_ptr<InternVL> load(const std::string& model,
                                          const LoadOptions& options = {});
    ~InternVL();

    const ModelConfig& config() const;
    // Visual tokens per tile (256 for 448 / 14 / 0.5).
    int num_image_token() const;
    // Where it runs: "cpu", "cuda:0", ... (LoadOptions::device).
    std::string device() const;
    // Bytes of weights held in memory (converted copies) and mapped in place.
    size_t weight_bytes_owned() const;
    size_t weight_bytes_mapped() const;
    // The network's tensors as stored in the files: parameters, bytes and their types ("BF16",
    // "q4_K+q6_K+f32": most bytes first, as the files spell them).
    struct FileWeights
    {
        int64_t params = 0;
        uint64_t bytes = 0;
        std::string types;
    };
    const FileWeights& file_weights() const;

    // pixel_values [n_tiles, 3, S, S] (S = force_image_size) -> visual tokens
    // [n_tiles·num_image_token, llm_hidden], tile-major. Throws Error(invalid_argument) if the
    // size does not match.
    std::vector<float> encode_images(std::span<const float> pixel_values, int n_tiles,
                                     VisionTrace* trace = nullptr) const;

    // An empty cache. Throws Error(invalid_argument) for block_tokens outside 1..65536 and bad
    // SKVQ settings. An skvq cache takes the model's calibration (identity order and
    // KvSkvqOptions::clip without one).
    std::unique_ptr<KvCache> new_cache(const KvCacheOptions& options = {}) const;
    // The calibration loaded from the model folder (kv-calibration.safetensors), if any.
    const KvCalibration* kv_calibration() const;

    // Token embeddings [ids.size(), H]; positions with id == img_context_id (-1: none) take the
    // rows of `visual` ([n_img, H]) in order. Throws Error(invalid_argument) for an id outside the
    // vocabulary or when the number of img_context ids differs from n_img.
    std::vector<float> embed(std::span<const int32_t> ids, std::span<const float> visual,
                             int32_t img_context_id) const;

    // Appends the tokens to the cache (positions n_tokens()..) and returns the logits of the
    // last token [vocab], or of every new token [ids.size(), vocab] with all_logits. The span
    // points into the cache and stays valid until its next forward. Same errors as embed();
    // on error the cache is unchanged.
    std::span<const float> forward(KvCache& cache, std::span<const int32_t> ids,
                                   std::span<const float> visual, int32_t img_context_id,
                                   bool all_logits = false, LlmTrace* trace = nullptr) const;
    // The same from embeddings [n_tokens, H].
    std::span<const float> forward_embeddings(KvCache& cache, std::span<const float> embeddings,
                                              int n_tokens, bool all_logits = false,
                                              LlmTrace* trace = nullptr) const;

    std::unique_ptr<Batch> new_batch() const;
    // Advances several sequences in one step: each item's tokens are appended to its own cache
    // (any KV type, any position), and every product reads the weights once for all of them.
    // Returns the logits of each item's last token [items.size(), vocab], in item order, valid
    // until the batch's next step; they are bit for bit those forward() gives the item alone
    // (Backend::exact_rows). Throws Error(invalid_argument) for no items, an item without tokens
    // or cache, a cache given twice or made by another backend, and the errors of embed(); on
    // error no cache is changed.
    std::span<const float> forward_batch(Batch& batch, std::span<const BatchItem> items) const;

private:
    struct Impl; // model-internal (model/network-impl.h)
    explicit InternVL(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Calibrates the SKVQ cache of `net` on prompts given as embeddings (each [n, H], e.g. from
// InternVL::embed): runs them through an f32 cache, keeps up to max_tokens keys and values
// per layer (evenly spread), and for every group size clusters each head's channels by their
// (min, max) into equal groups, then grid-searches each group's clipping factor (0.80..1.00)
// for the least squared error at every bit width. progress gets the fraction done.
KvCalibration calibrate_kv(const InternVL& net, std::span<const std::vector<float>> prompts,
                           int max_tokens = 4096,
                           const std::function<void(float, const char*)>& progress = {});

// =============================================================================================
// Export for llama.cpp (gguf-export.cpp)

struct QuantizeOptions
{
    // The language model's type: a llama.cpp file type ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
    // "iq4_nl", "q4_K_S", "q4_K_M", "q5_K_S", "q5_K_M", "q6_K"; case-insensitive), each matrix
    // getting the type llama-quantize gives it, or "f16", "bf16", "f32" for every matrix, as
    // llama.cpp's converter writes them. Norms and biases stay f32 either way.
    std::string type;
    // The vision tower and projector: "f16" (the converter's default), "f32" or "q8_0".
    std::string mmproj_type = "f16";
    std::string out_dir; // created if missing
    bool force = false; // replace existing output files (else they are an error)
    // The language model's tokenizer.chat_template (Jinja) when the checkpoint has none in
    // tokenizer_config.json (or chat_template.jinja / .json); empty: none.
    std::string chat_template;
    // The fraction of both files' tensor bytes written, and the tensor being written.
    std::function<void(float fraction, const char* what)> progress;
};

struct QuantizeResult
{
    std::string llm_path, mmproj_path;
    uint64_t llm_bytes = 0, mmproj_bytes = 0; // file sizes
    size_t llm_tensors = 0, mmproj_tensors = 0;
};

// Writes an InternVL checkpoint folder (Qwen2 or InternLM2 language model) the way llama.cpp
// lays out InternVL, <name> being the folder's name and TYPE the type in capitals:
//   out_dir/<name>-<TYPE>.gguf         the language model (architecture "qwen2" or "internlm2")
//                                      with its tokenizer, for llama-cli / llama-bench
//   out_dir/mmproj-<name>-<TYPE>.gguf  InternViT and mlp1 for llama.cpp's clip (projector
//                                      "internvl"), for llama-mtmd-cli --mmproj
// Tensor names, layouts, metadata and tokenizer are those of llama.cpp's converter (InternLM2's
// wqkv split into q/k/v, q and k rows permuted to GGML's RoPE order), and each quantized
// tensor holds the bytes llama-quantize writes from the same values. Tensors are quantized
// row by row on iris::default_thread_pool() as they are written; each file is written to a
// temporary and renamed. Throws Error: invalid_argument for an unknown type (listing the
// valid ones) or an existing output without force, not_found / invalid_input / unsupported
// for a folder that is not such a checkpoint (config, tensors, tokenizer), io from the system.
QuantizeResult quantize_checkpoint(const std::string& dir, const QuantizeOptions& options);

} // namespace iris::model
