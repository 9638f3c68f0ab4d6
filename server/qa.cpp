// POST /v1/documents/qa: a question about an image or a PDF. For a PDF, the pages whose text
// layer best matches the question (BM25) are rendered and shown to the model, as many as the tile
// budget allows; a PDF without a text layer (a scan) shows its first pages.
#include "server/documents.h"
#include "server/internal.h"

namespace iris::server {
namespace {

struct QaRequest
{
    std::string question;
    std::vector<uint8_t> document;
    int max_pages = 4;
    int tile_budget = 0;
    int max_tokens = 256;
};

QaRequest read_request(const httplib::Request& req, const Context& ctx)
{
    QaRequest q;
    q.tile_budget = ctx.options.document_tile_budget;
    auto number = [&](const char* key, const std::string& text, int lo, int hi) {
        if (text.empty() || text.size() > 9
            || text.find_first_not_of("0123456789") != std::string::npos || std::stoi(text) < lo
            || std::stoi(text) > hi)
            bad_request(strfmt("%s must be an integer between %d and %d", key, lo, hi), key);
        return std::stoi(text);
    };
    if (req.is_multipart_form_data()) {
        if (!req.has_file("file"))
            bad_request("the form needs a 'file' part with the PDF or image", "file");
        const auto& file = req.get_file_value("file").content;
        q.document.assign(file.begin(), file.end());
        if (req.has_file("question")) q.question = req.get_file_value("question").content;
        if (req.has_file("max_pages"))
            q.max_pages = number("max_pages", req.get_file_value("max_pages").content, 1, 64);
        if (req.has_file("tile_budget"))
            q.tile_budget = number("tile_budget", req.get_file_value("tile_budget").content, 1,
                                   ctx.options.document_tile_budget);
        if (req.has_file("max_tokens"))
            q.max_tokens = number("max_tokens", req.get_file_value("max_tokens").content, 1,
                                  ctx.options.max_new_tokens);
    } else {
        json body = parse_body(req.body, ctx.options.max_json_depth);
        Fields f {body, ""};
        q.question = f.str("question", 4000).value_or("");
        std::string doc = f.str("document", ctx.options.max_body_bytes).value_or("");
        if (doc.empty())
            bad_request("document is missing: the PDF or image, base64 or as a data: URL",
                        "document");
        if (doc.starts_with("data:")) {
            size_t comma = doc.find(',');
            if (comma == std::string::npos
                || doc.substr(0, comma).find(";base64") == std::string::npos)
                bad_request("document: only base64 data: URLs are accepted", "document");
            doc.erase(0, comma + 1);
        }
        try {
            q.document = base64_decode(doc);
        } catch (const Error& e) {
            bad_request(std::string("document: ") + e.what(), "document");
        }
        q.max_pages = int(f.integer("max_pages", 1, 64).value_or(q.max_pages));
        q.tile_budget = int(
            f.integer("tile_budget", 1, ctx.options.document_tile_budget).value_or(q.tile_budget));
        q.max_tokens
            = int(f.integer("max_tokens", 1, ctx.options.max_new_tokens).value_or(q.max_tokens));
    }
    if (q.question.empty() || q.question.size() > 4000)
        bad_request("question must have 1 to 4000 bytes", "question");
    if (q.document.empty()) bad_request("the document is empty", "document");
    return q;
}

double ms_since(int64_t t0)
{
    return double(now_us() - t0) / 1000.0;
}

} // namespace

void documents_qa(const httplib::Request& http_req, httplib::Response& res, const Context& ctx)
{
    const int64_t t_start = now_us();
    QaRequest q = read_request(http_req, ctx);
    reasoning::ImageLimits image_limits;
    DocumentLimits doc_limits;
    doc_limits.max_bytes = ctx.options.max_body_bytes;
    doc_limits.max_pages = ctx.options.max_pdf_pages;

    // Everything that can be refused is checked before the request takes a place in the queue.
    std::optional<PdfDocument> pdf;
    std::optional<Image> image;
    std::vector<int> pages; // 0-based, document order
    std::string selection = "image";
    int page_count = 1;
    try {
        if (is_pdf(q.document)) {
            pdf = PdfDocument::open(q.document, doc_limits, "document");
            page_count = pdf->page_count();
            std::vector<std::string> texts = pdf->page_texts();
            // Each page gets at least one tile; a page shown at fewer tiles than it needs is
            // still better than a page not shown, but below that the budget decides.
            int n = std::min({q.max_pages, q.tile_budget, page_count});
            pages = rank_pages(q.question, texts, n);
            bool any_text = std::any_of(texts.begin(), texts.end(),
                                        [](const std::string& t) { return !trim(t).empty(); });
            selection = any_text ? "relevance" : "first pages";
            std::sort(pages.begin(), pages.end());
        } else if (reasoning::sniff_image_format(q.document) != reasoning::ImageFormat::unknown) {
            image = decode_request_image(q.document, image_limits, "document");
            pages = {0};
        } else {
            bad_request("the document is neither a PDF nor a PNG, JPEG, WebP or BMP image",
                        "document");
        }
    } catch (const Error& e) {
        throw api_error(e);
    }

    std::unique_ptr<EngineQueue::Place> place = enter_queue(ctx, res);
    const int64_t t_queued = now_us();
    if (!place->wait_turn()) throw ApiError {503, "the server is shutting down", "server_error"};
    const double queue_ms = ms_since(t_queued);

    // Render the chosen pages and tile them within the budget.
    const int64_t t_render = now_us();
    // A page split into n > 1 tiles also gets a thumbnail: n + 1 must fit the page's share.
    const int per_page = std::max(1, q.tile_budget / int(pages.size()));
    reasoning::TilingOptions tiling = ctx.engine.tiling(per_page <= 2 ? 1 : per_page - 1);
    std::vector<reasoning::PreparedImage> shown;
    try {
        for (int p : pages) {
            // Rendered at the resolution its tiles will use, no finer.
            Image img
                = pdf ? pdf->render_page(p, tiling.image_size * std::max(2, per_page)) : *image;
            shown.push_back(reasoning::preprocess_image(img, tiling));
        }
    } catch (const Error& e) {
        throw api_error(e);
    }
    const double render_ms = ms_since(t_render);

    reasoning::Session session(ctx.engine, "", std::nullopt, ctx.prompt_cache);
    reasoning::AskOptions opts;
    opts.sampling.max_new_tokens = q.max_tokens;
    opts.layout
        = shown.size() > 1 ? reasoning::ImageLayout::numbered : reasoning::ImageLayout::single;
    opts.cancelled = [&] { return ctx.stopping.load(); };
    opts.batcher = ctx.batcher;
    Metrics::Running running(ctx.metrics);
    opts.progress = [&](float done) {
        if (done == 1.f) running.hold_kv(session.cache().bytes());
    };
    const reasoning::Answer a = session.ask(q.question, shown, opts, {});
    ctx.metrics.generation(a);

    json used = json::array();
    for (int p : pages) used.push_back(p + 1);
    const auto& s = a.stats;
    json out = {{"answer", a.text},
                {"pages", used},
                {"page_count", page_count},
                {"selection", selection},
                {"tiles", s.n_tiles},
                {"finish_reason", a.finish_reason},
                {"usage",
                 {{"prompt_tokens", s.n_prompt_tokens},
                  {"completion_tokens", s.n_generated},
                  {"total_tokens", s.n_prompt_tokens + s.n_generated}}},
                {"timings",
                 {{"queue_ms", queue_ms},
                  {"render_ms", render_ms},
                  {"vision_ms", s.vision_ms},
                  {"prompt_ms", s.prefill_ms},
                  {"decode_ms", s.decode_ms},
                  {"total_ms", ms_since(t_start)}}}};
    res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

} // namespace iris::server
