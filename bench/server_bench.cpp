// server_bench — `iris serve` under concurrent streams: aggregate tokens/s, time to first token
// and per-token latency, one request at a time beside --parallel (continuous batching), and
// behaviour under overload (only 503s, stable memory).
//
//   server_bench                        demo model, 1, 2, 4, 8 and 16 streams, 10 s each
//   options: --model DIR  --clients 1,2,4,8,16  --seconds 10  --max-tokens 64  --threads N
//            --image FILE|none  --question TEXT  --system TEXT  --modes serial,parallel
//            --distinct (each request's question ends in its own number, so that only the system
//            prompt and the image are shared)  --prompt-cache-mb N (iris serve's; 0: off)
//            --url http://HOST:PORT (time a running OpenAI-compatible server instead, e.g.
//            llama-server -np 16 with the same shape)  --overload-clients 64  --overload-queue 8
//            --no-overload
//            --live (live sessions only: --live-rounds 3, --live-fps 5)
//
// After one uncounted request, each stream sends streamed chats back to back over its own
// connection (OpenAI's chunk format, parsed as it arrives), every one generating max_tokens
// tokens (ignore_eos): time to first token is from sending the request to the first content
// chunk, per-token latency the gaps between content chunks. "serial" is a server that answers one
// request at a time, "parallel" one with --parallel and --max-queue at the largest stream count;
// both have room in their queue for every stream, so the rows measure batching and queueing, not
// refusals. The overload rows start a server with --max-queue --overload-queue and
// --overload-clients clients, twice, and report every status seen and the server's resident memory
// after each round. The live rows stream the sample speech (a question after the wake phrase
// "blue square", then 2 s of silence) and camera frames into `iris serve --live` over its
// WebSocket in real time, one session at a time, and report the time from the end of the spoken
// question to the first answer text and the first answer audio (as the server measures it from
// the last recognised word, and as the client sees it from the last speech sample it sent),
// frames sent, decoded and dropped a second, and the server's CPU time per second of session.
#include "tests/server/bytes.h"
#include "tests/server/live_client.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Options
{
    std::string model = std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo";
    std::vector<int> clients = {1, 2, 4, 8, 16};
    double seconds = 10;
    int max_tokens = 64;
    int threads = 0;
    std::vector<std::string> modes = {"serial", "parallel"};
    std::string url; // a running server instead of iris serve
    int overload_clients = 64;
    int overload_queue = 8;
    bool overload = true;
    std::string image = std::string(IRIS_SOURCE_DIR) + "/resources/samples/document-receipt.png";
    std::string question = "Read all the text.";
    std::string system; // a system message; empty: the model's own
    bool distinct = false;
    int prompt_cache_mb = -1; // -1: iris serve's default
    bool live = false;
    int live_rounds = 3;
    double live_fps = 5;
};

// The body of the next request.
using Payload = std::function<std::string()>;

class Server
{
public:
    Server(const Options& o, int max_queue, int parallel = 1,
           const std::vector<std::string>& extra = {})
    {
        std::vector<std::string> args = {IRIS_BINARY,   "serve",
                                         "--port",      "0",
                                         "--model",     o.model,
                                         "--max-queue", std::to_string(max_queue),
                                         "--parallel",  std::to_string(parallel),
                                         "--log-level", "warn"};
        if (o.threads > 0) args.insert(args.end(), {"--threads", std::to_string(o.threads)});
        // Every client here is 127.0.0.1: room for all of them, so that overload meets the queue.
        const int clients
            = std::max(o.overload_clients, *std::max_element(o.clients.begin(), o.clients.end()));
        args.insert(args.end(), {"--max-client-connections", std::to_string(clients + 8)});
        if (o.prompt_cache_mb >= 0)
            args.insert(args.end(), {"--prompt-cache-mb", std::to_string(o.prompt_cache_mb)});
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int out[2];
        if (pipe(out) != 0) return;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        close(out[1]);
        std::string line;
        char c;
        while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
        close(out[0]);
        if (line.find("http://") != std::string::npos)
            port_ = std::atoi(line.c_str() + line.rfind(':') + 1);
    }
    ~Server()
    {
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            waitpid(pid_, nullptr, 0);
        }
    }
    int port() const { return port_; }
    // User and system CPU seconds the server has used.
    double cpu_s() const
    {
        std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
        std::string stat((std::istreambuf_iterator<char>(in)), {});
        std::istringstream fields(stat.substr(stat.rfind(')') + 2));
        std::string f;
        double ticks = 0;
        for (int i = 3; fields >> f && i <= 15; ++i)
            if (i >= 14) ticks += std::atof(f.c_str());
        return ticks / double(sysconf(_SC_CLK_TCK));
    }
    double rss_mb() const
    {
        std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
        return 0;
    }

