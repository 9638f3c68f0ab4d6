// PDFs through poppler-cpp, and BM25 page ranking.
//
// Poppler is fed untrusted uploads, so nothing reaches it unchecked: the size, the "%PDF-" magic
// and the %%EOF marker are checked first (poppler silently rebuilds the cross-reference table of
// a file whose end is cut off, as long as a "trailer" survives, and opens it), its diagnostics
// are routed to the debug log, every call is wrapped so that no exception escapes as anything
// but iris::Error, and null pages and invalid images are errors rather than crashes.
//
// One leak remains: poppler's JPEG decoder keeps libjpeg's default message handler, so a corrupt
// JPEG inside a PDF prints libjpeg's own warning ("Corrupt JPEG data: ...") to stderr. It is
// harmless, and silencing it would mean redirecting the process's stderr.
#include "server/documents.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unordered_set>

#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-image.h>
#include <poppler-page-renderer.h>
#include <poppler-page.h>

namespace iris::server {

namespace {

constexpr std::string_view kMagic = "%PDF-";
// Acrobat only requires %%EOF somewhere in the last 1024 bytes; so do we.
constexpr size_t kEofWindow = 1024;

std::string label(std::string_view name)
{
    return "document '" + std::string(name) + "'";
}

[[noreturn]] void fail(ErrorKind kind, std::string_view name, const std::string& what)
{
    throw Error(kind, label(name) + ": " + what);
}

void quiet_poppler(const std::string& message, void*)
{
    IRIS_LOG_DEBUG("poppler: %s", message.c_str());
}

// poppler-cpp keeps the callback in a global without a lock: install it once, before any load.
void install_poppler_log()
{
    static std::once_flag once;
    std::call_once(once, [] { poppler::set_debug_error_function(quiet_poppler, nullptr); });
}

bool has_eof_marker(std::span<const uint8_t> bytes)
{
    const size_t from = bytes.size() > kEofWindow ? bytes.size() - kEofWindow : 0;
    std::string_view tail(reinterpret_cast<const char*>(bytes.data()) + from, bytes.size() - from);
    return tail.find("%%EOF") != std::string_view::npos;
}

// Runs f, turning whatever poppler or the allocator throws into Error.
template<class F> auto guarded(std::string_view name, const char* what, F&& f)
{
    try {
        return f();
    } catch (const Error&) {
        throw;
    } catch (const std::bad_alloc&) {
        fail(ErrorKind::resource, name, strfmt("out of memory while %s", what));
    } catch (const std::exception& e) {
        fail(ErrorKind::invalid_input, name, strfmt("failed while %s: %s", what, e.what()));
    } catch (...) {
        fail(ErrorKind::invalid_input, name, strfmt("failed while %s", what));
    }
}

// ---------------------------------------------------------------------------------------------
// Words for BM25

bool is_separator(uint32_t cp)
{
    return cp < 0x80 // ASCII that is not a letter or digit (those are handled by the caller)
        || (cp >= 0x80 && cp <= 0xBF) // Latin-1 controls, no-break space, punctuation, symbols
        || cp == 0xD7 || cp == 0xF7 // multiplication and division signs
        || (cp >= 0x2000 && cp <= 0x206F) // general punctuation: spaces, dashes, curly quotes
        || (cp >= 0x3000 && cp <= 0x303F) // CJK punctuation
        || cp == 0xFEFF;
}

// Lower-cased ASCII letters and digits, and non-ASCII letters as they are (no case folding).
std::vector<std::string> words(std::string_view text)
{
    std::vector<std::string> out;
    std::string word;
    auto flush = [&] {
        if (!word.empty()) out.push_back(std::move(word));
        word.clear();
    };
    for (size_t i = 0; i < text.size();) {
        const auto c = uint8_t(text[i]);
        if (c < 0x80) {
            if (std::isalnum(c))
                word += char(std::tolower(c));
            else
                flush();
            ++i;
            continue;
        }
        // Decode one UTF-8 sequence; a malformed byte separates words.
        const int len = (c & 0xE0) == 0xC0 ? 2
            : (c & 0xF0) == 0xE0           ? 3
            : (c & 0xF8) == 0xF0           ? 4
                                           : 0;
        bool ok = len > 0 && i + len <= text.size();
        uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (int k = 1; ok && k < len; ++k) {
            const auto cc = uint8_t(text[i + k]);
            ok = (cc & 0xC0) == 0x80;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (!ok) {
            flush();
            ++i;
            continue;
        }
        if (is_separator(cp))
            flush();
        else
            word.append(text.substr(i, len));
        i += len;
    }
    flush();
    return out;
}

const std::unordered_set<std::string_view>& stop_words()
{
    static const std::unordered_set<std::string_view> set = {
        "a",     "about", "above", "after",  "again", "all",    "also",  "am",      "an",
        "and",   "any",   "are",   "as",     "at",    "be",     "been",  "being",   "both",
        "but",   "by",    "can",   "could",  "did",   "do",     "does",  "doing",   "each",
        "for",   "from",  "had",   "has",    "have",  "having", "he",    "her",     "here",
        "hers",  "him",   "his",   "how",    "i",     "if",     "in",    "into",    "is",
        "it",    "its",   "just",  "me",     "more",  "most",   "my",    "no",      "nor",
        "not",   "of",    "off",   "on",     "once",  "only",   "or",    "other",   "our",
        "ours",  "out",   "over",  "please", "s",     "same",   "she",   "should",  "so",
        "some",  "such",  "t",     "tell",   "than",  "that",   "the",   "their",   "theirs",
        "them",  "then",  "there", "these",  "they",  "this",   "those", "through", "to",
        "too",   "under", "until", "up",     "very",  "was",    "we",    "were",    "what",
        "when",  "where", "which", "while",  "who",   "whom",   "why",   "will",    "with",
        "would", "you",   "your",  "yours",
    };
    return set;
}

std::vector<std::string> content_words(std::string_view text)
{
    std::vector<std::string> out = words(text);
    std::erase_if(out, [](const std::string& w) { return stop_words().count(w) != 0; });
    return out;
}

} // namespace

bool is_pdf(std::span<const uint8_t> bytes)
{
    return bytes.size() >= kMagic.size()
        && std::memcmp(bytes.data(), kMagic.data(), kMagic.size()) == 0;
}

// ---------------------------------------------------------------------------------------------
// PdfDocument

struct PdfDocument::Impl
{
    std::string name;
    DocumentLimits limits;
    std::unique_ptr<poppler::document> doc;
    int n_pages = 0;

