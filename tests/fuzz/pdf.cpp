// PDF page selection for document questions (server/documents.cpp): a PDF opened from memory,
// its text layers, the pages BM25 ranks for a question, and the chosen page rendered small, as
// POST /v1/documents/qa does. Poppler parses the file; Iris's checks around it (size, magic,
// %%EOF, page count, null pages) and its error mapping are what this target exercises.
#include "server/documents.h"
#include "tests/fuzz/fuzz.h"

#include <set>

using namespace iris;
using namespace iris::server;

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    // Poppler's first font lookup loads fontconfig's configuration (about a second on a busy
    // machine): done here, it is not counted against the first input's 1 s.
    std::ifstream in(std::string(IRIS_SOURCE_DIR) + "/tests/fuzz/corpus/pdf/one-page.pdf",
                     std::ios::binary);
    const std::vector<uint8_t> seed((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
    PdfDocument pdf = PdfDocument::open(seed);
    (void)pdf.page_texts();
    (void)pdf.render_page(0, 64);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    DocumentLimits limits;
    limits.max_bytes = 1 << 20;
    limits.max_pages = 16;
    limits.max_render_side = 96;
    const std::span<const uint8_t> bytes(data, size);
    (void)is_pdf(bytes);
    std::optional<PdfDocument> pdf;
    if (!fuzz::accepts([&] { pdf.emplace(PdfDocument::open(bytes, limits, "fuzz.pdf")); }))
        return 0;
    const int n = pdf->page_count();
    IRIS_FUZZ_CHECK(n >= 1 && n <= limits.max_pages, "opened with %d pages", n);
    std::vector<std::string> texts;
    if (!fuzz::accepts([&] { texts = pdf->page_texts(); })) return 0;
    IRIS_FUZZ_CHECK(int(texts.size()) == n, "%zu texts for %d pages", texts.size(), n);
    const std::vector<int> pages = rank_pages("what is the total of the receipt", texts, 2);
    IRIS_FUZZ_CHECK(int(pages.size()) == std::min(2, n), "%zu pages chosen of %d", pages.size(), n);
    for (int p : pages) {
        IRIS_FUZZ_CHECK(p >= 0 && p < n, "page %d of %d chosen", p, n);
        fuzz::accepts([&] {
            Image img = pdf->render_page(p, 64);
            IRIS_FUZZ_CHECK(img.width >= 1 && img.height >= 1
                                && std::max(img.width, img.height) <= 96,
                            "page rendered at %dx%d", img.width, img.height);
        });
    }
    fuzz::accepts([&] { (void)pdf->page_text(n); }); // out of range: an error
    return 0;
}
