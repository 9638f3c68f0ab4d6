// POST /v1/chat/completions: OpenAI's chat API with image_url parts, streamed or not.
#include "server/internal.h"

#include <random>

namespace iris::server {
namespace {

// OpenAI's defaults differ (temperature 1): greedy answers are reproducible, which is what a
// document or image question wants. A client that wants sampling says so.
constexpr int kDefaultMaxTokens = 512;

reasoning::ImageLayout layout_for(size_t n_images)
{
    return n_images > 1 ? reasoning::ImageLayout::numbered : reasoning::ImageLayout::single;
}

struct Part
{
    std::string text;
    std::vector<reasoning::PreparedImage> images;
};

Part read_content(const json& content, const std::string& where, const Context& ctx, int& n_images,
                  const reasoning::TilingOptions& tiling)
{
    Part out;
    if (content.is_null()) return out;
    if (content.is_string()) {
        out.text = content.get<std::string>();
        return out;
    }
    if (!content.is_array())
        bad_request(where + "content must be a string or an array of parts", where + "content");
    for (size_t j = 0; j < content.size(); ++j) {
        const json& part = content[j];
        std::string pw = strfmt("%scontent[%zu].", where.c_str(), j);
        if (!part.is_object()) bad_request(pw.substr(0, pw.size() - 1) + " must be an object", pw);
        Fields f {part, pw};
        std::string type = f.str("type", 32).value_or("");
        if (type == "text") {
            auto text = f.str("text", ctx.options.max_body_bytes);
            if (!text) bad_request(pw + "text is missing", pw + "text");
            if (!out.text.empty()) out.text += "\n";
            out.text += *text;
        } else if (type == "image_url") {
            if (++n_images > ctx.options.max_images)
                bad_request(strfmt("a request may carry at most %d images", ctx.options.max_images),
                            pw);
            const json* iu = part.contains("image_url") ? &part["image_url"] : nullptr;
            std::string url;
            if (iu && iu->is_string())
                url = iu->get<std::string>();
            else if (iu && iu->is_object())
                url = Fields {*iu, pw + "image_url."}
                          .str("url", ctx.options.max_body_bytes)
                          .value_or("");
            if (url.empty()) bad_request(pw + "image_url.url is missing", pw + "image_url");
            MediaPolicy policy {ctx.options.allow_media_url, ctx.options.max_media_url_bytes, {}};
            std::vector<uint8_t> bytes = fetch_media(url, policy);
            try {
                Image img = decode_request_image(bytes, policy.limits, pw + "image_url");
                out.images.push_back(reasoning::preprocess_image(img, tiling));
            } catch (const Error& e) {
                throw api_error(e);
            }
        } else {
            bad_request(pw + "type must be \"text\" or \"image_url\"", pw + "type");
        }
    }
    return out;
}

void read_sampling(const Fields& f, const Context& ctx, ChatRequest& req)
{
    auto& s = req.ask.sampling;
    s.max_new_tokens = kDefaultMaxTokens;
    const int64_t max_tokens = ctx.options.max_new_tokens;
    if (auto v = f.integer("max_tokens", 1, max_tokens)) s.max_new_tokens = int(*v);
    if (auto v = f.integer("max_completion_tokens", 1, max_tokens)) s.max_new_tokens = int(*v);
    s.max_new_tokens = std::min<int>(s.max_new_tokens, int(max_tokens));
    if (auto v = f.number("temperature", 0, 2)) s.temperature = float(*v);
    if (auto v = f.number("top_p", 0, 1)) {
        if (*v > 0)
            s.top_p = float(*v);
        else
            s.temperature = 0; // top_p 0 keeps only the likeliest token: greedy
    }
    if (auto v = f.integer("seed", INT64_MIN, INT64_MAX)) s.seed = uint64_t(*v);
    if (auto v = f.integer("top_k", 0, 1'000'000)) s.top_k = int(*v);
    if (auto v = f.number("repetition_penalty", 0.01, 10)) s.repetition_penalty = float(*v);
    f.integer("n", 1, 1); // one choice per request
    for (const char* zero : {"presence_penalty", "frequency_penalty"})
        if (auto v = f.number(zero, -2, 2); v && *v != 0)
            bad_request(std::string(zero) + " is not supported (only 0)", zero);
    if (f.boolean("logprobs").value_or(false))
        bad_request("logprobs are not supported", "logprobs");
    for (const char* unsupported : {"tools", "functions", "tool_choice", "function_call"})
        if (f.has(unsupported))
            bad_request(std::string(unsupported) + " are not supported", unsupported);
    if (f.has("response_format")) {
        const json& rf = f.obj["response_format"];
        if (!rf.is_object() || rf.value("type", "") != "text")
            bad_request("only response_format {\"type\": \"text\"} is supported",
                        "response_format");
    }
    if (f.has("stop")) {
        const json& st = f.obj["stop"];
        std::vector<std::string> stops;
        if (st.is_string())
            stops.push_back(st.get<std::string>());
        else if (st.is_array() && st.size() <= 4)
            for (const auto& x : st) {
                if (!x.is_string()) bad_request("stop must be a string or up to 4 strings", "stop");
                stops.push_back(x.get<std::string>());
            }
        else
            bad_request("stop must be a string or up to 4 strings", "stop");
        for (const auto& x : stops)
            if (x.empty() || x.size() > 256)
                bad_request("each stop string must have 1 to 256 bytes", "stop");
        s.stop = stops;
    }
    req.stream = f.boolean("stream").value_or(false);
    if (f.has("stream_options") && !f.obj["stream_options"].is_object())
        bad_request("stream_options must be an object", "stream_options");
    req.ask.ignore_eos = f.boolean("ignore_eos").value_or(false);
    if (auto v = f.integer("max_tiles", 1, 64)) req.ask.max_tiles = int(*v);
}

} // namespace

ChatRequest parse_chat_request(const json& body, const Context& ctx)
{
    ChatRequest req;
    Fields f {body, ""};
    read_sampling(f, ctx, req);
    f.str("model", 256); // any name: the server has one model
    // Extension: the KV cache of this request (iris serve --kv and its settings: the default):
    // "kv" the type of keys and values, and for skvq "kv_bits" ("K2V1.5"), "kv_group",
    // "kv_window", "kv_sink" and "kv_clip", as the --kv options of the command line.
    const bool skvq_settings = f.has("kv_bits") || f.has("kv_group") || f.has("kv_window")
        || f.has("kv_sink") || f.has("kv_clip");
    if (f.has("kv") || skvq_settings) {
        model::KvCacheOptions kv = ctx.engine.kv_cache();
        if (auto v = f.str("kv", 16)) {
            try {
                kv.k_type = kv.v_type = model::kv_type_from_name(*v);
            } catch (const Error&) {
                bad_request("kv must be \"f32\", \"f16\", \"q8\", \"q4\" or \"skvq\"", "kv");
            }
        }
        if (skvq_settings && kv.k_type != model::KvType::skvq)
            bad_request("kv_bits, kv_group, kv_window, kv_sink and kv_clip need \"kv\": \"skvq\"",
                        "kv");
        if (auto v = f.str("kv_bits", 16)) {
            try {
                model::parse_kv_bits(*v, kv.skvq);
            } catch (const Error&) {
                bad_request("kv_bits must be K<2|4|8>V<1.5|2|4|8>, e.g. \"K2V1.5\"", "kv_bits");
            }
        }
        if (auto v = f.integer("kv_group", 32, 128)) {
            if (*v != 32 && *v != 64 && *v != 128)
                bad_request("kv_group must be 32, 64 or 128", "kv_group");
            kv.skvq.group = int(*v);
        }
        if (auto v = f.integer("kv_window", 0, 1 << 20)) kv.skvq.window = int(*v);
        if (auto v = f.integer("kv_sink", 0, 65536)) kv.skvq.sink = int(*v);
        if (auto v = f.number("kv_clip", 0.5, 1)) kv.skvq.clip = float(*v);
        req.kv_cache = kv;
    }
    reasoning::TilingOptions tiling = ctx.engine.tiling(req.ask.max_tiles);

    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
        bad_request("messages must be a non-empty array", "messages");
    const json& messages = body["messages"];
    if (messages.size() > 256) bad_request("at most 256 messages", "messages");
    int n_images = 0;
    for (size_t i = 0; i < messages.size(); ++i) {
        std::string where = strfmt("messages[%zu].", i);
        const json& m = messages[i];
        if (!m.is_object())
            bad_request(where.substr(0, where.size() - 1) + " must be an object", "messages");
        std::string role = Fields {m, where}.str("role", 32).value_or("");
        if (!m.contains("content")) bad_request(where + "content is missing", where + "content");
        Part part = read_content(m["content"], where, ctx, n_images, tiling);
        if (role == "system" || role == "developer") {
            if (!part.images.empty())
                bad_request(where + "content: a system message cannot carry images");
            if (!req.turns.empty())
                bad_request(where + "role: system messages must come first", where + "role");
            req.system += (req.system.empty() ? "" : "\n") + part.text;
        } else if (role == "user") {
            if (req.turns.empty() || !req.turns.back().assistant.empty()) req.turns.emplace_back();
            ChatTurn& t = req.turns.back();
            if (!t.user.empty() && !part.text.empty()) t.user += "\n";
            t.user += part.text;
            for (auto& img : part.images) t.images.push_back(std::move(img));
        } else if (role == "assistant") {
            if (!part.images.empty())
                bad_request(where + "content: an assistant message cannot carry images");
            if (req.turns.empty())
                bad_request(where + "role: the conversation must start with a user message",
                            where + "role");
            req.turns.back().assistant += part.text;
            if (req.turns.back().assistant.empty())
                bad_request(where + "content: an assistant message must have text");
        } else {
            bad_request(where + "role must be system, user or assistant", where + "role");
        }
    }
    if (req.turns.empty() || !req.turns.back().assistant.empty())
        bad_request("the last message must be the user's", "messages");
    if (req.turns.back().user.empty() && req.turns.back().images.empty())
        bad_request("the last user message is empty", "messages");

    // The prompt the session will build, counted before the request takes the engine.
    std::vector<reasoning::ChatTurn> history;
    std::vector<int> tokens;
    const int per_tile = ctx.engine.network().num_image_token();
    for (const auto& t : req.turns) {
        history.push_back({reasoning::with_image_placeholders(t.user, int(t.images.size()),
                                                              layout_for(t.images.size())),
                           t.assistant});
        for (const auto& img : t.images) tokens.push_back(img.grid.n_tiles * per_tile);
    }
    const reasoning::Prompt question = history.back().user;
    history.pop_back();
    // The placeholders are the engine's, one per image sent; the messages' text stays text.
    const size_t n_prompt
        = reasoning::expand_image_placeholders(
              reasoning::render_prompt(ctx.engine.chat_template(), req.system, history, question),
              tokens)
              .encode(ctx.engine.tokenizer(), true)
              .size();
    const int context = ctx.engine.config().llm.max_position_embeddings;
    if (n_prompt > size_t(ctx.options.max_prompt_tokens))
        bad_request(strfmt("the prompt has %zu tokens; this server takes at most %d", n_prompt,
                           ctx.options.max_prompt_tokens),
                    "messages");
    if (n_prompt + size_t(req.ask.sampling.max_new_tokens) > size_t(context))
        bad_request(strfmt("the prompt (%zu tokens) and max_tokens (%d) exceed the model's context "
                           "of %d tokens",
                           n_prompt, req.ask.sampling.max_new_tokens, context),
                    "max_tokens");
    return req;
}

std::unique_ptr<reasoning::Session> prepare_session(const ChatRequest& req, const Context& ctx)
{
    auto session = std::make_unique<reasoning::Session>(ctx.engine, req.system, req.kv_cache,
                                                        ctx.prompt_cache);
    for (size_t i = 0; i + 1 < req.turns.size(); ++i) {
        const ChatTurn& t = req.turns[i];
        session->add_turn(t.user, t.images, t.assistant, layout_for(t.images.size()));
    }
    return session;
}

namespace {

std::string completion_id()
{
    static thread_local std::mt19937_64 rng {std::random_device {}()};
    return strfmt("chatcmpl-%016llx%08llx", (unsigned long long)rng(),
                  (unsigned long long)(rng() & 0xffffffff));
}

json usage_of(const reasoning::Answer& a)
{
    const auto& s = a.stats;
    return {{"prompt_tokens", s.n_prompt_tokens},
            {"completion_tokens", s.n_generated},
            {"total_tokens", s.n_prompt_tokens + s.n_generated},
            {"prompt_tokens_details", {{"cached_tokens", s.n_reused_tokens}}}};
}

json timings_of(const reasoning::Answer& a)
{
    const auto& s = a.stats;
    return {
        {"vision_ms", s.vision_ms},
        {"prompt_ms", s.prefill_ms},
        {"decode_ms", s.decode_ms},
        {"prompt_tokens_per_second",
         s.prefill_ms > 0 ? (s.n_prompt_tokens - s.n_reused_tokens) * 1000.0 / s.prefill_ms : 0.0},
        {"decode_tokens_per_second", s.decode_ms > 0 ? s.n_generated * 1000.0 / s.decode_ms : 0.0}};
}

// OpenAI has no "cancelled": a generation cut short by a departed client is never seen, and one
// cut by shutdown reports what it is, "length".
std::string finish_reason(const reasoning::Answer& a)
{
    return a.finish_reason == "cancelled" ? "length" : a.finish_reason;
}

std::string dump(const json& j)
{
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Runs the request once it is first in line; stats and KV bytes go to the metrics.
reasoning::Answer generate(const ChatRequest& req, const Context& ctx,
                           const reasoning::TextCallback& on_text, std::function<bool()> cancelled)
{
    Metrics::Running running(ctx.metrics);
    auto session = prepare_session(req, ctx);
    reasoning::AskOptions opts = req.ask;
    opts.layout = layout_for(req.turns.back().images.size());
    opts.cancelled = std::move(cancelled);
    opts.batcher = ctx.batcher;
    opts.progress = [&](float done) {
        if (done == 1.f) running.hold_kv(session->cache().bytes());
    };
    reasoning::Answer a
        = session->ask(req.turns.back().user, req.turns.back().images, opts, on_text);
    ctx.metrics.generation(a);
    return a;
}

} // namespace

void chat_completions(const httplib::Request& http_req, httplib::Response& res, const Context& ctx)
{
    auto req = std::make_shared<ChatRequest>(
        parse_chat_request(parse_body(http_req.body, ctx.options.max_json_depth), ctx));
    std::shared_ptr<EngineQueue::Place> place = enter_queue(ctx, res);
    const std::string id = completion_id();
    const long long created = (long long)(wall_us() / 1'000'000);
    const std::string model = ctx.options.model_name;

    if (!req->stream) {
        if (!place->wait_turn())
            throw ApiError {503, "the server is shutting down", "server_error", ""};
        reasoning::Answer a = generate(*req, ctx, {}, [&] { return ctx.stopping.load(); });
        json out = {{"id", id},
                    {"object", "chat.completion"},
                    {"created", created},
                    {"model", model},
                    {"choices",
                     json::array({{{"index", 0},
                                   {"message", {{"role", "assistant"}, {"content", a.text}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", finish_reason(a)}}})},
                    {"usage", usage_of(a)},
                    {"timings", timings_of(a)}};
        res.set_content(dump(out), "application/json");
        return;
    }

    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    Context c = ctx;
    res.set_chunked_content_provider(
        "text/event-stream",
        [req, place, c, id, created, model](size_t, httplib::DataSink& sink) mutable {
            auto chunk = [&](const json& delta, const json& finish) {
                json j = {{"id", id},
                          {"object", "chat.completion.chunk"},
                          {"created", created},
                          {"model", model},
                          {"choices",
                           json::array({{{"index", 0},
                                         {"delta", delta},
                                         {"logprobs", nullptr},
                                         {"finish_reason", finish}}})}};
                return j;
            };
            bool alive = true;
            auto send = [&](const json& j) {
                std::string s = "data: " + dump(j) + "\n\n";
                alive = alive && sink.write(s.data(), s.size());
                return alive;
            };
            if (!place->wait_turn()) {
                send({{"error",
                       {{"message", "the server is shutting down"}, {"type", "server_error"}}}});
                sink.done();
                return true;
            }
            if (!send(chunk({{"role", "assistant"}, {"content", ""}}, nullptr))) return false;
            try {
                reasoning::Answer a = generate(
                    *req, c,
                    [&](std::string_view piece) {
                        return send(chunk({{"content", std::string(piece)}}, nullptr));
                    },
                    [&] { return !alive || c.stopping.load(); });
                place.reset(); // the engine is free before the client hears the end
                if (!alive) return false;
                json last = chunk(json::object(), finish_reason(a));
                last["usage"] = usage_of(a);
                last["timings"] = timings_of(a);
                send(last);
                static const char done[] = "data: [DONE]\n\n";
                if (alive) sink.write(done, sizeof done - 1);
            } catch (const Error& e) {
                ApiError err = api_error(e);
                send(json::parse(error_body(err)));
            }
            sink.done();
            return true;
        });
}

} // namespace iris::server