    std::unique_ptr<poppler::page> page(int index) const
    {
        if (index < 0 || index >= n_pages)
            throw Error(ErrorKind::invalid_argument,
                        label(name)
                            + strfmt(": page index %d is out of range (the document has %d pages)",
                                     index, n_pages));
        std::unique_ptr<poppler::page> p(doc->create_page(index));
        if (!p) fail(ErrorKind::invalid_input, name, strfmt("page %d cannot be read", index + 1));
        return p;
    }
};

PdfDocument::PdfDocument(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl))
{ }
PdfDocument::PdfDocument(PdfDocument&&) noexcept = default;
PdfDocument& PdfDocument::operator=(PdfDocument&&) noexcept = default;
PdfDocument::~PdfDocument() = default;

PdfDocument PdfDocument::open(std::span<const uint8_t> bytes, const DocumentLimits& limits,
                              std::string_view name)
{
    if (bytes.size() > limits.max_bytes)
        fail(ErrorKind::resource, name,
             strfmt("%zu bytes, more than the limit of %zu", bytes.size(), limits.max_bytes));
    if (bytes.empty()) fail(ErrorKind::invalid_input, name, "empty, not a PDF file");
    if (!is_pdf(bytes)) fail(ErrorKind::invalid_input, name, "not a PDF file (no %PDF- header)");
    if (!has_eof_marker(bytes))
        fail(ErrorKind::invalid_input, name, "truncated PDF (no %%EOF marker at the end)");
    install_poppler_log();

    auto impl = std::make_unique<Impl>();
    impl->name = std::string(name);
    impl->limits = limits;
    guarded(name, "reading the PDF", [&] {
        // load_from_data takes the buffer over, so poppler owns the copy it parses.
        poppler::byte_array data(bytes.begin(), bytes.end());
        impl->doc.reset(poppler::document::load_from_data(&data));
        if (!impl->doc)
            fail(ErrorKind::invalid_input, name, "corrupt PDF (poppler cannot read it)");
        if (impl->doc->is_locked())
            fail(ErrorKind::unsupported, name, "the PDF is encrypted and needs a password");
        impl->n_pages = impl->doc->pages();
    });
    if (impl->n_pages <= 0) fail(ErrorKind::invalid_input, name, "the PDF has no pages");
    if (impl->n_pages > limits.max_pages)
        fail(ErrorKind::resource, name,
             strfmt("the PDF has %d pages, more than the limit of %d", impl->n_pages,
                    limits.max_pages));
    return PdfDocument(std::move(impl));
}

int PdfDocument::page_count() const
{
    return impl_->n_pages;
}

std::string PdfDocument::page_text(int index) const
{
    auto page = impl_->page(index);
    return guarded(impl_->name, "reading the text of a page", [&] {
        const poppler::byte_array utf8 = page->text().to_utf8();
        std::string text(utf8.begin(), utf8.end());
        // Poppler ends each page with a form feed after blank lines: drop that trailing space.
        while (!text.empty() && std::strchr(" \t\r\n\f\v", text.back()) != nullptr) text.pop_back();
        return text;
    });
}

std::vector<std::string> PdfDocument::page_texts() const
{
    std::vector<std::string> texts;
    texts.reserve(impl_->n_pages);
    for (int i = 0; i < impl_->n_pages; ++i) texts.push_back(page_text(i));
    return texts;
}

Image PdfDocument::render_page(int index, int long_side) const
{
    const std::string& name = impl_->name;
    if (long_side < 1)
        throw Error(ErrorKind::invalid_argument,
                    label(name) + strfmt(": render size %d must be at least 1 pixel", long_side));
    long_side = std::min(long_side, std::max(1, impl_->limits.max_render_side));
    auto page = impl_->page(index);
    if (!poppler::page_renderer::can_render())
        fail(ErrorKind::unsupported, name, "this poppler build cannot render pages");

    return guarded(name, "rendering a page", [&] {
        // The size the page shows at, in points: the crop box turned by /Rotate.
        const poppler::rectf box = page->page_rect(poppler::crop_box);
        double w_pt = std::abs(box.width()), h_pt = std::abs(box.height());
        const auto turn = page->orientation();
        if (turn == poppler::page::landscape || turn == poppler::page::seascape)
            std::swap(w_pt, h_pt);
        if (!(w_pt > 0 && h_pt > 0) || !std::isfinite(w_pt) || !std::isfinite(h_pt))
            fail(ErrorKind::invalid_input, name,
                 strfmt("page %d has an empty or invalid size", index + 1));
        const double scale = long_side / std::max(w_pt, h_pt); // pixels per point
        const bool wide = w_pt >= h_pt;
        const int short_side
            = std::clamp(int(std::lround(std::min(w_pt, h_pt) * scale)), 1, long_side);
        const int width = wide ? long_side : short_side;
        const int height = wide ? short_side : long_side;

        poppler::page_renderer renderer;
        renderer.set_render_hint(poppler::page_renderer::antialiasing, true);
        renderer.set_render_hint(poppler::page_renderer::text_antialiasing, true);
        renderer.set_image_format(poppler::image::format_argb32);
        renderer.set_paper_color(0xffffffffu);
        // Rendering only the target rectangle bounds the bitmap even if poppler rounds the page
        // size differently.
        const double dpi = 72.0 * scale;
        const poppler::image img = renderer.render_page(page.get(), dpi, dpi, 0, 0, width, height);
        if (!img.is_valid() || img.format() != poppler::image::format_argb32 || img.width() <= 0
            || img.height() <= 0)
            fail(ErrorKind::invalid_input, name, strfmt("page %d cannot be rendered", index + 1));

        // Each argb32 pixel is a native-endian 32-bit 0xAARRGGBB word (B, G, R, A in memory on
        // little endian); reading whole words keeps this independent of byte order. Splash
        // paints on opaque paper, so alpha is always 255 and is dropped. Pixels the renderer
        // did not cover (a rounding difference of at most one row or column) stay white.
        std::vector<uint8_t> rgb(size_t(width) * height * 3, 255);
        const int copy_w = std::min(width, img.width()), copy_h = std::min(height, img.height());
        const char* data = img.const_data();
        for (int y = 0; y < copy_h; ++y) {
            const char* row = data + size_t(y) * img.bytes_per_row();
            uint8_t* dst = rgb.data() + size_t(y) * width * 3;
            for (int x = 0; x < copy_w; ++x) {
                uint32_t argb;
                std::memcpy(&argb, row + size_t(x) * 4, 4);
                dst[x * 3 + 0] = uint8_t(argb >> 16);
                dst[x * 3 + 1] = uint8_t(argb >> 8);
                dst[x * 3 + 2] = uint8_t(argb);
            }
        }
        return Image::adopt(width, height, std::move(rgb));
    });
}

// ---------------------------------------------------------------------------------------------
// Ranking

std::vector<int> rank_pages(std::string_view question, const std::vector<std::string>& page_texts,
                            int max_pages)
{
    if (max_pages < 0)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("rank_pages: max_pages is %d, it must be 0 or more", max_pages));
    const int n = int(page_texts.size());
    std::vector<std::string> terms = content_words(question);
    std::sort(terms.begin(), terms.end());
    terms.erase(std::unique(terms.begin(), terms.end()), terms.end());

