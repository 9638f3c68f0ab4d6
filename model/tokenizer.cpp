// Tokenizer loading and the layer both families share: the checkpoint's added and special
// tokens (docs/tokenizer.md §5, steps 2-4), UTF-8 helpers, and the Hugging Face decode rules.
#include "model/gguf.h"
#include "model/tokenizer-impl.h"

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace iris::model {

namespace detail {

// ---------------------------------------------------------------------------------------------
// UTF-8

size_t utf8_next(const unsigned char* s, size_t n, uint32_t& cp)
{
    const unsigned char c = s[0];
    if (c < 0x80) {
        cp = c;
        return 1;
    }
    // Lead byte -> sequence length and the allowed range of the second byte (Table 3-7).
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        cp = 0xFFFD;
        return 1;
    }
    uint32_t v = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t i = 1; i < len; ++i) {
        const unsigned char b = i < n ? s[i] : 0;
        const bool ok = i < n && (i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF));
        if (!ok) {
            cp = 0xFFFD; // the maximal subpart is the bytes accepted so far
            return i;
        }
        v = (v << 6) | (b & 0x3F);
    }
    cp = v;
    return len;
}

void utf8_append(std::string& out, uint32_t cp)
{
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

bool utf8_valid(std::string_view s)
{
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    size_t i = 0, n = s.size();
    while (i < n) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_next(p + i, n - i, cp);
        if (cp == 0xFFFD && !(len == 3 && p[i] == 0xEF && p[i + 1] == 0xBF && p[i + 2] == 0xBD))
            return false;
        i += len;
    }
    return true;
}

std::string utf8_sanitize(std::string_view s)
{
    std::string out;
    out.reserve(s.size() + 8);
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    size_t i = 0, n = s.size();
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_next(p + i, n - i, cp);
        if (cp == 0xFFFD)
            utf8_append(out, cp); // also a literal U+FFFD: re-encoding gives the same bytes
        else
            out.append(s.data() + i, len);
        i += len;
    }
    return out;
}

std::string utf8_nfc(std::string_view s)
{
    // Every code point below U+0300 is NFC_Quick_Check=Yes, so text made only of those (all
    // bytes < 0xCC) is already in NFC; most prompts take this path.
    const bool trivial
        = std::all_of(s.begin(), s.end(), [](char c) { return (unsigned char)c < 0xCC; });
    if (trivial) return std::string(s);
    utf8proc_uint8_t* out = nullptr;
    utf8proc_ssize_t len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                        utf8proc_ssize_t(s.size()), &out,
                                        utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (len < 0) {
        // Only reachable with input utf8proc rejects although it is valid UTF-8; keep it as is.
        std::free(out);
        return std::string(s);
    }
    std::string result(reinterpret_cast<const char*>(out), size_t(len));
    std::free(out);
    return result;
}

bool is_python_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0
        || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029
        || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// ---------------------------------------------------------------------------------------------
// Files

std::string path_join(const std::string& dir, const std::string& name)
{
    if (dir.empty() || dir.back() == '/') return dir + name;
    return dir + "/" + name;
}

bool file_exists(const std::string& path)
{
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::io, "cannot read '" + path + "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(ErrorKind::io, "error while reading '" + path + "'");
    return ss.str();
}

void proto_fields(std::string_view bytes, size_t begin, size_t end, const std::string& what,
                  const std::function<void(const ProtoField&)>& on_field)
{
    auto fail = [&] {
        return Error(ErrorKind::invalid_input, what + " is not a valid protobuf message");
    };
    auto varint = [&](size_t& i) {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (i >= end) throw fail();
            const auto b = uint8_t(bytes[i++]);
            v |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        throw fail();
    };
    for (size_t i = begin; i < end;) {
        const uint64_t key = varint(i);
        ProtoField f {int(key >> 3), int(key & 7), 0, i, i};
        if (f.wire == 0) {
            f.value = varint(i);
        } else if (f.wire == 1 || f.wire == 5) {
            f.value = f.wire == 1 ? 8 : 4;
            if (f.value > end - i) throw fail();
            i += f.value;
        } else if (f.wire == 2) {
            f.value = varint(i);
            if (f.value > end - i) throw fail();
            f.at = i;
            i += size_t(f.value);
        } else {
            throw fail();
        }
        f.end = i;
        on_field(f);
    }
}

