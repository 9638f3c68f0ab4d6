// The web app of `iris serve` in headless Chromium, driven as a person would: the key entered,
// a chat answered, then the Live view with Chromium's fake camera and microphone playing a clip
// and a sentence made here with FFmpeg and espeak-ng: the memory gains entries with what was
// said, a spoken and a typed question are answered in text and speech, the memory is searched,
// and a document question is answered. The page may reach nothing but the server and log no error.
// Screenshots land in build/test-output/web/.
#include "tests/apps/chromium.h"
#include "tests/server/serve.h"

#include <thread>

namespace fs = std::filesystem;
using iris::test::Chromium;
using iris::test::Served;
using json = nlohmann::json;

namespace {

const std::string kKey = "web-key-0123456789abcdef";
const fs::path kOutput = fs::path(IRIS_TEST_OUTPUT) / "web";

fs::path scratch(const std::string& name)
{
    const fs::path dir
        = fs::temp_directory_path() / ("iris_web_test_" + std::to_string(getpid())) / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

bool run(const std::string& cmd)
{
    return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

// The camera: the sample clip as Y4M, which Chromium's fake capture plays in a loop. The
// microphone: a second of silence, the sentence, then silence (played once).
struct FakeMedia
{
    fs::path video, audio;
};

FakeMedia make_media(const fs::path& dir)
{
    FakeMedia m {dir / "camera.y4m", dir / "microphone.wav"};
    const fs::path said = dir / "said.wav";
    // The voice and speed of the sample speech, which pocketsphinx hears best.
    if (!run("espeak-ng -v en-us+f2 -s 140 -w " + said.string()
             + " 'Look, the blue square is moving to the right. Now a green star appears. "
               "Remember to buy milk.'")
        || !run("ffmpeg -nostdin -y -loglevel error -i " IRIS_SOURCE_DIR
                "/resources/samples/clip-shapes.mp4 -vf scale=320:240 -pix_fmt yuv420p "
                + m.video.string())
        || !run("ffmpeg -nostdin -y -loglevel error -i " + said.string()
                + " -af adelay=1000,apad=pad_dur=6 -ar 44100 -ac 2 -c:a pcm_s16le "
                + m.audio.string()))
        return {};
    return m;
}

std::vector<std::string> media_flags(const FakeMedia& m)
{
    return {"--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--use-file-for-fake-video-capture=" + m.video.string(),
            "--use-file-for-fake-audio-capture=" + m.audio.string() + "%noloop",
            "--autoplay-policy=no-user-gesture-required"};
}

// A JavaScript string literal.
std::string js(const std::string& s)
{
    return json(s).dump();
}

// Fills an input and submits its form, as typing and pressing Enter would.
std::string type_and_submit(const std::string& input, const std::string& text)
{
    return "(() => { const i = document.querySelector(" + js(input) + "); i.value = " + js(text)
        + "; i.form.requestSubmit(); return true; })()";
}

std::string text_of(Chromium& b, const std::string& selector)
{
    auto v = b.eval("document.querySelector(" + js(selector) + ")?.textContent ?? ''");
    return v && v->is_string() ? v->get<std::string>() : "";
}

int count_of(Chromium& b, const std::string& selector)
{
    auto v = b.eval("document.querySelectorAll(" + js(selector) + ").length");
    return v && v->is_number() ? v->get<int>() : -1;
}

// Only the server itself: its pages, API and WebSocket, and the page's own blob: URLs.
void expect_only_the_server(const iris::test::PageReport& r, int port)
{
    const std::string http = "http://127.0.0.1:" + std::to_string(port) + "/";
    const std::string ws = "ws://127.0.0.1:" + std::to_string(port) + "/";
    for (const auto& u : r.requests)
        EXPECT_TRUE(u.starts_with(http) || u.starts_with(ws) || u.starts_with("blob:" + http))
            << "a request outside the server: " << u;
}

} // namespace

TEST(ServerWeb, APersonChatsStreamsTalksAndIsAnsweredAloud)
{
    if (!run("chromium --version") || !run("espeak-ng --version") || !run("ffmpeg -version"))
        GTEST_SKIP() << "needs chromium, espeak-ng and ffmpeg (scripts/setup installs them)";
    const fs::path dir = scratch("session");
    const FakeMedia media = make_media(dir);
    ASSERT_FALSE(media.audio.empty()) << "ffmpeg or espeak-ng could not make the fake media";
    Served s({"--db", (dir / "memory").string(), "--live", "--api-key", kKey, "--threads", "8"});
    ASSERT_TRUE(s.ok()) << s.log();
    fs::create_directories(kOutput);
    Chromium b(dir / "profile", media_flags(media));
    const std::string page = "http://127.0.0.1:" + std::to_string(s.port()) + "/";
    ASSERT_TRUE(b.open(page, 240)) << b.report().failure;

    // Without the key the page says what it needs; with it, it connects.
    ASSERT_TRUE(b.wait_for("document.querySelector('#settings').open", 10))
        << text_of(b, "#status");
    EXPECT_NE(text_of(b, "#status").find("API key"), std::string::npos) << text_of(b, "#status");
    b.forget_errors(); // the browser logs the refused request itself
    ASSERT_TRUE(b.eval(type_and_submit("#key", kKey)));
    ASSERT_TRUE(
        b.wait_for("document.querySelector('#status').textContent.startsWith('Connected')", 10))
        << text_of(b, "#status");

    // Chat: an image attached and a question, streamed back as Markdown.
    ASSERT_TRUE(b.set_file("#chat-file", IRIS_SOURCE_DIR "/resources/samples/scene-shapes.png"));
    ASSERT_TRUE(b.wait_for("document.querySelector('#chat-images img')", 10));
    ASSERT_TRUE(b.eval(type_and_submit("#chat-input", "What shapes do you see?")));
    ASSERT_TRUE(b.wait_for("document.querySelector('#chat-log .answer')?.textContent.length > 0 && "
                           "!document.querySelector('#chat-send').disabled",
                           120))
        << text_of(b, "#status");
    EXPECT_NE(text_of(b, "#status").find("Answered"), std::string::npos) << text_of(b, "#status");
    EXPECT_EQ(count_of(b, "#chat-log .user img"), 1);
    b.screenshot(kOutput / "chat.png");

    // Live, with a wake phrase pocketsphinx hears in the sentence ("... is moving to the
    // riots ..." through the browser's capture and resampling): what is said is heard,
    // remembered with the clip, and the question after the wake phrase answered aloud.
    ASSERT_TRUE(b.eval("document.querySelector('#tab-live').click(); "
                       "document.querySelector('#wake').value = 'moving'; "
                       "document.querySelector('#live-start').click(); true"));
    ASSERT_TRUE(b.wait_for("document.body.dataset.live === 'streaming'", 30))
        << text_of(b, "#status");
    EXPECT_TRUE(b.wait_for("document.querySelector('#live-log .heard')", 60))
        << text_of(b, "#status");
    EXPECT_TRUE(b.wait_for("[...document.querySelectorAll('#timeline li .transcript')]"
                           ".some(t => /moving/.test(t.textContent))",
                           60))
        << text_of(b, "#timeline");
    EXPECT_TRUE(b.wait_for("document.querySelector('#live-log .answer[data-done=\"completed\"]"
                           "[data-audio-ms]')",
                           120))
        << text_of(b, "#live-log") << "\n"
        << text_of(b, "#status");
    EXPECT_NE(text_of(b, "#live-log").find("You said"), std::string::npos);

    // A typed question, answered in text and speech too.
    const int answered = count_of(b, "#live-log .answer[data-done]");
    ASSERT_TRUE(b.eval(type_and_submit("#live-question", "What did I say?")));
    EXPECT_TRUE(b.wait_for("document.querySelectorAll('#live-log .answer[data-done=\"completed\"]"
                           "[data-audio-ms]').length > "
                               + std::to_string(answered),
                           120))
        << text_of(b, "#live-log");
    EXPECT_NE(text_of(b, "#live-log").find("You asked"), std::string::npos);
    // The timeline's key frames came from the server with the key.
    EXPECT_TRUE(b.wait_for("[...document.querySelectorAll('#timeline img')]"
                           ".some(i => i.complete && i.naturalWidth > 0)",
                           20));
    EXPECT_EQ(text_of(b, "#memory-note"), "The newest entries.");
    const std::string stats = "sent " + text_of(b, "#stat-sent") + ", seen "
        + text_of(b, "#stat-decoded") + ", dropped " + text_of(b, "#stat-dropped");
    auto answers = b.eval("[...document.querySelectorAll('#live-log .answer .meta')]"
                          ".map(m => m.textContent).join('; ')");
    std::printf("[ web ] frames %s; answers: %s\n", stats.c_str(),
                answers ? answers->dump().c_str() : "?");
    EXPECT_GT(std::atoi(text_of(b, "#stat-sent").c_str()), 0) << stats;
    EXPECT_GT(std::atoi(text_of(b, "#stat-decoded").c_str()), 0) << stats;
    b.screenshot(kOutput / "live.png");

    // Searching the memory: words, and a time phrase alone.
    ASSERT_TRUE(b.eval(type_and_submit("#memory-query", "moving")));
    EXPECT_TRUE(b.wait_for("/for “moving”/.test(document.querySelector('#memory-note').textContent)"
                           " && document.querySelectorAll('#timeline li').length > 0",
                           20))
        << text_of(b, "#memory-note");
    ASSERT_TRUE(b.eval(type_and_submit("#memory-query", "in the last hour")));
    EXPECT_TRUE(b.wait_for("/last hour/.test(document.querySelector('#memory-note').textContent)"
                           " && document.querySelectorAll('#timeline li').length > 0",
                           20))
        << text_of(b, "#memory-note");

    ASSERT_TRUE(b.eval("document.querySelector('#live-stop').click(); true"));
    EXPECT_TRUE(b.wait_for("document.body.dataset.live === 'idle'", 30));
    EXPECT_EQ(text_of(b, "#status"), "Live session ended.");

    // Documents: a PDF chosen and asked about.
    ASSERT_TRUE(b.eval("document.querySelector('#tab-docs').click(); true"));
    ASSERT_TRUE(b.set_file("#doc-file", IRIS_SOURCE_DIR "/resources/samples/document-pages.pdf"));
    ASSERT_TRUE(b.wait_for(
        "/document-pages.pdf/.test(document.querySelector('#doc-name').textContent)", 5));
    ASSERT_TRUE(b.eval(type_and_submit("#doc-question", "What is the total?")));
    EXPECT_TRUE(b.wait_for("document.querySelector('#doc-answer .answer')", 120))
        << text_of(b, "#doc-answer");
    b.screenshot(kOutput / "documents.png");

    const auto& r = b.report();
    EXPECT_TRUE(r.failure.empty()) << r.failure;
    expect_only_the_server(r, s.port());
    for (const auto& e : r.errors) ADD_FAILURE() << "the page logged: " << e;
}

TEST(ServerWeb, AWrongKeyAndAnotherOriginAreRefused)
{
    if (!run("chromium --version")) GTEST_SKIP() << "needs chromium (scripts/setup installs it)";
    const fs::path dir = scratch("refused");
    Served s({"--db", (dir / "memory").string(), "--live", "--api-key", kKey});
    ASSERT_TRUE(s.ok()) << s.log();
    Chromium b(dir / "profile");
    const std::string origin = "127.0.0.1:" + std::to_string(s.port());
    ASSERT_TRUE(b.open("http://" + origin + "/", 60)) << b.report().failure;
    // The close code a WebSocket from this page gets with the given key.
    auto close_code = [&](const std::string& key) {
        auto v
            = b.eval("new Promise(done => { const ws = new WebSocket('ws://" + origin
                     + "/v1/realtime', ['realtime', 'openai-insecure-api-key.' + " + js(key)
                     + "]); ws.onopen = () => ws.close(1000); ws.onclose = e => done(e.code); })");
        return v && v->is_number() ? v->get<int>() : -1;
    };
    EXPECT_EQ(close_code(kKey), 1000); // the right key from the server's own page: opened
    EXPECT_EQ(close_code("not-the-key"), 1006); // refused before the upgrade
    // The same right key from a page of another origin (a file), which the server never named.
    std::ofstream(dir / "other.html") << "<!doctype html><title>another origin</title>";
    ASSERT_TRUE(b.open("file://" + (dir / "other.html").string(), 30));
    EXPECT_EQ(close_code(kKey), 1006);
    // The server logs a response once it is sent, so the client may see it first.
    auto logged = [&](const std::string& line) {
        for (int i = 0; i < 100 && s.log().find(line) == std::string::npos; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return s.log().find(line) != std::string::npos;
    };
    EXPECT_TRUE(logged("GET /v1/realtime 401")) << s.log();
    EXPECT_TRUE(logged("GET /v1/realtime 403")) << s.log();
}
