// The HTTP server: routes, authentication, CORS, limits, logging and metrics.
#include "model/arch.h"
#include "server/http.h"
#include "server/internal.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <sys/socket.h>
#include <thread>

namespace iris::server {

bool is_loopback_host(std::string_view host)
{
    if (host == "localhost" || host == "::1" || host == "[::1]") return true;
    return host.starts_with("127.")
        && host.find_first_not_of("0123456789.") == std::string_view::npos;
}

void Options::validate() const
{
    auto bad = [](const std::string& what) { throw Error(ErrorKind::invalid_argument, what); };
    if (host.empty()) bad("the host is empty");
    if (port < 0 || port > 65535) bad("the port must be between 0 and 65535");
    if (!is_loopback_host(host) && api_key.empty())
        bad("refusing to listen on " + host
            + " without an API key: anyone who can reach it could use the model and read the "
              "memory. Give --api-key or --api-key-file, or bind 127.0.0.1");
    if (!api_key.empty() && api_key.size() < 16)
        bad("the API key must have at least 16 characters");
    for (char c : api_key)
        if (!std::isgraph(static_cast<unsigned char>(c)))
            bad("the API key may only have printable characters without spaces");
    for (const auto& o : cors_origins)
        if (!(o.starts_with("http://") || o.starts_with("https://")) || o.back() == '/')
            bad("a CORS origin is a scheme and host like http://localhost:3000, not '" + o + "'");
    if (max_body_bytes < 1024) bad("max_body_bytes must be at least 1024");
    if (max_json_depth < 4 || max_json_depth > 1000)
        bad("max_json_depth must be between 4 and 1000");
    if (max_images < 0 || max_prompt_tokens < 16 || max_new_tokens < 1 || max_queue < 1)
        bad("max_images, max_prompt_tokens, max_new_tokens and max_queue must be positive");
    if (parallel < 1 || parallel > max_queue)
        bad(strfmt("parallel must be between 1 and max_queue (%d)", max_queue));
    if (max_pdf_pages < 1 || document_tile_budget < 1)
        bad("max_pdf_pages and document_tile_budget must be positive");
    if (max_live_sessions < 0 || live_max_fps < 1 || live_idle_timeout_s < 1
        || live_max_message_bytes < 1024)
        bad("max_live_sessions must be >= 0, live_max_fps and live_idle_timeout_s >= 1, "
            "live_max_message_bytes >= 1024");
    if (timeout_s < 1 || head_timeout_s < 1 || body_timeout_s < 1)
        bad("timeout_s, head_timeout_s and body_timeout_s must be at least 1 second");
    if (max_client_connections < 1) bad("max_client_connections must be at least 1");
    for (const auto& h : allowed_hosts)
        if (h.empty() || h.size() > 253
            || h.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789.-")
                != std::string::npos)
            bad("an allowed host is a name like iris.example.org, without a scheme or port, not '"
                + h + "'");
    if (threads < 0) bad("threads must be >= 0");
}

namespace {

// SHA-256 both sides, then compare in constant time: neither the key's bytes nor its length leak
// through timing.
bool same_secret(std::string_view given, std::string_view key)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(given.data()), given.size(), a);
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), b);
    return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

void health(const httplib::Request&, httplib::Response& res, const Context&)
{
    res.set_content("{\"status\":\"ok\"}", "application/json");
}

void metrics_text(const httplib::Request&, httplib::Response& res, const Context& ctx)
{
    res.set_content(ctx.metrics.text(ctx.queue, ctx.batcher, ctx.prompt_cache),
                    "text/plain; version=0.0.4");
}

void models(const httplib::Request&, httplib::Response& res, const Context& ctx)
{
    const auto& cfg = ctx.engine.config();
    json model = {{"id", ctx.options.model_name},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "iris"},
                  {"meta",
                   {{"llm", model::llm_arch(cfg.llm.arch).display},
                    {"context_length", cfg.llm.max_position_embeddings},
                    {"image_size", cfg.force_image_size},
                    {"tokens_per_tile", ctx.engine.network().num_image_token()}}}};
    res.set_content(json {{"object", "list"}, {"data", json::array({model})}}.dump(),
                    "application/json");
}