private:
    pid_t pid_ = -1;
    int port_ = -1;
};

struct Sample
{
    int status = 0;
    double latency_ms = 0;
    double ttft_ms = -1;
    int tokens = 0; // usage's completion_tokens, else content chunks
    std::vector<double> gaps_ms; // between content chunks
    std::string error; // the client's error when there was no response
};

Sample one_request(httplib::Client& c, const std::string& body)
{
    Sample s;
    auto t0 = Clock::now(), last = t0;
    int chunks = 0;
    std::string buf;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.headers = {{"Content-Type", "application/json"}};
    req.body = body;
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        buf.append(d, n);
        size_t end;
        while ((end = buf.find("\n\n")) != std::string::npos) {
            std::string ev = buf.substr(0, end);
            buf.erase(0, end + 2);
            if (ev.rfind("data: {", 0) != 0) continue;
            json j = json::parse(ev.substr(6), nullptr, false);
            if (j.is_discarded() || !j.contains("choices")) continue;
            const json& choices = j["choices"];
            const json delta
                = choices.empty() ? json::object() : choices[0].value("delta", json::object());
            if (delta.contains("content") && delta["content"].is_string()
                && !delta["content"].get<std::string>().empty()) {
                const auto now = Clock::now();
                if (s.ttft_ms < 0)
                    s.ttft_ms = std::chrono::duration<double, std::milli>(now - t0).count();
                else
                    s.gaps_ms.push_back(
                        std::chrono::duration<double, std::milli>(now - last).count());
                last = now;
                ++chunks;
            }
            if (j.contains("usage") && j["usage"].is_object())
                s.tokens = j["usage"].value("completion_tokens", 0);
        }
        return true;
    };
    auto r = c.send(req);
    s.status = r ? r->status : -1;
    if (!r) s.error = httplib::to_string(r.error());
    if (s.tokens == 0) s.tokens = chunks;
    s.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    return s;
}

double pct(std::vector<double> v, double p)
{
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, size_t(p / 100.0 * double(v.size())))];
}

std::vector<Sample> run_clients(const std::string& host, int port, int n_clients, double seconds,
                                const Payload& payload)
{
    std::vector<Sample> all;
    std::mutex mu;
    auto end = Clock::now() + std::chrono::duration<double>(seconds);
    std::vector<std::thread> ts;
    for (int i = 0; i < n_clients; ++i)
        ts.emplace_back([&] {
            httplib::Client c(host, port);
            c.set_keep_alive(true);
            c.set_read_timeout(120);
            std::vector<Sample> mine;
            while (Clock::now() < end) mine.push_back(one_request(c, payload()));
            std::lock_guard lock(mu);
            all.insert(all.end(), mine.begin(), mine.end());
        });
    for (auto& t : ts) t.join();
    return all;
}

std::vector<std::string> split(const std::string& s)
{
    std::vector<std::string> v;
    std::stringstream ss(s);
    std::string x;
    while (std::getline(ss, x, ',')) v.push_back(x);
    return v;
}

std::vector<int> parse_list(const std::string& s)
{
    std::vector<int> v;
    for (const auto& x : split(s)) v.push_back(std::atoi(x.c_str()));
    return v;
}

