// InternLM2's SentencePiece tokenizer (model/tokenizer-spm.cpp) of the demo model
// (resources/models/iris-demo): encode and decode of any bytes, with tokenizer-properties.h's
// checks; valid UTF-8 without U+2581 (which SentencePiece reads as a space) decodes back to
// itself.
#include "tests/fuzz/tokenizer-properties.h"

using namespace iris;

namespace {

std::unique_ptr<model::Tokenizer> tok;
std::set<int32_t> added;

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    const std::string dir = std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo";
    tok = model::Tokenizer::load(dir);
    added = fuzz::added_token_ids(*tok, dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    fuzz::check_tokenizer(
        *tok, fuzz::as_text(data, size),
        [](std::string_view t) -> std::optional<std::string> {
            if (t.find("\xE2\x96\x81") != std::string_view::npos) return std::nullopt;
            return std::string(t);
        },
        added);
    return 0;
}