enum class Method { get, post };
enum class Auth { none, key }; // key: the API key is needed when the server has one
// The Content-Type a POST route takes: JSON only, or JSON and multipart/form-data.
enum class Body { none, json, json_or_form };
using Handler = void (*)(const httplib::Request&, httplib::Response&, const Context&);

struct Route
{
    Method method;
    const char* pattern; // a path, or a regular expression whose groups are in req.matches
    const char* label; // the route in metrics and the log
    Auth auth;
    Handler handler;
    Body body = Body::none;
    bool needs_memory = false; // served only with a memory store
};

// Every route: what is served, how metrics and the log name it, and who may call it.
constexpr Route kRoutes[] = {
    {Method::get, "/", "/", Auth::none, web_page},
    {Method::get, R"(/web/([^/]+))", "/web/{file}", Auth::none, web_file},
    {Method::get, "/health", "/health", Auth::none, health},
    {Method::get, "/metrics", "/metrics", Auth::key, metrics_text},
    {Method::get, "/v1/models", "/v1/models", Auth::key, models},
    {Method::post, "/v1/chat/completions", "/v1/chat/completions", Auth::key, chat_completions,
     Body::json},
    {Method::post, "/v1/documents/qa", "/v1/documents/qa", Auth::key, documents_qa,
     Body::json_or_form},
    {Method::post, "/v1/compose/article", "/v1/compose/article", Auth::key, compose_article,
     Body::json},
    {Method::post, "/v1/compose/webpage", "/v1/compose/webpage", Auth::key, compose_webpage,
     Body::json},
    {Method::get, "/v1/memory", "/v1/memory", Auth::key, memory_list, Body::none,
     /*needs_memory=*/true},
    {Method::post, "/v1/memory/search", "/v1/memory/search", Auth::key, memory_search, Body::json,
     /*needs_memory=*/true},
    {Method::get, R"(/v1/memory/([^/]+))", "/v1/memory/{id}", Auth::key, memory_get, Body::none,
     /*needs_memory=*/true},
#if IRIS_WITH_LIVE
    {Method::get, "/v1/realtime", "/v1/realtime", Auth::key, live_session, Body::none,
     /*needs_memory=*/true},
#endif
};

// The route a path belongs to, whatever the method and whether it is served: the route of that
// exact path, else the first whose pattern starts like the path up to its first group (a
// malformed id is still that route's traffic). Null for a path of no route.
const Route* find_route(std::string_view path)
{
    for (const Route& r : kRoutes)
        if (path == r.pattern) return &r;
    for (const Route& r : kRoutes) {
        const std::string_view pattern = r.pattern;
        const size_t group = pattern.find('(');
        if (group != std::string_view::npos && path.starts_with(pattern.substr(0, group)))
            return &r;
    }
    return nullptr;
}

// The route a request is counted under (the path itself could be anything).
std::string route_label(const httplib::Request& req)
{
    const Route* r = find_route(req.path);
    return r ? r->label : "other";
}

// Whether a request must carry the API key (when the server has one): unknown paths do too.
bool needs_key(const httplib::Request& req)
{
    const Route* r = find_route(req.path);
    return !r || r->auth == Auth::key;
}

std::string lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Whether a Host header names this server: localhost, an IP address (a page cannot rebind those:
// the browser's origin would be that address itself), the bound host or an allowed name, with
// any port. A missing Host (HTTP/1.0) is no browser's.
bool host_allowed(std::string_view host, const Options& o)
{
    if (host.empty()) return true;
    if (host.front() == '[') { // an IPv6 address
        const size_t end = host.find(']');
        return end != std::string_view::npos && (end + 1 == host.size() || host[end + 1] == ':');
    }
    const size_t colon = host.find(':');
    std::string name = lower(host.substr(0, colon));
    if (colon != std::string_view::npos
        && host.find_first_not_of("0123456789", colon + 1) != std::string_view::npos)
        return false;
    if (!name.empty() && name.back() == '.') name.pop_back(); // "localhost." is the same name
    in_addr v4;
    if (name == "localhost" || inet_pton(AF_INET, name.c_str(), &v4) == 1) return true;
    std::string bound = lower(o.host);
    if (bound.size() > 2 && bound.front() == '[') bound = bound.substr(1, bound.size() - 2);
    if (name == bound) return true;
    return std::any_of(o.allowed_hosts.begin(), o.allowed_hosts.end(),
                       [&](const std::string& h) { return lower(h) == name; });
}

void send_error(httplib::Response& res, const ApiError& e)
{
    res.status = e.status;
    res.set_content(error_body(e), "application/json");
}

} // namespace