namespace {

using nlohmann::json;

json parse_json_file(const std::string& path)
{
    std::string text = read_file(path);
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw Error(ErrorKind::invalid_input, "'" + path + "' is not valid JSON: " + e.what());
    }
}

bool get_bool(const json& obj, const char* key, bool fallback, const std::string& origin)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean())
        throw Error(ErrorKind::invalid_input, origin + ": '" + key + "' must be true or false");
    return it->get<bool>();
}

// A token written as "text" or as {"content": "text", ...}.
std::string token_string(const json& v, const std::string& origin)
{
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object()) {
        auto it = v.find("content");
        if (it != v.end() && it->is_string()) return it->get<std::string>();
    }
    throw Error(ErrorKind::invalid_input,
                origin + " must be a string or an object with a string 'content'");
}

SpecialAttr read_special_attr(const json& cfg, const char* key, const std::string& origin)
{
    SpecialAttr attr;
    auto it = cfg.find(key);
    if (it == cfg.end()) return attr;
    attr.present = true;
    if (!it->is_null()) attr.value = token_string(*it, origin + ": '" + key + "'");
    return attr;
}

AddedToken parse_added_token(const json& v, int32_t id, const std::string& origin)
{
    if (!v.is_object()) throw Error(ErrorKind::invalid_input, origin + " must be an object");
    AddedToken t;
    t.id = id;
    auto c = v.find("content");
    if (c == v.end() || !c->is_string())
        throw Error(ErrorKind::invalid_input, origin + " has no string 'content'");
    t.content = c->get<std::string>();
    t.special = get_bool(v, "special", false, origin);
    t.lstrip = get_bool(v, "lstrip", false, origin);
    t.rstrip = get_bool(v, "rstrip", false, origin);
    t.single_word = get_bool(v, "single_word", false, origin);
    t.normalized = get_bool(v, "normalized", !t.special, origin);
    return t;
}

constexpr int64_t kMaxTokenId = int64_t(1) << 26; // far above any real vocabulary

int32_t checked_id(int64_t id, const std::string& origin)
{
    if (id < 0 || id >= kMaxTokenId)
        throw Error(ErrorKind::invalid_input,
                    strfmt("%s: token id %lld is out of range", origin.c_str(), (long long)id));
    return int32_t(id);
}

} // namespace

std::vector<AddedToken> parse_added_tokens_array(const nlohmann::json& arr,
                                                 const std::string& origin)
{
    std::vector<AddedToken> out;
    if (arr.is_null()) return out;
    if (!arr.is_array())
        throw Error(ErrorKind::invalid_input, origin + ": 'added_tokens' must be an array");
    for (size_t i = 0; i < arr.size(); ++i) {
        const std::string where = strfmt("%s: added_tokens[%zu]", origin.c_str(), i);
        const json& v = arr[i];
        if (!v.is_object()) throw Error(ErrorKind::invalid_input, where + " must be an object");
        auto id = v.find("id");
        if (id == v.end() || !id->is_number_integer())
            throw Error(ErrorKind::invalid_input, where + " has no integer 'id'");
        out.push_back(parse_added_token(v, checked_id(id->get<int64_t>(), where), where));
    }
    return out;
}

void merge_added_tokens(TokenizerSettings& settings, const std::vector<AddedToken>& tokens,
                        const std::string& origin)
{
    for (const AddedToken& t : tokens) {
        if (t.content.empty()) continue; // the slow tokenizer ignores empty tokens
        bool same = false;
        for (const AddedToken& have : settings.added) {
            if (have.id == t.id && have.content == t.content) {
                same = true;
                break;
            }
            if (have.id == t.id)
                throw Error(ErrorKind::invalid_input,
                            strfmt("%s: added token id %d is '%s' here but '%s' elsewhere",
                                   origin.c_str(), t.id, t.content.c_str(), have.content.c_str()));
            if (have.content == t.content)
                throw Error(ErrorKind::invalid_input,
                            strfmt("%s: added token '%s' has id %d here but %d elsewhere",
                                   origin.c_str(), t.content.c_str(), t.id, have.id));
        }
        if (!same) settings.added.push_back(t);
    }
}

