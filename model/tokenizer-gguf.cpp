// Tokenizer::from_gguf: the tokenizer a llama.cpp GGUF language model carries in its
// tokenizer.ggml.* metadata, rebuilt as the Hugging Face tokenizer it was converted from (the
// reverse of gguf-export.cpp's set_tokenizer, which writes what llama.cpp's converter writes):
//   "gpt2"   Qwen2's byte-level BPE: the normal tokens are vocab.json, tokenizer.ggml.merges is
//            merges.txt.
//   "llama"  SentencePiece (InternLM2): tokens, scores and types become a ModelProto (BPE,
//            identity normaliser) loaded by libsentencepiece.
// Control and user-defined tokens become added tokens (special when control), split out of the
// text first as the Hugging Face tokenizer does.
//
// What GGUF does not carry, so that a checkpoint with it would tokenize differently here:
// - added tokens' lstrip / rstrip (none of InternVL's tokens have them);
// - whether an added token is special: the converter marks gpt2 tokens that look special
//   (<|...|>) as control even when the checkpoint says special=false (Qwen2.5's <|fim_*|>,
//   <|repo_name|>, <|file_sep|>), so is_special() and decode(skip_special) treat them as
//   special; ids are unaffected;
// - user-defined gpt2 tokens containing U+2581, which the converter writes with a space;
// - SentencePiece control pieces that are not added tokens (HF encodes their text as text,
//   here it is the token), and user-defined pieces that are not added tokens, which the
//   converter writes as normal (single characters such as the demo model's "\n" behave the
//   same; longer ones would be built by merges, if at all);
// - the SentencePiece normaliser and trainer settings other than add_dummy_prefix
//   (tokenizer.ggml.add_space_prefix): an identity normaliser, no removal of extra whitespace
//   and whitespace as a prefix are assumed, as llama.cpp does (both models in the repository
//   have them);
// - a SentencePiece piece that is U+1F409 itself: it is read as the "\0" piece the converter
//   writes as U+1F409 (InternLM2's vocabulary has the latter);
// - additional_special_tokens and InternLM2's EOS: the converter ends chat models' turns at
//   <|im_end|>, so eos is <|im_end|> here (it only matters with add_eos_token), and decode_hf()
//   may differ from the checkpoint's.
#include "model/gguf.h"
#include "model/tokenizer-impl.h"

#include <chrono>
#include <cmath>
#include <cstring>

namespace iris::model {

namespace detail {

namespace {

// Limits on what a file may make the tokenizer allocate: far above any real vocabulary
// (Qwen2: 151k tokens, 151k merges), and the SentencePiece proto stays far below protobuf's
// 2 GiB.
constexpr size_t kMaxTokens = size_t(1) << 21;
constexpr size_t kMaxTokenBytes = size_t(1) << 16;
constexpr size_t kMaxVocabBytes = size_t(1) << 28;
constexpr size_t kMaxMerges = size_t(1) << 22;

// The converter writes a "\0" SentencePiece piece as U+1F409 (llama.cpp reads "\0" as empty).
constexpr std::string_view kNulStandIn = "\U0001F409";

// ---------------------------------------------------------------------------------------------
// Protobuf wire format (libsentencepiece takes a serialized ModelProto; its generated classes
// need protobuf's headers, which the build does not have).

void put_varint(std::string& out, uint64_t v)
{
    while (v >= 0x80) {
        out += char(0x80 | (v & 0x7f));
        v >>= 7;
    }
    out += char(v);
}

void put_tag(std::string& out, int field, int wire)
{
    put_varint(out, (uint64_t(field) << 3) | uint64_t(wire));
}

void put_int(std::string& out, int field, int64_t v) // int32 / enum / bool: negatives sign-extend
{
    put_tag(out, field, 0);
    put_varint(out, uint64_t(v));
}

void put_bytes(std::string& out, int field, std::string_view bytes)
{
    put_tag(out, field, 2);
    put_varint(out, bytes.size());
    out.append(bytes);
}

void put_float(std::string& out, int field, float v)
{
    put_tag(out, field, 5);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) out += char((bits >> (8 * i)) & 0xff);
}

// ---------------------------------------------------------------------------------------------

// The validated tokenizer.ggml.* arrays.
struct GgufVocab
{
    std::string origin;
    bool spm = false;
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    std::vector<float> scores; // SentencePiece only
    int32_t n_model = 0; // ids [0, n_model) are the model's own vocabulary
};

Error bad(const GgufVocab& v, const std::string& what)
{
    return Error(ErrorKind::invalid_input, v.origin + ": " + what);
}

// A placeholder for an id without a token ("[PAD<id>]", type unused), which is no token at all.
bool is_placeholder(const GgufVocab& v, size_t id)
{
    return v.types[id] == tk_unused && v.tokens[id] == strfmt("[PAD%zu]", id);
}

GgufVocab read_vocab(const GgufMetadata& md, bool spm)
{
    GgufVocab v;
    v.origin = md.origin();
    v.spm = spm;
    const std::vector<std::string>* tokens = md.opt_string_array("tokenizer.ggml.tokens");
    if (!tokens) throw bad(v, "no tokenizer.ggml.tokens (the vocabulary)");
    const size_t n = tokens->size();
    if (n == 0) throw bad(v, "tokenizer.ggml.tokens is empty");
    if (n > kMaxTokens)
        throw bad(v,
                  strfmt("tokenizer.ggml.tokens has %zu tokens, more than the %zu accepted", n,
                         kMaxTokens));
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        const size_t len = (*tokens)[i].size();
        if (len == 0) throw bad(v, strfmt("tokenizer.ggml.tokens[%zu] is empty", i));
        if (len > kMaxTokenBytes)
            throw bad(v,
                      strfmt("tokenizer.ggml.tokens[%zu] has %zu bytes, more than the %zu "
                             "accepted",
                             i, len, kMaxTokenBytes));
        total += len;
    }
    if (total > kMaxVocabBytes)
        throw bad(v,
                  strfmt("tokenizer.ggml.tokens hold %zu bytes, more than the %zu accepted", total,
                         kMaxVocabBytes));

