// Documents: the sample PDF (resources/samples/document-pages.pdf, made by
// tools/demo/make_pdf_sample.py) opens, reads and renders; hostile or broken PDFs give clean
// errors; BM25 page ranking.
//
// Small PDFs for particular cases are written here by hand (pdf_from below).
#include "server/documents.h"
#include "tests/errors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>

using iris::Error;
using iris::ErrorKind;
using iris::Image;
using namespace iris::server;
using Bytes = std::vector<uint8_t>;

// For the asan preset: poppler's system font lookup leaves one fontconfig pattern alive until the
// process ends, which LeakSanitizer would report as a leak.
extern "C" const char* __lsan_default_suppressions()
{
    return "leak:libfontconfig.so\n";
}

namespace {

const std::string kSample = IRIS_SOURCE_DIR "/resources/samples/document-pages.pdf";

Bytes read_file(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    EXPECT_TRUE(f) << path;
    return Bytes(std::istreambuf_iterator<char>(f), {});
}

const Bytes& sample()
{
    static const Bytes bytes = read_file(kSample);
    return bytes;
}

Bytes bytes_of(std::string_view s)
{
    return Bytes(s.begin(), s.end());
}

// A PDF 1.4 file with objects 1..n (object 1 must be the catalog) and a correct xref table.
Bytes pdf_from(const std::vector<std::string>& objects, const std::string& trailer_extra = "")
{
    std::string out = "%PDF-1.4\n";
    std::vector<size_t> offsets;
    for (size_t i = 0; i < objects.size(); ++i) {
        offsets.push_back(out.size());
        out += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
    }
    const size_t xref = out.size();
    out += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
    for (size_t off : offsets) out += iris::strfmt("%010zu 00000 n \n", off);
    out += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R "
        + trailer_extra + " >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
    return bytes_of(out);
}

std::string stream(const std::string& data)
{
    return "<< /Length " + std::to_string(data.size()) + " >>\nstream\n" + data + "\nendstream";
}

// One page with the given size, content stream and extra page keys.
Bytes one_page_pdf(const std::string& media_box, const std::string& content,
                   const std::string& page_extra = "")
{
    return pdf_from({"<< /Type /Catalog /Pages 2 0 R >>",
                     "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                     "<< /Type /Page /Parent 2 0 R /MediaBox " + media_box + " " + page_extra
                         + " /Contents 4 0 R >>",
                     stream(content)});
}

// The kind of error f threw, checking that the message names `name` in quotes.
template<class F> std::optional<ErrorKind> error_kind(F&& f, const std::string& name = "document")
{
    return iris::test::thrown_kind(std::forward<F>(f), "'" + name + "'");
}

std::optional<ErrorKind> open_kind(const Bytes& bytes, const DocumentLimits& limits = {})
{
    return error_kind([&] { PdfDocument::open(bytes, limits); });
}

// Opens the bytes and, if they open, reads and renders every page: whatever happens must be a
// clean Error, never a crash or another exception.
void use_if_it_opens(const Bytes& bytes)
{
    try {
        PdfDocument pdf = PdfDocument::open(bytes);
        for (int i = 0; i < pdf.page_count(); ++i) {
            try {
                (void)pdf.page_text(i);
                Image img = pdf.render_page(i, 48);
                EXPECT_EQ(std::max(img.width, img.height), 48);
                EXPECT_EQ(img.rgb.size(), size_t(img.width) * img.height * 3);
            } catch (const Error& e) {
                EXPECT_EQ(e.kind(), ErrorKind::invalid_input) << e.what();
            }
        }
    } catch (const Error& e) {
        EXPECT_TRUE(e.kind() == ErrorKind::invalid_input || e.kind() == ErrorKind::unsupported)
            << iris::error_kind_name(e.kind()) << ": " << e.what();
    }
}

double luma(const Image& img, int x, int y)
{
    const uint8_t* p = img.pixel(x, y);
    return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

struct RegionStats
{
    double mean = 0; // mean luma
    double dark = 0; // fraction of pixels with luma < 100
    double min = 255;
};

RegionStats region(const Image& img, int x0, int y0, int x1, int y1)
{
    RegionStats s;
    int n = 0;
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x, ++n) {
            const double l = luma(img, x, y);
            s.mean += l;
            s.dark += l < 100;
            s.min = std::min(s.min, l);
        }
    s.mean /= n;
    s.dark /= n;
    return s;
}

bool contains(const std::string& text, const std::string& what)
{
    return text.find(what) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// The sample

TEST(DocumentsPdf, TheSampleOpensWithThreePagesAndEachPageHasItsOwnText)
{
    ASSERT_TRUE(is_pdf(sample()));
    const PdfDocument pdf = PdfDocument::open(sample(), {}, "document-pages.pdf");
    ASSERT_EQ(pdf.page_count(), 3);
    const std::vector<std::string> texts = pdf.page_texts();
    ASSERT_EQ(texts.size(), 3u);
    EXPECT_TRUE(contains(texts[0], "Opening hours")) << texts[0];
    EXPECT_TRUE(contains(texts[0], "The library is open from nine")) << texts[0];
    EXPECT_TRUE(contains(texts[1], "Receipt")) << texts[1];
    EXPECT_TRUE(contains(texts[1], "The total and the tax")) << texts[1];
    EXPECT_TRUE(contains(texts[2], "Parking rules")) << texts[2];
    EXPECT_TRUE(contains(texts[2], "owner's cost")) << texts[2];
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(pdf.page_text(i), texts[i]);
        EXPECT_EQ(texts[i].find_first_of("\f"), std::string::npos) << "no form feed";
        EXPECT_FALSE(std::isspace(uint8_t(texts[i].back()))) << "no trailing space";
        EXPECT_TRUE(contains(texts[i], iris::strfmt("Page %d of 3", i + 1))) << texts[i];
    }
    EXPECT_FALSE(contains(texts[0], "Receipt"));
    EXPECT_FALSE(contains(texts[2], "total"));
}

TEST(DocumentsPdf, TheSecondPageShowsTheReceiptImageAtTheRequestedSize)
{
    const PdfDocument pdf = PdfDocument::open(sample());
    // Letter at 396 pixels high is 0.5 pixel per point: the receipt (x 156..456, y 200..500 in
    // points from the bottom left) covers x 78..228, y 146..296 of the image.
    const Image page2 = pdf.render_page(1, 396);
    ASSERT_EQ(page2.height, 396);
    ASSERT_EQ(page2.width, 306);
    ASSERT_EQ(page2.rgb.size(), size_t(306 * 396 * 3));
    const RegionStats receipt = region(page2, 80, 148, 226, 294);
    EXPECT_GT(receipt.dark, 0.03) << "the receipt's ink";
    EXPECT_LT(receipt.mean, 240) << "the receipt's tinted paper";
    const RegionStats margin = region(page2, 0, 148, 70, 294);
    EXPECT_GE(margin.min, 250) << "white paper beside the receipt";
    // The same place on page 1 is blank paper.
    const Image page1 = pdf.render_page(0, 396);
    EXPECT_GE(region(page1, 80, 148, 226, 294).min, 250);
    // The title text is drawn (anti-aliased, so some grey and some near black).
    EXPECT_LT(region(page2, 36, 30, 120, 55).min, 100);
}

TEST(DocumentsPdf, RenderingKeepsTheAspectRatioAndClampsToTheRenderLimit)
{
    DocumentLimits limits;
    limits.max_render_side = 200;
    const PdfDocument pdf = PdfDocument::open(sample(), limits);
    const Image img = pdf.render_page(2, 5000);
    EXPECT_EQ(img.height, 200);
    EXPECT_EQ(img.width, 155); // 612 / 792 * 200 = 154.5
    const Image small = pdf.render_page(2, 1);
    EXPECT_EQ(small.height, 1);
    EXPECT_EQ(small.width, 1);
}

TEST(DocumentsPdf, RenderedColoursAreInRgbOrderOnWhitePaper)
{
    // Left half red, right quarter blue, the rest (x 50..75) left blank.
    const Bytes pdf_bytes = one_page_pdf("[0 0 100 50]",
                                         "1 0 0 rg 0 0 50 50 re f\n"
                                         "0 0 1 rg 75 0 25 50 re f");
    const Image img = PdfDocument::open(pdf_bytes).render_page(0, 200);
    ASSERT_EQ(img.width, 200);
    ASSERT_EQ(img.height, 100);
    auto rgb = [&](int x, int y) {
        const uint8_t* p = img.pixel(x, y);
        return std::vector<int> {p[0], p[1], p[2]};
    };
    EXPECT_EQ(rgb(20, 50), (std::vector<int> {255, 0, 0}));
    EXPECT_EQ(rgb(125, 50), (std::vector<int> {255, 255, 255}));
    EXPECT_EQ(rgb(180, 50), (std::vector<int> {0, 0, 255}));
    EXPECT_EQ(rgb(199, 99), (std::vector<int> {0, 0, 255}));
}

TEST(DocumentsPdf, ARotatedPageRendersTurned)
{
    // A wide page turned a quarter clockwise: its red left half ends up on top.
    const Bytes pdf_bytes
        = one_page_pdf("[0 0 200 100]", "1 0 0 rg 0 0 100 100 re f", "/Rotate 90");
    const Image img = PdfDocument::open(pdf_bytes).render_page(0, 100);
    ASSERT_EQ(img.width, 50);
    ASSERT_EQ(img.height, 100);
    EXPECT_EQ(img.pixel(25, 20)[1], 0) << "red on top";
    EXPECT_EQ(img.pixel(25, 80)[1], 255) << "white below";
}

TEST(DocumentsPdf, AScanHasAnEmptyTextLayer)
{
    const Bytes pdf_bytes = one_page_pdf("[0 0 100 100]", "0 g 10 10 80 80 re f");
    const PdfDocument pdf = PdfDocument::open(pdf_bytes);
    EXPECT_EQ(pdf.page_text(0), "");
}

TEST(DocumentsPdf, APageIndexOutOfRangeIsInvalidArgument)
{
    const PdfDocument pdf = PdfDocument::open(sample());
    EXPECT_EQ(error_kind([&] { pdf.page_text(-1); }), ErrorKind::invalid_argument);
    EXPECT_EQ(error_kind([&] { pdf.page_text(3); }), ErrorKind::invalid_argument);
    EXPECT_EQ(error_kind([&] { pdf.render_page(3, 100); }), ErrorKind::invalid_argument);
    EXPECT_EQ(error_kind([&] { pdf.render_page(-1, 100); }), ErrorKind::invalid_argument);
    EXPECT_EQ(error_kind([&] { pdf.render_page(0, 0); }), ErrorKind::invalid_argument);
}

TEST(DocumentsPdf, AMovedDocumentKeepsWorking)
{
    PdfDocument a = PdfDocument::open(sample());
    PdfDocument b = std::move(a);
    EXPECT_EQ(b.page_count(), 3);
    EXPECT_TRUE(contains(b.page_text(1), "Receipt"));
}

// ---------------------------------------------------------------------------------------------
// Bad input

TEST(DocumentsBadInput, EmptyBytesAreInvalidInput)
{
    EXPECT_FALSE(is_pdf({}));
    EXPECT_EQ(open_kind({}), ErrorKind::invalid_input);
}

TEST(DocumentsBadInput, TextAndImagesAreNotPdfs)
{
    const Bytes text = bytes_of("not a pdf");
    EXPECT_FALSE(is_pdf(text));
    EXPECT_EQ(open_kind(text), ErrorKind::invalid_input);
    EXPECT_EQ(open_kind(bytes_of("%PDF")), ErrorKind::invalid_input);
    const Bytes png = read_file(IRIS_SOURCE_DIR "/resources/samples/document-receipt.png");
    EXPECT_FALSE(is_pdf(png));
    EXPECT_EQ(open_kind(png), ErrorKind::invalid_input);
    // A PDF inside something else (here behind a byte order mark) is not accepted either.
    Bytes bom = bytes_of("\xEF\xBB\xBF");
    bom.insert(bom.end(), sample().begin(), sample().end());
    EXPECT_EQ(open_kind(bom), ErrorKind::invalid_input);
}

TEST(DocumentsBadInput, ATruncatedSampleIsInvalidInput)
{
    const size_t n = sample().size();
    for (size_t len : {size_t(5), size_t(10), size_t(100), n / 2, n - 20, n - 2}) {
        const Bytes cut(sample().begin(), sample().begin() + len);
        EXPECT_EQ(open_kind(cut), ErrorKind::invalid_input) << len << " bytes";
    }
}

TEST(DocumentsBadInput, ATruncatedSampleThatEndsInEofNeverCrashes)
{
    // Cut anywhere, then given back its %%EOF: poppler rebuilds the xref from what is left and
    // may open the file with fewer or broken pages. Either way the result is clean.
    const size_t n = sample().size();
    for (size_t len = 9; len < n; len += n / 23) {
        Bytes cut(sample().begin(), sample().begin() + len);
        const Bytes eof = bytes_of("\n%%EOF\n");
        cut.insert(cut.end(), eof.begin(), eof.end());
        SCOPED_TRACE(len);
        use_if_it_opens(cut);
    }
}

TEST(DocumentsBadInput, ASampleWithAPieceCutOutNeverCrashes)
{
    // Every offset after the cut is wrong: poppler rebuilds the xref by scanning and meets
    // truncated objects and streams (the JPEG among them).
    testing::internal::CaptureStderr(); // libjpeg's warnings
    const size_t n = sample().size();
    for (size_t from = 9; from < n - 400; from += n / 17) {
        Bytes bytes(sample().begin(), sample().begin() + from);
        bytes.insert(bytes.end(), sample().begin() + from + 300, sample().end());
        SCOPED_TRACE(from);
        use_if_it_opens(bytes);
    }
    EXPECT_EQ(testing::internal::GetCapturedStderr().find("poppler"), std::string::npos);
}

TEST(DocumentsBadInput, GarbageAfterThePdfHeaderIsInvalidInput)
{
    std::mt19937 rng(7);
    Bytes junk = bytes_of("%PDF-1.4\n");
    for (int i = 0; i < 4000; ++i) junk.push_back(uint8_t(rng()));
    EXPECT_EQ(open_kind(junk), ErrorKind::invalid_input);
    const Bytes eof = bytes_of("\n%%EOF\n");
    junk.insert(junk.end(), eof.begin(), eof.end());
    EXPECT_EQ(open_kind(junk), ErrorKind::invalid_input);
}

TEST(DocumentsBadInput, RandomlyDamagedSamplesNeverCrash)
{
    testing::internal::CaptureStderr(); // libjpeg's warnings
    std::mt19937 rng(11);
    for (int trial = 0; trial < 40; ++trial) {
        Bytes bytes = sample();
        const int n_flips = 1 + int(rng() % 16);
        for (int k = 0; k < n_flips; ++k) bytes[5 + rng() % (bytes.size() - 5)] = uint8_t(rng());
        SCOPED_TRACE(trial);
        use_if_it_opens(bytes);
    }
    EXPECT_EQ(testing::internal::GetCapturedStderr().find("poppler"), std::string::npos);
}

TEST(DocumentsBadInput, PopplerWritesNothingToStderr)
{
    testing::internal::CaptureStderr();
    std::mt19937 rng(3);
    Bytes junk = bytes_of("%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\n");
    for (int i = 0; i < 500; ++i) junk.push_back(uint8_t(rng()));
    const Bytes eof = bytes_of("\n%%EOF\n");
    junk.insert(junk.end(), eof.begin(), eof.end());
    use_if_it_opens(junk);
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(DocumentsBadInput, PopplerDiagnosticsGoToTheDebugLog)
{
    std::vector<std::string> lines;
    const iris::LogLevel level = iris::log_level();
    iris::log_set_level(iris::LogLevel::debug);
    iris::log_set_sink([&](iris::LogLevel, std::string_view m) { lines.emplace_back(m); });
    // No xref table: poppler says so, then rebuilds it.
    const Bytes no_xref = bytes_of("%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
                                   "2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
                                   "trailer\n<< /Root 1 0 R >>\n%%EOF\n");
    const auto kind = open_kind(no_xref);
    iris::log_set_sink(nullptr);
    iris::log_set_level(level);
    EXPECT_EQ(kind, ErrorKind::invalid_input);
    ASSERT_FALSE(lines.empty());
    EXPECT_TRUE(contains(lines[0], "poppler")) << lines[0];
}

TEST(DocumentsBadInput, APdfWithoutPagesIsInvalidInput)
{
    const Bytes none
        = pdf_from({"<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 0 >>"});
    EXPECT_EQ(open_kind(none), ErrorKind::invalid_input);
}

TEST(DocumentsBadInput, APageTreeThatPromisesMorePagesThanItHasGivesCleanErrors)
{
    auto liar = [](int count) {
        return pdf_from({"<< /Type /Catalog /Pages 2 0 R >>",
                         "<< /Type /Pages /Kids [3 0 R] /Count " + std::to_string(count) + " >>",
                         "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>"});
    };
    // Poppler (22.12) distrusts a count above the number of objects and finds no pages...
    EXPECT_EQ(open_kind(liar(1000000)), ErrorKind::invalid_input);
    // ...but believes a smaller one; the missing pages cannot be read.
    const PdfDocument pdf = PdfDocument::open(liar(3));
    ASSERT_EQ(pdf.page_count(), 3);
    EXPECT_EQ(pdf.render_page(0, 10).width, 10);
    EXPECT_EQ(error_kind([&] { pdf.page_text(1); }), ErrorKind::invalid_input);
    EXPECT_EQ(error_kind([&] { pdf.render_page(2, 10); }), ErrorKind::invalid_input);
}

TEST(DocumentsBadInput, APasswordProtectedPdfIsUnsupported)
{
    // The standard security handler with hashes no empty password matches: locked.
    const std::string hash = "<" + std::string(64, 'A') + ">";
    const Bytes locked = pdf_from(
        {"<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
         "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>",
         "<< /Filter /Standard /V 1 /R 2 /O " + hash + " /U " + hash + " /P -4 >>"},
        "/Encrypt 4 0 R /ID [<0123456789ABCDEF0123456789ABCDEF> "
        "<0123456789ABCDEF0123456789ABCDEF>]");
    EXPECT_EQ(open_kind(locked), ErrorKind::unsupported);
}

TEST(DocumentsBadInput, MorePagesThanTheLimitIsResource)
{
    DocumentLimits limits;
    limits.max_pages = 2;
    EXPECT_EQ(open_kind(sample(), limits), ErrorKind::resource);
    limits.max_pages = 3;
    EXPECT_EQ(open_kind(sample(), limits), std::nullopt);
}

TEST(DocumentsBadInput, MoreBytesThanTheLimitIsResource)
{
    DocumentLimits limits;
    limits.max_bytes = sample().size() - 1;
    EXPECT_EQ(open_kind(sample(), limits), ErrorKind::resource);
    limits.max_bytes = sample().size();
    EXPECT_EQ(open_kind(sample(), limits), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Ranking

TEST(DocumentsRank, TheTotalQuestionPicksTheReceiptPage)
{
    const std::vector<std::string> texts = PdfDocument::open(sample()).page_texts();
    EXPECT_EQ(rank_pages("What is the total?", texts, 1), (std::vector<int> {1}));
    EXPECT_EQ(rank_pages("What is the total?", texts, 3), (std::vector<int> {1, 0, 2}));
    EXPECT_EQ(rank_pages("Where can visitors park?", texts, 2), (std::vector<int> {2, 0}));
    EXPECT_EQ(rank_pages("When does the library open on Saturdays?", texts, 1),
              (std::vector<int> {0}));
}

TEST(DocumentsRank, AScanWithoutTextKeepsDocumentOrder)
{
    const std::vector<std::string> scan(5, "");
    EXPECT_EQ(rank_pages("What is the total?", scan, 3), (std::vector<int> {0, 1, 2}));
    EXPECT_EQ(rank_pages("What is the total?", {}, 3), (std::vector<int> {}));
}

TEST(DocumentsRank, PagesWithoutAMatchFollowInDocumentOrder)
{
    const std::vector<std::string> texts = {"", "cats and dogs", "", "the total is 12", "dogs"};
    EXPECT_EQ(rank_pages("total", texts, 5), (std::vector<int> {3, 0, 1, 2, 4}));
    EXPECT_EQ(rank_pages("birds", texts, 2), (std::vector<int> {0, 1}));
}

TEST(DocumentsRank, StopWordsCaseAndPunctuationDoNotCount)
{
    const std::vector<std::string> texts
        = {"The the THE, and what is it?", "Total: 12.", "the subtotal"};
    EXPECT_EQ(rank_pages("What is the?", texts, 3), (std::vector<int> {0, 1, 2}));
    EXPECT_EQ(rank_pages("TOTAL!!", texts, 3), (std::vector<int> {1, 0, 2}));
}

TEST(DocumentsRank, RareAndRepeatedWordsWeighMore)
{
    const std::vector<std::string> texts
        = {"invoice date", "invoice tax", "invoice tax tax", "invoice"};
    // "tax" is on fewer pages than "invoice", and page 2 has it twice; "invoice" alone counts
    // more on a short page than on a longer one.
    EXPECT_EQ(rank_pages("invoice tax", texts, 4), (std::vector<int> {2, 1, 3, 0}));
    // Ties keep document order.
    EXPECT_EQ(rank_pages("invoice", {"invoice a", "invoice b"}, 2), (std::vector<int> {0, 1}));
}

TEST(DocumentsRank, NonAsciiWordsMatchAndTypographicPunctuationSeparates)
{
    const std::vector<std::string> texts
        = {"Öffnungszeiten", "die Größe\u2014der \u201cPreis\u201d"};
    EXPECT_EQ(rank_pages("Größe?", texts, 1), (std::vector<int> {1}));
    EXPECT_EQ(rank_pages("preis", texts, 1), (std::vector<int> {1}));
    EXPECT_EQ(rank_pages("der", texts, 1), (std::vector<int> {1}));
}

TEST(DocumentsRank, MaxPagesLimitsTheResult)
{
    const std::vector<std::string> texts(4, "x");
    EXPECT_EQ(rank_pages("x", texts, 0), (std::vector<int> {}));
    EXPECT_EQ(rank_pages("x", texts, 10).size(), 4u);
    EXPECT_THROW(
        {
            try {
                rank_pages("x", texts, -1);
            } catch (const Error& e) {
                EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
                throw;
            }
        },
        Error);
}

} // namespace
