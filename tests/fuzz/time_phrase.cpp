// Time phrases in questions (memory/time-phrase.cpp): "in the last 10 minutes", "between 3pm
// and 4:30 pm", "yesterday"... A phrase found must give a range that starts no later than it
// ends and than now, and the rest of the text must be shorter than the text.
#include "memory/memory.h"
#include "tests/fuzz/fuzz.h"

#include <cstring>

using namespace iris;

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // "Now" is the clock's, never the user's: any moment between 1970 and about 2106.
    uint32_t seconds = 1'796'601'600; // 2026-12-07
    if (size >= 4) {
        std::memcpy(&seconds, data, 4);
        data += 4;
        size -= 4;
    }
    const int64_t now_us = int64_t(seconds) * 1'000'000;
    const std::string_view text = fuzz::as_text(data, size);
    const auto phrase = memory::parse_time_phrase(text, now_us);
    if (!phrase) return 0;
    const memory::TimeRange r = phrase->range;
    IRIS_FUZZ_CHECK(r.from_us <= r.to_us, "range %lld..%lld ends before it starts",
                    (long long)r.from_us, (long long)r.to_us);
    IRIS_FUZZ_CHECK(r.from_us <= now_us, "range starts at %lld, after now (%lld)",
                    (long long)r.from_us, (long long)now_us);
    IRIS_FUZZ_CHECK(phrase->rest.size() < text.size(), "the rest (%zu bytes) is not shorter",
                    phrase->rest.size());
    return 0;
}
