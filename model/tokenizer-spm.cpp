// InternLM2's SentencePiece tokenizer (docs/tokenizer.md §7) via libsentencepiece, wrapped like the
// official InternLM2Tokenizer: added tokens split out first, each remaining segment encoded on
// its own (so it gets its own dummy prefix when the model has add_dummy_prefix), BOS prepended.
#include "model/tokenizer-impl.h"

#include <sentencepiece_processor.h>

#include <unordered_set>

namespace iris::model::detail {

namespace {

// The model with those user-defined pieces made unused (sentencepiece_model.proto: ModelProto
// field 1 holds the pieces; SentencePiece field 1 is the text, field 3 the type, USER_DEFINED 4,
// UNUSED 5). SentencePiece matches user-defined pieces in any text it is given, so an added
// token's string in client text would still come out as the control id; an unused piece is
// never produced, its text is encoded from smaller pieces. Both types are one-byte varints, so
// the bytes are patched in place. Text holding none of the strings encodes as before.
std::string with_pieces_unused(std::string proto, const std::unordered_set<std::string>& texts,
                               const std::string& what)
{
    proto_fields(proto, 0, proto.size(), what, [&](const ProtoField& piece) {
        if (piece.number != 1 || piece.wire != 2) return;
        std::string_view text;
        size_t type_at = std::string::npos;
        proto_fields(proto, piece.at, piece.end, what, [&](const ProtoField& f) {
            if (f.number == 1 && f.wire == 2) text = std::string_view(proto).substr(f.at, f.value);
            if (f.number == 3 && f.wire == 0 && f.end == f.at + 1) type_at = f.at;
        });
        if (type_at != std::string::npos && proto[type_at] == 4 && texts.count(std::string(text)))
            proto[type_at] = 5;
    });
    return proto;
}

class SpmTokenizer final : public TokenizerBase
{
public:
    // From DIR/tokenizer.model, or from a serialized ModelProto (`origin` names it).
    SpmTokenizer(TokenizerSettings s, const std::string* model_proto, const std::string& origin)
    {
        const std::string path = path_join(s.dir, "tokenizer.model");
        const std::string what = model_proto ? origin : "'" + path + "'";
        const auto status
            = model_proto ? sp_.LoadFromSerializedProto(*model_proto) : sp_.Load(path);
        if (!status.ok())
            throw Error(ErrorKind::invalid_input,
                        what + " is not a valid SentencePiece model: " + status.ToString());
        piece_size_ = sp_.GetPieceSize();
        if (piece_size_ <= 0) throw Error(ErrorKind::invalid_input, what + " has no pieces");

        // InternLM2Tokenizer's defaults; it never cleans up in _decode unless configured, and
        // keeps PreTrainedTokenizer's spaces_between_special_tokens=True.
        TokenizerSettings defaults;
        defaults.bos = {true, "<s>"};
        defaults.eos = {true, "</s>"};
        defaults.unk = {true, "<unk>"};
        defaults.pad = {true, "</s>"};
        const bool clean_up = s.clean_up_tokenization_spaces.value_or(false);
        init_common(std::move(s), defaults, /*default_add_bos=*/true, true, clean_up);
        // Added tokens are split out of template text before SentencePiece sees it; client
        // text keeps their strings as text, which SentencePiece must not turn into the pieces.
        std::unordered_set<std::string> added_texts;
        for (const auto& t : added_.tokens())
            if (model_has_id(t.id) && sp_.IdToPiece(t.id) == t.content)
                added_texts.insert(t.content);
        if (!added_texts.empty()) {
            const auto st = sp_.LoadFromSerializedProto(
                with_pieces_unused(sp_.serialized_model_proto(), added_texts, what));
            if (!st.ok())
                throw Error(ErrorKind::invalid_input,
                            what + " is not a valid SentencePiece model: " + st.ToString());
        }
        // InternLM2Tokenizer.bos_token_id / eos_token_id come from the model itself; a GGUF
        // names them in its metadata.
        if (model_proto) return;
        if (sp_.bos_id() >= 0 && sp_.bos_id() < piece_size_) bos_id_ = sp_.bos_id();
        if (sp_.eos_id() >= 0 && sp_.eos_id() < piece_size_) eos_id_ = sp_.eos_id();
    }

protected:
    std::string normalize(std::string_view text) const override { return std::string(text); }

    void encode_segment(std::string_view segment, std::vector<int32_t>& out) const override
    {
        std::vector<int> ids;
        const auto status = sp_.Encode(segment, &ids);
        if (!status.ok())
            throw Error(ErrorKind::internal, "SentencePiece encode failed: " + status.ToString());
        out.insert(out.end(), ids.begin(), ids.end());
    }

    std::string decode_run(std::span<const int32_t> ids) const override
    {
        std::string text;
        const auto status = sp_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
        if (!status.ok())
            throw Error(ErrorKind::internal, "SentencePiece decode failed: " + status.ToString());
        return text;
    }

    int32_t model_size() const override { return piece_size_; }
    bool model_has_id(int32_t id) const override { return id >= 0 && id < piece_size_; }
    bool model_is_control(int32_t id) const override
    {
        return sp_.IsControl(id) || sp_.IsUnknown(id);
    }
    std::string model_token_text(int32_t id) const override { return sp_.IdToPiece(id); }
    std::optional<int32_t> model_token_id(std::string_view token) const override
    {
        // PieceToId answers unk for unknown strings; only an exact piece counts.
        const int id = sp_.PieceToId(token);
        if (id < 0 || id >= piece_size_ || sp_.IdToPiece(id) != token) return std::nullopt;
        return id;
    }

    // InternLM2Tokenizer.convert_tokens_to_string (InternVL's vendored copy): special tokens
    // are kept verbatim, with a space before each that follows ordinary text (or starts the
    // list); the rest goes through SentencePiece; then the clean-up it always applies. Its
    // "prefix space" step adds a space and drops it again (tokens[0] is never in the id set it
    // checks), so it changes nothing.
    std::string hf_tokens_to_string(const std::vector<std::string>& tokens) const override
    {
        std::string out;
        std::vector<std::string> current;
        bool prev_is_special = false;
        for (const auto& token : tokens) {
            if (hf_is_special_token(token)) {
                if (!prev_is_special) out += ' ';
                out += decode_pieces(current);
                out += token;
                prev_is_special = true;
                current.clear();
            } else {
                current.push_back(token);
                prev_is_special = false;
            }
        }
        out += decode_pieces(current);
        return hf_clean_up_tokenization(std::move(out));
    }

private:
    std::string decode_pieces(const std::vector<std::string>& pieces) const
    {
        if (pieces.empty()) return {};
        std::string text;
        const auto status = sp_.Decode(pieces, &text);
        if (!status.ok())
            throw Error(ErrorKind::internal, "SentencePiece decode failed: " + status.ToString());
        return text;
    }

    sentencepiece::SentencePieceProcessor sp_;
    int32_t piece_size_ = 0;
};

} // namespace

std::unique_ptr<Tokenizer> load_spm_tokenizer(TokenizerSettings settings)
{
    return std::make_unique<SpmTokenizer>(std::move(settings), nullptr, std::string());
}

std::unique_ptr<Tokenizer> make_spm_tokenizer(TokenizerSettings settings,
                                              const std::string& model_proto,
                                              const std::string& origin)
{
    return std::make_unique<SpmTokenizer>(std::move(settings), &model_proto, origin);
}

} // namespace iris::model::detail
