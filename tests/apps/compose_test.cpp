// `iris compose` as a user runs it, and what it writes loaded in headless Chromium: no request
// leaves the page, no error reaches the console, and a screenshot is kept under the test output.
#include "reasoning/composer.h"
#include "reasoning/image.h"
#include "tests/apps/chromium.h"
#include "tests/apps/shell.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using iris::test::run_shell;

namespace {

const fs::path kSource = IRIS_SOURCE_DIR;
const fs::path kOutput = fs::path(IRIS_TEST_OUTPUT) / "compose";

fs::path temp_dir(const std::string& name)
{
    fs::path d
        = fs::temp_directory_path() / ("iris_compose_test_" + std::to_string(getpid())) / name;
    fs::create_directories(d);
    return d;
}

std::string q(const fs::path& p)
{
    return iris::test::quoted(p);
}

void write(const fs::path& p, const std::string& text)
{
    std::ofstream(p, std::ios::binary) << text;
}

// Loads the page in a fresh browser profile; the screenshot goes to the test output.
iris::test::PageReport load(const fs::path& html, const std::string& shot_name)
{
    fs::create_directories(kOutput);
    iris::test::Chromium browser(temp_dir("profile-" + shot_name));
    return browser.load(html, kOutput / (shot_name + ".png"));
}

std::string joined(const std::vector<std::string>& v)
{
    std::string s;
    for (const auto& x : v) s += "\n  " + x;
    return s;
}

void expect_clean(const iris::test::PageReport& r, const fs::path& shot)
{
    EXPECT_TRUE(r.failure.empty()) << r.failure;
    EXPECT_TRUE(r.loaded);
    EXPECT_TRUE(r.requests.empty()) << "requests:" << joined(r.requests);
    EXPECT_TRUE(r.errors.empty()) << "errors:" << joined(r.errors);
    EXPECT_TRUE(r.screenshot);
    EXPECT_GT(fs::exists(shot) ? fs::file_size(shot) : 0, 1000u);
}

iris::Image solid(uint8_t r, uint8_t g, uint8_t b)
{
    return iris::Image::allocate(64, 64, [&](uint8_t* rgb) {
        for (int i = 0; i < 64 * 64; ++i, rgb += 3) {
            rgb[0] = r;
            rgb[1] = g;
            rgb[2] = b;
        }
    });
}

} // namespace

// The harness itself: a page that asks for a remote image and throws is caught doing both.
TEST(ComposeChromium, SeesAPagesRequestsAndErrors)
{
    fs::path page = temp_dir("bad") / "bad.html";
    write(page,
          "<!DOCTYPE html><html><body><h1>Bad</h1><img src=\"http://example.invalid/x.png\">"
          "<script>undefined_function();</script></body></html>");
    auto r = load(page, "harness-bad-page");
    EXPECT_TRUE(r.failure.empty()) << r.failure;
    EXPECT_TRUE(r.loaded);
    ASSERT_EQ(r.requests.size(), 1u) << joined(r.requests);
    EXPECT_EQ(r.requests[0], "http://example.invalid/x.png");
    // The exception, and the failed image load, in whichever order they arrive.
    auto said = [&](const std::string& what) {
        return std::any_of(r.errors.begin(), r.errors.end(),
                           [&](const std::string& e) { return e.find(what) != std::string::npos; });
    };
    EXPECT_TRUE(said("undefined_function is not defined")) << joined(r.errors);
    EXPECT_TRUE(said("Failed to load resource")) << joined(r.errors);
}

// The same kind of page after make_self_contained_html: nothing is fetched any more.
TEST(ComposeChromium, ASanitisedPageFetchesNothing)
{
    fs::path page = temp_dir("sanitised") / "page.html";
    write(page,
          iris::reasoning::make_self_contained_html(
              "<html><head><link rel=stylesheet href=\"http://example.invalid/a.css\">"
              "<script src=\"http://example.invalid/a.js\"></script>"
              "<style>@import url(http://example.invalid/b.css); h1{background:"
              "url(http://example.invalid/bg.png)}</style></head><body><h1>Fruit</h1>"
              "<img src=\"http://example.invalid/x.png\"><iframe "
              "src=\"http://example.invalid/f\"></iframe><video "
              "poster=\"http://example.invalid/p.jpg\"></video>"
              "<script>document.body.append(' and more');</script></body></html>"));
    auto r = load(page, "sanitised-page");
    expect_clean(r, kOutput / "sanitised-page.png");
}