struct Server::Impl
{
    Impl(const reasoning::Engine& e, memory::Store* s, const Options& o)
        : options(o)
        , engine(e)
        , store(s)
        , queue(o.max_queue, o.parallel)
        , batcher(o.parallel > 1 ? std::make_unique<reasoning::Batcher>(e.network()) : nullptr)
        , prompt_cache(o.prompt_cache_bytes > 0
                           ? std::make_unique<reasoning::PrefixCache>(o.prompt_cache_bytes)
                           : nullptr)
        , ctx {engine,  store,    options,        queue, batcher.get(), prompt_cache.get(),
               metrics, stopping, live_sessions()}
        , http(http_limits(o), [this](int status) { metrics.request("other", status); })
    { }

    static HttpLimits http_limits(const Options& o)
    {
        HttpLimits l;
        l.head_timeout_s = o.head_timeout_s;
        l.body_timeout_s = o.body_timeout_s;
        l.idle_timeout_s = o.timeout_s;
        l.keep_alive_s = std::min(o.timeout_s, 5);
        l.max_client_connections = o.max_client_connections;
        l.workers = o.threads > 0 ? o.threads : std::max(o.max_queue, o.max_client_connections) + 8;
        return l;
    }

    const Options options;
    const reasoning::Engine& engine;
    memory::Store* store;
    EngineQueue queue;
    std::unique_ptr<reasoning::Batcher> batcher; // with parallel > 1
    std::unique_ptr<reasoning::PrefixCache> prompt_cache; // with prompt_cache_bytes > 0
    Metrics metrics;
    std::atomic<bool> stopping {false};
#if IRIS_WITH_LIVE
    LiveSessions live;
    LiveSessions* live_sessions()
    {
        return store && options.live ? &live : nullptr;
    }
#else
    LiveSessions* live_sessions()
    {
        return nullptr;
    }
#endif
    // run() has begun, and has returned: stop() must reach a listen that starts after it.
    std::atomic<bool> run_entered {false}, run_done {false}, http_stopped {false};
    Context ctx;
    HttpServer http;

    // Requests are counted before their response is written, so a client that has its answer
    // also finds it in /metrics.
    httplib::Server::Handler wrap(Handler handler)
    {
        return [this, handler](const httplib::Request& req, httplib::Response& res) {
            handle(handler, req, res);
            metrics.request(route_label(req),
                            res.status < 0 ? 200 : res.status); // -1: httplib's 200
        };
    }

    void handle(Handler handler, const httplib::Request& req, httplib::Response& res)
    {
        try {
            handler(req, res, ctx);
        } catch (const ApiError& e) {
            send_error(res, e);
        } catch (const Error& e) {
            send_error(res, api_error(e));
        } catch (const std::bad_alloc&) {
            send_error(res, {507, "the server ran out of memory for this request", "server_error"});
        } catch (const std::exception& e) {
            log_write(LogLevel::error, "%s %s: %s", req.method.c_str(), req.path.c_str(), e.what());
            send_error(res, {500, "internal error", "server_error"});
        }
    }

