// reasoning/engine — the engine that answers: a loaded model with its tokenizer and chat
// template, and multi-turn sessions that keep their KV cache between turns.
//
//   auto engine = Engine::load("InternVL2_5-1B/");
//   Session chat(*engine);
//   AskOptions opts;                                   // greedy, 512 new tokens
//   Answer a = chat.ask("What is in the image?", {load_image("cat.png")}, opts,
//                       [](std::string_view piece) { std::cout << piece; return true; });
//   Answer b = chat.ask("And its colour?", {}, opts, {}); // reuses the cached first turn
//
// Thread safety: an Engine is immutable once loaded and may be shared between threads; a Session
// is used by one thread at a time.
#pragma once

#include "model/model.h"
#include "reasoning/batcher.h"
#include "reasoning/image.h"
#include "reasoning/prompt.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iris::reasoning {

class PrefixCache; // reasoning/prefix-cache.h

// An image's visual tokens (Engine::encode), to show one image with many questions.
struct EncodedImage
{
    int n_tiles = 0;
    std::vector<float> visual; // [n_tiles * num_image_token, llm hidden size]
};

struct EngineOptions
{
    // The network's: progress, quantize at load, precision, mmproj and the device it runs on.
    model::LoadOptions load;
    // The KV cache of every session that does not choose its own (f32 by default).
    model::KvCacheOptions kv_cache;
};

class Engine
{
public:
    // Loads a checkpoint folder or llama.cpp's GGUF files (model::ModelPaths::resolve): network,
    // tokenizer and chat template. Throws Error naming the file or field that is wrong.
    static std::unique_ptr<Engine> load(const std::string& model_dir,
                                        const EngineOptions& options = {});

    const model::InternVL& network() const { return *network_; }
    const model::Tokenizer& tokenizer() const { return *tokenizer_; }
    const model::ModelConfig& config() const { return network_->config(); }
    const ChatTemplate& chat_template() const { return *template_; }
    int32_t img_context_id() const { return img_context_id_; }
    int32_t eos_id() const { return eos_id_; } // the template separator token (<|im_end|>)
    int32_t img_end_id() const { return img_end_id_; } // </img>, -1 without one
    // The checkpoint's tiling with max_tiles overridden when > 0.
    TilingOptions tiling(int max_tiles) const;
    // Runs the vision tower on an image's tiles.
    EncodedImage encode(const PreparedImage& image) const;
    // The sessions' default KV cache (EngineOptions::kv_cache).
    const model::KvCacheOptions& kv_cache() const { return kv_cache_; }

    Engine(std::unique_ptr<model::InternVL> network, std::unique_ptr<model::Tokenizer> tokenizer,
           const model::KvCacheOptions& kv_cache = {});

private:
    std::unique_ptr<model::InternVL> network_;
    std::unique_ptr<model::Tokenizer> tokenizer_;
    model::KvCacheOptions kv_cache_;
    const ChatTemplate* template_ = nullptr;
    int32_t img_context_id_ = -1;
    int32_t eos_id_ = -1;
    int32_t img_end_id_ = -1;
};

struct AskOptions
{
    SamplingParams sampling;
    int max_tiles = 0; // 0: the checkpoint's max_dynamic_patch
    ImageLayout layout = ImageLayout::single; // how several images are introduced
    // "<image>" in the question places the images (with_image_markers); otherwise it is
    // text and the images go in front. Only for a user who asks for it (iris ask
    // --image-markers).
    bool image_markers = false;
    // The longest prompt (the whole conversation, image tokens included) that is run; 0: the
    // model's max_position_embeddings, which is also the limit when this is larger. A longer
    // prompt is Error(invalid_argument) before its first forward pass.
    int max_prompt_tokens = 0;
    std::function<void(float fraction)> progress; // prompt processing progress
    // Polled before every forward pass (each prefill chunk and each decode step); returning true
    // ends generation with finish_reason "cancelled" (e.g. a client that went away).
    std::function<bool()> cancelled;
    // The end token is never sampled, so generation runs to max_new_tokens (load tests).
    bool ignore_eos = false;
    // Runs the forward passes in the batcher's steps, together with other sessions' (the
    // answer is the same); null: alone.
    Batcher* batcher = nullptr;
};

struct GenerationStats
{
    int n_prompt_tokens = 0; // the whole conversation's prompt
    int n_reused_tokens = 0; // taken from the KV cache of earlier turns
    int n_generated = 0;
    int n_tiles = 0;
    double vision_ms = 0;
    double prefill_ms = 0;
    double decode_ms = 0;
};