TEST(ComposeChromium, AnArticleWithEmbeddedImagesLoadsCleanly)
{
    using namespace iris::reasoning;
    Article a;
    a.title = "Red and blue";
    a.sections = {"Red", "Blue"};
    a.images
        = {{"a red square", 0, 0.9, "a red square"}, {"a blue square", 1, 0.8, "a blue square"}};
    a.markdown
        = "# Red and blue\n\n## Red\n\nFirst the red one.\n\n![a red square](images/1.jpg)\n*a "
          "red square*\n\n## Blue\n\n- one\n- two\n\n![a blue square](images/2.jpg)\n*a blue "
          "square*\n";
    fs::path page = temp_dir("article") / "article.html";
    write(page, article_html(a, {{"red", solid(220, 30, 30)}, {"blue", solid(30, 30, 220)}}));
    expect_clean(load(page, "article-embedded-images"), kOutput / "article-embedded-images.png");
}

TEST(ComposeCli, WritesAnArticleAndItsHtmlLoadsCleanly)
{
    fs::path out = temp_dir("cli-article");
    auto r = run_shell(
        std::string(IRIS_BINARY) + " compose article --instruction "
        + "'Write a short article about a green hexagon and a red triangle.' --images "
        + q(kSource / "resources/samples") + " --max-sections 2 --out " + q(out) + " 2>&1");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("compose ["), std::string::npos) << "progress is shown";
    EXPECT_NE(r.out.find("wrote "), std::string::npos) << r.out;
    // Each mark gets the one sample scene that shows it.
    EXPECT_NE(r.out.find("\"a green hexagon\": scene-color.png"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"a red triangle\": scene-position.png"), std::string::npos) << r.out;
    ASSERT_TRUE(fs::exists(out / "article.md"));
    ASSERT_TRUE(fs::exists(out / "article.html"));
    std::ifstream md(out / "article.md");
    std::string first;
    std::getline(md, first);
    EXPECT_EQ(first.rfind("# ", 0), 0u) << first;
    // Every image the Markdown names is beside it.
    std::string text((std::istreambuf_iterator<char>(md)), {});
    for (size_t p = text.find("](images/"); p != std::string::npos;
         p = text.find("](images/", p + 1)) {
        std::string file = text.substr(p + 2, text.find(')', p) - p - 2);
        EXPECT_TRUE(fs::exists(out / file)) << file;
    }
    expect_clean(load(out / "article.html", "cli-article"), kOutput / "cli-article.png");
}

TEST(ComposeCli, WritesWebPagesFromAnInstructionAndFromAScreenshot)
{
    fs::path out = temp_dir("cli-webpage");
    auto r = run_shell(std::string(IRIS_BINARY) + " compose webpage --instruction "
                       + "'A page titled Fruit with a list of apple and pear.' --out "
                       + q(out / "page.html"));
    ASSERT_EQ(r.status, 0) << r.out;
    expect_clean(load(out / "page.html", "cli-webpage"), kOutput / "cli-webpage.png");

    r = run_shell(std::string(IRIS_BINARY) + " compose webpage --screenshot "
                  + q(kSource / "resources/samples/page-screenshot.png")
                  + " --max-tokens 256 --out " + q(out / "from-screenshot.html"));
    ASSERT_EQ(r.status, 0) << r.out;
    expect_clean(load(out / "from-screenshot.html", "cli-webpage-from-screenshot"),
                 kOutput / "cli-webpage-from-screenshot.png");
}

TEST(ComposeCli, WrongUseIsAClearError)
{
    const std::string iris = IRIS_BINARY;
    struct Case
    {
        std::string args, says;
    };
    for (const Case& c : std::vector<Case> {
             {"compose", "needs 'article' or 'webpage'"},
             {"compose poem", "unknown compose target 'poem'"},
             {"compose article --out /tmp/x", "--instruction"},
             {"compose article --instruction x --images /nonexistent --out /tmp/x", "not a folder"},
             {"compose webpage --out /tmp/x.html", "--instruction TEXT or --screenshot FILE"},
             {"compose webpage --screenshot /nonexistent.png --out /tmp/x.html", "nonexistent"},
         }) {
        auto r = run_shell(iris + " " + c.args + " 2>&1");
        EXPECT_NE(r.status, 0) << c.args;
        EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << ": " << r.out;
    }
}
