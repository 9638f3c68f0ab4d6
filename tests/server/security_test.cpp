// The server's security defaults, checked from outside as an attacker would meet them.
#include "tests/server/serve.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

using iris::test::Served;
using json = nlohmann::json;

namespace {

const std::string kKey = "test-key-0123456789abcdef";

// `source`: another loopback address to connect from (all of 127.0.0.0/8 is loopback on Linux),
// so that the server sees a client other than 127.0.0.1.
int connect_to(int port, const char* ip = "127.0.0.1", const char* source = nullptr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (source) {
        sockaddr_in b {};
        b.sin_family = AF_INET;
        inet_pton(AF_INET, source, &b.sin_addr);
        if (bind(fd, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) {
            close(fd);
            return -1;
        }
    }
    sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    inet_pton(AF_INET, ip, &a.sin_addr);
    // A bound on connect itself (Linux applies SO_SNDTIMEO to it): a network that drops the
    // packets instead of refusing them must not hang the test.
    timeval limit {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    timeval tv {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

// Sends raw bytes and reads until the server closes or `until` appears; what came back.
std::string exchange(int fd, const std::string& bytes, const std::string& until = "")
{
    if (!bytes.empty()) send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    std::string got;
    char buf[4096];
    while (until.empty() || got.find(until) == std::string::npos) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, size_t(n));
    }
    return got;
}

int run_status(const std::string& args)
{
    int st
        = std::system((std::string(IRIS_BINARY) + " serve " + args + " >/dev/null 2>&1").c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

} // namespace

TEST(ServerSecurity, RefusesToStartOnAPublicAddressWithoutAKey)
{
    Served s({"--host", "0.0.0.0"});
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.wait_exit(), 0);
    EXPECT_NE(s.log().find("without an API key"), std::string::npos) << s.log();
    // A short key is refused too; and one from a file works on any address.
    EXPECT_NE(run_status("--host 0.0.0.0 --port 0 --api-key short"), 0);
    auto file = std::filesystem::temp_directory_path() / ("iris-key-" + std::to_string(getpid()));
    std::ofstream(file) << kKey << "\n";
    Served keyed({"--host", "0.0.0.0", "--api-key-file", file.string()});
    ASSERT_TRUE(keyed.ok()) << keyed.log();
    httplib::Client c = keyed.client();
    c.set_bearer_token_auth(kKey.c_str());
    auto r = c.Get("/v1/models");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    std::filesystem::remove(file);
}

// By default only loopback connections reach it: an address of another interface of this
// machine is refused.
TEST(ServerSecurity, BindsLoopbackByDefault)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    EXPECT_NE(s.banner().find("http://127.0.0.1:"), std::string::npos);
    std::string other;
    ifaddrs* ifs = nullptr;
    if (getifaddrs(&ifs) == 0) {
        for (ifaddrs* i = ifs; i; i = i->ifa_next)
            if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
                char buf[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf,
                          sizeof buf);
                if (std::string(buf).rfind("127.", 0) != 0) other = buf;
            }
        freeifaddrs(ifs);
    }
    if (other.empty()) GTEST_SKIP() << "this machine has no non-loopback IPv4 address to try";
    EXPECT_EQ(connect_to(s.port(), other.c_str()), -1) << "reachable on " << other;
}

TEST(ServerSecurity, WithAKeyEveryRouteButHealthNeedsTheBearerToken)
{
    Served s({"--api-key", kKey});
    ASSERT_TRUE(s.ok()) << s.log();
    auto c = s.client();
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    for (const char* path : {"/v1/models", "/metrics", "/nowhere"}) {
        auto r = c.Get(path);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 401) << path;
        EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
        EXPECT_EQ(json::parse(r->body)["error"]["type"], "authentication_error");
    }
    auto post = c.Post("/v1/chat/completions", "{}", "application/json");
    ASSERT_TRUE(post);
    EXPECT_EQ(post->status, 401);
    for (std::string wrong : {kKey + "x", kKey.substr(0, kKey.size() - 1),
                              std::string("Basic ") + kKey, std::string()}) {
        httplib::Headers hdr
            = {{"Authorization", wrong.rfind("Basic", 0) == 0 ? wrong : "Bearer " + wrong}};
        auto r = c.Get("/v1/models", hdr);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 401) << wrong;
    }
    auto ok = c.Get("/v1/models", {{"Authorization", "bearer " + kKey}});
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200);
    // The key never reaches the log, whatever is sent.
    EXPECT_EQ(s.log().find(kKey.substr(0, 12)), std::string::npos);
}