    // 0 when the request may go on, else the status that ends it before its body is read.
    int gate(const httplib::Request& req, httplib::Response& res)
    {
        // Every refusal closes the connection: the body that follows is never read.
        auto refuse = [&](const ApiError& e) {
            send_error(res, e);
            res.set_header("Connection", "close");
            HttpServer::close_after_response();
            return e.status;
        };
        // A chunked body's size is unknown until it is read, and the HTTP library answers one
        // that outgrows the limit with a bare 400: such bodies are refused up front. So are
        // POST bodies without a length, which the library would read until the client closes.
        if (req.has_header("Transfer-Encoding"))
            return refuse(
                {411,
                 "send the body with a Content-Length (chunked request bodies are not accepted)"});
        const size_t lengths = req.get_header_value_count("Content-Length");
        if (lengths == 0 && req.method == "POST")
            return refuse({411, "send the body with a Content-Length"});
        for (size_t i = 0; i < lengths; ++i) {
            const std::string& v = req.get_header_value("Content-Length", i);
            if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos
                || v.size() > 19)
                return refuse({400, "Content-Length must be a number of bytes"});
            // Two lengths are two readings of where the body ends (request smuggling).
            if (v != req.get_header_value("Content-Length"))
                return refuse({400, "the request has two different Content-Length headers"});
            if (std::strtoull(v.c_str(), nullptr, 10) > options.max_body_bytes)
                return refuse(
                    {413, strfmt("the request body is over %zu bytes", options.max_body_bytes)});
        }
        const bool keyed = !options.api_key.empty() && needs_key(req);
        // Without a key the Host is the check a browser cannot get around: a page whose name
        // was rebound to this address sends its own name. Keyed requests prove themselves.
        if (!keyed && !host_allowed(req.get_header_value("Host"), options))
            return refuse({421,
                           "this server does not answer to the name '"
                               + req.get_header_value("Host").substr(0, 200)
                               + "': start it with --allowed-host NAME to allow a name"});
        if (keyed) {
            const std::string& auth = req.get_header_value("Authorization");
            bool bearer = auth.size() > 7
                && std::equal(auth.begin(), auth.begin() + 7, "bearer ",
                              [](char a, char b) { return std::tolower(a) == b; });
            // A browser's WebSocket cannot send Authorization: it names the key as a subprotocol.
            const std::string given = bearer ? auth.substr(7)
                : req.path == "/v1/realtime" ? live_key(req)
                                             : std::string();
            if (given.empty() || !same_secret(given, options.api_key)) {
                res.set_header("WWW-Authenticate", "Bearer");
                return refuse({401,
                               "a valid API key is needed: send \"Authorization: Bearer <key>\"",
                               "authentication_error"});
            }
        }
        // JSON only: a page may post text/plain or a form anywhere without asking, but sending
        // application/json elsewhere needs a CORS preflight, which only cors_origins pass.
        const Route* route = find_route(req.path);
        if (req.method == "POST" && route && route->method == Method::post) {
            const std::string& type = req.get_header_value("Content-Type");
            const std::string media = lower(trim(type.substr(0, type.find(';'))));
            const bool form = route->body == Body::json_or_form && media == "multipart/form-data";
            if (media != "application/json" && !form) {
                return refuse(
                    {415,
                     "send the body as application/json"
                         + std::string(route->body == Body::json_or_form ? " or multipart/form-data"
                                                                         : "")
                         + (type.empty() ? "" : ", not " + type.substr(0, 100))});
            }
        }
        return 0;
    }

    void setup()
    {
        http.set_read_timeout(options.timeout_s);
        http.set_write_timeout(options.timeout_s);
        http.set_keep_alive_max_count(1000); // fewer reconnections racing a closing connection
        http.set_payload_max_length(options.max_body_bytes);
        http.set_tcp_nodelay(true);
        // SO_REUSEADDR only: the library's default also sets SO_REUSEPORT, which lets a second
        // server bind the same port and silently take half of the connections.
        http.set_socket_options([](socket_t sock) {
            int yes = 1;
            setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        });

        http.set_expect_100_continue_handler(
            [this](const httplib::Request& req, httplib::Response& res) {
                int status = gate(req, res);
                return status ? status : 100;
            });
        http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            const std::string& origin = req.get_header_value("Origin");
            bool cors = !origin.empty()
                && std::find(options.cors_origins.begin(), options.cors_origins.end(), origin)
                    != options.cors_origins.end();
            if (cors) {
                res.set_header("Access-Control-Allow-Origin", origin);
                res.set_header("Vary", "Origin");
            }
            if (req.method == "OPTIONS") { // a CORS preflight carries no credentials
                if (!cors) {
                    send_error(res,
                               {403, "cross-origin requests from this origin are not allowed"});
                } else {
                    res.status = 204;
                    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
                    res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
                    res.set_header("Access-Control-Max-Age", "600");
                }
                metrics.request(route_label(req), res.status);
                return httplib::Server::HandlerResponse::Handled;
            }
            if (!gate(req, res)) return httplib::Server::HandlerResponse::Unhandled;
            metrics.request(route_label(req), res.status);
            return httplib::Server::HandlerResponse::Handled;
        });
        // Errors of routes have their body already; the others (no route, a body over the limit,
        // a malformed request) are made and counted here.
        http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return;
            struct Count
            {
                Metrics& m;
                const httplib::Request& req;
                httplib::Response& res;
                ~Count() { m.request(route_label(req), res.status); }
            } count {metrics, req, res};
            // After a request the library could not read, the connection's next byte is unknown.
            if (res.status != 404) {
                res.set_header("Connection", "close");
                HttpServer::close_after_response();
            }
            if (res.status == 404)
                send_error(res,
                           {404, "no route for " + req.method + " " + req.path.substr(0, 200)});
            else if (res.status == 400 && HttpServer::read_timed_out())
                send_error(res,
                           {408,
                            strfmt("the request body did not arrive within %d s (or "
                                   "paused for %d s)",
                                   options.body_timeout_s, options.timeout_s)});
            else if (res.status == 413)
                send_error(
                    res,
                    {413, strfmt("the request body is over %zu bytes", options.max_body_bytes)});
            else if (res.status == 400)
                send_error(res, {400, "malformed HTTP request"});
            else
                send_error(res,
                           {res.status, strfmt("HTTP status %d", res.status),
                            res.status >= 500 ? "server_error" : "invalid_request_error"});
        });
        http.set_exception_handler(
            [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
                send_error(res, {500, "internal error", "server_error"});
            });
        http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
            // Never the headers: they hold the API key.
            log_write(res.status >= 500 ? LogLevel::warn : LogLevel::info, "%s %s %d",
                      req.method.c_str(), route_label(req).c_str(), res.status);
        });

        for (const Route& r : kRoutes) {
            if (r.needs_memory && !store) continue;
            if (r.method == Method::get)
                http.Get(r.pattern, wrap(r.handler));
            else
                http.Post(r.pattern, wrap(r.handler));
        }
    }
};