    const auto types = md.opt_i32_array("tokenizer.ggml.token_type");
    if (!types) throw bad(v, "no tokenizer.ggml.token_type (the kind of each token)");
    if (types->size() != n)
        throw bad(
            v,
            strfmt("tokenizer.ggml.token_type has %zu entries for %zu tokens", types->size(), n));
    for (size_t i = 0; i < n; ++i)
        if ((*types)[i] < tk_normal || (*types)[i] > tk_byte)
            throw bad(v,
                      strfmt("tokenizer.ggml.token_type[%zu] is %d, not a token type (1-6)", i,
                             (*types)[i]));
    v.types = std::move(*types);

    auto scores = md.opt_f32_array("tokenizer.ggml.scores");
    if (spm && !scores) throw bad(v, "no tokenizer.ggml.scores (SentencePiece needs them)");
    if (scores && scores->size() != n)
        throw bad(
            v, strfmt("tokenizer.ggml.scores has %zu entries for %zu tokens", scores->size(), n));
    if (spm) {
        for (size_t i = 0; i < n; ++i)
            if (!std::isfinite((*scores)[i]))
                throw bad(v, strfmt("tokenizer.ggml.scores[%zu] is not finite", i));
        v.scores = std::move(*scores);
    }

    v.tokens = *tokens;
    // llama.cpp's loader aborts on a repeated token string; the id it stands for is ambiguous.
    std::unordered_map<std::string_view, size_t> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; ++i)
        if (auto [it, fresh] = seen.emplace(v.tokens[i], i); !fresh)
            throw bad(v,
                      strfmt("tokenizer.ggml.tokens[%zu] and [%zu] are both '%s'", it->second, i,
                             v.tokens[i].c_str()));

    // The model's vocabulary ends at its last real token; added tokens and [PAD] placeholders
    // follow.
    for (size_t i = n; i-- > 0;) {
        const int32_t t = v.types[i];
        if (t == tk_normal || t == tk_unknown || t == tk_byte
            || (t == tk_unused && !is_placeholder(v, i))) {
            v.n_model = int32_t(i + 1);
            break;
        }
    }
    if (v.n_model == 0)
        throw bad(v, "tokenizer.ggml.token_type has no normal token (no model vocabulary)");
    if (spm)
        for (int32_t i = 0; i < v.n_model; ++i)
            if (v.tokens[size_t(i)] == kNulStandIn) v.tokens[size_t(i)] = std::string(1, '\0');
    return v;
}

// A special-token id of the metadata, checked against the vocabulary.
std::optional<int32_t> special_id(const GgufMetadata& md, const GgufVocab& v, const char* key)
{
    const auto id = md.opt_i64(key);
    if (!id) return std::nullopt;
    if (*id < 0 || *id >= int64_t(v.tokens.size()))
        throw bad(v,
                  strfmt("%s %lld is outside the vocabulary (%zu tokens)", key, (long long)*id,
                         v.tokens.size()));
    return int32_t(*id);
}

struct Specials
{
    std::optional<int32_t> bos, eos, unk, pad;
};

