// The official `openai` npm package (installed by scripts/setup into tests/server/openai-client)
// talking to the real server: what a program using OpenAI's client gets from Iris.
#include "tests/server/serve.h"

#include <array>

using iris::test::Served;
using json = nlohmann::json;
namespace fs = std::filesystem;

TEST(ServerOpenAiClient, ImageChatAndStreamedChatWork)
{
    const fs::path dir = fs::path(IRIS_SOURCE_DIR) / "tests/server/openai-client";
    ASSERT_TRUE(fs::exists(dir / "node_modules/openai/package.json"))
        << "the openai package is not installed: run scripts/setup (it runs npm ci in " << dir
        << ")";
    const std::string key = "client-key-0123456789abcdef";
    Served s({"--api-key", key});
    ASSERT_TRUE(s.ok()) << s.log();
    std::string cmd = std::string(IRIS_NODE) + " '" + (dir / "client.mjs").string()
        + "' http://127.0.0.1:" + std::to_string(s.port()) + "/v1 " + key + " '" + IRIS_SOURCE_DIR
        + "/resources/samples/document-sign.png' 'Describe the image briefly.'";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int st = pclose(p);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out << "\nserver log:\n" << s.log();
    json r = json::parse(out);
    EXPECT_EQ(r["models"], json::array({"iris-demo"}));
    EXPECT_EQ(r["answer"], "a sign");
    EXPECT_EQ(r["finish_reason"], "stop");
    EXPECT_EQ(r["usage"]["completion_tokens"], 3);
    EXPECT_EQ(r["streamed"], r["answer"]);
    EXPECT_GE(r["stream_pieces"].get<int>(), 2);
    EXPECT_EQ(r["stream_finish_reason"], "stop");
    // The streamed request repeats the first: its prompt comes from the prompt cache.
    EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    EXPECT_GT(r["stream_usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);
    for (const char* field : {"prompt_tokens", "completion_tokens", "total_tokens"})
        EXPECT_EQ(r["stream_usage"][field], r["usage"][field]) << field;
    EXPECT_EQ(r["wrong_key"]["status"], 401);
}
