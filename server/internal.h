// The server's private parts, shared between its files.
#pragma once

#include "memory/memory.h"
#include "reasoning/engine.h"
#include "reasoning/prefix-cache.h"
#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace iris::server {

using json = nlohmann::json;

// A request the server answers with an error: the HTTP status and OpenAI's error object.
struct ApiError
{
    int status = 400;
    std::string message;
    std::string type = "invalid_request_error";
    std::string param; // the offending field, when there is one
};

[[noreturn]] void bad_request(std::string message, std::string param = "");
// An iris::Error from a module, as the client should see it (bad input 400, limits 413, ...).
ApiError api_error(const Error& e);
std::string error_body(const ApiError& e);

// Parses a request body: nesting deeper than max_depth, broken JSON or a non-object is a 400.
json parse_body(std::string_view body, int max_depth);

// Typed, range-checked access to request fields; a wrong type or range is a 400 naming it.
struct Fields
{
    const json& obj;
    std::string where; // prefix for messages, e.g. "messages[2]."

    bool has(const char* key) const;
    std::optional<std::string> str(const char* key, size_t max_len) const;
    std::optional<double> number(const char* key, double lo, double hi) const;
    std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) const;
    std::optional<bool> boolean(const char* key) const;
};

// ---------------------------------------------------------------------------------------------
// Media (media.cpp)

struct MediaPolicy
{
    bool allow_url = false;
    size_t max_url_bytes = 0;
    reasoning::ImageLimits limits;
};
// The bytes of an image_url: a data: URL (base64), or with allow_url an https URL of a public
// address. Throws ApiError.
std::vector<uint8_t> fetch_media(const std::string& url, const MediaPolicy& policy);
// Decodes an image of a request. Dimensions past the limits are the request's mistake (400
// naming `param`), not a body too large (413): the encoded bytes may be a few dozen.
Image decode_request_image(std::span<const uint8_t> bytes, const reasoning::ImageLimits& limits,
                           const std::string& param);
// True for addresses that are not reachable on the public internet (loopback, private, link-local,
// carrier-grade NAT, multicast, reserved, unique-local, IPv4-mapped forms of these...).
bool is_private_address(const std::string& numeric_ip);

// ---------------------------------------------------------------------------------------------
// The engine queue: `running` generations at a time, first come first served, bounded.

class EngineQueue
{
public:
    EngineQueue(int capacity, int running)
        : capacity_(capacity)
        , running_(running)
    { }

    class Place
    {
    public:
        explicit Place(EngineQueue& q)
            : q_(q)
        { }
        ~Place();
        Place(const Place&) = delete;
        Place& operator=(const Place&) = delete;
        // Blocks until this request is among the first `running` in line; false if the server
        // is stopping.
        bool wait_turn();

    private:
        EngineQueue& q_;
        const int64_t entered_us_ = now_us();
    };

    // A place in line, or null when `capacity` requests already wait or run.
    std::unique_ptr<Place> enter();
    int depth() const;
    // Requests that got their turn, and the seconds they waited for it in all.
    std::pair<int64_t, double> waited() const;
    void shut_down(); // wakes every waiter; wait_turn() returns false from now on
    bool stopping() const { return stopping_; }

private:
    friend class Place;
    const int capacity_, running_;
    int64_t turns_ = 0;
    double waited_s_ = 0;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<const Place*> line_;
    std::atomic<bool> stopping_ {false};
};

// ---------------------------------------------------------------------------------------------
// Metrics (metrics.cpp): Prometheus text format 0.0.4.

class Metrics
{
public:
    void request(const std::string& route, int status);
    void generation(const reasoning::Answer& answer);
    void rejected(); // a full queue
    // A generation runs from begin to end (whatever its outcome), holding `kv_bytes` of cache
    // from when its prompt is in (Running::hold_kv) until it ends.
    void begin_generation();
    void end_generation(size_t kv_bytes);
    // begin_generation() to end_generation() over a scope, with the KV bytes it held.
    class Running
    {
    public:
        explicit Running(Metrics& metrics);
        ~Running();
        Running(const Running&) = delete;
        Running& operator=(const Running&) = delete;
        // The generation's cache once its prompt is in: counted until it ends (once).
        void hold_kv(size_t bytes);

    private:
        Metrics& metrics_;
        size_t kv_bytes_ = 0;
    };
    std::string text(const EngineQueue& queue, const reasoning::Batcher* batcher,
                     const reasoning::PrefixCache* prompt_cache) const;

private:
    mutable std::mutex mu_;
    std::map<std::pair<std::string, int>, int64_t> requests_;
    int64_t prompt_tokens_ = 0, reused_tokens_ = 0, generated_tokens_ = 0, generations_ = 0;
    int64_t cancelled_ = 0, rejected_ = 0;
    double vision_s_ = 0, prefill_s_ = 0, decode_s_ = 0;
    // Wall time with at least one generation running: the aggregate rate's denominator.
    int running_ = 0;
    int64_t busy_since_us_ = 0;
    double busy_s_ = 0;
    std::atomic<size_t> kv_bytes_ {0};
};