    // Term frequencies of the query terms per page, and page lengths in words.
    std::vector<std::unordered_map<std::string_view, int>> tf(n);
    std::vector<double> length(n, 0.0);
    double total_length = 0;
    for (int i = 0; i < n; ++i) {
        const std::vector<std::string> page_words = content_words(page_texts[i]);
        length[i] = double(page_words.size());
        total_length += length[i];
        for (const std::string& w : page_words) {
            auto t = std::lower_bound(terms.begin(), terms.end(), w);
            if (t != terms.end() && *t == w) ++tf[i][*t];
        }
    }

    std::vector<double> score(n, 0.0);
    if (total_length > 0) {
        constexpr double k1 = 1.2, b = 0.75;
        const double avg_length = total_length / n;
        for (const std::string& term : terms) {
            int df = 0;
            for (int i = 0; i < n; ++i) df += tf[i].count(term) ? 1 : 0;
            if (df == 0) continue;
            // Lucene's idf: never negative, so a word on most pages still counts a little.
            const double idf = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
            for (int i = 0; i < n; ++i) {
                auto it = tf[i].find(term);
                if (it == tf[i].end()) continue;
                const double f = it->second;
                score[i] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * length[i] / avg_length));
            }
        }
    }

    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return score[a] > score[c]; });
    order.resize(std::min(n, max_pages));
    return order;
}

} // namespace iris::server
