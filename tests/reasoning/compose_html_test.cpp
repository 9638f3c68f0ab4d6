// The composer's model-free parts: pages made well-formed and self-contained, articles rendered
// from Markdown with their images embedded, and images given to descriptions.
#include "reasoning/composer-impl.h"
#include "reasoning/composer.h"
#include "reasoning/image.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <regex>

using namespace iris::reasoning;
using iris::Image;

namespace {

// Every non-void element closed, in order (an independent check of the serializer's output).
bool balanced(const std::string& html, std::string* why)
{
    static const char* kVoid[] = {"area",  "base", "br",   "col",   "embed",  "hr",    "img",
                                  "input", "link", "meta", "param", "source", "track", "wbr"};
    std::vector<std::string> open;
    size_t pos = 0;
    while ((pos = html.find('<', pos)) != std::string::npos) {
        if (html.compare(pos, 4, "<!--") == 0) {
            pos = html.find("-->", pos);
            if (pos == std::string::npos) return *why = "unclosed comment", false;
            continue;
        }
        if (html.compare(pos, 2, "<!") == 0) { // the doctype
            pos = html.find('>', pos);
            continue;
        }
        size_t end = html.find('>', pos);
        if (end == std::string::npos) return *why = "unclosed tag", false;
        bool closing = html[pos + 1] == '/';
        size_t b = pos + (closing ? 2 : 1), e = b;
        while (e < end && (std::isalnum(static_cast<unsigned char>(html[e])) || html[e] == '-'))
            ++e;
        std::string name = html.substr(b, e - b);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        pos = end + 1;
        if (closing) {
            if (open.empty() || open.back() != name)
                return *why = "</" + name + "> closes " + (open.empty() ? "nothing" : open.back()),
                       false;
            open.pop_back();
        } else if (std::find(std::begin(kVoid), std::end(kVoid), name) == std::end(kVoid)) {
            open.push_back(name);
            if (name == "script" || name == "style") { // raw text up to the end tag
                size_t close = html.find("</" + name, pos);
                if (close == std::string::npos) return *why = "unclosed " + name, false;
                pos = close;
            }
        }
    }
    if (!open.empty()) return *why = "<" + open.back() + "> never closed", false;
    return true;
}

size_t count(const std::string& s, const std::string& what)
{
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}

Image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b)
{
    return Image::allocate(w, h, [&](uint8_t* rgb) {
        for (int i = 0; i < w * h; ++i, rgb += 3) {
            rgb[0] = r;
            rgb[1] = g;
            rgb[2] = b;
        }
    });
}

} // namespace

TEST(SelfContainedHtml, ClosesAndNestsWhatTheModelLeftOpen)
{
    std::string page = make_self_contained_html(
        "<h1>Fruit<p>We "
        "sell:<ul><li>apple<li>pear</ul><table><tr><td>plum<td>3</table><div><b>bold");
    std::string why;
    EXPECT_TRUE(balanced(page, &why)) << why << "\n" << page;
    EXPECT_EQ(page.rfind("<!DOCTYPE html>\n", 0), 0u);
    EXPECT_NE(page.find("<li>apple</li>"), std::string::npos) << page;
    EXPECT_NE(page.find("<td>3</td>"), std::string::npos) << page;
    EXPECT_NE(page.find("<title>"), std::string::npos);
}