// ---------------------------------------------------------------------------------------------
// Live sessions (live.cpp)

struct Context;
class LiveSession;

// The live sessions being served, each on a thread of its own so that none holds an HTTP worker.
class LiveSessions
{
public:
    LiveSessions();
    ~LiveSessions(); // stop_all()
    LiveSessions(const LiveSessions&) = delete;
    LiveSessions& operator=(const LiveSessions&) = delete;

    // Serves the WebSocket on `fd` (HttpServer::take_connection), whose upgrade request is in
    // `received`; past max_live_sessions it is closed at once, saying why.
    void serve(const Context& ctx, int fd, std::string received, bool realtime_protocol);
    // Closes every session ("going away") and waits for each to end; no new one starts.
    void stop_all();

private:
    struct State;
    std::unique_ptr<State> state_;
};

// ---------------------------------------------------------------------------------------------
// What a route needs.

struct Context
{
    const reasoning::Engine& engine;
    memory::Store* store;
    const Options& options;
    EngineQueue& queue;
    reasoning::Batcher* batcher; // null: one generation at a time
    reasoning::PrefixCache* prompt_cache; // null: none
    Metrics& metrics;
    std::atomic<bool>& stopping;
    LiveSessions* live; // null where the server has no live sessions
};

// A place in the engine queue, or a 503 with Retry-After when the queue is full.
std::unique_ptr<EngineQueue::Place> enter_queue(const Context& ctx, httplib::Response& res);

// A chat completion request, parsed and checked (chat.cpp).
struct ChatTurn
{
    std::string user;
    std::vector<reasoning::PreparedImage> images;
    std::string assistant;
};

struct ChatRequest
{
    std::string system;
    std::vector<ChatTurn> turns; // the last one is the question (no assistant text)
    reasoning::AskOptions ask;
    bool stream = false;
    // "kv" and the SKVQ settings ("kv_bits", ...); absent: the engine's default
    std::optional<model::KvCacheOptions> kv_cache;
};
ChatRequest parse_chat_request(const json& body, const Context& ctx);
// The session for the request with its earlier turns replayed (runs the vision encoder).
std::unique_ptr<reasoning::Session> prepare_session(const ChatRequest& req, const Context& ctx);

// Route handlers, served as the route table says (kRoutes, server.cpp); they throw ApiError (or
// iris::Error) for the client's mistakes.
void chat_completions(const httplib::Request& req, httplib::Response& res, const Context& ctx);
void documents_qa(const httplib::Request& req, httplib::Response& res, const Context& ctx);
void memory_list(const httplib::Request& req, httplib::Response& res, const Context& ctx);
void memory_search(const httplib::Request& req, httplib::Response& res, const Context& ctx);
void memory_get(const httplib::Request& req, httplib::Response& res, const Context& ctx);
void compose_article(const httplib::Request& req, httplib::Response& res, const Context& ctx);
void compose_webpage(const httplib::Request& req, httplib::Response& res, const Context& ctx);
// GET / and GET /web/{file}: the web app (web.cpp; docs/web.md).
void web_page(const httplib::Request& req, httplib::Response& res, const Context& ctx);
void web_file(const httplib::Request& req, httplib::Response& res, const Context& ctx);
// The web app's files (server/web/), built into the binary by cmake/embed.cmake.
struct EmbeddedFile
{
    std::string_view name, bytes;
};
extern const EmbeddedFile kEmbedded[];
extern const size_t kEmbeddedCount;
// A live session's client event, parsed and checked (live.cpp; docs/live.md).
struct LiveEvent
{
    enum class Type { audio, frame, question, update } type = Type::update;
    std::vector<int16_t> audio; // audio: 16 kHz mono, at least one sample
    std::vector<uint8_t> image; // frame: the encoded image, not empty
    std::string question; // question: not blank, at most 4000 bytes
    std::optional<std::string> wake_phrase; // update: with at least one word
    std::optional<bool> output_audio; // update
};
// Throws ApiError (400) for what is not an event of docs/live.md.
LiveEvent parse_live_event(std::string_view text, int max_json_depth);
// GET /v1/realtime: hands the connection to a live session of its own.
void live_session(const httplib::Request& req, httplib::Response& res, const Context& ctx);
// The API key a browser passed as the subprotocol "openai-insecure-api-key.KEY"; empty if none.
std::string live_key(const httplib::Request& req);

} // namespace iris::server
