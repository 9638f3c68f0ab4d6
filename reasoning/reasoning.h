// reasoning — the engine that answers: images (decode, dynamic-resolution tiling, pixel
// values), prompt templates, sessions with their KV cache, sampling and generation.
//
// Thread safety: free functions are reentrant; an Engine session is used by one thread at a time.
#pragma once

#include "core/bus.h"
#include "core/core.h"
#include "model/model.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iris::reasoning {

// =============================================================================================
// Images
//
//   Image img = load_image("photo.jpg");          // PNG, JPEG, WebP or BMP -> 8-bit RGB
//   PreparedImage p = preprocess_image(img, {});   // tiles + thumbnail -> [n, 3, 448, 448]
//
// Decoding matches Pillow 9.4's `Image.open(f).convert('RGB')` and tiling matches the official
// InternVL `dynamic_preprocess` + `build_transform` bit for bit (spec/internvl.md §3).

// An 8-bit RGB image: row-major, 3 bytes per pixel (R, G, B), no row padding.
struct Image
{
    int width = 0;
    int height = 0;
    std::vector<uint8_t> rgb; // width * height * 3 bytes

    const uint8_t* pixel(int x, int y) const { return rgb.data() + (size_t(y) * width + x) * 3; }
};

enum class ImageFormat { unknown, png, jpeg, webp, bmp };
const char* image_format_name(ImageFormat format); // "PNG", "JPEG", "WebP", "BMP", "unknown"
// The container named by the first bytes (magic numbers); a file name is never consulted.
ImageFormat sniff_image_format(std::span<const uint8_t> bytes);

// Gates applied to untrusted input before any pixel is decoded (research/reliability.md §2).
struct ImageLimits
{
    int min_side = 2; // a smaller side is Error(invalid_input)
    int max_side = 16384; // a larger side is Error(resource)
    int64_t max_pixels = 40'000'000; // more pixels is Error(resource)
    size_t max_encoded_bytes = 20u << 20; // a larger file or buffer is Error(resource)
};

struct ImageInfo
{
    ImageFormat format = ImageFormat::unknown;
    int width = 0;
    int height = 0;
};

// Reads only the header: format and size, checked against the limits. `name` labels messages.
ImageInfo probe_image(std::span<const uint8_t> bytes, const ImageLimits& limits = {},
                      std::string_view name = "image");
// Decodes to RGB like Pillow's convert('RGB'): grey and palette expanded, alpha dropped without
// compositing, 16-bit PNG samples reduced as Pillow does, CMYK JPEG converted as Pillow does, no
// EXIF rotation; animated WebP gives its first frame. Truncated, corrupt or unknown data throws
// Error(invalid_input) (Error(unsupported) for a valid but unhandled variant, Error(resource) for
// the limits), naming `name` and the problem.
Image decode_image(std::span<const uint8_t> bytes, const ImageLimits& limits = {},
                   std::string_view name = "image");
// Reads and decodes a file; the size limit is checked before reading. Error(not_found/io) for
// a file that cannot be read.
Image load_image(const std::string& path, const ImageLimits& limits = {});
// A baseline JPEG file (libjpeg-turbo, 4:2:0) of the image; quality 1..100.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 85);

// Dynamic resolution (InternVL `dynamic_preprocess`). Video frames use max_tiles = 1.
struct TilingOptions
{
    int image_size = 448; // tile side (config force_image_size)
    int min_tiles = 1; // min_dynamic_patch
    int max_tiles = 12; // max_dynamic_patch, 1..64
    bool use_thumbnail = true;

    void validate() const; // throws Error(invalid_argument) naming the field
};
TilingOptions tiling_options(const model::ModelConfig& config);

struct Grid
{
    int cols = 1; // width multiplier
    int rows = 1; // height multiplier
    int n_tiles = 1; // cols * rows, plus the thumbnail when there is one
    bool has_thumbnail = false;
};

