// Private to the tokenizer sources: the layer both tokenizer families share (added tokens,
// special-token configuration, the Hugging Face decode rules) and UTF-8 helpers.
#pragma once

#include "model/model.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace iris::model::detail {

// ---------------------------------------------------------------------------------------------
// UTF-8

// Decodes one code point at s[0..n) (n > 0). On an ill-formed sequence returns U+FFFD and the
// length of its maximal subpart (Unicode 15, §3.9 / Python's errors="replace" behaviour).
size_t utf8_next(const unsigned char* s, size_t n, uint32_t& cp);
void utf8_append(std::string& out, uint32_t cp);
bool utf8_valid(std::string_view s);
// Replaces every ill-formed subsequence by U+FFFD.
std::string utf8_sanitize(std::string_view s);
// Unicode NFC of valid UTF-8 (returned unchanged when it is already trivially NFC).
std::string utf8_nfc(std::string_view s);
// Python's str.isspace() (used by the added-token lstrip/rstrip rules).
bool is_python_space(uint32_t cp);

// ---------------------------------------------------------------------------------------------
// The checkpoint's tokenizer files, as the Hugging Face slow tokenizers read them.

struct AddedToken
{
    int32_t id = -1;
    std::string content;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
    bool normalized = false;
};

// A special-token attribute (bos_token, ...): absent from the files, explicitly null, or a string.
struct SpecialAttr
{
    bool present = false;
    std::optional<std::string> value;
};

struct TokenizerSettings
{
    std::string dir;
    std::vector<AddedToken> added; // every source merged, checked for clashes
    bool has_added_tokens_decoder = false;
    SpecialAttr bos, eos, unk, pad;
    std::vector<std::string> additional_special;
    std::optional<bool> add_bos_token;
    std::optional<bool> add_eos_token;
    std::optional<bool> clean_up_tokenization_spaces;
};

std::string path_join(const std::string& dir, const std::string& name);
bool file_exists(const std::string& path);
std::string read_file(const std::string& path); // throws Error naming the file
// The fields of a protobuf message in bytes[begin, end) (the wire format: libsentencepiece does
// not expose its ModelProto without protobuf's headers). `value` is a varint's value or the size
// of a length-delimited payload; [at, end) is where a field's value or payload lies. Throws
// Error(invalid_input) saying that `what` is not a valid protobuf message.
struct ProtoField
{
    int number;
    int wire; // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
    uint64_t value;
    size_t at, end;
};
void proto_fields(std::string_view bytes, size_t begin, size_t end, const std::string& what,
                  const std::function<void(const ProtoField&)>& on_field);
// Merges tokens into settings.added; throws Error(invalid_input) naming `origin` when an id or
// a content is already taken by a different token.
void merge_added_tokens(TokenizerSettings& settings, const std::vector<AddedToken>& tokens,
                        const std::string& origin);
// tokenizer.json's "added_tokens" array.
std::vector<AddedToken> parse_added_tokens_array(const nlohmann::json& arr,
                                                 const std::string& origin);

// ---------------------------------------------------------------------------------------------
// Added tokens: split out of the text before the model tokenizer sees it.

class AddedTokenSet
{
public:
    struct Piece
    {
        std::string_view text; // a text segment (id < 0) or the matched added token
        int32_t id = -1;
    };

    void build(std::vector<AddedToken> tokens);
    const AddedToken* find_id(int32_t id) const;
    const AddedToken* find_content(std::string_view content) const;
    const std::vector<AddedToken>& tokens() const { return tokens_; }
    // Like the slow tokenizer's trie: at each position the earliest match, preferring the
    // longest token starting there. The segments between are kept whole for strip().
    std::vector<Piece> split(std::string_view text) const;
    // lstrip/rstrip: the tokens eat whitespace of the neighbouring segments; empty segments
    // are then dropped.
    void strip(std::vector<Piece>& pieces) const;

private:
    std::vector<AddedToken> tokens_;
    std::unordered_map<int32_t, size_t> by_id_;
    std::unordered_map<std::string_view, size_t> by_content_;
    std::vector<std::vector<size_t>> by_first_byte_; // 256 lists, longest content first
};

// ---------------------------------------------------------------------------------------------
// The shared half of both tokenizers. A family supplies the model hooks.