// The settings the Hugging Face files would give: the added tokens and the special tokens.
TokenizerSettings make_settings(const GgufMetadata& md, const GgufVocab& v, const Specials& sp)
{
    TokenizerSettings s;
    s.dir = v.origin;
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        const int32_t t = v.types[i];
        // Unknown too: HF registers the unk_token (InternLM2's <unk>) as a special added token.
        if (t != tk_control && t != tk_user_defined && t != tk_unknown) continue;
        AddedToken a;
        a.id = int32_t(i);
        a.content = v.tokens[i];
        a.special = t != tk_user_defined;
        a.normalized = !a.special;
        s.added.push_back(std::move(a));
    }
    auto attr = [&](std::optional<int32_t> id) {
        if (!id) return SpecialAttr {true, std::nullopt};
        // A special id on an unused token outside the model's pieces still is that id:
        // register it, or init_common would give its text a new id.
        if (v.types[size_t(*id)] == tk_unused && (!v.spm || *id >= v.n_model)) {
            AddedToken a;
            a.id = *id;
            a.content = v.tokens[size_t(*id)];
            a.special = true;
            s.added.push_back(std::move(a));
        }
        return SpecialAttr {true, v.tokens[size_t(*id)]};
    };
    s.bos = attr(sp.bos);
    s.eos = attr(sp.eos);
    s.unk = attr(sp.unk);
    s.pad = attr(sp.pad);
    // Duplicates from attr() (a special id named twice) are dropped by merge_added_tokens.
    std::vector<AddedToken> added = std::move(s.added);
    s.added.clear();
    merge_added_tokens(s, added, v.origin);
    s.add_bos_token = md.opt_bool("tokenizer.ggml.add_bos_token");
    s.add_eos_token = md.opt_bool("tokenizer.ggml.add_eos_token");
    s.clean_up_tokenization_spaces = false;
    return s;
}

std::unique_ptr<Tokenizer> make_bpe(const GgufMetadata& md, const GgufVocab& v, Specials sp)
{
    // The pre-tokenizer regex is Qwen2's; llama.cpp names the others it knows ("llama-bpe",
    // "deepseek-llm", ...), which split text differently.
    if (const auto pre = md.opt_string("tokenizer.ggml.pre"); !pre)
        IRIS_LOG_WARN("%s: no tokenizer.ggml.pre; encoding uses Qwen2's pre-tokenizer",
                      v.origin.c_str());
    else if (*pre != "qwen2")
        throw Error(ErrorKind::unsupported,
                    v.origin + ": tokenizer.ggml.pre '" + *pre
                        + "' is not supported (only \"qwen2\", Qwen2's pre-tokenizer)");
    VocabEntries vocab;
    std::unordered_map<std::string_view, int32_t> ids;
    for (int32_t i = 0; i < v.n_model; ++i) {
        const int32_t t = v.types[size_t(i)];
        if (t != tk_normal && t != tk_byte) continue;
        vocab.emplace_back(v.tokens[size_t(i)], i);
        ids.emplace(v.tokens[size_t(i)], i);
    }

    const std::vector<std::string>* lines = md.opt_string_array("tokenizer.ggml.merges");
    if (!lines) throw bad(v, "no tokenizer.ggml.merges (a gpt2 BPE needs them)");
    if (lines->size() > kMaxMerges)
        throw bad(v,
                  strfmt("tokenizer.ggml.merges has %zu entries, more than the %zu accepted",
                         lines->size(), kMaxMerges));
    MergeEntries merges;
    merges.reserve(lines->size());
    for (size_t i = 0; i < lines->size(); ++i) {
        const std::string& line = (*lines)[i];
        const size_t space = line.find(' ');
        if (space == 0 || space == std::string::npos || space + 1 == line.size()
            || line.find(' ', space + 1) != std::string::npos)
            throw bad(v,
                      strfmt("tokenizer.ggml.merges[%zu] '%s' is not two tokens separated by "
                             "a space",
                             i, line.c_str()));
        std::string a = line.substr(0, space), b = line.substr(space + 1);
        for (const std::string* side : {&a, &b})
            if (!ids.count(*side))
                throw bad(v,
                          strfmt("tokenizer.ggml.merges[%zu] '%s' names '%s', which is not a "
                                 "token of the vocabulary",
                                 i, line.c_str(), side->c_str()));
        merges.emplace_back(std::move(a), std::move(b));
    }

    // Qwen2 has no BOS token: the converter writes config.json's bos_token_id
    // (<|endoftext|>) all the same, which llama.cpp uses only with add_bos_token.
    if (!md.opt_bool("tokenizer.ggml.add_bos_token").value_or(false)) sp.bos.reset();
    return make_bpe_tokenizer(make_settings(md, v, sp), std::move(vocab), merges,
                              v.origin + ": tokenizer.ggml.tokens",
                              v.origin + ": tokenizer.ggml.merges");
}