// The candidate grids (cols, rows) in the official order: CPython's set iteration order of
// {(i, j) : min <= i*j <= max}, stably sorted by i*j. The order decides ties.
std::vector<std::pair<int, int>> candidate_grids(int min_tiles, int max_tiles);
// find_closest_aspect_ratio for a width x height image (any size >= 1).
Grid choose_grid(int width, int height, const TilingOptions& options = {});
// Pillow's Image.resize(size, BICUBIC) for 8-bit RGB, bit-exact.
Image resize_bicubic(const Image& image, int width, int height);
Image crop_image(const Image& image, int x, int y, int width, int height);
// The tiles in row-major order, then the thumbnail of the original image when the grid has more
// than one tile and options.use_thumbnail.
std::vector<Image> make_tiles(const Image& image, const TilingOptions& options = {},
                              Grid* grid_out = nullptr);

// ImageNet normalisation as torchvision computes it in float32: (u8 / 255 - mean) / std.
// The constants are float32 roundings of the double literals, as torch.as_tensor makes them.
inline constexpr float kImageMean[3] = {float(0.485), float(0.456), float(0.406)};
inline constexpr float kImageStd[3] = {float(0.229), float(0.224), float(0.225)};
// Equally sized tiles -> float32 [n, 3, height, width] (CHW per tile).
std::vector<float> pixel_values(const std::vector<Image>& tiles);

struct PreparedImage
{
    Grid grid;
    int image_size = 0; // tile side
    std::vector<float> pixel_values; // [grid.n_tiles, 3, image_size, image_size]
};
PreparedImage preprocess_image(const Image& image, const TilingOptions& options = {});

// The frame indices of the official load_video/get_index: num_segments frames spread over
// [0, n_frames - 1], or over round(bound * fps) when a (start_s, end_s) bound is given;
// rounding is half-to-even like Python and NumPy. Error(invalid_argument) for n_frames or
// num_segments < 1, fps <= 0, or a bound that holds no frame.
std::vector<int> video_frame_indices(int n_frames, int num_segments, double fps,
                                     std::optional<std::pair<double, double>> bound = std::nullopt);

// =============================================================================================
// Prompts and generation

// A conversation template of the official conversation.py (separator style MPT): the prompt is
// system_template(system_message) + sep, then role + message + sep per finished message, and
// the bare assistant role last.
struct ChatTemplate
{
    std::string name;
    std::string system_template; // contains "{system_message}"
    std::string system_message; // the template's default
    std::string user_role;
    std::string assistant_role;
    std::string sep;
    std::vector<std::string> stop_strings; // besides the sep token
};

// "internvl2_5", "internlm2-chat" or "Hermes-2"; throws Error(unsupported) naming the others.
const ChatTemplate& chat_template(std::string_view name);

struct ChatTurn
{
    std::string user;
    std::string assistant;
};

// The prompt text exactly as the official chat() builds it (before <image> expansion).
// An empty system_message selects the template's default.
std::string render_prompt(const ChatTemplate& tmpl, const std::string& system_message,
                          const std::vector<ChatTurn>& history, const std::string& question);

// How several images are introduced in a question.
enum class ImageLayout {
    single, // "<image>\n"
    numbered, // "Image-1: <image>\nImage-2: <image>\n"
    frames, // "Frame1: <image>\nFrame2: <image>\n" (video)
};
std::string image_placeholders(int n_images, ImageLayout layout);
// The question with placeholders for n_images put in front when it names no "<image>" itself
// (chat() does this for the first question; Iris for every question with images).
std::string with_image_placeholders(const std::string& question, int n_images, ImageLayout layout);

// Replaces each "<image>" left to right by "<img>" + "<IMG_CONTEXT>" x tokens + "</img>".
// Throws Error(invalid_argument) when the number of placeholders and of images differ.
std::string expand_image_placeholders(const std::string& prompt,
                                      const std::vector<int>& tokens_per_image);

