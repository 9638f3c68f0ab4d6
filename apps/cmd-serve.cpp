// iris serve: the REST API (server/server.h).
#include "apps/commands.h"
#include "apps/common.h"
#include "assistant/assistant.h"
#include "memory/memory.h"
#include "server/server.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <unistd.h>

namespace iris::app {
namespace {

int g_stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig)
{
    char c = char(sig);
    [[maybe_unused]] ssize_t n = write(g_stop_pipe[1], &c, 1); // async-signal-safe
}

std::string read_key_file(const std::string& path)
{
    std::error_code ec;
    if (std::filesystem::file_size(path, ec) > 4096 || ec)
        throw Error(ErrorKind::invalid_argument,
                    "--api-key-file: '" + path + "' cannot be read or is over 4 KiB");
    std::ifstream in(path);
    std::string key;
    std::getline(in, key);
    while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
    if (key.empty())
        throw Error(ErrorKind::invalid_argument,
                    "--api-key-file: the first line of '" + path + "' is empty");
    return key;
}

} // namespace

int cmd_serve(int argc, char** argv)
{
    std::vector<std::string> valued = {"--host",           "--port",        "--api-key",
                                       "--api-key-file",   "--model",       "--db",
                                       "--threads",        "--cors-origin", "--max-queue",
                                       "--max-body-mb",    "--max-images",  "--max-prompt-tokens",
                                       "--max-tokens",     "--timeout",     "--tile-budget",
                                       "--log-level",      "--quantize",    "--precision",
                                       "--device",         "--mmproj",      "--parallel",
                                       "--prompt-cache-mb"};
    valued.insert(valued.end(),
                  {"--head-timeout", "--body-timeout", "--max-client-connections", "--allowed-host",
                   "--max-live-sessions", "--live-max-fps", "--live-max-message-kb",
                   "--live-idle-timeout"});
    for (auto& name : kv_option_names()) valued.push_back(name);
    Args args(argc, argv, valued, {"--allow-media-url", "--live", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris serve [--host 127.0.0.1] [--port 8080] [--api-key KEY | --api-key-file "
            "FILE]\n"
            "                  [--model DIR | --model FILE.gguf [--mmproj FILE]] [--db DIR] "
            "[options]\n"
            "\n"
            "Serves the model over HTTP: the OpenAI chat API with images, document QA and memory "
            "search.\n"
            "  GET  /health                 liveness (no key needed)\n"
            "  GET  /metrics                Prometheus counters\n"
            "  GET  /v1/models\n"
            "  POST /v1/chat/completions    OpenAI chat; image_url parts as data: URLs; stream: "
            "true\n"
            "  POST /v1/documents/qa        {question, document: base64 PDF or image} or "
            "multipart\n"
            "  POST /v1/memory/search       {query, from, to, k}        (with --db)\n"
            "  GET  /v1/memory/{id}         an entry with its key frames (with --db)\n"
            "  GET  /v1/realtime            a live session's WebSocket (with --db and --live;\n"
            "                               docs/live.md)\n"
            "\n"
            "  --host ADDR            address to bind (default 127.0.0.1; others need an API key)\n"
            "  --port N               port (default 8080; 0 picks a free one)\n"
            "  --api-key KEY          require 'Authorization: Bearer KEY' (16+ characters)\n"
            "  --api-key-file FILE    the key from the first line of FILE (keeps it out of ps)\n"
            "  --cors-origin ORIGIN   allow browser requests from ORIGIN (repeatable; exact "
            "match)\n"
            "  --allow-media-url      fetch https image URLs of public hosts (off: data: URLs "
            "only)\n"
            "  --db DIR               serve the memory store in DIR (opened read-only)\n"
            "  --live                 live sessions: GET /v1/realtime streams a camera and a\n"
            "                         microphone, remembered in --db DIR (opened for writing)\n"
            "  --max-live-sessions N  at once (default 2)   --live-max-fps N  frames a second\n"
            "                         (default 10)   --live-max-message-kb N  (default 2048)\n"
            "  --live-idle-timeout S  end a session that sends nothing for S s (default 60)\n"
            "  --max-queue N          requests waiting for or holding the model before 503\n"
            "                         (default 8)\n"
            "  --parallel N           requests generated at once, decoded together in shared\n"
            "                         batched steps; each answer is what it is alone (default 1,\n"
            "                         at most --max-queue)\n"
            "  --prompt-cache-mb N    keep prompt prefixes (system prompt, earlier turns, images)\n"
            "                         and encoded images for later requests, least recently used\n"
            "                         dropped first; answers are the same (default 256, 0: off)\n"
            "  --max-body-mb N        larger bodies get 413 (default 20)\n"
            "  --max-images N         images per request (default 8)\n"
            "  --max-prompt-tokens N  (default 8192)   --max-tokens N  largest max_tokens (default "
            "2048)\n"
            "  --tile-budget N        tiles of the PDF pages one question may see (default 12)\n"
            "  --timeout S            cut off clients idle for S seconds, or slower than that\n"
            "                         in all to take their answers (default 30)\n"
            "  --head-timeout S       a request's line and headers must arrive within S seconds\n"
            "                         (default 10; 408 after)\n"
            "  --body-timeout S       a request's body must arrive within S seconds once its\n"
            "                         headers are in (default 60; 408 after)\n"
            "  --max-client-connections N\n"
            "                         open connections of one client address; more get 429\n"
            "                         (default 32; every local client counts as 127.0.0.1)\n"
            "  --allowed-host NAME    answer to Host NAME too (repeatable); without an API key\n"
            "                         other names than localhost, IP addresses and --host get\n"
            "                         421\n"
            "  --threads N            compute threads (default: all cores)\n"
            "  --log-level LEVEL      debug, info, warn or error (default info)\n"
            "%s"
            "KV cache of every request (a chat request may ask for another with \"kv\": TYPE):\n"
            "%s",
            load_help(), kv_help());
        return 0;
    }
    if (!args.positionals().empty())
        throw Error(ErrorKind::invalid_argument, "iris serve takes no positional arguments");
    server::Options o;
    o.host = args.str("--host", o.host);
    o.port = int(args.integer("--port", o.port, 0, 65535));
    if (args.has("--api-key") && args.has("--api-key-file"))
        throw Error(ErrorKind::invalid_argument, "give --api-key or --api-key-file, not both");
    o.api_key = args.has("--api-key-file") ? read_key_file(args.str("--api-key-file"))
                                           : args.str("--api-key");
    o.cors_origins = args.all("--cors-origin");
    o.allowed_hosts = args.all("--allowed-host");
    o.allow_media_url = args.flag("--allow-media-url");
    o.live = args.flag("--live");
    o.max_queue = int(args.integer("--max-queue", o.max_queue, 1, 1024));
    o.parallel = int(args.integer("--parallel", o.parallel, 1, 1024));
    o.prompt_cache_bytes = size_t(args.integer("--prompt-cache-mb", 256, 0, 1 << 20)) << 20;
    o.max_body_bytes = size_t(args.integer("--max-body-mb", 20, 1, 1024)) << 20;
    o.max_images = int(args.integer("--max-images", o.max_images, 0, 64));
    o.max_prompt_tokens
        = int(args.integer("--max-prompt-tokens", o.max_prompt_tokens, 16, 1 << 20));
    o.max_new_tokens = int(args.integer("--max-tokens", o.max_new_tokens, 1, 1 << 20));
    o.document_tile_budget = int(args.integer("--tile-budget", o.document_tile_budget, 1, 256));
    o.timeout_s = int(args.integer("--timeout", o.timeout_s, 1, 3600));
    o.head_timeout_s = int(args.integer("--head-timeout", o.head_timeout_s, 1, 3600));
    o.body_timeout_s = int(args.integer("--body-timeout", o.body_timeout_s, 1, 86400));
    o.max_client_connections
        = int(args.integer("--max-client-connections", o.max_client_connections, 1, 65536));
    o.max_live_sessions = int(args.integer("--max-live-sessions", o.max_live_sessions, 0, 64));
    o.live_max_fps = int(args.integer("--live-max-fps", o.live_max_fps, 1, 120));
    o.live_max_message_bytes
        = size_t(args.integer("--live-max-message-kb", int64_t(o.live_max_message_bytes >> 10), 1,
                              1 << 20))
        << 10;
    o.live_idle_timeout_s
        = int(args.integer("--live-idle-timeout", o.live_idle_timeout_s, 1, 86400));
    if (args.has("--log-level")) {
        std::string l = args.str("--log-level");
        LogLevel level = l == "debug" ? LogLevel::debug
            : l == "warn"             ? LogLevel::warn
            : l == "error"            ? LogLevel::error
                                      : LogLevel::info;
        if (l != "debug" && l != "info" && l != "warn" && l != "error")
            throw Error(ErrorKind::invalid_argument,
                        "--log-level must be debug, info, warn or error");
        log_set_level(level);
    }
    o.validate(); // before the model loads: a refused address fails fast

    // SIGINT and SIGTERM, whichever thread they land on, wake one thread that stops the server
    // (a handler may do little more than write to a pipe); SIGPIPE (a client that went away)
    // is an error on that write only.
    std::signal(SIGPIPE, SIG_IGN);
    if (pipe(g_stop_pipe) != 0) throw Error(ErrorKind::io, "cannot create a pipe");
    struct sigaction sa
    {
    };
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    apply_threads(args);
    auto engine = load_engine(args);
    o.model_name = model::ModelPaths::resolve(model_dir(args), args.str("--mmproj")).name();
    std::optional<memory::Store> store;
    if (o.live && !args.has("--db"))
        throw Error(ErrorKind::invalid_argument, "--live remembers in a memory: give --db DIR");
    if (args.has("--db")) {
        memory::StoreOptions so;
        // Live sessions write to it; otherwise `iris watch` may be writing.
        so.read_only = !o.live;
        so.dim = assistant::embedding_dim(*engine);
        store.emplace(memory::Store::open(args.str("--db"), so));
        std::fprintf(stderr, "memory: %s, %lld entries\n", store->dir().c_str(),
                     (long long)store->count());
    }
    server::Server srv(*engine, store ? &*store : nullptr, o);
    int port = srv.bind();
    std::thread stopper([&] {
        char sig = 0;
        while (read(g_stop_pipe[0], &sig, 1) < 0 && errno == EINTR) { }
        if (sig == 0) return; // run() ended by itself
        std::fprintf(stderr, "iris serve: stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        srv.stop();
    });
    std::string shown = o.host.find(':') != std::string::npos && o.host.front() != '['
        ? "[" + o.host + "]"
        : o.host;
    std::printf("iris serve: listening on http://%s:%d (model %s%s)\n", shown.c_str(), port,
                o.model_name.c_str(), o.api_key.empty() ? "" : ", API key required");
    std::fflush(stdout);
    srv.run();
    char end = 0;
    [[maybe_unused]] ssize_t n
        = write(g_stop_pipe[1], &end, 1); // ends the stopper if no signal came
    stopper.join();
    return 0;
}

} // namespace iris::app
