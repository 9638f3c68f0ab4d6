// Live sessions over a real WebSocket (Boost.Beast's client) to the real `iris serve --live`:
// streamed frames and speech are remembered, typed and spoken questions answered aloud, and
// every limit closes the session saying why.
#include "tests/server/live_client.h"
#include "tests/server/serve.h"

#include <functional>

using iris::test::audio_event;
using iris::test::frame_event;
using iris::test::LiveClient;
using iris::test::question_event;
using iris::test::Served;
using iris::test::speech;
using json = nlohmann::json;
namespace beast = boost::beast;
using namespace std::chrono_literals;

namespace {

const std::string kKey = "test-key-0123456789abcdef";

std::string temp_db(const std::string& tag)
{
    auto dir = std::filesystem::temp_directory_path()
        / ("iris-live-" + tag + "-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir);
    return dir.string();
}

// A JPEG of a sample image, made with the ffmpeg command-line tool.
std::string jpeg_of(const std::string& sample)
{
    const std::string out = temp_db("frame") + ".jpg";
    const std::string cmd = "ffmpeg -nostdin -y -loglevel error -i " IRIS_SOURCE_DIR
                            "/resources/samples/"
        + sample + " " + out;
    if (std::system(cmd.c_str()) != 0) return "";
    std::string bytes = iris::test::read_file(out);
    std::filesystem::remove(out);
    return bytes;
}

int proc_status(pid_t pid, const std::string& field)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::atoi(line.c_str() + field.size() + 1);
    return -1;
}

} // namespace

// What the page does: frames and speech streamed in real time, a typed question, a spoken one
// after the wake phrase; entries are remembered with what was said, answers stream as text and
// speech.
TEST(ServerLive, AStreamIsRememberedAndTypedAndSpokenQuestionsAreAnsweredAloud)
{
    const std::string db = temp_db("stream");
    Served s({"--db", db, "--live", "--threads", "8"});
    ASSERT_TRUE(s.ok()) << s.log();
    LiveClient c(s.port());
    ASSERT_TRUE(c.open());
    EXPECT_EQ(c.response()[beast::http::field::sec_websocket_protocol], "realtime");
    auto created = c.next("session.created");
    ASSERT_TRUE(created);
    EXPECT_EQ((*created)["session"]["input_audio_format"]["rate"], 16000);
    // pocketsphinx hears "... the blue square is moving to the riots ..." in the sample speech.
    c.send({{"type", "session.update"}, {"session", {{"wake_phrase", "blue square"}}}});
    ASSERT_TRUE(c.next("session.updated"));

    const std::string square = jpeg_of("clip-frame2.png"), sign = jpeg_of("document-sign.png");
    ASSERT_FALSE(square.empty());
    std::vector<int16_t> audio = speech();
    audio.resize(audio.size() + 16000 * 2); // two seconds of silence end the speech
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t tick = 0; tick * 1600 < audio.size(); ++tick) { // every 100 ms
        c.send(audio_event(audio.data() + tick * 1600,
                           std::min<size_t>(1600, audio.size() - tick * 1600)));
        if (tick % 2 == 0) c.send(frame_event(tick < 40 ? square : sign));
        if (tick == 20) c.send(question_event("What did I see?"));
        std::this_thread::sleep_until(t0 + (tick + 1) * 100ms);
    }
    std::vector<json> responses;
    for (int i = 0; i < 2; ++i) {
        auto done = c.next("response.done");
        ASSERT_TRUE(done) << "answers: " << responses.size();
        responses.push_back(*done);
    }
    c.close();
    EXPECT_EQ(c.closed().first, 1000);

    const auto asked = c.all("response.created");
    ASSERT_EQ(asked.size(), 2u);
    EXPECT_EQ(asked[0]["response"]["source"], "typed");
    EXPECT_EQ(asked[1]["response"]["source"], "spoken");
    EXPECT_FALSE(asked[1]["response"]["question"].get<std::string>().empty());
    for (const json& r : responses) {
        EXPECT_EQ(r["response"]["status"], "completed") << r.dump();
        EXPECT_TRUE(r["response"]["latency_ms"]["first_text"].is_number()) << r.dump();
        EXPECT_TRUE(r["response"]["latency_ms"]["first_audio"].is_number()) << r.dump();
    }
    EXPECT_FALSE(c.all("response.text.delta").empty());
    EXPECT_FALSE(c.all("response.audio.delta").empty());
    EXPECT_FALSE(c.all("conversation.item.input_audio_transcription.completed").empty());
    EXPECT_FALSE(c.all("input_audio_buffer.speech_started").empty());
    const auto stats = c.all("session.stats");
    ASSERT_FALSE(stats.empty());
    EXPECT_GE(stats.back()["frames"]["received"].get<int>(), 10) << stats.back().dump();

    // The first scene was remembered during the stream, the second once the client left.
    const auto entries = c.all("memory.entry.created");
    ASSERT_GE(entries.size(), 1u);
    auto http = s.client();
    const int64_t first = entries[0]["entry"]["id"];
    auto got = http.Get(("/v1/memory/" + std::to_string(first)).c_str());
    ASSERT_TRUE(got);
    ASSERT_EQ(got->status, 200) << got->body;
    for (int i = 0; i < 100; ++i) { // the last clip is stored after the session's end
        auto found = http.Post("/v1/memory/search", R"({"query": "what was seen", "k": 10})",
                               "application/json");
        ASSERT_TRUE(found);
        if (json::parse(found->body)["data"].size() >= 2) break;
        std::this_thread::sleep_for(100ms);
    }
    auto found = http.Post("/v1/memory/search", R"({"query": "what was seen", "k": 10})",
                           "application/json");
    EXPECT_EQ(json::parse(found->body)["data"].size(), 2u) << found->body;
    std::string heard;
    const json data = json::parse(found->body)["data"];
    for (const json& e : data) heard += e["transcript"].get<std::string>();
    EXPECT_FALSE(heard.empty()) << found->body;
    std::filesystem::remove_all(db);
}