// Sampling as Hugging Face's generate applies it: repetition penalty, temperature, top-k,
// top-p, then a draw. temperature == 0 is greedy (argmax; ties go to the lowest id).
struct SamplingParams
{
    float temperature = 0.f;
    int top_k = 0; // 0 = off
    float top_p = 1.f; // 1 = off
    float repetition_penalty = 1.f; // 1 = off; applies to every token already in the context
    uint64_t seed = 0;
    int max_new_tokens = 512;
    std::vector<std::string> stop; // stop strings, cut from the answer

    void validate() const; // throws Error(invalid_argument) naming the field
};

class Sampler
{
public:
    explicit Sampler(const SamplingParams& params);
    // Picks the next token from logits [vocab]; `context` holds the ids seen so far (for the
    // repetition penalty). Modifies logits in place.
    int32_t sample(std::span<float> logits, std::span<const int32_t> context);

private:
    SamplingParams params_;
    uint64_t state_;
    std::vector<std::pair<float, int32_t>> scratch_;
};

// Turns a growing list of generated ids into text pieces: emits only complete UTF-8, and holds
// back text that could still become one of the stop strings.
class TextStream
{
public:
    TextStream(const model::Tokenizer& tokenizer, std::vector<std::string> stop);
    // Adds one id; returns the text that is now final (may be empty).
    std::string push(int32_t id);
    // True once a stop string appeared; the text before it has been emitted.
    bool stopped() const { return stopped_; }
    // Emits whatever is held back (at the end of generation).
    std::string flush();
    const std::string& text() const { return emitted_; }

private:
    const model::Tokenizer& tokenizer_;
    std::vector<std::string> stop_;
    std::vector<int32_t> ids_;
    std::string emitted_;
    bool stopped_ = false;
};

// =============================================================================================
// The engine and its sessions
//
//   auto engine = Engine::load("InternVL2_5-1B/");
//   Session chat(*engine);
//   AskOptions opts;                                   // greedy, 512 new tokens
//   Answer a = chat.ask("What is in the image?", {load_image("cat.png")}, opts,
//                       [](std::string_view piece) { fputs(std::string(piece).c_str(), stdout);
//                       return true; });
//   Answer b = chat.ask("And its colour?", {}, opts, {}); // reuses the cached first turn

// An image's visual tokens (Engine::encode), to show one image with many questions.
struct EncodedImage
{
    int n_tiles = 0;
    std::vector<float> visual; // [n_tiles * num_image_token, llm hidden size]
};

struct EngineOptions
{
    // Called while loading with the fraction done and what is being loaded.
    std::function<void(float fraction, const char* what)> progress;
    // The KV cache of every session that does not choose its own (f32 by default).
    model::KvCacheOptions kv_cache;
    // Quantize the language model at load (model::LoadOptions::quantize); empty: as stored.
    std::string quantize;
    model::Precision precision = model::Precision::f32; // model::LoadOptions::precision
    std::string mmproj; // model::LoadOptions::mmproj
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
};

struct AskOptions
{
    SamplingParams sampling;
    int max_tiles = 0; // 0: the checkpoint's max_dynamic_patch
    ImageLayout layout = ImageLayout::single; // how several images are introduced
    std::function<void(float fraction)> progress; // prompt processing progress
    // Polled before every forward pass (each prefill chunk and each decode step); returning true
    // ends generation with finish_reason "cancelled" (e.g. a client that went away).
    std::function<bool()> cancelled;
    // The end token is never sampled, so generation runs to max_new_tokens (load tests).
    bool ignore_eos = false;
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
    // kv_cache chooses the storage of this session's KV cache (default: the engine's).
    explicit Session(const Engine& engine, std::string system_message = "",
                     const std::optional<model::KvCacheOptions>& kv_cache = std::nullopt);

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
    std::string conversation_text(const std::string& question_text,
                                  const std::vector<int>& new_tiles) const;
    // Feeds the prompt of this question (what the cache does not hold yet); the last logits, or
    // an empty span when cancelled. `visual` is every image's visual tokens, new ones included.
    std::span<const float> prefill(const std::vector<int32_t>& ids,
                                   const std::vector<float>& visual, const AskOptions& options,
                                   GenerationStats& stats);
    // ask() once the new images' visual tokens (n_images images of new_tiles tiles) are known;
    // `answer` arrives with the vision statistics filled in.
    Answer ask_encoded(const std::string& question, int n_images, const std::vector<int>& new_tiles,
                       const std::vector<float>& new_visual, const AskOptions& options,
                       const TextCallback& on_text, Answer answer);

