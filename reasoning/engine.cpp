#include "reasoning/engine.h"

#include "reasoning/prefix-cache.h"

#include <algorithm>
#include <cmath>

namespace iris::reasoning {
namespace {

double ms_since(int64_t t0_us)
{
    return double(now_us() - t0_us) / 1000.0;
}

// Prompt tokens are fed in chunks so long prompts report progress and keep activations small.
constexpr size_t kPrefillChunk = 512;

} // namespace

Engine::Engine(std::unique_ptr<model::InternVL> network,
               std::unique_ptr<model::Tokenizer> tokenizer, const model::KvCacheOptions& kv_cache)
    : network_(std::move(network))
    , tokenizer_(std::move(tokenizer))
    , kv_cache_(kv_cache)
{
    template_ = &reasoning::chat_template(network_->config().template_name);
    auto img = tokenizer_->token_id("<IMG_CONTEXT>");
    if (!img) throw Error(ErrorKind::invalid_input, "the tokenizer has no <IMG_CONTEXT> token");
    img_context_id_ = *img;
    std::string sep(trim(template_->sep));
    auto eos = tokenizer_->token_id(sep);
    if (!eos) throw Error(ErrorKind::invalid_input, "the tokenizer has no " + sep + " token");
    eos_id_ = *eos;
    img_end_id_ = tokenizer_->token_id("</img>").value_or(-1);
    if (tokenizer_->size() > network_->config().llm.vocab_size)
        throw Error(ErrorKind::invalid_input,
                    strfmt("the tokenizer has %d tokens but the model's vocabulary only %d",
                           tokenizer_->size(), network_->config().llm.vocab_size));
}

std::unique_ptr<Engine> Engine::load(const std::string& model_dir, const EngineOptions& options)
{
    auto network = model::InternVL::load(model_dir, options.load);
    const model::ModelPaths paths = model::ModelPaths::resolve(model_dir, options.load.mmproj);
    auto tokenizer = model::Tokenizer::load(paths.is_gguf() ? paths.gguf : paths.dir);
    return std::make_unique<Engine>(std::move(network), std::move(tokenizer), options.kv_cache);
}

EncodedImage Engine::encode(const PreparedImage& image) const
{
    return {image.grid.n_tiles, network_->encode_images(image.pixel_values, image.grid.n_tiles)};
}

TilingOptions Engine::tiling(int max_tiles) const
{
    TilingOptions t = tiling_options(config());
    if (max_tiles > 0) t.max_tiles = max_tiles;
    t.min_tiles = std::min(t.min_tiles, t.max_tiles);
    t.validate();
    return t;
}

Session::Session(const Engine& engine, std::string system_message,
                 const std::optional<model::KvCacheOptions>& kv_cache, PrefixCache* shared)
    : engine_(engine)
    , system_message_(std::move(system_message))
    , cache_(engine.network().new_cache(kv_cache.value_or(engine.kv_cache())))
    , shared_(shared)
{ }

std::vector<float> Session::encode(const std::vector<PreparedImage>& images,
                                   std::vector<int>& tiles_out) const
{
    // One image at a time, so an image's tokens are the same bits whatever it is shown with.
    std::vector<float> visual;
    for (const auto& img : images) {
        EncodedImage e = shared_ ? shared_->encode(engine_, img) : engine_.encode(img);
        tiles_out.push_back(e.n_tiles);
        visual.insert(visual.end(), e.visual.begin(), e.visual.end());
    }
    return visual;
}

void Session::reset()
{
    history_.clear();
    tiles_.clear();
    visual_.clear();
    cached_ids_.clear();
    cache_->clear();
}

Prompt Session::conversation(const Prompt& question, const std::vector<int>& new_tiles) const
{
    Prompt prompt = render_prompt(engine_.chat_template(), system_message_, history_, question);
    std::vector<int> tokens;
    for (int t : tiles_) tokens.push_back(t * engine_.network().num_image_token());
    for (int t : new_tiles) tokens.push_back(t * engine_.network().num_image_token());
    return expand_image_placeholders(prompt, tokens);
}

std::vector<int32_t> Session::prompt_ids(const std::string& question,
                                         const std::vector<int>& tiles_per_image,
                                         ImageLayout layout) const
{
    return conversation(with_image_placeholders(question, int(tiles_per_image.size()), layout),
                        tiles_per_image)
        .encode(engine_.tokenizer(), /*add_bos=*/true);
}

Answer Session::ask(const std::string& question, const std::vector<Image>& images,
                    const AskOptions& options, const TextCallback& on_text)
{
    TilingOptions tiling = engine_.tiling(options.max_tiles);
    std::vector<PreparedImage> prepared;
    prepared.reserve(images.size());
    for (const auto& img : images) prepared.push_back(preprocess_image(img, tiling));
    return ask(question, prepared, options, on_text);
}

namespace {

Prompt question_prompt(const std::string& question, int n_images, const AskOptions& options)
{
    return options.image_markers ? with_image_markers(question, n_images, options.layout)
                                 : with_image_placeholders(question, n_images, options.layout);
}

// Error(invalid_argument) for a prompt past options.max_prompt_tokens or the model's positions.
void check_prompt_length(size_t n, const AskOptions& options, const model::LlmConfig& llm)
{
    const int positions = llm.max_position_embeddings;
    const int limit = options.max_prompt_tokens > 0 ? std::min(options.max_prompt_tokens, positions)
                                                    : positions;
    if (n > size_t(limit))
        throw Error(ErrorKind::invalid_argument,
                    limit == positions
                        ? strfmt("the prompt has %zu tokens, more than the model's %d positions", n,
                                 positions)
                        : strfmt("the prompt has %zu tokens, more than the %d allowed", n, limit));
}

// One forward pass: alone, or in the next step of the member's batcher.
std::span<const float> forward_pass(const model::InternVL& net, Batcher::Member* member,
                                    model::KvCache& cache, std::span<const int32_t> ids,
                                    std::span<const float> visual, int32_t img_context_id)
{
    return member ? member->forward(cache, ids, visual, img_context_id)
                  : net.forward(cache, ids, visual, img_context_id);
}

} // namespace

std::span<const float> Session::prefill(const std::vector<int32_t>& ids,
                                        const std::vector<float>& visual, const AskOptions& options,
                                        GenerationStats& stats, Batcher::Member* member)
{
    const auto& net = engine_.network();
    const int hidden = net.config().llm.hidden_size;
    check_prompt_length(ids.size(), options, net.config().llm);
    size_t keep = 0;
    while (keep < ids.size() && keep < cached_ids_.size() && ids[keep] == cached_ids_[keep]) ++keep;
    if (keep == ids.size()) --keep; // the last prompt token must be fed to get logits
    cache_->truncate(int(keep));
    cached_ids_.resize(keep);
    const int32_t img_id = engine_.img_context_id();
    int64_t t0 = now_us();

    // A prompt started afresh goes in the prefix cache's segments (a cache resumed from an earlier
    // answer's decoding holds other bits than a prefill would, so it is neither segmented nor
    // kept).
    std::vector<int> ends;
    if (shared_ && keep == 0) {
        ends = PrefixCache::segment_ends(ids, engine_.eos_id(), engine_.img_end_id());
        keep = size_t(shared_->restore(ids, ends, visual, img_id, hidden, *cache_));
        cached_ids_.assign(ids.begin(), ids.begin() + ptrdiff_t(keep));
    }
    // Kept: the system prompt, each image, and all but the answer's role tag.
    auto kept_end = [&](size_t k) {
        return k == 0 || k + 1 == ends.size() || ids[size_t(ends[k]) - 1] == engine_.img_end_id();
    };
    stats.n_prompt_tokens = int(ids.size());
    stats.n_reused_tokens = int(keep);

    size_t visual_row = size_t(std::count(ids.begin(), ids.begin() + ptrdiff_t(keep), img_id));
    std::span<const float> logits;
    // The whole prompt attends to itself in full precision, however many chunks it takes; a
    // quantized cache stores what left its window once the prompt is in.
    struct Hold
    {
        model::KvCache& cache;
        ~Hold() { cache.release_quantization(); }
    } hold {*cache_};
    cache_->hold_quantization();
    auto next_end = std::upper_bound(ends.begin(), ends.end(), int(keep));
    for (size_t pos = keep, end; pos < ids.size(); pos = end) {
        if (options.cancelled && options.cancelled()) return {};
        end = std::min(ids.size(), pos + kPrefillChunk);
        const bool at_end = next_end != ends.end() && size_t(*next_end) <= end;
        if (at_end) end = size_t(*next_end);
        std::span<const int32_t> chunk(ids.data() + pos, end - pos);
        size_t n_img = size_t(std::count(chunk.begin(), chunk.end(), img_id));
        if ((visual_row + n_img) * size_t(hidden) > visual.size())
            throw Error(ErrorKind::invalid_argument,
                        "the prompt has more image tokens than the images provide");
        logits = forward_pass(
            net, member, *cache_, chunk,
            std::span<const float>(visual.data() + visual_row * hidden, n_img * hidden), img_id);
        cached_ids_.insert(cached_ids_.end(), chunk.begin(), chunk.end());
        visual_row += n_img;
        if (at_end && kept_end(size_t(next_end - ends.begin())))
            shared_->store(cached_ids_, std::span(visual).first(visual_row * size_t(hidden)),
                           *cache_, net);
        if (at_end) ++next_end;
        if (options.progress) options.progress(float(end - keep) / float(ids.size() - keep));
    }
    stats.prefill_ms = ms_since(t0);
    return logits;
}

std::vector<float> Session::next_token_logits(const std::string& question,
                                              const std::vector<EncodedImage>& images,
                                              ImageLayout layout)
{
    std::vector<int> new_tiles;
    std::vector<float> visual = visual_;
    for (const auto& img : images) {
        new_tiles.push_back(img.n_tiles);
        visual.insert(visual.end(), img.visual.begin(), img.visual.end());
    }
    std::vector<int32_t> ids
        = conversation(with_image_placeholders(question, int(images.size()), layout), new_tiles)
              .encode(engine_.tokenizer(), /*add_bos=*/true);
    GenerationStats stats;
    std::span<const float> logits = prefill(ids, visual, {}, stats);
    return {logits.begin(), logits.end()};
}

std::vector<double> Session::answer_logprobs(const std::string& question,
                                             const std::vector<EncodedImage>& images,
                                             const std::string& answer, ImageLayout layout)
{
    std::vector<float> logits = next_token_logits(question, images, layout);
    const std::vector<int32_t> ids = engine_.tokenizer().encode_text(answer, /*add_bos=*/false);
    std::vector<double> out;
    for (size_t k = 0; k < ids.size(); ++k) {
        const float top = *std::max_element(logits.begin(), logits.end());
        double sum = 0;
        for (float l : logits) sum += std::exp(double(l - top));
        out.push_back(double(logits[size_t(ids[k])] - top) - std::log(sum));
        if (k + 1 == ids.size()) break;
        std::span<const float> next
            = engine_.network().forward(*cache_, {&ids[k], 1}, {}, engine_.img_context_id());
        logits.assign(next.begin(), next.end());
        cached_ids_.push_back(ids[k]);
    }
    return out;
}

Answer Session::ask(const std::string& question, const std::vector<PreparedImage>& images,
                    const AskOptions& options, const TextCallback& on_text)
{
    options.sampling.validate();
    // The prompt is known from the tiling alone: one too long is refused before the images go
    // through the tower.
    const Prompt q = question_prompt(question, int(images.size()), options);
    std::vector<int> tiles;
    for (const auto& img : images) tiles.push_back(img.grid.n_tiles);
    std::vector<int32_t> ids = conversation(q, tiles).encode(engine_.tokenizer(), /*add_bos=*/true);
    check_prompt_length(ids.size(), options, engine_.config().llm);
    Answer answer;
    // Vision: each new image through the tower (or the prefix cache).
    int64_t t0 = now_us();
    std::vector<int> new_tiles;
    std::vector<float> new_visual = encode(images, new_tiles);
    answer.stats.vision_ms = ms_since(t0);
    return ask_encoded(q, std::move(ids), new_tiles, new_visual, options, on_text,
                       std::move(answer));
}

Answer Session::ask(const std::string& question, const std::vector<EncodedImage>& images,
                    const AskOptions& options, const TextCallback& on_text)
{
    options.sampling.validate();
    std::vector<int> new_tiles;
    std::vector<float> new_visual;
    for (const auto& img : images) {
        new_tiles.push_back(img.n_tiles);
        new_visual.insert(new_visual.end(), img.visual.begin(), img.visual.end());
    }
    const Prompt q = question_prompt(question, int(images.size()), options);
    std::vector<int32_t> ids
        = conversation(q, new_tiles).encode(engine_.tokenizer(), /*add_bos=*/true);
    return ask_encoded(q, std::move(ids), new_tiles, new_visual, options, on_text, {});
}

Answer Session::ask_encoded(const Prompt& question, std::vector<int32_t> ids,
                            const std::vector<int>& new_tiles, const std::vector<float>& new_visual,
                            const AskOptions& options, const TextCallback& on_text, Answer answer)
{
    const auto& net = engine_.network();
    const auto& tok = engine_.tokenizer();
    for (int t : new_tiles) answer.stats.n_tiles += t;

    // `ids`: the whole conversation's prompt; what the cache already holds is kept.
    std::vector<float> visual = visual_;
    visual.insert(visual.end(), new_visual.begin(), new_visual.end());
    // In a batcher, from the first prompt chunk to the last token.
    std::optional<Batcher::Member> member;
    if (options.batcher) member.emplace(*options.batcher);
    Batcher::Member* in_batch = member ? &*member : nullptr;
    std::span<const float> logits = prefill(ids, visual, options, answer.stats, in_batch);
    bool cancelled = logits.empty();

    // Decode.
    int64_t t0 = now_us();
    Sampler sampler(options.sampling);
    std::vector<std::string> stops = options.sampling.stop;
    for (const auto& s : engine_.chat_template().stop_strings) stops.push_back(s);
    TextStream stream(tok, stops);
    std::vector<float> scratch;
    answer.finish_reason = "length";
    for (int n = 0; !cancelled && n < options.sampling.max_new_tokens; ++n) {
        scratch.assign(logits.begin(), logits.end());
        if (options.ignore_eos) scratch[size_t(engine_.eos_id())] = -INFINITY;
        int32_t next = sampler.sample(scratch, answer.tokens);
        answer.tokens.push_back(next);
        if (next == engine_.eos_id()) {
            answer.finish_reason = "stop";
            break;
        }
        std::string piece = stream.push(next);
        if (!piece.empty() && on_text && !on_text(piece)) {
            cancelled = true;
            break;
        }
        if (stream.stopped()) {
            answer.finish_reason = "stop";
            break;
        }
        if (n + 1 == options.sampling.max_new_tokens) break;
        if (options.cancelled && options.cancelled()) {
            cancelled = true;
            break;
        }
        // A generated token is never an image, even if it is the <IMG_CONTEXT> id: it takes its
        // embedding row, as in the official generate().
        logits = forward_pass(net, in_batch, *cache_, std::span<const int32_t>(&next, 1), {}, -1);
        cached_ids_.push_back(next);
    }
    member.reset();
    if (cancelled) {
        answer.finish_reason = "cancelled";
    } else if (!stream.stopped()) {
        std::string rest = stream.flush();
        if (!rest.empty() && on_text) on_text(rest);
    }
    answer.stats.decode_ms = ms_since(t0);
    answer.stats.n_generated = int(answer.tokens.size());
    answer.text = trim(stream.text());

    history_.push_back({question, answer.text});
    tiles_.insert(tiles_.end(), new_tiles.begin(), new_tiles.end());
    visual_ = std::move(visual);
    return answer;
}

void Session::add_turn(const std::string& question, const std::vector<PreparedImage>& images,
                       const std::string& answer, ImageLayout layout)
{
    std::vector<int> new_tiles;
    std::vector<float> new_visual = encode(images, new_tiles);
    history_.push_back({with_image_placeholders(question, int(images.size()), layout), answer});
    tiles_.insert(tiles_.end(), new_tiles.begin(), new_tiles.end());
    visual_.insert(visual_.end(), new_visual.begin(), new_visual.end());
}

} // namespace iris::reasoning