// SentencePiece's piece types (ModelProto.SentencePiece.Type) have llama.cpp's numbers.
std::unique_ptr<Tokenizer> make_spm(const GgufMetadata& md, const GgufVocab& v, const Specials& sp)
{
    // The unknown piece: the token of that type, unless the converter overwrote it with an
    // added token of the same id (InternLM2's <unk> is special, so control); then
    // tokenizer.ggml.unknown_token_id, else id 0, llama.cpp's default for "llama".
    int32_t unk = -1;
    for (int32_t i = 0; i < v.n_model; ++i) {
        if (v.types[size_t(i)] != tk_unknown) continue;
        if (unk >= 0)
            throw bad(v,
                      strfmt("tokenizer.ggml.token_type: tokens %d and %d are both the "
                             "unknown token",
                             unk, i));
        unk = i;
    }
    if (unk < 0) {
        const int32_t id = sp.unk.value_or(0);
        if (id >= v.n_model || v.types[size_t(id)] != tk_control)
            throw bad(v,
                      "tokenizer.ggml.token_type has no unknown token and "
                      "tokenizer.ggml.unknown_token_id names no control token (SentencePiece "
                      "needs one)");
        unk = id;
    }

    std::string proto;
    bool has_bytes = false;
    for (int32_t i = 0; i < v.n_model; ++i) {
        const int32_t t = i == unk ? tk_unknown : v.types[size_t(i)];
        has_bytes = has_bytes || t == tk_byte;
        std::string piece;
        put_bytes(piece, 1, v.tokens[size_t(i)]);
        put_float(piece, 2, v.scores[size_t(i)]);
        put_int(piece, 3, t);
        put_bytes(proto, 1, piece);
    }

    auto model_piece = [&](std::optional<int32_t> id) { return id && *id < v.n_model ? *id : -1; };
    // Of the trainer settings, encoding reads model_type, byte_fallback and
    // treat_whitespace_as_suffix (false, llama.cpp's prefix); the others (split_digits,
    // allow_whitespace_only_pieces, ...) only shaped the pieces at training time.
    std::string trainer;
    put_int(trainer, 3, 2); // model_type: BPE
    put_int(trainer, 4, v.n_model); // vocab_size
    put_int(trainer, 35, has_bytes); // byte_fallback
    const std::pair<int, std::optional<int32_t>> ids[]
        = {{40, unk}, {41, sp.bos}, {42, sp.eos}, {43, sp.pad}};
    for (const auto& [field, id] : ids) {
        const int32_t m = model_piece(id);
        put_int(trainer, field, m);
        if (m >= 0) put_bytes(trainer, field + 5, v.tokens[size_t(m)]); // unk_piece ... pad_piece
    }
    put_bytes(proto, 2, trainer);

    std::string normalizer;
    put_bytes(normalizer, 1, "identity");
    put_int(normalizer, 3, md.opt_bool("tokenizer.ggml.add_space_prefix").value_or(true));
    put_int(normalizer, 4, 0); // remove_extra_whitespaces
    put_int(normalizer, 5, 1); // escape_whitespaces
    put_bytes(proto, 3, normalizer);

    return make_spm_tokenizer(make_settings(md, v, sp), proto,
                              v.origin + ": tokenizer.ggml.tokens / scores / token_type");
}

} // namespace

} // namespace detail

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufMetadata& md)
{
    using namespace detail;
    const auto t0 = std::chrono::steady_clock::now();
    const auto model = md.opt_string("tokenizer.ggml.model");
    if (!model)
        throw Error(ErrorKind::invalid_input,
                    md.origin() + ": no tokenizer.ggml.model (the file has no tokenizer)");
    if (*model != "gpt2" && *model != "llama")
        throw Error(ErrorKind::unsupported,
                    md.origin() + ": tokenizer.ggml.model '" + *model
                        + "' is not supported (only \"gpt2\", Qwen2's byte-level BPE, and "
                          "\"llama\", SentencePiece)");
    const bool spm = *model == "llama";
    const GgufVocab v = read_vocab(md, spm);
    Specials sp;
    sp.bos = special_id(md, v, "tokenizer.ggml.bos_token_id");
    sp.eos = special_id(md, v, "tokenizer.ggml.eos_token_id");
    sp.unk = special_id(md, v, "tokenizer.ggml.unknown_token_id");
    sp.pad = special_id(md, v, "tokenizer.ggml.padding_token_id");
    std::unique_ptr<Tokenizer> tok = spm ? make_spm(md, v, sp) : make_bpe(md, v, sp);
    const double ms
        = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    IRIS_LOG_INFO("tokenizer: %s, %d ids, from the GGUF metadata of '%s' in %.0f ms",
                  spm ? "SentencePiece" : "byte-level BPE", tok->size(), md.origin().c_str(), ms);
    return tok;
}

} // namespace iris::model
