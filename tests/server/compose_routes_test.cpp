// POST /v1/compose/article and /v1/compose/webpage on the real `iris serve` with the demo model.
#include "tests/server/bytes.h"
#include "tests/server/serve.h"

#include <set>

using iris::test::Served;
using json = nlohmann::json;

namespace {

const std::filesystem::path kSamples = std::filesystem::path(IRIS_SOURCE_DIR) / "resources/samples";

std::string data_url(const std::string& file)
{
    return "data:image/png;base64," + iris::test::base64(iris::test::read_file(kSamples / file));
}

httplib::Result post(const Served& s, const std::string& path, const json& body)
{
    auto c = s.client();
    c.set_read_timeout(120);
    return c.Post(path, body.dump(), "application/json");
}

} // namespace

TEST(ServerCompose, AnArticleComesBackWithMarkdownHtmlAndTheImagesItChose)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    json body = {{"instruction", "Write a short article about the shapes."},
                 {"images",
                  {data_url("scene-color.png"),
                   {{"name", "position"}, {"url", data_url("scene-position.png")}},
                   data_url("scene-shapes.png")}},
                 {"max_sections", 2}};
    auto r = post(s, "/v1/compose/article", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    ASSERT_TRUE(j["title"].is_string());
    ASSERT_TRUE(j["sections"].is_array());
    EXPECT_GE(j["sections"].size(), 1u);
    EXPECT_LE(j["sections"].size(), 2u);
    std::string md = j["markdown"];
    EXPECT_EQ(md.rfind("# " + j["title"].get<std::string>() + "\n", 0), 0u) << md;
    EXPECT_EQ(md.find("[[image:"), std::string::npos);
    std::string html = j["html"];
    EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
    EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
    std::set<int> used;
    for (const auto& im : j["images"]) {
        ASSERT_TRUE(im["description"].is_string());
        if (im["image"].is_null()) continue;
        EXPECT_TRUE(used.insert(im["pool_index"].get<int>()).second);
        std::string link = "("; // built piece by piece: "(" + file + ")" trips GCC 12's -Wrestrict
        link += im["file"].get<std::string>();
        link += ')';
        EXPECT_NE(md.find(link), std::string::npos);
    }
    EXPECT_GT(j["usage"]["completion_tokens"].get<int>(), 0);
    EXPECT_GE(j["timings"]["total_ms"].get<double>(), 0.0);
    auto m = s.client().Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find(R"(route="/v1/compose/article",status="200"} 1)"), std::string::npos)
        << m->body;
}

TEST(ServerCompose, AWebPageComesFromAnInstructionOrAScreenshot)
{
    Served s({});
    ASSERT_TRUE(s.ok()) << s.log();
    for (json body : {json {{"instruction", "A page titled Fruit with a list of apple and pear."}},
                      json {{"screenshot", data_url("document-sign.png")}, {"max_tokens", 64}}}) {
        auto r = post(s, "/v1/compose/webpage", body);
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 200) << r->body;
        json j = json::parse(r->body);
        std::string html = j["html"];
        EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
        EXPECT_NE(html.find("Content-Security-Policy"), std::string::npos);
        EXPECT_TRUE(j["model_output"].is_string());
    }
}

TEST(ServerCompose, BadRequestsAreRefusedNamingTheField)
{
    Served s({"--max-images", "2"});
    ASSERT_TRUE(s.ok()) << s.log();
    struct Case
    {
        std::string path;
        json body;
        std::string param;
    };
    std::vector<Case> cases = {
        {"/v1/compose/article", json::object(), "instruction"},
        {"/v1/compose/article", {{"instruction", "  "}}, "instruction"},
        {"/v1/compose/article", {{"instruction", "x"}, {"images", "nope"}}, "images"},
        {"/v1/compose/article", {{"instruction", "x"}, {"images", json::array({1})}}, "images[0]"},
        {"/v1/compose/article",
         {{"instruction", "x"},
          {"images",
           {data_url("scene-color.png"), data_url("scene-color.png"),
            data_url("scene-color.png")}}},
         "images"},
        {"/v1/compose/article",
         {{"instruction", "x"}, {"images", json::array({"data:image/png;base64,AAAA"})}},
         "images[0]"},
        {"/v1/compose/article", {{"instruction", "x"}, {"max_sections", 0}}, "max_sections"},
        {"/v1/compose/article", {{"instruction", "x"}, {"memory", true}}, "memory"},
        {"/v1/compose/webpage", json::object(), "instruction"},
        {"/v1/compose/webpage", {{"screenshot", "data:image/png;base64,!!!"}}, "screenshot"},
        {"/v1/compose/webpage", {{"instruction", "x"}, {"max_tokens", -1}}, "max_tokens"},
    };
    for (const auto& c : cases) {
        auto r = post(s, c.path, c.body);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status / 100, 4) << c.path << " " << c.body.dump() << " -> " << r->body;
        json j = json::parse(r->body, nullptr, false);
        ASSERT_FALSE(j.is_discarded()) << r->body;
        EXPECT_EQ(j["error"]["param"], c.param) << c.body.dump() << " -> " << r->body;
    }
    EXPECT_EQ(s.client().Get("/health")->status, 200);
}