// ---------------------------------------------------------------------------------------------
// Added tokens

void AddedTokenSet::build(std::vector<AddedToken> tokens)
{
    tokens_ = std::move(tokens);
    std::sort(tokens_.begin(), tokens_.end(),
              [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
    by_id_.clear();
    by_content_.clear();
    by_first_byte_.assign(256, {});
    for (size_t i = 0; i < tokens_.size(); ++i) {
        by_id_[tokens_[i].id] = i;
        by_content_[tokens_[i].content] = i;
        by_first_byte_[(unsigned char)tokens_[i].content[0]].push_back(i);
    }
    for (auto& list : by_first_byte_)
        std::sort(list.begin(), list.end(), [&](size_t a, size_t b) {
            return tokens_[a].content.size() > tokens_[b].content.size();
        });
}

const AddedToken* AddedTokenSet::find_id(int32_t id) const
{
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokenSet::find_content(std::string_view content) const
{
    auto it = by_content_.find(content);
    return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

namespace {

// Python's str.lstrip() / str.rstrip() on valid UTF-8.
std::string_view py_lstrip(std::string_view s)
{
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    size_t i = 0;
    while (i < s.size()) {
        uint32_t cp;
        size_t len = utf8_next(p + i, s.size() - i, cp);
        if (!is_python_space(cp)) break;
        i += len;
    }
    return s.substr(i);
}

std::string_view py_rstrip(std::string_view s)
{
    size_t end = s.size();
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80) --start;
        uint32_t cp;
        utf8_next(reinterpret_cast<const unsigned char*>(s.data()) + start, end - start, cp);
        if (!is_python_space(cp)) break;
        end = start;
    }
    return s.substr(0, end);
}

} // namespace

std::vector<AddedTokenSet::Piece> AddedTokenSet::split(std::string_view text) const
{
    std::vector<Piece> pieces;
    if (tokens_.empty()) {
        if (!text.empty()) pieces.push_back({text, -1});
        return pieces;
    }
    size_t seg_start = 0, i = 0;
    const size_t n = text.size();
    while (i < n) {
        const auto& candidates = by_first_byte_[(unsigned char)text[i]];
        const AddedToken* hit = nullptr;
        for (size_t k : candidates) {
            const std::string& c = tokens_[k].content;
            if (c.size() <= n - i && text.compare(i, c.size(), c) == 0) {
                hit = &tokens_[k];
                break;
            }
        }
        if (!hit) {
            ++i;
            continue;
        }
        if (i > seg_start) pieces.push_back({text.substr(seg_start, i - seg_start), -1});
        pieces.push_back({text.substr(i, hit->content.size()), hit->id});
        i += hit->content.size();
        seg_start = i;
    }
    if (seg_start < n) pieces.push_back({text.substr(seg_start), -1});
    return pieces;
}

void AddedTokenSet::strip(std::vector<Piece>& pieces) const
{
    // lstrip / rstrip: the token eats the whitespace next to it (tokenization_utils.tokenize).
    for (size_t k = 0; k < pieces.size(); ++k) {
        if (pieces[k].id < 0) continue;
        const AddedToken* t = find_id(pieces[k].id);
        if (t->rstrip && k + 1 < pieces.size() && pieces[k + 1].id < 0)
            pieces[k + 1].text = py_lstrip(pieces[k + 1].text);
        if (t->lstrip && k > 0 && pieces[k - 1].id < 0)
            pieces[k - 1].text = py_rstrip(pieces[k - 1].text);
    }
    std::erase_if(pieces, [](const Piece& p) { return p.id < 0 && p.text.empty(); });
}

// ---------------------------------------------------------------------------------------------
// TokenizerBase

void TokenizerBase::init_common(TokenizerSettings s, const TokenizerSettings& defaults,
                                bool default_add_bos, bool spaces_between_special_tokens,
                                bool clean_up_in_decode)
{
    dir_ = s.dir;
    auto resolve
        = [](const SpecialAttr& a, const SpecialAttr& d) { return a.present ? a.value : d.value; };
    const std::optional<std::string> bos = resolve(s.bos, defaults.bos);
    const std::optional<std::string> eos = resolve(s.eos, defaults.eos);
    const std::optional<std::string> unk = resolve(s.unk, defaults.unk);
    const std::optional<std::string> pad = resolve(s.pad, defaults.pad);

    // PreTrainedTokenizer.all_special_tokens, in SPECIAL_TOKENS_ATTRIBUTES order.
    std::vector<std::string> specials;
    for (const auto* v : {&bos, &eos, &unk, &pad})
        if (*v && !(*v)->empty()) specials.push_back(**v);
    for (const auto& t : s.additional_special)
        if (!t.empty()) specials.push_back(t);

    // Special tokens that are not added tokens yet become added tokens: at their vocabulary id
    // if the model has the string, else at the next free id (PreTrainedTokenizer.__init__).
    auto current_size = [&] {
        int32_t n = model_size();
        for (const auto& t : s.added) n = std::max(n, t.id + 1);
        return n;
    };
    for (const std::string& t : specials) {
        bool known = false;
        for (const auto& a : s.added) known = known || a.content == t;
        if (known) continue;
        AddedToken a;
        a.content = t;
        a.special = true;
        a.id = model_token_id(t).value_or(current_size());
        merge_added_tokens(s, {a}, "special tokens of '" + s.dir + "'");
    }
    for (const auto& t : s.added)
        if (t.single_word)
            IRIS_LOG_WARN("tokenizer '%s': added token '%s' has single_word=true, which is ignored",
                          s.dir.c_str(), t.content.c_str());
    added_.build(s.added);
    size_ = current_size();

    hf_special_tokens_.clear();
    hf_special_ids_.clear();
    special_ids_.clear();
    for (const std::string& t : specials) {
        hf_special_tokens_.insert(t);
        if (auto id = token_id(t)) {
            hf_special_ids_.insert(*id);
            special_ids_.insert(*id);
        }
    }
    for (const auto& t : added_.tokens())
        if (t.special) special_ids_.insert(t.id);

    // _decode's legacy_added_tokens: added tokens that are not special tokens, plus additional
    // special tokens beyond the model vocabulary; they are decoded as separate pieces.
    hf_legacy_added_.clear();
    for (const auto& t : added_.tokens())
        if (!hf_special_tokens_.count(t.content)) hf_legacy_added_.insert(t.content);
    for (const auto& t : s.additional_special)
        if (auto id = token_id(t); id && *id >= model_size()) hf_legacy_added_.insert(t);

    bos_id_.reset();
    if (bos) bos_id_ = token_id(*bos);
    eos_id_.reset();
    if (eos) eos_id_ = token_id(*eos);
    add_bos_ = s.add_bos_token.value_or(default_add_bos);
    add_eos_ = s.add_eos_token.value_or(false);
    hf_spaces_between_special_ = spaces_between_special_tokens;
    hf_clean_up_ = clean_up_in_decode;
}

std::vector<int32_t> TokenizerBase::encode(std::string_view text, bool add_bos) const
{
    const TextPart part {text, true};
    return encode(std::span<const TextPart>(&part, 1), add_bos);
}

std::vector<int32_t> TokenizerBase::encode(std::span<const TextPart> parts, bool add_bos) const
{
    // Each part sanitized and normalized on its own, then laid end to end in one buffer so the
    // text between added tokens forms one run across part boundaries: the pre-tokenizer and
    // SentencePiece's dummy prefix see what they would see on the concatenated string.
    std::string joined;
    struct Span
    {
        size_t begin, end;
        bool special;
    };
    std::vector<Span> spans;
    spans.reserve(parts.size());
    for (const TextPart& part : parts) {
        std::string sanitized;
        std::string_view text = part.text;
        if (!utf8_valid(text)) {
            sanitized = utf8_sanitize(text);
            text = sanitized;
        }
        const size_t begin = joined.size();
        joined += normalize(text);
        spans.push_back({begin, joined.size(), part.special});
    }
    const std::string_view all = joined;
    std::vector<AddedTokenSet::Piece> pieces;
    // Text right after text (nothing split out between) extends the run.
    auto add_text = [&](size_t begin, size_t end) {
        if (begin == end) return;
        AddedTokenSet::Piece* last = pieces.empty() ? nullptr : &pieces.back();
        if (last && last->id < 0 && last->text.data() + last->text.size() == all.data() + begin)
            last->text = std::string_view(last->text.data(), last->text.size() + (end - begin));
        else
            pieces.push_back({all.substr(begin, end - begin), -1});
    };
    for (const Span& span : spans) {
        if (!span.special) {
            add_text(span.begin, span.end);
            continue;
        }
        const std::string_view text = all.substr(span.begin, span.end - span.begin);
        for (const auto& piece : added_.split(text)) {
            if (piece.id >= 0) {
                pieces.push_back(piece);
            } else {
                const size_t begin = piece.text.data() - all.data();
                add_text(begin, begin + piece.text.size());
            }
        }
    }
    added_.strip(pieces);

    std::vector<int32_t> ids;
    ids.reserve(joined.size() / 3 + 4);
    if (add_bos && add_bos_ && bos_id_) ids.push_back(*bos_id_);
    for (const auto& piece : pieces) {
        if (piece.id >= 0)
            ids.push_back(piece.id);
        else
            encode_segment(piece.text, ids);
    }
    if (add_bos && add_eos_ && eos_id_) ids.push_back(*eos_id_);
    return ids;
}

bool TokenizerBase::is_special(int32_t id) const
{
    if (special_ids_.count(id)) return true;
    return !added_.find_id(id) && model_has_id(id) && model_is_control(id);
}

std::string TokenizerBase::decode(std::span<const int32_t> ids, bool skip_special) const
{
    std::string out;
    std::vector<int32_t> run;
    auto flush = [&] {
        if (!run.empty()) out += decode_run(run);
        run.clear();
    };
    for (int32_t id : ids) {
        if (const AddedToken* t = added_.find_id(id)) {
            flush();
            if (!(skip_special && is_special(id))) out += t->content;
        } else if (!model_has_id(id)) {
            continue; // outside the vocabulary (e.g. an unused embedding row)
        } else if (model_is_control(id)) {
            flush();
            if (!(skip_special && is_special(id))) out += model_token_text(id);
        } else {
            run.push_back(id);
        }
    }
    flush();
    return out;
}

std::string TokenizerBase::hf_clean_up_tokenization(std::string text)
{
    static const std::pair<const char*, const char*> kRules[] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (const auto& [from, to] : kRules) {
        const std::string f = from, t = to;
        std::string out;
        size_t pos = 0;
        for (size_t hit; (hit = text.find(f, pos)) != std::string::npos; pos = hit + f.size())
            out.append(text, pos, hit - pos).append(t);
        out.append(text, pos, std::string::npos);
        text = std::move(out);
    }
    return text;
}

std::string TokenizerBase::decode_hf(std::span<const int32_t> ids, bool skip_special) const
{
    // PreTrainedTokenizer._decode of transformers 4.37.2.
    std::vector<std::string> tokens;
    for (int32_t id : ids) {
        if (skip_special && hf_special_ids_.count(id)) continue;
        if (const AddedToken* t = added_.find_id(id))
            tokens.push_back(t->content);
        else if (model_has_id(id))
            tokens.push_back(model_token_text(id));
    }
    std::vector<std::string> sub_texts;
    std::vector<std::string> current;
    for (auto& token : tokens) {
        if (hf_legacy_added_.count(token)) {
            if (!current.empty()) {
                std::string s = hf_tokens_to_string(current);
                if (!s.empty()) sub_texts.push_back(std::move(s));
                current.clear();
            }
            sub_texts.push_back(std::move(token));
        } else {
            current.push_back(std::move(token));
        }
    }
    if (!current.empty()) sub_texts.push_back(hf_tokens_to_string(current));
    std::string text;
    for (size_t i = 0; i < sub_texts.size(); ++i) {
        if (i && hf_spaces_between_special_) text += ' ';
        text += sub_texts[i];
    }
    return hf_clean_up_ ? hf_clean_up_tokenization(std::move(text)) : text;
}

std::string TokenizerBase::token_text(int32_t id) const
{
    if (const AddedToken* t = added_.find_id(id)) return t->content;
    if (model_has_id(id)) return model_token_text(id);
    return {};
}

std::optional<int32_t> TokenizerBase::token_id(std::string_view token) const
{
    if (const AddedToken* t = added_.find_content(token)) return t->id;
    return model_token_id(token);
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Loading

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& dir)
{
    using detail::path_join;
    using nlohmann::json;
    const auto t0 = std::chrono::steady_clock::now();

    struct stat st;
    const bool is_file = ::stat(dir.c_str(), &st) == 0 && S_ISREG(st.st_mode);
    if (!is_file && (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
        throw Error(ErrorKind::not_found,
                    "tokenizer folder '" + dir + "' does not exist or is not a folder");

    const bool has_spm = detail::file_exists(path_join(dir, "tokenizer.model"));
    const bool has_vocab = detail::file_exists(path_join(dir, "vocab.json"));
    const bool has_merges = detail::file_exists(path_join(dir, "merges.txt"));
    const bool has_tok_json = detail::file_exists(path_join(dir, "tokenizer.json"));
    // llama.cpp's files carry the tokenizer in the language model's metadata.
    auto holds_gguf = [&] {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(dir, ec))
            if (e.path().extension() == ".gguf") return true;
        return false;
    };
    if (is_file || (!has_spm && !has_vocab && !has_merges && !has_tok_json && holds_gguf())) {
        const ModelPaths paths = ModelPaths::resolve(dir);
        return from_gguf(GgufFile::open(paths.gguf).metadata());
    }
    if (!has_spm && !has_tok_json && has_vocab != has_merges)
        throw Error(
            ErrorKind::not_found,
            "tokenizer folder '" + dir + "' has "
                + (has_vocab ? "vocab.json but no merges.txt" : "merges.txt but no vocab.json"));
    if (!has_spm && !has_tok_json && !has_vocab)
        throw Error(ErrorKind::not_found,
                    "no tokenizer in '" + dir
                        + "': expected tokenizer.model (SentencePiece), "
                          "vocab.json + merges.txt, or tokenizer.json");

    detail::TokenizerSettings s;
    s.dir = dir;

    // tokenizer_config.json: added_tokens_decoder and the special-token settings.
    const std::string cfg_path = path_join(dir, "tokenizer_config.json");
    if (detail::file_exists(cfg_path)) {
        json cfg = detail::parse_json_file(cfg_path);
        if (!cfg.is_object())
            throw Error(ErrorKind::invalid_input, "'" + cfg_path + "' is not a JSON object");
        if (auto it = cfg.find("added_tokens_decoder"); it != cfg.end() && !it->is_null()) {
            if (!it->is_object())
                throw Error(ErrorKind::invalid_input,
                            cfg_path + ": 'added_tokens_decoder' must be an object");
            s.has_added_tokens_decoder = true;
            std::vector<detail::AddedToken> tokens;
            for (const auto& [key, value] : it->items()) {
                const std::string where = cfg_path + ": added_tokens_decoder['" + key + "']";
                char* end = nullptr;
                long long id = std::strtoll(key.c_str(), &end, 10);
                if (key.empty() || *end != '\0')
                    throw Error(ErrorKind::invalid_input,
                                where + ": the key must be an integer id");
                tokens.push_back(
                    detail::parse_added_token(value, detail::checked_id(id, where), where));
            }
            detail::merge_added_tokens(s, tokens, cfg_path);
        }
        s.bos = detail::read_special_attr(cfg, "bos_token", cfg_path);
        s.eos = detail::read_special_attr(cfg, "eos_token", cfg_path);
        s.unk = detail::read_special_attr(cfg, "unk_token", cfg_path);
        s.pad = detail::read_special_attr(cfg, "pad_token", cfg_path);
        if (auto it = cfg.find("additional_special_tokens"); it != cfg.end() && !it->is_null()) {
            if (!it->is_array())
                throw Error(ErrorKind::invalid_input,
                            cfg_path + ": 'additional_special_tokens' must be an array");
            for (const auto& v : *it)
                s.additional_special.push_back(
                    detail::token_string(v, cfg_path + ": additional_special_tokens[]"));
        }
        if (cfg.contains("add_bos_token"))
            s.add_bos_token = detail::get_bool(cfg, "add_bos_token", true, cfg_path);
        if (cfg.contains("add_eos_token"))
            s.add_eos_token = detail::get_bool(cfg, "add_eos_token", false, cfg_path);
        if (cfg.contains("clean_up_tokenization_spaces"))
            s.clean_up_tokenization_spaces
                = detail::get_bool(cfg, "clean_up_tokenization_spaces", false, cfg_path);
    }

    // special_tokens_map.json fills in what tokenizer_config.json does not say.
    const std::string map_path = path_join(dir, "special_tokens_map.json");
    if (detail::file_exists(map_path)) {
        json m = detail::parse_json_file(map_path);
        if (!m.is_object())
            throw Error(ErrorKind::invalid_input, "'" + map_path + "' is not a JSON object");
        for (auto [attr, key] : {std::pair {&s.bos, "bos_token"}, std::pair {&s.eos, "eos_token"},
                                 std::pair {&s.unk, "unk_token"}, std::pair {&s.pad, "pad_token"}})
            if (!attr->present) *attr = detail::read_special_attr(m, key, map_path);
        if (auto it = m.find("additional_special_tokens");
            s.additional_special.empty() && it != m.end() && !it->is_null()) {
            if (!it->is_array())
                throw Error(ErrorKind::invalid_input,
                            map_path + ": 'additional_special_tokens' must be an array");
            for (const auto& v : *it)
                s.additional_special.push_back(
                    detail::token_string(v, map_path + ": additional_special_tokens[]"));
        }
    }

    // added_tokens.json: content -> id; special if listed among the special tokens.
    const std::string added_path = path_join(dir, "added_tokens.json");
    if (detail::file_exists(added_path)) {
        json a = detail::parse_json_file(added_path);
        if (!a.is_object())
            throw Error(ErrorKind::invalid_input, "'" + added_path + "' is not a JSON object");
        std::vector<detail::AddedToken> tokens;
        for (const auto& [content, id] : a.items()) {
            const std::string where = added_path + ": '" + content + "'";
            if (!id.is_number_integer())
                throw Error(ErrorKind::invalid_input, where + " must map to an integer id");
            detail::AddedToken t;
            t.id = detail::checked_id(id.get<int64_t>(), where);
            t.content = content;
            for (const auto* attr : {&s.bos, &s.eos, &s.unk, &s.pad})
                t.special = t.special || (attr->value && *attr->value == content);
            for (const auto& x : s.additional_special) t.special = t.special || x == content;
            t.normalized = !t.special;
            tokens.push_back(t);
        }
        detail::merge_added_tokens(s, tokens, added_path);
    }

    // tokenizer.json's added_tokens, when the BPE loader will not read that file itself and the
    // config has no added_tokens_decoder (the slow tokenizer's legacy path).
    const bool bpe_from_json = !has_spm && !(has_vocab && has_merges);
    const std::string tok_json_path = path_join(dir, "tokenizer.json");
    if (has_tok_json && !bpe_from_json && !s.has_added_tokens_decoder) {
        json tj = detail::parse_json_file(tok_json_path);
        if (!tj.is_object())
            throw Error(ErrorKind::invalid_input, "'" + tok_json_path + "' is not a JSON object");
        if (auto it = tj.find("added_tokens"); it != tj.end())
            detail::merge_added_tokens(s, detail::parse_added_tokens_array(*it, tok_json_path),
                                       tok_json_path);
    }

    std::unique_ptr<Tokenizer> tok = has_spm ? detail::load_spm_tokenizer(std::move(s))
                                             : detail::load_bpe_tokenizer(std::move(s));
    const double ms
        = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    IRIS_LOG_INFO("tokenizer: %s, %d ids, loaded from '%s' in %.0f ms",
                  has_spm ? "SentencePiece" : "byte-level BPE", tok->size(), dir.c_str(), ms);
    return tok;
}

} // namespace iris::model
