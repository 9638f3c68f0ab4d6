// POST /v1/compose/article and /v1/compose/webpage: the composer (reasoning/composer.h) over HTTP.
#include "assistant/assistant.h"
#include "reasoning/composer.h"
#include "server/internal.h"

namespace iris::server {
namespace {

double ms_since(int64_t t0)
{
    return double(now_us() - t0) / 1000.0;
}

Image read_image(const std::string& url, const std::string& param, const Context& ctx)
{
    MediaPolicy policy {ctx.options.allow_media_url, ctx.options.max_media_url_bytes, {}};
    try {
        std::vector<uint8_t> bytes = fetch_media(url, policy);
        return decode_request_image(bytes, policy.limits, param);
    } catch (const Error& e) {
        ApiError a = api_error(e);
        a.param = param;
        throw a;
    } catch (ApiError& a) {
        a.param = param;
        throw;
    }
}

// This request's turn at the engine (503 when the queue is full or the server stops).
std::unique_ptr<EngineQueue::Place> take_turn(httplib::Response& res, const Context& ctx,
                                              double& queue_ms)
{
    std::unique_ptr<EngineQueue::Place> place = enter_queue(ctx, res);
    const int64_t t0 = now_us();
    if (!place->wait_turn()) throw ApiError {503, "the server is shutting down", "server_error"};
    queue_ms = ms_since(t0);
    return place;
}

reasoning::ComposeOptions compose_options(const Context& ctx)
{
    reasoning::ComposeOptions o;
    o.cancelled = [&ctx] { return ctx.stopping.load(); };
    return o;
}

json usage(const reasoning::GenerationStats& s)
{
    return {{"prompt_tokens", s.n_prompt_tokens},
            {"completion_tokens", s.n_generated},
            {"total_tokens", s.n_prompt_tokens + s.n_generated}};
}

json timings(const reasoning::GenerationStats& s, double queue_ms, int64_t t_start)
{
    return {{"queue_ms", queue_ms},
            {"vision_ms", s.vision_ms},
            {"prompt_ms", s.prefill_ms},
            {"decode_ms", s.decode_ms},
            {"total_ms", ms_since(t_start)}};
}

// The generation metrics count a composition as one answer with its summed token counts.
void count(const Context& ctx, const reasoning::GenerationStats& s)
{
    reasoning::Answer a;
    a.stats = s;
    a.finish_reason = "stop";
    ctx.metrics.generation(a);
}

} // namespace

void compose_article(const httplib::Request& http_req, httplib::Response& res, const Context& ctx)
{
    const int64_t t_start = now_us();
    json body = parse_body(http_req.body, ctx.options.max_json_depth);
    Fields f {body, ""};
    reasoning::ArticleRequest req;
    req.instruction = f.str("instruction", 4000).value_or("");
    if (trim(req.instruction).empty())
        bad_request("instruction is missing: what the article is about", "instruction");
    req.source = f.str("source", 100000).value_or("");
    req.max_sections = int(f.integer("max_sections", 1, 16).value_or(6));
    req.max_section_tokens
        = int(f.integer("max_section_tokens", 1, ctx.options.max_new_tokens).value_or(400));
    bool use_memory = f.boolean("memory").value_or(false);
    if (use_memory && !ctx.store)
        bad_request("memory: the server was started without --db", "memory");

    // Images: data: URLs (or https with --allow-media-url), as strings or {name, url}.
    if (body.contains("images")) {
        const json& images = body["images"];
        if (!images.is_array()) bad_request("images must be an array", "images");
        if (int(images.size()) > ctx.options.max_images)
            bad_request(strfmt("a request may carry at most %d images", ctx.options.max_images),
                        "images");
        for (size_t i = 0; i < images.size(); ++i) {
            std::string param = strfmt("images[%zu]", i);
            const json& im = images[i];
            std::string url, name = strfmt("image %zu", i + 1);
            if (im.is_string()) {
                url = im.get<std::string>();
            } else if (im.is_object()) {
                Fields fi {im, param + "."};
                url = fi.str("url", ctx.options.max_body_bytes).value_or("");
                name = fi.str("name", 200).value_or(name);
            } else {
                bad_request(param + " must be a data: URL or an object {name, url}", param);
            }
            if (url.empty()) bad_request(param + " has no url", param);
            req.pool.push_back({name, read_image(url, param, ctx)});
        }
    }

    double queue_ms = 0;
    auto place = take_turn(res, ctx, queue_ms);
    if (use_memory) {
        auto pool = assistant::memory_pool(&ctx.engine, *ctx.store, req.instruction);
        req.pool.insert(req.pool.end(), pool.begin(), pool.end());
    }
    reasoning::Article a = reasoning::compose_article(ctx.engine, req, compose_options(ctx));
    count(ctx, a.stats);

    json images = json::array();
    for (size_t i = 0; i < a.images.size(); ++i) {
        const auto& im = a.images[i];
        json j = {{"description", im.description}};
        if (im.pool_index >= 0) {
            j["image"] = req.pool[size_t(im.pool_index)].name;
            j["pool_index"] = im.pool_index;
            j["score"] = im.score;
            j["caption"] = im.caption;
            j["file"] = reasoning::article_image_file(a, i);
        } else {
            j["image"] = nullptr;
        }
        images.push_back(j);
    }
    json out = {{"title", a.title},
                {"sections", a.sections},
                {"markdown", a.markdown},
                {"html", reasoning::article_html(a, req.pool)},
                {"images", images},
                {"usage", usage(a.stats)},
                {"timings", timings(a.stats, queue_ms, t_start)}};
    res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void compose_webpage(const httplib::Request& http_req, httplib::Response& res, const Context& ctx)
{
    const int64_t t_start = now_us();
    json body = parse_body(http_req.body, ctx.options.max_json_depth);
    Fields f {body, ""};
    reasoning::WebpageRequest req;
    req.instruction = f.str("instruction", 4000).value_or("");
    if (auto shot = f.str("screenshot", ctx.options.max_body_bytes))
        req.screenshot = read_image(*shot, "screenshot", ctx);
    if (!req.screenshot && trim(req.instruction).empty())
        bad_request("give an instruction or a screenshot (a data: URL)", "instruction");
    req.max_tokens = int(f.integer("max_tokens", 1, ctx.options.max_new_tokens)
                             .value_or(std::min(2048, ctx.options.max_new_tokens)));

    double queue_ms = 0;
    auto place = take_turn(res, ctx, queue_ms);
    reasoning::Webpage page = reasoning::compose_webpage(ctx.engine, req, compose_options(ctx));
    count(ctx, page.stats);
    json out = {{"html", page.html},
                {"model_output", page.model_output},
                {"usage", usage(page.stats)},
                {"timings", timings(page.stats, queue_ms, t_start)}};
    res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

} // namespace iris::server
