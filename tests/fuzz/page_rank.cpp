// BM25 page ranking (server/documents.cpp rank_pages): the question is the input's first line,
// the pages the rest split at form feeds, the page count asked for the first byte. The result
// must be that many distinct pages in range, and document order when no word matches.
#include "server/documents.h"
#include "tests/fuzz/fuzz.h"

#include <set>

using namespace iris;
using namespace iris::server;

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size == 0) return 0;
    const int max_pages = data[0] % 8;
    std::string_view in = fuzz::as_text(data + 1, size - 1);
    const size_t eol = in.find('\n');
    const std::string_view question = in.substr(0, eol);
    std::vector<std::string> pages;
    if (eol != std::string_view::npos) {
        std::string_view rest = in.substr(eol + 1);
        for (size_t at = 0;;) {
            size_t ff = rest.find('\f', at);
            pages.emplace_back(rest.substr(at, ff == std::string_view::npos ? ff : ff - at));
            if (ff == std::string_view::npos) break;
            at = ff + 1;
        }
    }
    const std::vector<int> ranked = rank_pages(question, pages, max_pages);
    const size_t want = std::min(size_t(max_pages), pages.size());
    IRIS_FUZZ_CHECK(ranked.size() == want, "%zu pages ranked, %zu wanted", ranked.size(), want);
    std::set<int> seen;
    for (int p : ranked) {
        IRIS_FUZZ_CHECK(p >= 0 && p < int(pages.size()), "page %d of %zu", p, pages.size());
        IRIS_FUZZ_CHECK(seen.insert(p).second, "page %d ranked twice", p);
    }
    // Pages without text rank nowhere: with none having any, the first pages come in order.
    bool any_text = false;
    for (const auto& t : pages) any_text = any_text || !trim(t).empty();
    if (!any_text)
        for (size_t i = 0; i < ranked.size(); ++i)
            IRIS_FUZZ_CHECK(ranked[i] == int(i), "blank pages ranked out of order");
    return 0;
}
