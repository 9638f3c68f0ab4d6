// The request bodies of every REST route (server/*.cpp), handed to the route handlers as
// httplib would after reading them: chat completions, document questions as JSON and as a
// multipart form, the composer's article and web page, memory search and memory entries, on the
// demo model with a tiny store. The engine queue has no room, so a request that passes every
// check ends in the 503 of a full queue instead of a generation: each route checks all it can
// refuse before it queues, and generating is no parser. The input is the route's name on the
// first line, then the body (for "get": the entry id, then the frame; for "form": "--- <part
// name>" sections). A client's mistake must be an ApiError of status 4xx; a 500, any other
// exception or a crash is a finding.
#include "assistant/assistant.h"
#include "reasoning/engine.h"
#include "reasoning/responder.h"
#include "server/internal.h"
#include "tests/fuzz/fuzz.h"

#include <regex>

using namespace iris;
using namespace iris::server;

namespace {

std::unique_ptr<reasoning::Engine> engine;
std::optional<memory::Store> store;
Options options;
Metrics* metrics;
EngineQueue* queue;
std::atomic<bool> stopping {false};

void check_status(int status, const std::string& message)
{
    IRIS_FUZZ_CHECK((status >= 400 && status < 500) || status == 503,
                    "answered %d for a client's request: %s", status, message.c_str());
}

// "--- name\n" sections into multipart parts, as httplib parses a form.
httplib::MultipartFormDataMap form_parts(std::string_view in)
{
    httplib::MultipartFormDataMap parts;
    size_t pos = in.starts_with("--- ") ? 0 : in.find("\n--- ");
    while (pos != std::string_view::npos) {
        size_t name_at = pos + (in[pos] == '\n' ? 5 : 4);
        size_t eol = in.find('\n', name_at);
        if (eol == std::string_view::npos) break;
        std::string name(in.substr(name_at, eol - name_at));
        size_t next = in.find("\n--- ", eol);
        std::string body(in.substr(
            eol + 1, next == std::string_view::npos ? std::string_view::npos : next - eol - 1));
        parts.emplace(name,
                      httplib::MultipartFormData {name, body, name == "file" ? "doc" : "", ""});
        pos = next;
    }
    return parts;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    engine = reasoning::Engine::load(std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo");
    const std::string dir = (fuzz::scratch_dir() / "memory").string();
    store.emplace(memory::Store::open(dir, {.dim = assistant::embedding_dim(*engine)}));
    for (int i = 0; i < 2; ++i) {
        memory::Entry e;
        e.t_start_us = 1'700'000'000'000'000 + i * 60'000'000LL;
        e.t_end_us = e.t_start_us + 5'000'000;
        e.caption = i ? "keys on the kitchen table" : "a red cup on a desk";
        Image img = Image::allocate(
            8, 8, [&](uint8_t* p) { std::fill(p, p + 8 * 8 * 3, uint8_t(40 + i * 100)); });
        e.key_frames = {{e.t_start_us, Buffer::adopt(reasoning::encode_jpeg(img, 80)), 0}};
        e.embedding = reasoning::memory_embedding(*engine, {img}, e.caption);
        store->add(e);
    }
    options.max_images = 2;
    options.document_tile_budget = 2;
    options.max_pdf_pages = 8;
    options.max_body_bytes = 1 << 20;
    metrics = new Metrics;
    queue = new EngineQueue(/*capacity=*/0, options.parallel);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string_view in = fuzz::as_text(data, size);
    const size_t eol = in.find('\n');
    if (eol == std::string_view::npos) return 0;
    const std::string_view route = in.substr(0, eol);
    const std::string_view body = in.substr(eol + 1);

    const Context ctx {*engine, &*store, options, *queue, nullptr, nullptr, *metrics, stopping};
    httplib::Request req;
    httplib::Response res;
    req.body = std::string(body);
    req.set_header("Content-Type", "application/json");
    std::string path;
    try {
        if (route == "chat") {
            chat_completions(req, res, ctx);
        } else if (route == "qa") {
            documents_qa(req, res, ctx);
        } else if (route == "form") {
            req.headers.erase("Content-Type");
            req.set_header("Content-Type", "multipart/form-data; boundary=x");
            req.body.clear();
            req.files = form_parts(body);
            documents_qa(req, res, ctx);
        } else if (route == "article") {
            compose_article(req, res, ctx);
        } else if (route == "webpage") {
            compose_webpage(req, res, ctx);
        } else if (route == "search") {
            memory_search(req, res, ctx);
        } else if (route == "get") {
            const size_t nl = body.find('\n');
            path = "/v1/memory/" + std::string(body.substr(0, nl));
            static const std::regex pattern(R"(/v1/memory/([^/]+))");
            if (!std::regex_match(path, req.matches, pattern)) return 0;
            if (nl != std::string_view::npos)
                req.params.emplace("frame", std::string(body.substr(nl + 1)));
            memory_get(req, res, ctx);
        } else {
            return 0;
        }
    } catch (const ApiError& e) {
        check_status(e.status, e.message);
        return 0;
    } catch (const Error& e) {
        check_status(api_error(e).status, e.what());
        return 0;
    }
    IRIS_FUZZ_CHECK(res.status == -1 || res.status == 200, "status %d", res.status);
    if (!res.body.empty() && res.get_header_value("Content-Type") == "application/json")
        IRIS_FUZZ_CHECK(!json::parse(res.body, nullptr, false).is_discarded(),
                        "the answer is not JSON");
    return 0;
}
