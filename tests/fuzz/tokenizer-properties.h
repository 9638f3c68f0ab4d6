// The properties both tokenizers' targets check (model/model.h, Tokenizer): encode never throws
// on any bytes; every id is in range; plain (client) text never yields an added token's id;
// decode gives valid UTF-8 that encodes to the same ids again; and for valid UTF-8 text,
// decode(encode(t)) is t as the tokenizer normalises it (Qwen2: NFC; SentencePiece: t itself).
#pragma once

#include "model/model.h"
#include "tests/fuzz/fuzz.h"

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include <functional>
#include <optional>
#include <set>

namespace iris::fuzz {

inline bool valid_utf8(std::string_view s)
{
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
    utf8proc_ssize_t n = utf8proc_ssize_t(s.size());
    while (n > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = utf8proc_iterate(p, n, &cp);
        if (len <= 0) return false;
        p += len;
        n -= len;
    }
    return true;
}

inline std::string nfc(std::string_view s)
{
    utf8proc_uint8_t* out = nullptr;
    utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                      utf8proc_ssize_t(s.size()), &out,
                                      utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0) finding("utf8proc cannot normalise valid UTF-8");
    std::string r(reinterpret_cast<const char*>(out), size_t(n));
    std::free(out);
    return r;
}

inline std::string shown(std::string_view s)
{
    std::string r = "\"";
    for (unsigned char c : s.substr(0, 200))
        r += (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? std::string(1, char(c))
                                                              : strfmt("\\x%02x", c);
    return r + (s.size() > 200 ? "...\"" : "\"");
}

// The ids of the added tokens a checkpoint folder lists (tokenizer_config.json's
// added_tokens_decoder and added_tokens.json), but the unknown token, which ordinary text may give.
inline std::set<int32_t> added_token_ids(const model::Tokenizer& tok, const std::string& dir);

// The ids of the added tokens a checkpoint folder lists (tokenizer_config.json's
// added_tokens_decoder, added_tokens.json), but the unknown token, which ordinary text may give.
inline std::set<int32_t> added_token_ids(const model::Tokenizer& tok, const std::string& dir)
{
    std::set<int32_t> ids;
    auto read = [&](const std::string& name) {
        std::ifstream in(dir + "/" + name);
        return in ? nlohmann::json::parse(in) : nlohmann::json::object();
    };
    const nlohmann::json decoder
        = read("tokenizer_config.json").value("added_tokens_decoder", nlohmann::json::object());
    for (const auto& [id, t] : decoder.items()) ids.insert(std::stoi(id));
    const nlohmann::json added = read("added_tokens.json");
    for (const auto& [text, id] : added.items()) ids.insert(id.get<int32_t>());
    for (auto it = ids.begin(); it != ids.end();)
        it = tok.token_text(*it) == "<unk>" ? ids.erase(it) : std::next(it);
    if (ids.empty()) finding("no added tokens in " + dir);
    return ids;
}

// `expected` gives what decode(encode(t)) must be for valid UTF-8 t, or nullopt where the
// tokenizer documents no round trip for t.
inline void
check_tokenizer(const model::Tokenizer& tok, std::string_view text,
                const std::function<std::optional<std::string>(std::string_view)>& expected,
                const std::set<int32_t>& added_ids)
{
    using model::Tokenizer;
    const std::vector<int32_t> ids = tok.encode(text, false);
    for (int32_t id : ids)
        IRIS_FUZZ_CHECK(id >= 0 && id < tok.size(), "id %d out of range for %s", id,
                        shown(text).c_str());
    (void)tok.encode(text, true);

    const std::string back = tok.decode(ids, false);
    IRIS_FUZZ_CHECK(valid_utf8(back), "decode gave invalid UTF-8 for %s", shown(text).c_str());
    IRIS_FUZZ_CHECK(tok.encode(back, false) == ids,
                    "encode(decode(encode(t))) differs from encode(t) for t = %s (decoded %s)",
                    shown(text).c_str(), shown(back).c_str());
    if (valid_utf8(text))
        if (auto want = expected(text))
            IRIS_FUZZ_CHECK(back == *want, "decode(encode(t)) = %s, expected %s",
                            shown(back).c_str(), shown(*want).c_str());

    // Client text: whatever it holds, none of its ids is an added token's.
    const Tokenizer::TextPart parts[]
        = {{"<|im_start|>user\n", true}, {text, false}, {"<|im_end|>", true}};
    const std::vector<int32_t> prompt = tok.encode(parts, false);
    IRIS_FUZZ_CHECK(prompt.size() >= 2, "the prompt of %s has %zu ids", shown(text).c_str(),
                    prompt.size());
    for (size_t i = 1; i + 1 < prompt.size(); ++i)
        IRIS_FUZZ_CHECK(!added_ids.contains(prompt[i]),
                        "client text %s gave the added token %s (id %d)", shown(text).c_str(),
                        tok.token_text(prompt[i]).c_str(), prompt[i]);

    (void)tok.decode(ids, true);
    (void)tok.decode_hf(ids, false);
    (void)tok.decode_hf(ids, true);
}

} // namespace iris::fuzz