// The rows of one server: each stream count in turn, tokens/s beside the first row's. One
// request first, not counted, so that no row pays for a cold start (weights paged in, caches
// filled).
void concurrency_rows(const std::string& label, const std::string& host, int port, const Options& o,
                      const Payload& payload)
{
    {
        httplib::Client c(host, port);
        c.set_read_timeout(120);
        one_request(c, payload());
    }
    double first = 0;
    for (int n : o.clients) {
        auto t0 = Clock::now();
        auto samples = run_clients(host, port, n, o.seconds, payload);
        double wall = std::chrono::duration<double>(Clock::now() - t0).count();
        std::vector<double> ttft, gaps;
        int ok = 0, busy = 0;
        long tokens = 0;
        for (const auto& s : samples) {
            if (s.status == 200) {
                ++ok;
                if (s.ttft_ms >= 0) ttft.push_back(s.ttft_ms);
                gaps.insert(gaps.end(), s.gaps_ms.begin(), s.gaps_ms.end());
                tokens += s.tokens;
            } else if (s.status == 503) {
                ++busy;
            }
        }
        const double rate = double(tokens) / wall;
        if (first == 0) first = rate;
        std::printf("| %d | %s | %zu | %d | %d | %.1f | %.2fx | %.0f | %.0f | %.1f | %.1f |\n", n,
                    label.c_str(), samples.size(), ok, busy, rate, first > 0 ? rate / first : 0.0,
                    pct(ttft, 50), pct(ttft, 99), pct(gaps, 50), pct(gaps, 99));
        std::fflush(stdout);
    }
}

} // namespace

// One live session a round, as the header says.
int live_rows(const Options& o)
{
    using iris::test::LiveClient;
    const std::string db = "/tmp/iris-live-bench-" + std::to_string(getpid());
    std::filesystem::remove_all(db);
    Server srv(o, 8, 1, {"--db", db, "--live"});
    if (srv.port() <= 0) {
        std::fprintf(stderr, "server_bench: iris serve --live did not start\n");
        return 1;
    }
    // The camera: a JPEG of the sample scene, made by ffmpeg.
    const std::string jpeg_path = db + "-frame.jpg";
    const std::string cmd = "ffmpeg -nostdin -y -loglevel error -i " IRIS_SOURCE_DIR
                            "/resources/samples/clip-frame2.png "
        + jpeg_path;
    if (std::system(cmd.c_str()) != 0) {
        std::fprintf(stderr, "server_bench: ffmpeg could not make the camera frame\n");
        return 1;
    }
    const std::string frame = iris::test::read_file(jpeg_path);
    std::filesystem::remove(jpeg_path);
    std::vector<int16_t> audio = iris::test::speech();
    const size_t speech_end = audio.size();
    audio.resize(audio.size() + 16000 * 2);

    std::printf("\nLive sessions: the sample speech (%.1f s, a question after \"blue square\") "
                "and 2 s of silence, frames at %.0f fps\n\n",
                double(speech_end) / 16000, o.live_fps);
    std::printf("| round | first text ms | first audio ms | client: first text ms | first audio "
                "ms | frames sent/s | decoded/s | dropped/s | server CPU %% |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int round = 1; round <= o.live_rounds; ++round) {
        LiveClient c(srv.port());
        if (!c.next("session.created")) {
            std::fprintf(stderr, "server_bench: no live session\n");
            return 1;
        }
        c.send({{"type", "session.update"}, {"session", {{"wake_phrase", "blue square"}}}});
        const double cpu0 = srv.cpu_s();
        const auto t0 = Clock::now();
        Clock::time_point speech_sent;
        const double frame_every = 10.0 / o.live_fps; // in 100-ms ticks
        double next_frame = 0;
        int n_frames = 0;
        for (size_t tick = 0; tick * 1600 < audio.size(); ++tick) {
            const size_t at = tick * 1600;
            c.send(iris::test::audio_event(audio.data() + at,
                                           std::min<size_t>(1600, audio.size() - at)));
            if (at < speech_end && at + 1600 >= speech_end) speech_sent = Clock::now();
            for (; next_frame <= double(tick); next_frame += frame_every, ++n_frames)
                c.send(iris::test::frame_event(frame));
            std::this_thread::sleep_until(t0 + (tick + 1) * std::chrono::milliseconds(100));
        }
        const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        const double cpu = srv.cpu_s() - cpu0;
        auto text = c.next("response.text.delta");
        auto sound = c.next("response.audio.delta");
        auto done = c.next("response.done");
        const auto stats = c.all("session.stats");
        c.close();
        if (!text || !done || stats.empty()) {
            std::printf("| %d | no answer to the spoken question | | | | | | | |\n", round);
            continue;
        }
        const int64_t sent_us
            = std::chrono::duration_cast<std::chrono::microseconds>(speech_sent.time_since_epoch())
                  .count();
        auto ms = [&](const json& event) {
            return std::to_string((event["received_us"].get<int64_t>() - sent_us) / 1000);
        };
        const json& latency = (*done)["response"]["latency_ms"];
        const json& frames = stats.back()["frames"];
        std::printf("| %d | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.0f |\n", round,
                    latency["first_text"].dump().c_str(), latency["first_audio"].dump().c_str(),
                    ms(*text).c_str(), sound ? ms(*sound).c_str() : "-", n_frames / seconds,
                    frames["decoded"].get<double>() / seconds,
                    frames["dropped"].get<double>() / seconds, 100 * cpu / seconds);
        std::fflush(stdout);
    }
    std::filesystem::remove_all(db);
    return 0;
}