struct Answer
{
    std::string text; // stripped, stop strings cut
    std::vector<int32_t> tokens; // generated ids, the stop token included when there was one
    std::string finish_reason; // "stop" (end token or stop string), "length" or "cancelled"
    GenerationStats stats;
};

// Receives each new piece of the answer; return false to cancel generation.
using TextCallback = std::function<bool(std::string_view piece)>;

// A multi-turn conversation. The prompt of each turn is the whole conversation rendered as the
// official chat() does; the part that equals what the KV cache already holds is not recomputed.
class Session
{
public:
    // kv_cache chooses the storage of this session's KV cache (default: the engine's). With a
    // prefix cache, prompts are fed in its segments, prefixes and images other sessions computed
    // are taken from it and this session's are kept there (reasoning/prefix-cache.h).
    explicit Session(const Engine& engine, std::string system_message = "",
                     const std::optional<model::KvCacheOptions>& kv_cache = std::nullopt,
                     PrefixCache* shared = nullptr);

    // The ids the next ask() would feed the model for this question, the whole conversation
    // included (what `iris prompt` prints). tiles_per_image gives each new image's tile count.
    std::vector<int32_t> prompt_ids(const std::string& question,
                                    const std::vector<int>& tiles_per_image,
                                    ImageLayout layout = ImageLayout::single) const;

    // Adds a user turn with its images and generates the answer.
    Answer ask(const std::string& question, const std::vector<Image>& images,
               const AskOptions& options, const TextCallback& on_text);
    // Adds a user turn with already preprocessed images.
    Answer ask(const std::string& question, const std::vector<PreparedImage>& images,
               const AskOptions& options, const TextCallback& on_text);
    // Adds a user turn with images already through the vision tower (Engine::encode).
    Answer ask(const std::string& question, const std::vector<EncodedImage>& images,
               const AskOptions& options, const TextCallback& on_text);
    // The logits of the first answer token to this question (what ask() would sample from),
    // without adding the turn: scoring many questions about one image (image_match_scores)
    // encodes it once and reuses the cached prompt prefix the questions share.
    std::vector<float> next_token_logits(const std::string& question,
                                         const std::vector<EncodedImage>& images,
                                         ImageLayout layout = ImageLayout::single);
    // The log-probability the model gives each token of `answer` (tokenized on its own) as the
    // start of its reply to this question, again without adding the turn.
    std::vector<double> answer_logprobs(const std::string& question,
                                        const std::vector<EncodedImage>& images,
                                        const std::string& answer,
                                        ImageLayout layout = ImageLayout::single);
    // Adds a finished turn without generating (replaying a conversation a client sends whole):
    // the images are encoded now, the text is processed by the next ask().
    void add_turn(const std::string& question, const std::vector<PreparedImage>& images,
                  const std::string& answer, ImageLayout layout = ImageLayout::single);

    void reset();
    const std::vector<ChatTurn>& history() const { return history_; }
    const model::KvCache& cache() const { return *cache_; }

private:
    Prompt conversation(const Prompt& question, const std::vector<int>& new_tiles) const;
    // Every image's visual tokens, one image at a time (through the prefix cache when there is
    // one); tiles_out gets each image's tile count.
    std::vector<float> encode(const std::vector<PreparedImage>& images,
                              std::vector<int>& tiles_out) const;
    // Feeds the prompt of this question (what the cache does not hold yet); the last logits, or
    // an empty span when cancelled. `visual` is every image's visual tokens, new ones included.
    // With a batcher member, the chunks run in its steps.
    std::span<const float> prefill(const std::vector<int32_t>& ids,
                                   const std::vector<float>& visual, const AskOptions& options,
                                   GenerationStats& stats, Batcher::Member* member = nullptr);
    // ask() once the new images' visual tokens (new_tiles tiles each) are known; `ids` is the
    // whole conversation's prompt with the question, `answer` arrives with the vision
    // statistics filled in.
    Answer ask_encoded(const Prompt& question, std::vector<int32_t> ids,
                       const std::vector<int>& new_tiles, const std::vector<float>& new_visual,
                       const AskOptions& options, const TextCallback& on_text, Answer answer);

    const Engine& engine_;
    std::string system_message_;
    std::vector<ChatTurn> history_; // questions with their images' <image> placeholders
    std::vector<int> tiles_; // tile count of every image so far, in prompt order
    std::vector<float> visual_; // visual tokens of every image so far
    std::vector<int32_t> cached_ids_; // the ids the KV cache holds
    std::unique_ptr<model::KvCache> cache_;
    PrefixCache* shared_ = nullptr;
};

} // namespace iris::reasoning