TEST(ServerSecurity, NoCorsHeadersUnlessTheOriginIsListed)
{
    {
        Served s({});
        ASSERT_TRUE(s.ok()) << s.log();
        auto c = s.client();
        auto r = c.Get("/v1/models", {{"Origin", "http://evil.example"}});
        ASSERT_TRUE(r);
        EXPECT_FALSE(r->has_header("Access-Control-Allow-Origin"));
        auto pre = c.Options(
            "/v1/chat/completions",
            {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "POST"}});
        ASSERT_TRUE(pre);
        EXPECT_EQ(pre->status, 403);
        EXPECT_FALSE(pre->has_header("Access-Control-Allow-Origin"));
    }
    Served s({"--cors-origin", "http://localhost:3000", "--api-key", kKey});
    ASSERT_TRUE(s.ok()) << s.log();
    auto c = s.client();
    // A preflight carries no credentials and gets the allowed methods and headers.
    auto pre = c.Options(
        "/v1/chat/completions",
        {{"Origin", "http://localhost:3000"}, {"Access-Control-Request-Method", "POST"}});
    ASSERT_TRUE(pre);
    EXPECT_EQ(pre->status, 204);
    EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "http://localhost:3000");
    EXPECT_NE(pre->get_header_value("Access-Control-Allow-Headers").find("Authorization"),
              std::string::npos);
    auto r = c.Get("/v1/models",
                   {{"Origin", "http://localhost:3000"}, {"Authorization", "Bearer " + kKey}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "http://localhost:3000");
    for (const char* other :
         {"http://localhost:3001", "http://localhost", "https://localhost:3000", "null"}) {
        auto o = c.Get("/v1/models", {{"Origin", other}, {"Authorization", "Bearer " + kKey}});
        ASSERT_TRUE(o);
        EXPECT_FALSE(o->has_header("Access-Control-Allow-Origin")) << other;
    }
    EXPECT_NE(run_status("--port 0 --cors-origin '*'"), 0) << "a wildcard origin must be refused";
}

// 413 comes back as soon as the headers announce too much: the body is never waited for.
TEST(ServerSecurity, OversizedBodyGets413BeforeItIsRead)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    int fd = connect_to(s.port());
    ASSERT_GE(fd, 0);
    std::string got = exchange(fd,
                               "POST /v1/chat/completions HTTP/1.1\r\nHost: "
                               "127.0.0.1\r\nContent-Type: application/json\r\n"
                               "Content-Length: 20971521\r\n\r\n{\"messages\":",
                               "}}");
    close(fd);
    EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
    EXPECT_NE(got.find("over 20971520 bytes"), std::string::npos) << got;

    // The same with Expect: 100-continue; a chunked body, whose size is unknown, gets 411.
    fd = connect_to(s.port());
    got = exchange(fd,
                   "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                   "99999999\r\nExpect: 100-continue\r\n\r\n",
                   "\r\n\r\n");
    close(fd);
    EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
    auto c = s.client();
    std::string big(21u << 20, ' ');
    auto r = c.Post(
        "/v1/chat/completions",
        [&](size_t offset, httplib::DataSink& sink) {
            size_t n = std::min<size_t>(1 << 20, big.size() - offset);
            if (!sink.write(big.data() + offset, n)) return false; // the server hung up
            if (offset + n == big.size()) sink.done();
            return true;
        },
        "application/json");
    if (r) {
        EXPECT_EQ(r->status, 411); // or the server closed the connection before the end
    }
    EXPECT_TRUE(s.alive());
}