TEST(SelfContainedHtml, RemovesEverythingThatWouldFetchAndKeepsInlineCode)
{
    std::string page = make_self_contained_html(R"HTML(<html><head>
<link rel="stylesheet" href="https://cdn.example.com/a.css">
<base href="https://example.com/">
<meta http-equiv="refresh" content="0; url=https://example.com/">
<meta http-equiv="Content-Security-Policy" content="default-src *">
<script src="https://cdn.example.com/lib.js"></script>
<style>@import url("https://fonts.example.com/f.css"); body { background: url(https://x.example.com/bg.png) } .ok { background: url(data:image/png;base64,AAAA) }</style>
<script>document.title = "inline " + (1 + 1);</script>
</head><body>
<img src="https://example.com/a.png" srcset="https://example.com/b.png 2x">
<img src="data:image/png;base64,iVBORw0KGgo=">
<iframe src="https://example.com/frame"></iframe><object data="https://example.com/o.swf"></object>
<embed src="https://example.com/e"><video poster="https://example.com/p.jpg" src="https://example.com/v.mp4"></video>
<form action="https://example.com/post"><button formaction="https://example.com/b">go</button></form>
<a href="https://example.org/more" ping="https://track.example.com/">more</a>
<a href="javascript:alert(1)">js</a>
<div style="background-image: url('https://example.com/s.png')">styled</div>
<svg><use href="https://example.com/sprite.svg#i"></use></svg>
</body></html>)HTML");
    // The only remote address left is the link a reader may click.
    std::regex remote(R"((https?:)?//[a-z0-9.-]+\.(com|org))");
    std::string rest = page;
    size_t link = rest.find("href=\"https://example.org/more\"");
    ASSERT_NE(link, std::string::npos) << page;
    rest.erase(link, 31);
    EXPECT_FALSE(std::regex_search(rest, remote)) << page;
    EXPECT_EQ(page.find("<iframe"), std::string::npos);
    EXPECT_EQ(page.find("<object"), std::string::npos);
    EXPECT_EQ(page.find("<embed"), std::string::npos);
    EXPECT_EQ(page.find("<link"), std::string::npos);
    EXPECT_EQ(page.find("<base"), std::string::npos);
    EXPECT_EQ(page.find("refresh"), std::string::npos);
    EXPECT_EQ(page.find("@import"), std::string::npos);
    EXPECT_EQ(page.find("javascript:"), std::string::npos);
    EXPECT_EQ(page.find("ping="), std::string::npos);
    // Inline script, inline style and data: images stay.
    EXPECT_NE(page.find(R"(document.title = "inline " + (1 + 1);)"), std::string::npos) << page;
    EXPECT_NE(page.find("url(data:image/png;base64,AAAA)"), std::string::npos) << page;
    EXPECT_NE(page.find(R"(src="data:image/png;base64,iVBORw0KGgo=")"), std::string::npos);
    EXPECT_NE(page.find(">styled</div>"), std::string::npos);
}

TEST(SelfContainedHtml, CarriesExactlyOnePolicyThatForbidsTheNetwork)
{
    std::string page = make_self_contained_html(
        R"(<head><meta http-equiv="Content-Security-Policy" content="default-src *"></head><p>x)");
    EXPECT_EQ(count(page, "Content-Security-Policy"), 1u) << page;
    EXPECT_NE(page.find("content=\"default-src 'none';"), std::string::npos) << page;
    EXPECT_EQ(page.find("default-src *"), std::string::npos);
    EXPECT_EQ(count(page, "<meta charset=\"utf-8\">"), 1u) << page;
}

TEST(SelfContainedHtml, MakesAPageOfPlainTextOrNothing)
{
    std::string text = make_self_contained_html("Just a sentence & more, café.");
    EXPECT_NE(text.find("<body>"), std::string::npos) << text;
    EXPECT_NE(text.find("Just a sentence &amp; more, caf"), std::string::npos) << text;
    std::string why;
    EXPECT_TRUE(balanced(text, &why)) << why;
    for (const char* empty : {"", "   \n", "<", "</p></div>", "<!-- only a comment"}) {
        std::string page = make_self_contained_html(empty);
        EXPECT_TRUE(balanced(page, &why)) << why << " for '" << empty << "':\n" << page;
        EXPECT_NE(page.find("Content-Security-Policy"), std::string::npos);
    }
}

TEST(SelfContainedHtml, MakesOneDocumentOfAPageWrittenTwice)
{
    // libxml2 keeps the second <html> after the first body, or as a second root that would be
    // dropped with what it holds.
    for (const std::string& twice :
         {std::string("<html><head><title>A</title></head><body><p>one</p></body></html>\n"
                      "<html><head><style>p{color:red}</style></head><body><p>two</p></body>"
                      "</html>"),
          std::string("<!DOCTYPE html><html><body><p>one</p></body></html><!DOCTYPE html>"
                      "<html lang=\"en\"><head><style>p{color:red}</style></head>"
                      "<body><p>two</p></body></html>"),
          std::string("<p>one</p></body></html><html><head><style>p{color:red}</style></head>"
                      "<body><div><html><body><p>two</p></body></html></div></body></html>")}) {
        SCOPED_TRACE(twice);
        std::string page = make_self_contained_html(twice);
        std::string why;
        EXPECT_TRUE(balanced(page, &why)) << why << "\n" << page;
        EXPECT_EQ(count(page, "<html"), 1u) << page;
        EXPECT_EQ(count(page, "<head>"), 1u) << page;
        EXPECT_EQ(count(page, "<body>"), 1u) << page;
        // Both halves are kept: the second style in the one head, both paragraphs in the body.
        const size_t head_end = page.find("</head>"), body = page.find("<body>");
        EXPECT_LT(page.find("p{color:red}"), head_end) << page;
        EXPECT_LT(body, page.find("<p>one</p>")) << page;
        EXPECT_LT(page.find("<p>one</p>"), page.find("<p>two</p>")) << page;
        EXPECT_EQ(make_self_contained_html(page), page);
    }
}

TEST(SelfContainedHtml, IsAFixedPoint)
{
    std::string once = make_self_contained_html(
        "<h1>T</h1><p>a<ul><li>b</ul><script>var x = 1 < 2;</script><style>p{color:red}</style>");
    EXPECT_EQ(make_self_contained_html(once), once);
}

TEST(ArticleHtml, RendersTheMarkdownWithThePlacedImagesEmbedded)
{
    Article a;
    a.title = "Two shapes";
    a.sections = {"Red", "Blue"};
    a.images = {{"a red square", 1, 0.9, "a red square"},
                {"a green circle", -1, 0, ""},
                {"a blue square", 0, 0.8, "a blue square"}};
    a.markdown
        = "# Two shapes\n\n## Red\n\nA *red* one.\n\n![a red square](images/1.jpg)\n*a red "
          "square*\n\n## Blue\n\n| shape | colour |\n| --- | --- |\n\n<script>alert(1)</script>\n\n"
          "![a blue square](images/3.jpg)\n*a blue square*\n";
    std::vector<PoolImage> pool
        = {{"blue.png", solid(32, 32, 0, 0, 255)}, {"red.png", solid(32, 32, 255, 0, 0)}};
    std::string page = article_html(a, pool);
    std::string why;
    EXPECT_TRUE(balanced(page, &why)) << why;
    EXPECT_EQ(count(page, "src=\"data:image/jpeg;base64,"), 2u);
    EXPECT_EQ(page.find("images/"), std::string::npos) << "every image is embedded";
    EXPECT_NE(page.find("<h1>Two shapes</h1>"), std::string::npos);
    EXPECT_NE(page.find("<em>red</em>"), std::string::npos);
    EXPECT_EQ(page.find("alert(1)"), std::string::npos) << "raw HTML in the Markdown is dropped";
    EXPECT_NE(page.find("<title>Two shapes</title>"), std::string::npos);
    EXPECT_EQ(article_image_file(a, 0), "images/1.jpg");
    EXPECT_EQ(article_image_file(a, 1), "");
    a.images[0].pool_index = 7;
    EXPECT_THROW(article_html(a, pool), iris::Error);
}

TEST(AssignImages, GivesEachDescriptionADifferentImageBestScoreFirst)
{
    // Description 1 wants image 0 most, and gets it; description 0 then takes its second best.
    std::vector<std::vector<double>> scores = {{0.8, 0.7, 0.1}, {0.9, 0.2, 0.3}};
    EXPECT_EQ(assign_images(scores), (std::vector<int> {1, 0}));
    // More descriptions than images: the weakest claim goes without.
    EXPECT_EQ(assign_images({{0.9}, {0.95}, {0.2}}), (std::vector<int> {-1, 0, -1}));
    EXPECT_EQ(assign_images({}), std::vector<int> {});
    // Ties go to the earlier description, then the earlier image.
    EXPECT_EQ(assign_images({{0.5, 0.5}, {0.5, 0.5}}), (std::vector<int> {0, 1}));
}

TEST(ParseOutline, ReadsTheTitleAndTheNumberedSections)
{
    auto o
        = composer::parse_outline("# A Red Circle and a Blue Star\n1. The red circle\n2) The blue "
                                  "star\n- Closing words\n## Sources\n",
                                  6);
    EXPECT_EQ(o.title, "A Red Circle and a Blue Star");
    EXPECT_EQ(
        o.sections,
        (std::vector<std::string> {"The red circle", "The blue star", "Closing words", "Sources"}));
    EXPECT_EQ(composer::parse_outline("# T\n1. a\n2. b\n3. c", 2).sections.size(), 2u);
}

TEST(ParseOutline, MakesDoWithWhateverTheModelWrote)
{
    auto o = composer::parse_outline("Shapes we saw\nsome words", 6);
    EXPECT_EQ(o.title, "Shapes we saw");
    EXPECT_EQ(o.sections, std::vector<std::string> {"Shapes we saw"});
    o = composer::parse_outline("", 6);
    EXPECT_EQ(o.title, "Article");
    EXPECT_EQ(o.sections, std::vector<std::string> {"Article"});
    EXPECT_EQ(composer::parse_outline("### Deep title", 6).title, "Deep title");
}

TEST(FindMarks, FindsEveryImageMarkAndItsDescription)
{
    std::string text = "Intro.\n\n[[image: a red circle]]\n\nMore [[image:a blue star ]] and "
                       "[[image: ]]\n[[image: never closed\nlast line";
    auto marks = composer::find_marks(text);
    ASSERT_EQ(marks.size(), 4u);
    EXPECT_EQ(marks[0].description, "a red circle");
    EXPECT_EQ(text.substr(marks[0].begin, marks[0].end - marks[0].begin),
              "[[image: a red circle]]");
    EXPECT_EQ(marks[1].description, "a blue star");
    EXPECT_EQ(marks[2].description, "");
    EXPECT_EQ(marks[3].description, "never closed");
    EXPECT_EQ(text.substr(marks[3].end), "\nlast line");
    EXPECT_TRUE(composer::find_marks("no marks [[img: x]]").empty());
}