// The key comes as a subprotocol (browsers cannot set Authorization on a WebSocket) or as a
// header; other origins than the server's own and --cors-origin ones are refused.
TEST(ServerLive, AWrongKeyOrOriginIsRefusedBeforeTheUpgrade)
{
    const std::string db = temp_db("keys");
    Served s({"--db", db, "--live", "--threads", "8", "--api-key", kKey, "--cors-origin",
              "http://localhost:3000", "--max-live-sessions", "8"});
    ASSERT_TRUE(s.ok()) << s.log();
    const std::string self = "http://127.0.0.1:" + std::to_string(s.port());
    // The upgrade request a browser sends, and what it is answered.
    auto upgrade = [&](const std::string& protocols, const std::string& origin) {
        httplib::Headers h = {{"Upgrade", "websocket"},
                              {"Connection", "Upgrade"},
                              {"Sec-WebSocket-Version", "13"},
                              {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}};
        if (!protocols.empty()) h.emplace("Sec-WebSocket-Protocol", protocols);
        if (!origin.empty()) h.emplace("Origin", origin);
        auto r = s.client(5).Get("/v1/realtime", h);
        return r ? r->status : -1;
    };
    EXPECT_EQ(upgrade("realtime", ""), 401);
    EXPECT_EQ(upgrade("realtime, openai-insecure-api-key.wrong-key-0123456789", ""), 401);
    EXPECT_EQ(upgrade("realtime, openai-insecure-api-key." + kKey, "http://evil.example"), 403);
    EXPECT_EQ(upgrade("realtime, openai-insecure-api-key." + kKey, "null"), 403);
    EXPECT_FALSE(LiveClient(s.port()).open());
    for (const std::string& origin : {self, std::string("http://localhost:3000")}) {
        LiveClient c(
            s.port(),
            {.protocols = {"realtime", "openai-insecure-api-key." + kKey}, .origin = origin});
        EXPECT_TRUE(c.open()) << origin << ": ";
        EXPECT_TRUE(c.next("session.created")) << origin;
    }
    {
        LiveClient c(s.port(), {.protocols = {}, .bearer = kKey});
        EXPECT_TRUE(c.open());
        EXPECT_TRUE(c.next("session.created"));
    }
    std::filesystem::remove_all(db);
}