TEST(ServerSecurity, JsonDepthImagesPerRequestAndPromptTokensAreLimited)
{
    Served s({"--max-images", "2", "--max-prompt-tokens", "200"});
    ASSERT_TRUE(s.ok()) << s.log();
    auto c = s.client();
    std::string deep = std::string(200, '[') + std::string(200, ']');
    auto r = c.Post("/v1/chat/completions", "{\"messages\":" + deep + "}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("nests deeper"), std::string::npos) << r->body;

    json three = iris::test::image_chat(iris::test::sample("scene-color.png"),
                                        "What color is the circle?");
    auto part = three["messages"][0]["content"][0];
    three["messages"][0]["content"].push_back(part);
    three["messages"][0]["content"].push_back(part);
    r = c.Post("/v1/chat/completions", three.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("at most 2 images"), std::string::npos) << r->body;

    std::string words;
    for (int i = 0; i < 300; ++i) words += "circle ";
    json longq = {{"messages", {{{"role", "user"}, {"content", words}}}}};
    r = c.Post("/v1/chat/completions", longq.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("at most 200"), std::string::npos) << r->body;
}

// A client that sends half a request and goes quiet is cut off after --timeout.
TEST(ServerSecurity, IdleAndSlowClientsAreCutOff)
{
    Served s({"--timeout", "1"});
    ASSERT_TRUE(s.ok()) << s.log();
    int fd = connect_to(s.port());
    ASSERT_GE(fd, 0);
    auto t0 = std::chrono::steady_clock::now();
    std::string got
        = exchange(fd, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len");
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    close(fd);
    EXPECT_LT(waited, 8.0) << "the connection stayed open";
    // A body that stops halfway is cut off too.
    fd = connect_to(s.port());
    t0 = std::chrono::steady_clock::now();
    got = exchange(fd,
                   "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                   "application/json\r\n"
                   "Content-Length: 100\r\n\r\n{\"mess");
    waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    close(fd);
    EXPECT_LT(waited, 8.0);
    auto c = s.client();
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
}

TEST(ServerSecurity, ImageUrlsAreRefusedUnlessAllowedAndNeverReachPrivateAddresses)
{
    auto chat_with_url = [](const std::string& url) {
        return json {{"messages",
                      {{{"role", "user"},
                        {"content",
                         {{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                          {{"type", "text"}, {"text", "What is it?"}}}}}}}}
            .dump();
    };
    {
        Served s({});
        ASSERT_TRUE(s.ok()) << s.log();
        auto c = s.client();
        for (const char* url : {"https://example.com/a.png", "http://example.com/a.png",
                                "file:///etc/passwd", "ftp://x/y.png"}) {
            auto r = c.Post("/v1/chat/completions", chat_with_url(url), "application/json");
            ASSERT_TRUE(r);
            EXPECT_EQ(r->status, 400) << url;
        }
    }
    Served s({"--allow-media-url"});
    ASSERT_TRUE(s.ok()) << s.log();
    auto c = s.client();
    auto r = c.Post("/v1/chat/completions", chat_with_url("http://example.com/a.png"),
                    "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << "plain http must stay refused";
    for (const char* url : {"https://127.0.0.1/a.png", "https://localhost/a.png",
                            "https://10.1.2.3/a.png", "https://169.254.169.254/latest/meta-data",
                            "https://[::1]/a.png", "https://192.168.1.1:8443/x",
                            "https://[::ffff:127.0.0.1]/a.png", "https://0.0.0.0/a.png"}) {
        auto rr = c.Post("/v1/chat/completions", chat_with_url(url), "application/json");
        ASSERT_TRUE(rr);
        EXPECT_EQ(rr->status, 403) << url << ": " << rr->body;
    }
    auto creds = c.Post("/v1/chat/completions", chat_with_url("https://user:pw@example.com/a.png"),
                        "application/json");
    ASSERT_TRUE(creds);
    EXPECT_EQ(creds->status, 400);
}

// A second server on a port in use fails to start instead of sharing it (no SO_REUSEPORT).
TEST(ServerSecurity, ASecondServerCannotTakeAPortInUse)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    EXPECT_NE(run_status("--port " + std::to_string(s.port())), 0);
    auto c = s.client();
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Sends `start`, then one byte every 0.2 s until the server answers and closes (or 10 s pass):
// what came back, and after how many seconds the answer began.
std::pair<std::string, double> trickle(int fd, const std::string& start)
{
    const auto t0 = std::chrono::steady_clock::now();
    send(fd, start.data(), start.size(), MSG_NOSIGNAL);
    std::string got;
    double answered = -1;
    while (seconds_since(t0) < 10) {
        send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        pollfd p {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        char buf[4096];
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (answered < 0) answered = seconds_since(t0);
        got.append(buf, size_t(n));
    }
    return {got, answered};
}

std::string raw(int port, const std::string& request)
{
    int fd = connect_to(port);
    std::string got = exchange(fd, request);
    close(fd);
    return got;
}

} // namespace

// Slowloris: more clients than the server has workers, each sending its request head a byte at
// a time from addresses of their own. /health and a keyed chat are still answered at once.
TEST(ServerSecurity, SlowClientsHoldNoWorkerSoHealthAndKeyedChatsGoOn)
{
    Served s({"--api-key", kKey, "--max-queue", "1"});
    ASSERT_TRUE(s.ok()) << s.log();
    std::vector<int> slow;
    for (const char* from : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) // 16 each: under the cap
        for (int i = 0; i < 16; ++i) {
            int fd = connect_to(s.port(), "127.0.0.1", from);
            ASSERT_GE(fd, 0) << from;
            const std::string start = "POST /v1/chat/completions HTTP/1.1\r\nX-Slow: ";
            send(fd, start.data(), start.size(), MSG_NOSIGNAL);
            slow.push_back(fd);
        }
    std::atomic<bool> done {false};
    std::thread trickler([&] {
        while (!done) {
            for (int fd : slow) send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    auto c = s.client(5);
    auto t0 = std::chrono::steady_clock::now();
    auto h = c.Get("/health");
    const double health_s = seconds_since(t0);
    c.set_bearer_token_auth(kKey.c_str());
    auto chat = c.Post("/v1/chat/completions",
                       iris::test::image_chat(iris::test::sample("document-sign.png"),
                                              "Describe the image briefly.")
                           .dump(),
                       "application/json");
    done = true;
    trickler.join();
    for (int fd : slow) close(fd);
    ASSERT_TRUE(h) << "no answer to /health: " << httplib::to_string(h.error());
    EXPECT_EQ(h->status, 200);
    // Milliseconds (more under a sanitizer); never while the trickle goes on if it held workers.
    EXPECT_LT(health_s, 3.0);
    ASSERT_TRUE(chat) << "no answer to the chat: " << httplib::to_string(chat.error());
    ASSERT_EQ(chat->status, 200) << chat->body;
    EXPECT_EQ(json::parse(chat->body)["choices"][0]["message"]["content"], "a sign");
}

// The whole head and the whole body each have a deadline, however steadily the bytes come.
TEST(ServerSecurity, SlowHeadsAndBodiesAreCutAtTheirDeadlines)
{
    Served s({"--head-timeout", "1", "--body-timeout", "2"});
    ASSERT_TRUE(s.ok()) << s.log();
    int fd = connect_to(s.port());
    ASSERT_GE(fd, 0);
    auto [head, head_s] = trickle(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    close(fd);
    EXPECT_EQ(head.rfind("HTTP/1.1 408", 0), 0u) << head;
    EXPECT_NE(head.find("within 1 s"), std::string::npos) << head;
    EXPECT_GT(head_s, 0.7);
    EXPECT_LT(head_s, 3.0);

    fd = connect_to(s.port());
    ASSERT_GE(fd, 0);
    auto [body, body_s] = trickle(fd,
                                  "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n");
    close(fd);
    EXPECT_EQ(body.rfind("HTTP/1.1 408", 0), 0u) << body;
    EXPECT_NE(body.find("within 2 s"), std::string::npos) << body;
    EXPECT_GT(body_s, 1.7);
    EXPECT_LT(body_s, 4.0);

    auto c = s.client();
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("status=\"408\""), std::string::npos) << m->body;
}

// Slow read: a client pipelines many requests and takes the answers a trickle at a time. The
// worker waits for it at most --timeout in all, then closes, though the client still reads.
TEST(ServerSecurity, AClientThatReadsATrickleHoldsAWorkerAtMostTheIdleTimeout)
{
    Served s({"--timeout", "1"});
    ASSERT_TRUE(s.ok()) << s.log();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    const int small = 4096; // a small window, set before connecting
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(s.port()));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    std::string requests;
    for (int i = 0; i < 999; ++i) requests += "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    ASSERT_EQ(send(fd, requests.data(), requests.size(), MSG_NOSIGNAL), ssize_t(requests.size()));
    const auto t0 = std::chrono::steady_clock::now();
    size_t got = 0;
    bool closed = false;
    while (!closed && seconds_since(t0) < 20) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        char buf[2048]; // 20 KiB/s
        const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) closed = true;
        if (n > 0) got += size_t(n);
    }
    const double held_s = seconds_since(t0);
    close(fd);
    EXPECT_TRUE(closed) << "the server still sent after " << held_s << " s, " << got << " bytes";
    EXPECT_LT(held_s, 10.0);
    // Cut off, not done: every answer is longer than a body of /metrics alone.
    auto c = s.client();
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_LT(got, 999 * m->body.size());
}

// One address gets max-client-connections at a time; the next is told so, others go on.
TEST(ServerSecurity, OneAddressHoldsAtMostItsShareOfConnections)
{
    Served s({"--max-client-connections", "3"});
    ASSERT_TRUE(s.ok()) << s.log();
    std::vector<int> held;
    for (int i = 0; i < 3; ++i) {
        held.push_back(connect_to(s.port(), "127.0.0.1", "127.0.0.2"));
        ASSERT_GE(held.back(), 0);
    }
    int extra = connect_to(s.port(), "127.0.0.1", "127.0.0.2");
    ASSERT_GE(extra, 0);
    std::string got = exchange(extra, "");
    close(extra);
    EXPECT_EQ(got.rfind("HTTP/1.1 429", 0), 0u) << got;
    EXPECT_NE(got.find("Retry-After: 2"), std::string::npos) << got;
    auto c = s.client(5);
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    // A connection closed makes room for the next.
    close(held.back());
    held.pop_back();
    std::string again;
    for (int tries = 0; tries < 20 && again.rfind("HTTP/1.1 200", 0) != 0; ++tries) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        int fd = connect_to(s.port(), "127.0.0.1", "127.0.0.2");
        again = exchange(fd, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
        close(fd);
    }
    EXPECT_EQ(again.rfind("HTTP/1.1 200", 0), 0u) << again;
    for (int fd : held) close(fd);
}

// DNS rebinding: a page whose name was pointed at 127.0.0.1 sends its own name as the Host.
// Without a key only this server's names are answered; with one, keyed requests need no name.
TEST(ServerSecurity, RequestsForOtherHostNamesAreRefused)
{
    Served s({"--allowed-host", "iris.example"});
    ASSERT_TRUE(s.ok()) << s.log();
    const std::string port = std::to_string(s.port());
    auto get = [&](const std::string& host) {
        return raw(s.port(),
                   "GET /v1/models HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    };
    for (std::string host : std::vector<std::string> {
             "attacker.example:" + port, "attacker.example", "localhost.attacker.example:" + port,
             "127.0.0.1.nip.io:" + port, "iris.example.attacker.example", "localhost:80x"}) {
        std::string got = get(host);
        EXPECT_EQ(got.rfind("HTTP/1.1 421", 0), 0u) << host << "\n" << got;
        EXPECT_NE(got.find("--allowed-host"), std::string::npos) << got;
    }
    for (std::string host :
         std::vector<std::string> {"localhost:" + port, "LocalHost", "127.0.0.1:" + port,
                                   "[::1]:" + port, "iris.example:" + port, "IRIS.example"})
        EXPECT_EQ(get(host).rfind("HTTP/1.1 200", 0), 0u) << host;
    // The request of the issue: a plain-text body from a page to the memory.
    std::string got = raw(s.port(),
                          "POST /v1/memory/search HTTP/1.1\r\nHost: attacker.example:" + port
                              + "\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\n"
                                "{\"query\":\"a sign\"}");
    EXPECT_EQ(got.rfind("HTTP/1.1 421", 0), 0u) << got;

    Served keyed({"--api-key", kKey});
    ASSERT_TRUE(keyed.ok()) << keyed.log();
    const std::string other = "Host: attacker.example\r\nConnection: close\r\n";
    EXPECT_EQ(
        raw(keyed.port(),
            "GET /v1/models HTTP/1.1\r\n" + other + "Authorization: Bearer " + kKey + "\r\n\r\n")
            .rfind("HTTP/1.1 200", 0),
        0u);
    EXPECT_EQ(
        raw(keyed.port(), "GET /health HTTP/1.1\r\n" + other + "\r\n").rfind("HTTP/1.1 421", 0),
        0u);
    EXPECT_NE(run_status("--port 0 --allowed-host http://iris.example/"), 0);
}

// CSRF: a page may post text/plain or a form without a preflight, never application/json.
TEST(ServerSecurity, JsonRoutesTakeOnlyJsonBodies)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    auto c = s.client();
    const std::string body = json {{"messages", json::array()}}.dump();
    for (const char* type : {"text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x", "application/jsonx"}) {
        auto r = c.Post("/v1/chat/completions", body, type);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 415) << type << ": " << r->body;
        EXPECT_NE(r->body.find("application/json"), std::string::npos) << r->body;
    }
    auto none = raw(s.port(),
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
    EXPECT_EQ(none.rfind("HTTP/1.1 415", 0), 0u) << none;
    // JSON with parameters, in any case, is JSON (and this body's mistake is its own, 400).
    for (const char* type : {"application/json; charset=utf-8", "Application/JSON"}) {
        auto r = c.Post("/v1/chat/completions", body, type);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 400) << type << ": " << r->body;
    }
}

// Two lengths are two readings of where the body ends: refused, never guessed.
TEST(ServerSecurity, TwoDifferentContentLengthsAreRefused)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    const std::string body = iris::test::image_chat(iris::test::sample("document-sign.png"),
                                                    "Describe the image briefly.")
                                 .dump();
    const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Type: application/json\r\nConnection: close\r\n";
    std::string got
        = raw(s.port(),
              head + "Content-Length: " + std::to_string(body.size()) + "\r\nContent-Length: "
                  + std::to_string(body.size() + 9) + "\r\n\r\n" + body + "GET / HTT");
    EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
    EXPECT_NE(got.find("two different Content-Length"), std::string::npos) << got;
    got = raw(s.port(), head + "Content-Length: 0x10\r\n\r\n" + body);
    EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
    // The same length twice is one length.
    const std::string n = std::to_string(body.size());
    got = raw(s.port(),
              head + "Content-Length: " + n + "\r\nContent-Length: " + n + "\r\n\r\n" + body);
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
}

// Requests sent back to back on one connection are all answered, in order.
TEST(ServerSecurity, PipelinedRequestsAreAllAnswered)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    std::string got = raw(s.port(),
                          "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                          "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                          "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Connection: close\r\n\r\n");
    std::vector<size_t> answers;
    for (size_t at = got.find("HTTP/1.1 200"); at != std::string::npos;
         at = got.find("HTTP/1.1 200", at + 1))
        answers.push_back(at);
    ASSERT_EQ(answers.size(), 3u) << got;
    const size_t list = got.find("\"object\":\"list\"");
    EXPECT_GT(list, answers[1]) << got;
    EXPECT_LT(list, answers[2]) << got;
}