Server::Server(const reasoning::Engine& engine, memory::Store* store, const Options& options)
{
    options.validate();
    impl_ = std::make_unique<Impl>(engine, store, options);
    impl_->setup();
}

Server::~Server()
{
    stop();
}

int Server::bind()
{
    auto& http = impl_->http;
    const auto& o = impl_->options;
    std::string host = o.host == "localhost" ? "127.0.0.1" : o.host;
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    int port = o.port == 0 ? http.bind_to_any_port(host)
                           : (http.bind_to_port(host, o.port) ? o.port : -1);
    if (port < 0)
        throw Error(ErrorKind::io,
                    strfmt("cannot listen on %s:%d (in use, or not an address of this machine)",
                           o.host.c_str(), o.port));
    http.widen_backlog(); // listen() again on a listening socket only changes its backlog
    return port;
}

void Server::run()
{
    impl_->run_entered = true;
    const bool listened = !impl_->stopping && impl_->http.listen_after_bind();
    impl_->run_done = true;
    if (!listened && !impl_->stopping) throw Error(ErrorKind::io, "the server stopped listening");
}

void Server::stop()
{
    if (!impl_) return;
    impl_->stopping = true;
    impl_->queue.shut_down();
#if IRIS_WITH_LIVE
    impl_->live.stop_all();
#endif
    // httplib's stop() does nothing until its listen loop runs, so a stop that comes while run()
    // is on its way there (a signal right after the banner) waits for it; a run() that has not
    // begun sees `stopping` and returns at once.
    if (!impl_->run_entered) return;
    while (!impl_->run_done && !impl_->http.is_running())
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!impl_->run_done && !impl_->http_stopped.exchange(true)) impl_->http.stop();
}

} // namespace iris::server