    const Engine& engine_;
    std::string system_message_;
    std::vector<ChatTurn> history_; // questions as rendered (with <image> placeholders)
    std::vector<int> tiles_; // tile count of every image so far, in prompt order
    std::vector<float> visual_; // visual tokens of every image so far
    std::vector<int32_t> cached_ids_; // the ids the KV cache holds
    std::unique_ptr<model::KvCache> cache_;
};

// =============================================================================================
// Answering from memory, over the bus
//
//   Responder responder(*engine, bus, [&](const std::string& q, int k) { return my_recall(q, k);
//   }); auto answers = bus.topic<AnswerPiece>(topic_answers).subscribe({.name = "ui"});
//   bus.topic<Question>(topic_questions).publish(Question{.id = 1, .text = "What did I see?"});
//   while (auto p = answers.receive()) { show(p->text); if (p->done) break; }
//
// The memory module finds what is remembered; the caller turns its hits into Remembered (the
// reasoning module does not depend on memory), and the responder builds the prompt and streams
// the answer.

// A remembered clip as a prompt shows it.
struct Remembered
{
    int64_t id = 0;
    int64_t t_start_us = 0; // wall clock, microseconds since the Unix epoch
    int64_t t_end_us = 0;
    std::string caption;
    std::string transcript;
};

// "Memory:\n[HH:MM] caption: ...\n[HH:MM] transcript: ...\nQuestion: <question>", oldest first,
// local time: the form the demo model learnt.
std::string memory_prompt(std::vector<Remembered> memories, const std::string& question);

inline constexpr const char* kTopicQuestions = "reasoning.questions"; // Question
inline constexpr const char* kTopicAnswers = "reasoning.answers"; // AnswerPiece
inline constexpr const char* kTopicCancels = "reasoning.cancels"; // CancelQuestion

// An earlier turn of a conversation, replayed before a question.
struct PastTurn
{
    std::string question;
    std::vector<Image> images;
    std::string answer;
};

struct Question
{
    uint64_t id = 0; // echoed in every AnswerPiece
    std::string text;
    std::vector<Image> images; // e.g. the latest frames: shown as video frames, one tile each
    // false: no memories are recalled and the text is asked as it is, its images shown as
    // pictures (tiled like `iris ask`: "<image>", or "Image-1: <image>" ... for several).
    bool recall = true;
    // With recall false, the conversation so far: its turns come before the question, so that
    // a follow-up ("and what colour is it?") is about the same pictures.
    std::vector<PastTurn> history;
};

// Ends the answer to question_id (finish_reason "cancelled"), or skips it if not yet started.
struct CancelQuestion
{
    uint64_t question_id = 0;
};

struct AnswerPiece
{
    uint64_t question_id = 0;
    std::string text; // the next piece of the answer (empty in the last message)
    bool done = false; // the last message of this answer; the fields below are set in it
    std::string finish_reason; // "stop", "length", "cancelled" or "error"
    std::string answer; // the whole answer
    std::vector<Remembered> used; // the memories the prompt carried
    std::string error; // why answering failed
    GenerationStats stats; // of the answer
    size_t kv_cache_bytes = 0; // the answer's KV cache at its end
};

