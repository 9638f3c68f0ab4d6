// The Qwen2 byte-level BPE (model/tokenizer-bpe.cpp) of the tiny test vocabulary in
// data/qwen2-tokenizer: encode and decode of any bytes, with tokenizer-properties.h's checks;
// valid UTF-8 decodes back to its NFC form.
#include "tests/fuzz/tokenizer-properties.h"

using namespace iris;

namespace {

std::unique_ptr<model::Tokenizer> tok;
std::set<int32_t> added;

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    const std::string dir = std::string(IRIS_SOURCE_DIR) + "/tests/fuzz/data/qwen2-tokenizer";
    tok = model::Tokenizer::load(dir);
    added = fuzz::added_token_ids(*tok, dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    fuzz::check_tokenizer(
        *tok, fuzz::as_text(data, size),
        [](std::string_view t) -> std::optional<std::string> { return fuzz::nfc(t); }, added);
    return 0;
}