int main(int argc, char** argv)
{
    std::signal(SIGPIPE, SIG_IGN);
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "server_bench: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--model")
            o.model = next();
        else if (a == "--clients")
            o.clients = parse_list(next());
        else if (a == "--seconds")
            o.seconds = std::atof(next().c_str());
        else if (a == "--max-tokens")
            o.max_tokens = std::atoi(next().c_str());
        else if (a == "--threads")
            o.threads = std::atoi(next().c_str());
        else if (a == "--modes")
            o.modes = split(next());
        else if (a == "--url")
            o.url = next();
        else if (a == "--overload-clients")
            o.overload_clients = std::atoi(next().c_str());
        else if (a == "--overload-queue")
            o.overload_queue = std::atoi(next().c_str());
        else if (a == "--no-overload")
            o.overload = false;
        else if (a == "--image")
            o.image = next();
        else if (a == "--question")
            o.question = next();
        else if (a == "--system")
            o.system = next();
        else if (a == "--distinct")
            o.distinct = true;
        else if (a == "--prompt-cache-mb")
            o.prompt_cache_mb = std::atoi(next().c_str());
        else if (a == "--live")
            o.live = true;
        else if (a == "--live-rounds")
            o.live_rounds = std::atoi(next().c_str());
        else if (a == "--live-fps")
            o.live_fps = std::atof(next().c_str());
        else {
            std::fprintf(stderr,
                         "usage: server_bench [--model DIR] [--clients 1,2,4,8,16] [--seconds S] "
                         "[--max-tokens N]\n"
                         "       [--threads N] [--modes serial,parallel] [--url http://HOST:PORT]\n"
                         "       [--image F|none] [--question Q] [--system S] [--distinct] "
                         "[--prompt-cache-mb N]\n"
                         "       [--overload-clients N] [--overload-queue N] [--no-overload]\n"
                         "       [--live [--live-rounds N] [--live-fps F]]\n");
            return 2;
        }
    }
    if (o.clients.empty() || *std::min_element(o.clients.begin(), o.clients.end()) < 1) {
        std::fprintf(stderr, "server_bench: --clients needs counts of at least 1\n");
        return 2;
    }
    if (o.live_fps <= 0 || o.live_fps > 10) {
        std::fprintf(stderr, "server_bench: --live-fps takes 0 to 10 frames a second\n");
        return 2;
    }
    if (o.live) return live_rows(o);
    json content = json::array();
    if (o.image != "none")
        content.push_back(
            {{"type", "image_url"},
             {"image_url",
              {{"url",
                "data:image/png;base64," + iris::test::base64(iris::test::read_file(o.image))}}}});
    content.push_back({{"type", "text"}, {"text", o.question}});
    json body = {{"stream", true},
                 {"max_tokens", o.max_tokens},
                 {"ignore_eos", true},
                 {"stream_options", {{"include_usage", true}}},
                 {"messages", {{{"role", "user"}, {"content", content}}}}};
    if (!o.system.empty())
        body["messages"].insert(body["messages"].begin(),
                                json {{"role", "system"}, {"content", o.system}});
    std::atomic<int> sent {0};
    const std::string same = body.dump();
    const Payload payload = [&]() -> std::string {
        if (!o.distinct) return same;
        json b = body;
        auto& text = b["messages"].back()["content"].back()["text"];
        text = text.get<std::string>() + " (" + std::to_string(++sent) + ")";
        return b.dump();
    };
    const int most = *std::max_element(o.clients.begin(), o.clients.end());

    std::printf("server_bench: %s, '%s'%s on %s, %d tokens per answer, %.0f s per row, %u CPUs, "
                "prompt cache %s\n\n",
                o.url.empty() ? o.model.c_str() : o.url.c_str(), o.question.c_str(),
                o.distinct ? " (N)" : "", o.image.c_str(), o.max_tokens, o.seconds,
                std::thread::hardware_concurrency(),
                o.prompt_cache_mb < 0 ? "default"
                                      : (std::to_string(o.prompt_cache_mb) + " MB").c_str());
    std::printf(
        "| streams | server | requests | ok | 503 | tokens/s | vs first row | TTFT p50 ms | "
        "p99 ms | per token p50 ms | p99 ms |\n");
    std::printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    if (!o.url.empty()) {
        const auto at = o.url.rfind(':');
        const std::string host = o.url.substr(o.url.find("//") + 2, at - o.url.find("//") - 2);
        concurrency_rows("at " + o.url, host, std::atoi(o.url.c_str() + at + 1), o, payload);
        return 0;
    }
    for (const std::string& mode : o.modes) {
        if (mode != "serial" && mode != "parallel") {
            std::fprintf(stderr, "server_bench: --modes takes serial and parallel\n");
            return 2;
        }
        const int parallel = mode == "parallel" ? most : 1;
        Server srv(o, most, parallel);
        if (srv.port() <= 0) {
            std::fprintf(stderr, "server_bench: iris serve did not start\n");
            return 1;
        }
        concurrency_rows(parallel > 1 ? "--parallel " + std::to_string(parallel) : "one at a time",
                         "127.0.0.1", srv.port(), o, payload);
    }
    if (!o.overload) return 0;

    std::printf("\nOverload: %d clients, --max-queue %d\n\n", o.overload_clients, o.overload_queue);
    std::printf("| round | requests | 200 | 503 | other | 200 latency p50 ms | p99 ms | server RSS "
                "MB after |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    Server srv(o, o.overload_queue);
    std::printf("| start | | | | | | | %.1f |\n", srv.rss_mb());
    for (int round = 1; round <= 2; ++round) {
        auto samples = run_clients("127.0.0.1", srv.port(), o.overload_clients, o.seconds, payload);
        std::map<int, int> by;
        std::map<std::string, int> errors;
        std::vector<double> lat;
        for (const auto& s : samples) {
            ++by[s.status];
            if (!s.error.empty()) ++errors[s.error];
            if (s.status == 200) lat.push_back(s.latency_ms);
        }
        int other = 0;
        for (auto [st, n] : by)
            if (st != 200 && st != 503) other += n;
        std::printf("| %d | %zu | %d | %d | %d | %.1f | %.1f | %.1f |\n", round, samples.size(),
                    by[200], by[503], other, pct(lat, 50), pct(lat, 99), srv.rss_mb());
        for (auto [st, n] : by)
            if (st > 0 && st != 200 && st != 503) std::printf("  status %d: %d\n", st, n);
        for (const auto& [e, n] : errors) std::printf("  no response (%s): %d\n", e.c_str(), n);
        std::fflush(stdout);
    }
    return 0;
}
