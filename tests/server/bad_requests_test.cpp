// A corpus of bad requests: each gets a 4xx with OpenAI's error JSON — never a 5xx, a hang or a
// crash — and the server keeps serving.
#include "tests/server/serve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

using iris::test::Served;
using json = nlohmann::json;

namespace {

struct Case
{
    std::string name;
    std::string path;
    std::string body;
    std::string content_type = "application/json";
    int status = 400; // expected; 0: any 4xx
};

const char* kOnePixelPng = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwG"
                           "A60e6kgAAAABJRU5ErkJggg==";

uint32_t crc32(const std::string& s)
{
    uint32_t c = 0xffffffffu;
    for (unsigned char b : s) {
        c ^= b;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

std::string be32(uint32_t v)
{
    std::string out;
    for (int s = 24; s >= 0; s -= 8) out += char((v >> s) & 0xff);
    return out;
}

std::string png_chunk(const std::string& type, const std::string& data)
{
    return be32(uint32_t(data.size())) + type + data + be32(crc32(type + data));
}

// A well-formed PNG that claims width x height (a decompression bomb's header, with one byte of
// pixel data): the size gate must refuse it before decoding.
std::string png_claiming(uint32_t w, uint32_t h)
{
    std::string ihdr = be32(w) + be32(h) + std::string("\x08\x02\x00\x00\x00", 5);
    // zlib: header, one stored block holding a single zero byte, Adler-32 of it.
    std::string idat = std::string("\x78\x01\x01\x01\x00\xfe\xff\x00", 8) + be32(0x00010001);
    return "\x89PNG\r\n\x1a\n" + png_chunk("IHDR", ihdr) + png_chunk("IDAT", idat)
        + png_chunk("IEND", "");
}

std::string chat(const json& extra, const json& content = "What is it?")
{
    json b = {{"messages", {{{"role", "user"}, {"content", content}}}}};
    for (auto& [k, v] : extra.items()) b[k] = v;
    return b.dump();
}

std::string image_chat(const std::string& url)
{
    return chat(json::object(),
                json::array({{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                             {{"type", "text"}, {"text", "What is it?"}}}));
}

std::vector<Case> corpus()
{
    const std::string receipt = iris::test::sample("document-receipt.png");
    const std::string pdf = iris::test::sample("document-pages.pdf");
    std::vector<Case> c;
    auto add = [&](std::string name, std::string path, std::string body,
                   std::string type = "application/json", int status = 400) {
        c.push_back({std::move(name), std::move(path), std::move(body), std::move(type), status});
    };
    add("empty body", "/v1/chat/completions", "");
    add("broken JSON", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", ");
    add("trailing garbage", "/v1/chat/completions", chat(json::object()) + "}");
    add("array body", "/v1/chat/completions", "[]");
    add("null body", "/v1/chat/completions", "null");
    add("messages a string", "/v1/chat/completions", "{\"messages\": \"hi\"}");
    add("messages empty", "/v1/chat/completions", "{\"messages\": []}");
    add("message a number", "/v1/chat/completions", "{\"messages\": [1]}");
    add("no content", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\"}]}");
    add("unknown role", "/v1/chat/completions",
        "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}");
    add("role a number", "/v1/chat/completions",
        "{\"messages\": [{\"role\": 3, \"content\": \"x\"}]}");
    add("content a number", "/v1/chat/completions", chat(json::object(), 42));
    add("unknown part", "/v1/chat/completions",
        chat(json::object(), json::array({{{"type", "video"}}})));
    add("part without text", "/v1/chat/completions",
        chat(json::object(), json::array({{{"type", "text"}}})));
    add("text a number", "/v1/chat/completions",
        chat(json::object(), json::array({{{"type", "text"}, {"text", 5}}})));
    add("part a string", "/v1/chat/completions", chat(json::object(), json::array({"hello"})));
    add("last message the assistant's", "/v1/chat/completions",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", "
        "\"content\": \"y\"}]}");
    add("assistant first", "/v1/chat/completions",
        "{\"messages\": [{\"role\": \"assistant\", \"content\": \"y\"}, {\"role\": \"user\", "
        "\"content\": \"x\"}]}");
    add("empty question", "/v1/chat/completions", chat(json::object(), ""));
    add("temperature negative", "/v1/chat/completions", chat({{"temperature", -1}}));
    add("temperature huge", "/v1/chat/completions", chat({{"temperature", 3}}));
    add("temperature a string", "/v1/chat/completions", chat({{"temperature", "hot"}}));
    add("max_tokens 0", "/v1/chat/completions", chat({{"max_tokens", 0}}));
    add("max_tokens negative", "/v1/chat/completions", chat({{"max_tokens", -5}}));
    add("max_tokens huge", "/v1/chat/completions", chat({{"max_tokens", 1e12}}));
    add("max_tokens fractional", "/v1/chat/completions", chat({{"max_tokens", 1.5}}));
    add("max_tokens a string", "/v1/chat/completions", chat({{"max_tokens", "10"}}));
    add("max_tokens a bool", "/v1/chat/completions", chat({{"max_tokens", true}}));
    add("max_tokens beyond int64", "/v1/chat/completions",
        "{\"max_tokens\": 99999999999999999999999, \"messages\": [{\"role\": \"user\", "
        "\"content\": \"x\"}]}");
    add("number overflowing double", "/v1/chat/completions",
        "{\"temperature\": 1e400, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}");
    add("top_p above 1", "/v1/chat/completions", chat({{"top_p", 2}}));
    add("top_p negative", "/v1/chat/completions", chat({{"top_p", -0.1}}));
    add("seed a string", "/v1/chat/completions", chat({{"seed", "x"}}));
    add("seed huge", "/v1/chat/completions", chat({{"seed", 1e30}}));
    add("five stop strings", "/v1/chat/completions", chat({{"stop", {"a", "b", "c", "d", "e"}}}));
    add("empty stop string", "/v1/chat/completions", chat({{"stop", {""}}}));
    add("stop a number", "/v1/chat/completions", chat({{"stop", 7}}));
    add("n 2", "/v1/chat/completions", chat({{"n", 2}}));
    add("stream a string", "/v1/chat/completions", chat({{"stream", "yes"}}));
    add("logprobs", "/v1/chat/completions", chat({{"logprobs", true}}));
    add("tools", "/v1/chat/completions", chat({{"tools", json::array()}}));
    add("presence_penalty", "/v1/chat/completions", chat({{"presence_penalty", 1}}));
    add("max_tiles 0", "/v1/chat/completions", chat({{"max_tiles", 0}}));
    add("max_tiles 100", "/v1/chat/completions", chat({{"max_tiles", 100}}));
    add("repetition_penalty 0", "/v1/chat/completions", chat({{"repetition_penalty", 0}}));
    add("invalid UTF-8", "/v1/chat/completions",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}");
    add("image_url without url", "/v1/chat/completions",
        chat(json::object(),
             json::array({{{"type", "image_url"}, {"image_url", json::object()}}})));
    add("image_url a number", "/v1/chat/completions",
        chat(json::object(), json::array({{{"type", "image_url"}, {"image_url", 5}}})));
    add("image in a system message", "/v1/chat/completions",
        json {{"messages",
               {{{"role", "system"},
                 {"content",
                  {{{"type", "image_url"},
                    {"image_url", {{"url", iris::test::data_url(receipt)}}}}}}},
                {{"role", "user"}, {"content", "x"}}}}}
            .dump());
    add("data URL not base64", "/v1/chat/completions", image_chat("data:image/png;base64,@@@@"));
    add("data URL without base64 flag", "/v1/chat/completions", image_chat("data:image/png,xyz"));
    add("data URL without comma", "/v1/chat/completions", image_chat("data:image/png;base64"));
    add("truncated base64", "/v1/chat/completions",
        image_chat(std::string("data:image/png;base64,")
                   + std::string(kOnePixelPng).substr(0, 61)));
    add("text media type", "/v1/chat/completions", image_chat("data:text/plain;base64,aGVsbG8="));
    add("PNG that is text", "/v1/chat/completions", image_chat("data:image/png;base64,aGVsbG8="));
    add("1x1 PNG", "/v1/chat/completions",
        image_chat(std::string("data:image/png;base64,") + kOnePixelPng));
    add("PNG claiming 30000x30000", "/v1/chat/completions",
        image_chat(iris::test::data_url(png_claiming(30000, 30000))), "application/json", 400);
    add("PNG claiming 1x40000000", "/v1/chat/completions",
        image_chat(iris::test::data_url(png_claiming(1, 40000000))), "application/json", 0);
    add("truncated PNG", "/v1/chat/completions",
        image_chat(iris::test::data_url(receipt.substr(0, receipt.size() / 2))));
    add("PNG header only", "/v1/chat/completions",
        image_chat(iris::test::data_url(receipt.substr(0, 40))));
    add("GIF", "/v1/chat/completions",
        image_chat(iris::test::data_url("GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/png")));
    add("QA empty object", "/v1/documents/qa", "{}");
    add("QA without question", "/v1/documents/qa",
        json {{"document", iris::test::base64(pdf)}}.dump());
    add("QA without document", "/v1/documents/qa",
        json {{"question", "What is the total?"}}.dump());
    add("QA document not base64", "/v1/documents/qa",
        json {{"question", "x"}, {"document", "%%%"}}.dump());
    add("QA a text file", "/v1/documents/qa",
        json {{"question", "x"}, {"document", iris::test::base64("hello, world")}}.dump());
    add("QA a PDF that is not one", "/v1/documents/qa",
        json {{"question", "x"},
              {"document", iris::test::base64("%PDF-1.4\n" + std::string(300, 'z') + "\n%%EOF\n")}}
            .dump());
    add("QA a truncated PDF", "/v1/documents/qa",
        json {{"question", "x"}, {"document", iris::test::base64(pdf.substr(0, pdf.size() / 2))}}
            .dump());
    add("QA a PDF cut at the header", "/v1/documents/qa",
        json {{"question", "x"}, {"document", iris::test::base64(pdf.substr(0, 12))}}.dump());
    add("QA max_pages 0", "/v1/documents/qa",
        json {{"question", "x"}, {"document", iris::test::base64(pdf)}, {"max_pages", 0}}.dump());
    add("QA max_pages huge", "/v1/documents/qa",
        json {{"question", "x"}, {"document", iris::test::base64(pdf)}, {"max_pages", 100000}}
            .dump());
    add("QA tile_budget over the server's", "/v1/documents/qa",
        json {{"question", "x"}, {"document", iris::test::base64(pdf)}, {"tile_budget", 1000}}
            .dump());
    add("QA multipart without file", "/v1/documents/qa",
        "--XyZ\r\nContent-Disposition: form-data; name=\"question\"\r\n\r\nWhat?\r\n--XyZ--\r\n",
        "multipart/form-data; boundary=XyZ");
    add("QA broken multipart", "/v1/documents/qa", "--XyZ\r\nContent-Disposition: form-da",
        "multipart/form-data; boundary=XyZ");
    add("memory without a store", "/v1/memory/search", "{\"query\": \"x\"}", "application/json",
        404);
    add("unknown route", "/v1/completions", "{}", "application/json", 404);
    add("a plain-text body", "/v1/chat/completions", chat(json::object()), "text/plain", 415);
    add("a form body", "/v1/memory/search", "query=x", "application/x-www-form-urlencoded", 415);
    add("path traversal", "/../../etc/passwd", "{}", "application/json", 0);
    return c;
}

int raw_status(int port, const std::string& request)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[64] = {};
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n < 12) return 0; // closed without an answer
    return std::atoi(buf + 9);
}

} // namespace

TEST(ServerBadRequests, EachGetsA4xxWithAnErrorAndTheServerKeepsServing)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    auto c = s.client(30);
    for (const Case& k : corpus()) {
        SCOPED_TRACE(k.name);
        auto r = c.Post(k.path.c_str(), k.body, k.content_type.c_str());
        ASSERT_TRUE(r) << "no answer: " << httplib::to_string(r.error());
        if (k.status) {
            EXPECT_EQ(r->status, k.status) << r->body;
        }
        EXPECT_GE(r->status, 400);
        EXPECT_LT(r->status, 500) << r->body;
        json e = json::parse(r->body, nullptr, false);
        ASSERT_TRUE(e.is_object()) << r->body;
        EXPECT_FALSE(e["error"]["message"].get<std::string>().empty());
        EXPECT_TRUE(e["error"]["type"].is_string());
    }
    // Wrong methods, and malformed HTTP itself.
    for (auto [method, path] : {std::pair {"GET", "/v1/chat/completions"},
                                {"POST", "/v1/models"},
                                {"DELETE", "/v1/memory/1"},
                                {"PUT", "/health"}}) {
        httplib::Request req;
        req.method = method;
        req.path = path;
        auto r = c.send(req);
        ASSERT_TRUE(r);
        EXPECT_GE(r->status, 400) << method << " " << path;
        EXPECT_LT(r->status, 500) << method << " " << path;
    }
    for (std::string raw :
         {std::string("GARBAGE\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
          std::string("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
          std::string("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
          std::string("GET /") + std::string(20000, 'a') + " HTTP/1.1\r\n\r\n",
          std::string(
              "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
        int st = raw_status(s.port(), raw);
        EXPECT_TRUE(st == 0 || (st >= 400 && st < 500)) << raw.substr(0, 60) << " -> " << st;
    }
    ASSERT_TRUE(s.alive());
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->body.find("status=\"5"), std::string::npos) << m->body;
    // And it still answers a good question correctly.
    auto ok = c.Post("/v1/chat/completions",
                     iris::test::image_chat(iris::test::sample("document-sign.png"),
                                            "Describe the image briefly.")
                         .dump(),
                     "application/json");
    ASSERT_TRUE(ok);
    EXPECT_EQ(json::parse(ok->body)["choices"][0]["message"]["content"], "a sign");
}
