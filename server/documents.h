// Documents for the REST server: PDFs opened from memory with poppler-cpp (page count, text
// layer, page rendering) and the ranking of pages by relevance to a question, so that only the
// pages that matter are shown to the model.
//
//   PdfDocument pdf = PdfDocument::open(bytes, {}, "report.pdf");   // throws Error on bad input
//   std::vector<int> pages = rank_pages(question, pdf.page_texts(), 2);
//   for (int i : pages) images.push_back(pdf.render_page(i, 1024));
//
// Thread safety: the free functions are reentrant; a PdfDocument is used by one thread at a
// time (different documents may be used from different threads).
#pragma once

#include "core/core.h"
#include "reasoning/image.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iris::server {

// Gates applied to untrusted uploads before and while poppler reads them.
struct DocumentLimits
{
    size_t max_bytes = 20u << 20; // a larger file is Error(resource)
    int max_pages = 200; // a PDF with more pages is Error(resource)
    int max_render_side = 2048; // rendered pages are scaled so their longer side is at most this
};

// True when the bytes start like a PDF file ("%PDF-").
bool is_pdf(std::span<const uint8_t> bytes);

// A PDF opened from memory (the bytes are copied). Poppler's diagnostics go to the debug log, not
// stderr (libjpeg's warnings about a corrupt embedded JPEG excepted).
class PdfDocument
{
public:
    // Throws Error(invalid_input) naming `name` for data that is not a PDF, a truncated PDF (no
    // %%EOF in its last 1024 bytes, the rule Acrobat applies), a corrupt PDF and a PDF without
    // pages; Error(unsupported) for a PDF locked by a password; Error(resource) for the limits.
    static PdfDocument open(std::span<const uint8_t> bytes, const DocumentLimits& limits = {},
                            std::string_view name = "document");

    PdfDocument(PdfDocument&&) noexcept;
    PdfDocument& operator=(PdfDocument&&) noexcept;
    ~PdfDocument();

    int page_count() const;
    // The page's text layer as UTF-8 in reading order, trailing white space removed (empty for a
    // scan). `index` is 0-based; out of range is Error(invalid_argument), an unreadable page
    // Error(invalid_input).
    std::string page_text(int index) const;
    std::vector<std::string> page_texts() const; // every page's text layer
    // Renders the page (with its /Rotate) to RGB on white paper, anti-aliased, so that its longer
    // side is `long_side` pixels, clamped to limits.max_render_side; the other side keeps the
    // page's aspect ratio (at least 1 pixel). long_side < 1 is Error(invalid_argument).
    Image render_page(int index, int long_side) const;

private:
    struct Impl;
    explicit PdfDocument(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Ranks pages by relevance to the question with BM25 (k1 = 1.2, b = 0.75) over the pages' text
// layers. Words are runs of letters and digits, ASCII lower-cased; common English stop words
// are ignored. Returns up to max_pages page indices, most relevant first; ties and pages that
// match no word keep document order, so when nothing matches (or no page has text, e.g. a scan)
// the result is the first pages in order. max_pages < 0 is Error(invalid_argument).
std::vector<int> rank_pages(std::string_view question, const std::vector<std::string>& page_texts,
                            int max_pages);

} // namespace iris::server
