// A tokenizer folder's files (model/tokenizer.cpp, tokenizer-bpe.cpp, tokenizer-spm.cpp):
// vocab.json, merges.txt, tokenizer.json, tokenizer.model, tokenizer_config.json,
// special_tokens_map.json and added_tokens.json. The input is the folder as sections, each a line
// "--- <file name>" and the file's bytes up to the next such line. A folder that loads must
// encode and decode text with every id in range and valid UTF-8 out.
#include "tests/fuzz/tokenizer-properties.h"

#include <array>

using namespace iris;

namespace {

constexpr std::array<const char*, 7> kFiles = {"vocab.json",
                                               "merges.txt",
                                               "tokenizer.json",
                                               "tokenizer.model",
                                               "tokenizer_config.json",
                                               "special_tokens_map.json",
                                               "added_tokens.json"};

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::filesystem::path dir = fuzz::scratch_dir() / "tokenizer";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::string_view in = fuzz::as_text(data, size);
    // Sections: "--- name\n" then the bytes up to the next "\n--- " (or the end).
    size_t pos = in.starts_with("--- ") ? 0 : in.find("\n--- ");
    while (pos != std::string_view::npos) {
        size_t name_at = pos + (in[pos] == '\n' ? 5 : 4);
        size_t eol = in.find('\n', name_at);
        if (eol == std::string_view::npos) break;
        std::string_view name = in.substr(name_at, eol - name_at);
        size_t next = in.find("\n--- ", eol);
        std::string_view body = in.substr(
            eol + 1, next == std::string_view::npos ? std::string_view::npos : next - eol - 1);
        for (const char* f : kFiles)
            if (name == f) fuzz::write_file(dir / f, body);
        pos = next;
    }

    std::unique_ptr<model::Tokenizer> tok;
    if (!fuzz::accepts([&] { tok = model::Tokenizer::load(dir.string()); })) return 0;
    for (std::string_view text :
         {"Hello, world! 123", " <|im_end|>\n<s>x", "\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80 \xFF"}) {
        const std::vector<int32_t> ids = tok->encode(text, true);
        for (int32_t id : ids)
            IRIS_FUZZ_CHECK(id >= 0 && id < tok->size(), "id %d of %d", id, tok->size());
        IRIS_FUZZ_CHECK(fuzz::valid_utf8(tok->decode(ids, false)), "decode gave invalid UTF-8");
        (void)tok->decode_hf(ids, true);
        const model::Tokenizer::TextPart parts[] = {{text, false}};
        (void)tok->encode(parts, true);
    }
    for (int32_t id = 0; id < tok->size() && id < 2048; ++id) {
        const std::string t = tok->token_text(id);
        (void)tok->is_special(id);
        (void)tok->token_id(t);
    }
    (void)tok->bos_id();
    return 0;
}