class TokenizerBase : public Tokenizer
{
public:
    std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
    std::vector<int32_t> encode(std::span<const TextPart> parts, bool add_bos) const override;
    std::string decode(std::span<const int32_t> ids, bool skip_special) const override;
    std::string decode_hf(std::span<const int32_t> ids, bool skip_special) const override;
    std::string token_text(int32_t id) const override;
    std::optional<int32_t> token_id(std::string_view token) const override;
    int32_t size() const override { return size_; }
    std::optional<int32_t> bos_id() const override { return bos_id_; }
    bool adds_bos() const override { return add_bos_ && bos_id_.has_value(); }
    bool is_special(int32_t id) const override;

    // For the GGUF export (llama.cpp lists the vocabulary with each token's kind): the added
    // tokens, and the ids [0, model_vocab_size()) of the model's own vocabulary.
    const std::vector<AddedToken>& added_tokens() const { return added_.tokens(); }
    int32_t model_vocab_size() const { return model_size(); }

protected:
    // Called by the family's constructor once the model is loaded: resolves the special tokens
    // (registering missing ones as added tokens, like PreTrainedTokenizer.__init__) and builds
    // the added-token matcher. `family_defaults` gives the class defaults of bos/eos/unk/pad.
    void init_common(TokenizerSettings settings, const TokenizerSettings& family_defaults,
                     bool default_add_bos, bool spaces_between_special_tokens,
                     bool clean_up_in_decode);

    // --- model hooks ---
    // Normalisation of the whole (valid UTF-8) input before added tokens are split out.
    virtual std::string normalize(std::string_view text) const = 0;
    virtual void encode_segment(std::string_view segment, std::vector<int32_t>& out) const = 0;
    // Decodes a run of model ids (none added, none control) to valid UTF-8.
    virtual std::string decode_run(std::span<const int32_t> ids) const = 0;
    // Ids [0, model_size()) belong to the model vocabulary (HF's vocab_size).
    virtual int32_t model_size() const = 0;
    virtual bool model_has_id(int32_t id) const = 0;
    virtual bool model_is_control(int32_t id) const = 0;
    virtual std::string model_token_text(int32_t id) const = 0;
    virtual std::optional<int32_t> model_token_id(std::string_view token) const = 0;
    // The slow tokenizer's convert_tokens_to_string().
    virtual std::string hf_tokens_to_string(const std::vector<std::string>& tokens) const = 0;

    bool hf_is_special_token(const std::string& token) const
    {
        return hf_special_tokens_.count(token) != 0;
    }
    static std::string hf_clean_up_tokenization(std::string text);

    std::string dir_;
    AddedTokenSet added_;
    // Set by init_common; a family may override them after.
    std::optional<int32_t> bos_id_;
    std::optional<int32_t> eos_id_;
    bool add_bos_ = false;
    bool add_eos_ = false;

private:
    int32_t size_ = 0;
    std::unordered_set<int32_t> special_ids_; // decode(skip_special) drops these
    std::unordered_set<std::string> hf_special_tokens_; // PreTrainedTokenizer.all_special_tokens
    std::unordered_set<int32_t> hf_special_ids_; // ... all_special_ids
    std::unordered_set<std::string> hf_legacy_added_; // _decode's legacy_added_tokens
    bool hf_spaces_between_special_ = false;
    bool hf_clean_up_ = false;
};

// llama.cpp's token kinds (tokenizer.ggml.token_type, gguf-py's TokenType), which the GGUF
// export writes and Tokenizer::from_gguf reads.
enum GgufTokenType : int32_t {
    tk_normal = 1,
    tk_unknown = 2,
    tk_control = 3,
    tk_user_defined = 4,
    tk_unused = 5,
    tk_byte = 6,
};

std::unique_ptr<Tokenizer> load_bpe_tokenizer(TokenizerSettings settings);
std::unique_ptr<Tokenizer> load_spm_tokenizer(TokenizerSettings settings);

// The families built from data already in memory (a GGUF's tokenizer.ggml.* arrays). Both take
// bos/eos/add_bos/add_eos from the settings: the BPE does not drop add_bos_token as
// Qwen2Tokenizer does, the SentencePiece does not take bos/eos from the model's pieces as
// InternLM2Tokenizer does. The origins name the data in messages.
using VocabEntries = std::vector<std::pair<std::string, int64_t>>; // token, id
using MergeEntries = std::vector<std::pair<std::string, std::string>>; // by rank
std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerSettings settings, VocabEntries vocab,
                                              const MergeEntries& merges,
                                              const std::string& vocab_origin,
                                              const std::string& merges_origin);
// `model_proto`: a serialized sentencepiece ModelProto.
std::unique_ptr<Tokenizer> make_spm_tokenizer(TokenizerSettings settings,
                                              const std::string& model_proto,
                                              const std::string& origin);

} // namespace iris::model::detail