struct ResponderOptions
{
    AskOptions ask; // sampling and limits (cancelled and layout are set by the responder)
    int k = 5; // memories per question
};

// Answers the questions published on topic_questions, one at a time on its own thread: asks
// `recall` for up to k memories, runs a fresh session on memory_prompt and the question's images,
// and publishes the answer on topic_answers piece by piece, then a done message (also when
// answering failed). A CancelQuestion on topic_cancels ends or skips that answer. The destructor
// cancels the answer in progress and joins the thread.
class Responder
{
public:
    using Recall = std::function<std::vector<Remembered>(const std::string& question, int k)>;
    Responder(const Engine& engine, Bus& bus, Recall recall, ResponderOptions options = {});
    ~Responder();
    Responder(const Responder&) = delete;
    Responder& operator=(const Responder&) = delete;

private:
    struct State;
    std::unique_ptr<State> state_;
};

// =============================================================================================
// Composing articles and web pages
//
//   std::vector<PoolImage> pool = {{"beach.jpg", load_image("beach.jpg")}, ...};
//   Article a = compose_article(engine, {.instruction = "Write about our trip.", .pool = pool});
//   write("article.md", a.markdown);  // images as images/<n>.jpg (article_image_files)
//   write("article.html", article_html(a, pool));  // one self-contained file
//
// As InternLM-XComposer does, an article is written in steps of one conversation: an outline
// ("# Title" and numbered section titles), then each section, in which the model marks where an
// image would help with a "[[image: description]]" line. Each mark gets the pool image the model
// itself finds most likely to show the description (image_match_scores), each image at most once,
// and a caption the model writes for it.

struct PoolImage
{
    std::string name; // where it came from: a file name, a memory entry
    Image image;
};

// Called between steps with what is being done; return false to cancel (Error(cancelled)).
using ComposeProgress = std::function<bool(const std::string& stage, int done, int total)>;

struct ComposeOptions
{
    SamplingParams sampling; // greedy by default
    int max_tiles = 0; // 0: the checkpoint's
    ComposeProgress progress;
    // Polled before every forward pass, as AskOptions::cancelled; true ends with Error(cancelled).
    std::function<bool()> cancelled;
};

struct ArticleRequest
{
    std::string instruction;
    std::string source; // optional text the article draws on
    std::vector<PoolImage> pool;
    int max_sections = 6;
    int max_section_tokens = 400;
};

struct ArticleImage
{
    std::string description; // what the mark asked for
    int pool_index = -1; // the chosen image, -1 when none was left
    double score = 0; // image_match_scores of the choice
    std::string caption;
};

struct Article
{
    std::string title;
    std::vector<std::string> sections; // the outline
    std::string markdown; // marks replaced by ![caption](images/<n>.jpg), unplaced marks removed
    std::vector<ArticleImage> images; // every mark, in order
    GenerationStats stats; // summed over every step
};

Article compose_article(const Engine& engine, const ArticleRequest& request,
                        const ComposeOptions& options = {});
// The relative file name an article's Markdown uses for images[i] (empty when not placed).
std::string article_image_file(const Article& article, size_t i);
// One self-contained HTML page of the article: the Markdown rendered (raw HTML in it dropped),
// the chosen pool images embedded as JPEG data: URLs, make_self_contained_html applied.
std::string article_html(const Article& article, const std::vector<PoolImage>& pool);

// scores[d][i]: how likely images[i] is the pool image descriptions[d] speaks of, by Bayes with
// a uniform prior over the pool (each row sums to 1) from the probability that the model's
// caption of the image ("Give a short caption.") names the description: at its start or after
// an "and" or a comma of its own greedy caption, the likeliest place kept. A caption names what
// an image shows, several things included, and a tiny model that answers yes/no questions near
// chance still captions well. Each image goes through the vision tower at one tile unless
// options.max_tiles says otherwise.
std::vector<std::vector<double>> image_match_scores(const Engine& engine,
                                                    const std::vector<Image>& images,
                                                    const std::vector<std::string>& descriptions,
                                                    const ComposeOptions& options = {});
