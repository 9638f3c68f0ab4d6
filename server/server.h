// server — the REST API: OpenAI-compatible chat with images, question answering over images and
// PDF documents, and search over the long-term memory.
//
//   auto engine = iris::reasoning::Engine::load("resources/models/iris-demo");
//   iris::server::Options opts;                 // 127.0.0.1:8080, no key
//   iris::server::Server server(*engine, nullptr, opts);
//   int port = server.bind();                   // throws Error when the address is taken
//   server.run();                               // until stop() (from any thread)
//
// Routes: the web app GET / and GET /web/{file} (docs/web.md), GET /health, GET /metrics,
// GET /v1/models, POST /v1/chat/completions, POST /v1/documents/qa, and with a memory store
// GET /v1/memory, POST /v1/memory/search, GET /v1/memory/{id} and the live sessions' WebSocket
// GET /v1/realtime (docs/live.md).
// Generation runs `parallel` requests at a time (one by default), in arrival order, the running
// ones decoded together in shared batched steps (reasoning/batcher.h): requests join and leave
// the batch as they come and go, and each gets the answer it would get alone. A prompt whose
// system prompt, earlier turns or images an earlier request had resumes from that request's
// cache (prompt_cache_bytes), again with the answer it would get alone. At most max_queue
// requests wait for or hold the engine, and the next one is answered 503 with Retry-After.
//
// Safe by default: binds 127.0.0.1, and refuses any other address without an API key; with a key
// every route but /health needs "Authorization: Bearer KEY" (compared in constant time, never
// logged); no CORS headers unless cors_origins names the origin exactly; bodies over
// max_body_bytes get 413 before they are read; JSON nesting, images per request and prompt tokens
// are limited, every number is range-checked (400); idle clients are cut off after timeout_s.
// A request's head must arrive within head_timeout_s and its body within body_timeout_s, and
// connections waiting for their head hold no worker thread (server/http.h), so slow clients never
// starve /health or anyone else; one address may hold max_client_connections connections (429
// beyond). Without a key, a Host header that is not localhost, an IP address, `host` or one of
// allowed_hosts is refused (421): a web page cannot rebind its own name to this server. POST
// routes take application/json bodies only (documents also multipart/form-data), else 415, so a
// page cannot post to them as a plain form either.
#pragma once

#include "core/core.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace iris::reasoning {
class Engine;
}
namespace iris::memory {
class Store;
}

namespace iris::server {

struct Options
{
    std::string host = "127.0.0.1";
    int port = 8080; // 0: any free port (bind() says which)
    std::string api_key; // empty: no authentication (allowed on loopback addresses only)
    std::vector<std::string> cors_origins; // exact origins, e.g. "http://localhost:3000"
    std::string model_name = "iris"; // the id /v1/models lists
    // Image URLs other than data: URLs are refused unless this is set; then only https URLs of
    // public addresses, without redirects, up to max_media_url_bytes.
    bool allow_media_url = false;
    size_t max_media_url_bytes = 10u << 20;
    size_t max_body_bytes = 20u << 20;
    int max_json_depth = 32;
    int max_images = 8; // per request
    int max_prompt_tokens = 8192;
    int max_new_tokens = 2048; // the largest max_tokens a request may ask for
    int max_queue = 8; // requests waiting for or holding the engine
    int parallel = 1; // requests generated at once (at most max_queue)
    // Prompt prefixes (system prompt, earlier turns, images) and encoded images kept for later
    // requests (reasoning/prefix-cache.h); 0: none.
    size_t prompt_cache_bytes = 256u << 20;
    int max_pdf_pages = 200;
    int document_tile_budget = 12; // tiles of the pages a document question may see
    int timeout_s = 30; // a client that sends or receives nothing for this long is cut off
    int head_timeout_s = 10; // the request line and headers, from the connection or first byte
    int body_timeout_s = 60; // the whole body, once the head is in (20 MiB needs 2.8 Mbit/s)
    // Open connections of one client address; more get 429. Every local client is 127.0.0.1:
    // this leaves room for benchmarks and connection pools of a few dozen.
    int max_client_connections = 32;
    // Host names the server answers to besides localhost, IP addresses and `host` (no port).
    std::vector<std::string> allowed_hosts;
    // Live sessions (GET /v1/realtime), remembered in the memory store, which must be open for
    // writing: at once, frames a second, the largest message (a base64 JPEG frame), and how long
    // one may send nothing.
    bool live = false;
    int max_live_sessions = 2;
    int live_max_fps = 10;
    size_t live_max_message_bytes = 2u << 20;
    int live_idle_timeout_s = 60;
    // HTTP worker threads; 0: max(max_queue, max_client_connections) + 8, so that one address
    // at its cap leaves 8 workers for the others and the engine queue never waits for one.
    int threads = 0;

    // Throws Error(invalid_argument) naming the field; also for a non-loopback host without a key.
    void validate() const;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(std::string_view host);

class Server
{
public:
    // `store` may be null (no memory routes); both must outlive the server.
    Server(const reasoning::Engine& engine, memory::Store* store, const Options& options);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds the address; returns the port. Error(io) when it cannot be bound.
    int bind();
    // Serves until stop(). Generations in flight are cancelled by stop().
    void run();
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace iris::server