TEST(ServerLive, EveryLimitClosesTheSessionSayingWhy)
{
    const std::string db = temp_db("limits");
    Served s({"--db", db, "--live", "--threads", "8", "--max-live-sessions", "1", "--live-max-fps",
              "2", "--live-max-message-kb", "64", "--live-idle-timeout", "2"});
    ASSERT_TRUE(s.ok()) << s.log();
    {
        LiveClient first(s.port());
        ASSERT_TRUE(first.next("session.created"));
        LiveClient second(s.port());
        ASSERT_TRUE(second.open());
        auto [code, reason] = second.closed();
        EXPECT_EQ(code, 1013);
        EXPECT_NE(reason.find("1 live sessions"), std::string::npos) << reason;
        // A broken message or an unknown event is an error event; the session goes on.
        first.send_text("{\"type\": ");
        auto e = first.next("error");
        ASSERT_TRUE(e);
        first.send({{"type", "response.dance"}});
        e = first.next("error");
        ASSERT_TRUE(e);
        EXPECT_NE((*e)["error"]["message"].get<std::string>().find("response.dance"),
                  std::string::npos);
        // Frames faster than --live-max-fps.
        const std::string frame = jpeg_of("clip-frame2.png");
        for (int i = 0; i < 10; ++i) first.send(frame_event(frame));
        auto [fcode, freason] = first.closed();
        EXPECT_EQ(fcode, 1008);
        EXPECT_NE(freason.find("2 frames a second"), std::string::npos) << freason;
    }
    auto expect_closed
        = [&](const std::function<void(LiveClient&)>& act, int code, const std::string& says) {
              for (int attempt = 0; attempt < 300; ++attempt) { // the last session may be ending
                  LiveClient c(s.port());
                  if (!c.next("session.created", 2s)) {
                      std::this_thread::sleep_for(100ms);
                      continue;
                  }
                  act(c);
                  auto [got, reason] = c.closed();
                  EXPECT_EQ(got, code) << says << ": " << reason;
                  EXPECT_NE(reason.find(says), std::string::npos) << says << ": " << reason;
                  return;
              }
              ADD_FAILURE() << "no session opened";
          };
    expect_closed([](LiveClient& c) { c.send_text(std::string(70 << 10, 'x')); }, 1009, "");
    expect_closed([](LiveClient& c) { c.send_text("\x01\x02", false); }, 1003, "JSON text");
    expect_closed([](LiveClient&) {}, 1000, "nothing came for 2 s");
    const std::vector<int16_t> second(16000);
    expect_closed(
        [&](LiveClient& c) {
            for (int i = 0; i < 5; ++i) c.send(audio_event(second.data(), second.size()));
        },
        1008, "faster than real time");
    std::filesystem::remove_all(db);
}

// Clients that vanish free their sessions: after 20 (8 under a sanitizer, where each takes
// seconds), threads and memory are back where they were.
TEST(ServerLive, SessionsOpenedAndDroppedLeaveThreadsAndMemoryWhereTheyWere)
{
    const std::string db = temp_db("drop");
    Served s({"--db", db, "--live", "--threads", "8", "--max-live-sessions", "1"});
    ASSERT_TRUE(s.ok()) << s.log();
    const std::vector<int16_t> audio(1600, 0);
    auto session = [&] {
        for (int attempt = 0; attempt < 300; ++attempt) { // the last one may still be ending
            LiveClient c(s.port());
            if (!c.next("session.created", 2s)) {
                std::this_thread::sleep_for(100ms);
                continue;
            }
            c.send(audio_event(audio.data(), audio.size())); // starts perceiving
            c.next("session.stats", 3s);
            c.drop();
            return true;
        }
        return false;
    };
    auto settled = [&](int threads) { // sessions end a moment after their client
        for (int i = 0; i < 100 && proc_status(s.pid(), "Threads") != threads; ++i)
            std::this_thread::sleep_for(100ms);
        return proc_status(s.pid(), "Threads");
    };
    // The first session loads what stays loaded (the speech model, the voice and its thread).
    ASSERT_TRUE(session());
    int threads = proc_status(s.pid(), "Threads");
    for (int i = 0; i < 20; ++i) { // until its threads have ended
        std::this_thread::sleep_for(200ms);
        const int now = proc_status(s.pid(), "Threads");
        if (now == threads && i >= 5) break;
        threads = now;
    }
    const int rss_kb = proc_status(s.pid(), "VmRSS");
    const int n = IRIS_SANITIZED ? 8 : 20;
    for (int i = 0; i < n; ++i) ASSERT_TRUE(session()) << i;
    EXPECT_EQ(settled(threads), threads);
    // A sanitizer's allocator holds freed memory back (ASan's quarantine: 256 MiB) and
    // malloc_trim does not reach it.
    const int slack_kb = (IRIS_SANITIZED ? 256 + 64 : 32) * 1024;
    EXPECT_LT(proc_status(s.pid(), "VmRSS"), rss_kb + slack_kb)
        << "from " << rss_kb << " kB after the first session";
    std::filesystem::remove_all(db);
}