// Gives each description a different image: pairs are taken best score first; a description
// left without an image (more descriptions than images) gets -1.
std::vector<int> assign_images(const std::vector<std::vector<double>>& scores);

struct WebpageRequest
{
    std::string instruction; // what the page shows; with a screenshot, optional extra wishes
    std::optional<Image> screenshot; // a page to rebuild
    int max_tokens = 2048;
};

struct Webpage
{
    std::string html; // make_self_contained_html of the model's page
    std::string model_output; // what the model wrote
    GenerationStats stats;
};

Webpage compose_webpage(const Engine& engine, const WebpageRequest& request,
                        const ComposeOptions& options = {});

// Turns any text into one well-formed, self-contained HTML page: parsed by libxml2's HTML parser
// (which closes and nests what was left open; text without markup becomes the body), everything
// that would fetch removed (external src/href of resources, <link>, <base>, <iframe>, <object>,
// <embed>, refresh, CSS url() and @import that are not data:), and a Content-Security-Policy
// meta tag that forbids network access added. Inline CSS and JS stay. `images` maps src values
// to what replaces them (e.g. data: URLs).
std::string make_self_contained_html(std::string_view html,
                                     const std::map<std::string, std::string>& images = {});

// =============================================================================================
// Evaluation on generated question sets
//
// A set is a folder with data.jsonl, one item per line: {"id", "task", "images": [paths
// relative to the folder], "layout": "single"|"frames", "question", "answer"}.

struct EvalItem
{
    std::string id;
    std::string task;
    std::vector<std::string> images; // absolute paths
    ImageLayout layout = ImageLayout::single;
    std::string question;
    std::string answer;
};

// The vector that stands for a remembered clip in the memory index: the mean of the images'
// visual tokens (one tile each, as the model sees video frames) and the mean of the text's input
// token embeddings, each scaled to unit length, side by side: [2 * llm hidden size]. A part with
// no input is zeros, so a text-only query is scored by the text half alone and an image query by
// the visual half. Cheap (no LLM layers run) and deterministic.
std::vector<float> memory_embedding(const Engine& engine, const std::vector<Image>& images,
                                    std::string_view text);

// The frames a remembered clip keeps as key frames: the first, middle and last of n (fewer
// when n < 3).
std::vector<size_t> clip_key_frames(size_t n);

struct ClipDescription
{
    std::string caption;
    std::vector<float> embedding;
};

// How a clip is remembered (`iris watch`, the desktop's recorder): the model's caption of the
// middle key frame (one tile, at most 48 tokens) and memory_embedding of the key frames and of
// caption + transcript.
ClipDescription describe_clip(const Engine& engine, const std::vector<Image>& key_frames,
                              const std::string& transcript);

// Reads DIR/data.jsonl, or a .jsonl file given by name (image paths are relative to its folder);
// throws Error naming the line of a malformed item.
std::vector<EvalItem> load_eval_set(const std::string& where);
// Exact match after trimming whitespace, ignoring case and a trailing full stop.
bool answers_match(std::string_view predicted, std::string_view expected);

struct EvalTaskScore
{
    std::string task;
    int n = 0;
    int correct = 0;
    double accuracy() const { return n ? double(correct) / n : 0.0; }
};

struct EvalReport
{
    std::vector<EvalTaskScore> tasks; // sorted by task name
    EvalTaskScore overall {"overall"};
};

struct EvalPrediction
{
    std::string id;
    std::string predicted;
    bool correct = false;
};

// Answers every item greedily in a fresh session and scores it. on_item (optional) sees each
// prediction as it is made, e.g. for progress.
EvalReport evaluate(const Engine& engine, const std::vector<EvalItem>& items, int max_new_tokens,
                    const std::function<void(size_t index, const EvalPrediction&)>& on_item = {});

} // namespace iris::reasoning
