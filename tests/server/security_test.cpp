// The server's security defaults, checked from outside as an attacker would meet them.
#include "tests/server/serve.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

using iris::test::Served;
using json = nlohmann::json;

namespace {

const std::string kKey = "test-key-0123456789abcdef";

int connect_to(int port, const char* ip = "127.0.0.1")
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
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
    std::string got = exchange(
        fd,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 20971521\r\n\r\n{\"messages\":",
        "}}");
    close(fd);
    EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
    EXPECT_NE(got.find("over 20971520 bytes"), std::string::npos) << got;

    // The same with Expect: 100-continue; a chunked body, whose size is unknown, gets 411.
    fd = connect_to(s.port());
    got = exchange(fd,
                   "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
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
    std::string got = exchange(fd, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Len");
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    close(fd);
    EXPECT_LT(waited, 8.0) << "the connection stayed open";
    // A body that stops halfway is cut off too.
    fd = connect_to(s.port());
    t0 = std::chrono::steady_clock::now();
    got = exchange(
        fd, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mess");
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
