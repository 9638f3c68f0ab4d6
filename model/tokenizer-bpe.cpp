// Qwen2's byte-level BPE (docs/tokenizer.md §6), as transformers' slow Qwen2Tokenizer does: NFC,
// added tokens split out, the pre-tokenizer regex (implemented by hand over code points), the
// GPT-2 byte->unicode map, and merges by rank. Vocabulary from vocab.json + merges.txt, or from
// tokenizer.json.
#include "model/tokenizer-impl.h"

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <shared_mutex>

namespace iris::model::detail {

namespace {

using nlohmann::json;

// The regex of Qwen2Tokenizer / Qwen2's tokenizer.json Split pre-tokenizer.
constexpr const char* kQwen2Pattern
    = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------------------------
// GPT-2's byte <-> unicode map: printable bytes map to themselves, the other 68 to U+0100...

struct ByteMap
{
    std::string byte_str[256]; // UTF-8 of the character a byte maps to
    int16_t cp_byte[0x144]; // code point -> byte, -1 where none

    ByteMap()
    {
        std::fill(std::begin(cp_byte), std::end(cp_byte), int16_t(-1));
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
            const uint32_t cp = printable ? b : next++;
            utf8_append(byte_str[b], cp);
            cp_byte[cp] = int16_t(b);
        }
    }
};

const ByteMap& byte_map()
{
    static const ByteMap map;
    return map;
}

// Byte-level token string -> the bytes it stands for. Characters outside the map (impossible in a
// byte-level vocabulary) are kept as their UTF-8.
void append_token_bytes(std::string& out, std::string_view token)
{
    const ByteMap& m = byte_map();
    const auto* p = reinterpret_cast<const unsigned char*>(token.data());
    size_t i = 0;
    while (i < token.size()) {
        uint32_t cp;
        size_t len = utf8_next(p + i, token.size() - i, cp);
        if (cp < 0x144 && m.cp_byte[cp] >= 0)
            out += char(m.cp_byte[cp]);
        else
            out.append(token.data() + i, len);
        i += len;
    }
}

// ---------------------------------------------------------------------------------------------
// Character classes of the pre-tokenizer regex.

enum : uint8_t {
    kLetter = 1, // \p{L}
    kNumber = 2, // \p{N}
    kSpace = 4, // \s: Unicode White_Space, as in the `regex` module Qwen2Tokenizer uses
    kCrLf = 8, // \r or \n
};

uint8_t classify(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return kLetter;
        if (cp >= '0' && cp <= '9') return kNumber;
        if (cp == '\r' || cp == '\n') return kSpace | kCrLf;
        if ((cp >= 0x09 && cp <= 0x0D) || cp == ' ') return kSpace;
        return 0;
    }
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028
        || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return kSpace;
    switch (utf8proc_category(utf8proc_int32_t(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return kNumber;
    default:
        return 0;
    }
}

// Simple case folding for the (?i:'s|'t|'re|'ve|'m|'ll|'d) group: ASCII, and U+017F LONG S,
// which folds to 's'.
uint32_t fold(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp == 0x17F) return 's';
    return cp;
}

// Splits text into the matches of kQwen2Pattern (which cover the whole text), calling
// emit(byte_begin, byte_end) for each. Each alternative is tried in order at each position, with
// the backtracking the regex engine would do worked out by hand.
template<class Emit> void pretokenize(std::string_view text, Emit&& emit)
{
    std::vector<uint32_t> cps, offs;
    std::vector<uint8_t> cls;
    cps.reserve(text.size());
    offs.reserve(text.size() + 1);
    cls.reserve(text.size());
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = 0; i < text.size();) {
        uint32_t cp;
        size_t len = utf8_next(p + i, text.size() - i, cp);
        cps.push_back(cp);
        offs.push_back(uint32_t(i));
        cls.push_back(classify(cp));
        i += len;
    }
    offs.push_back(uint32_t(text.size()));
    const size_t n = cps.size();
    auto is = [&](size_t k, uint8_t c) { return k < n && (cls[k] & c); };
    auto other = [&](size_t k) { return k < n && !(cls[k] & (kLetter | kNumber | kSpace)); };

    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (cps[i] == '\'' && i + 1 < n) {
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            const uint32_t a = fold(cps[i + 1]), b = i + 2 < n ? fold(cps[i + 2]) : 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd')
                j = i + 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                j = i + 3;
        }
        if (j == i) {
            if (is(i, kLetter)) {
                // [^\r\n\p{L}\p{N}]?\p{L}+ with the optional part empty
                j = i + 1;
                while (is(j, kLetter)) ++j;
            } else if (!is(i, kCrLf | kNumber) && is(i + 1, kLetter)) {
                // ... with one leading non-letter, non-number, non-newline character
                j = i + 2;
                while (is(j, kLetter)) ++j;
            } else if (is(i, kNumber)) {
                j = i + 1; // \p{N}: one at a time
            } else if (other(i) || (cps[i] == ' ' && other(i + 1))) {
                // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
                j = cps[i] == ' ' ? i + 1 : i;
                while (other(j)) ++j;
                while (is(j, kCrLf)) ++j;
            } else {
                // Whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
                size_t end = i;
                while (is(end, kSpace)) ++end;
                size_t last_nl = n;
                for (size_t k = i; k < end; ++k)
                    if (cls[k] & kCrLf) last_nl = k;
                if (last_nl != n)
                    j = last_nl + 1; // up to the last newline of the run
                else if (end == n || end - i == 1)
                    j = end; // the run ends the text, or a single space before a non-space
                else
                    j = end - 1; // leave the last space for the next word
            }
        }
        emit(offs[i], offs[j]);
        i = j;
    }
}

// ---------------------------------------------------------------------------------------------
// Merge table: (left symbol, right symbol) -> (rank, merged symbol), open addressing.

class MergeTable
{
public:
    struct Slot
    {
        uint64_t key = kEmpty;
        int32_t rank = 0;
        int32_t result = 0;
    };

    void reserve(size_t n)
    {
        size_t cap = 16;
        while (cap < n * 2) cap *= 2;
        slots_.assign(cap, Slot {});
        mask_ = cap - 1;
    }

    // Later duplicates win, like dict(zip(merges, range(len(merges)))).
    void insert_or_assign(int32_t a, int32_t b, int32_t rank, int32_t result)
    {
        const uint64_t key = make_key(a, b);
        for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
            if (slots_[i].key == kEmpty || slots_[i].key == key) {
                slots_[i] = {key, rank, result};
                return;
            }
        }
    }

    const Slot* find(int32_t a, int32_t b) const
    {
        const uint64_t key = make_key(a, b);
        for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
            if (slots_[i].key == key) return &slots_[i];
            if (slots_[i].key == kEmpty) return nullptr;
        }
    }

private:
    static constexpr uint64_t kEmpty = ~uint64_t(0);
    static uint64_t make_key(int32_t a, int32_t b)
    {
        return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
    }
    static uint64_t hash(uint64_t k)
    {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        return k;
    }

    std::vector<Slot> slots_;
    size_t mask_ = 0;
};

// Strings -> dense ids, open addressing over (hash, id) slots; the strings live in one vector
// indexed by id (empty where an id is unused). Several times faster to build and probe than
// std::unordered_map for the 150k-entry vocabulary plus the merges' symbols.
class SymbolTable
{
public:
    void reserve(size_t n)
    {
        strings_.reserve(n);
        rehash(n * 2);
    }
    size_t size() const { return strings_.size(); }
    const std::string& str(int32_t id) const { return strings_[size_t(id)]; }

    int32_t find(std::string_view s) const
    {
        if (slots_.empty()) return -1;
        const uint64_t h = hash(s);
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            const Slot& slot = slots_[i];
            if (slot.id < 0) return -1;
            if (slot.hash == uint32_t(h >> 32) && strings_[size_t(slot.id)] == s) return slot.id;
        }
    }

    // Stores s under `id` (ids may leave gaps; those hold empty strings and are not indexed).
    // The caller checks that s is not present yet.
    void insert(std::string s, int32_t id)
    {
        if (strings_.size() <= size_t(id)) strings_.resize(size_t(id) + 1);
        strings_[size_t(id)] = std::move(s);
        if ((used_ + 1) * 2 > slots_.size()) rehash(std::max<size_t>(64, slots_.size() * 2));
        place(id);
    }

private:
    struct Slot
    {
        uint32_t hash = 0;
        int32_t id = -1;
    };

    static uint64_t hash(std::string_view s)
    {
        uint64_t h = 0xcbf29ce484222325ULL; // FNV-1a, then a final mix for the low bits
        for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ULL;
        return h ^ (h >> 32);
    }

    void place(int32_t id)
    {
        const uint64_t h = hash(strings_[size_t(id)]);
        size_t i = h & mask_;
        while (slots_[i].id >= 0) i = (i + 1) & mask_;
        slots_[i] = {uint32_t(h >> 32), id};
        ++used_;
    }

    void rehash(size_t want)
    {
        size_t cap = 64;
        while (cap < want) cap *= 2;
        std::vector<Slot> old = std::move(slots_);
        slots_.assign(cap, Slot {});
        mask_ = cap - 1;
        used_ = 0;
        for (const Slot& slot : old)
            if (slot.id >= 0) place(slot.id);
    }

    std::vector<std::string> strings_;
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    size_t used_ = 0;
};

struct TransparentHash
{
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view> {}(s); }
};

// ---------------------------------------------------------------------------------------------
// Readers

// SAX handler for vocab.json: one flat object of token -> integer id (no DOM for 150k entries).
struct VocabSax
{
    VocabEntries& out;
    std::string key_;
    int depth = 0;
    std::string error;

    bool fail(const std::string& what)
    {
        if (error.empty()) error = what;
        return false;
    }
    bool not_int() { return fail("the value of '" + key_ + "' is not an integer id"); }
    bool null() { return depth == 1 ? not_int() : fail("expected an object"); }
    bool boolean(bool) { return depth == 1 ? not_int() : fail("expected an object"); }
    bool number_integer(json::number_integer_t v)
    {
        if (depth != 1) return fail("expected an object");
        out.emplace_back(std::move(key_), v);
        return true;
    }
    bool number_unsigned(json::number_unsigned_t v)
    {
        if (v > uint64_t(std::numeric_limits<int64_t>::max()))
            return fail("id of '" + key_ + "' is out of range");
        return number_integer(json::number_integer_t(v));
    }
    bool number_float(json::number_float_t, const std::string&)
    {
        return depth == 1 ? not_int() : fail("expected an object");
    }
    bool string(std::string&) { return depth == 1 ? not_int() : fail("expected an object"); }
    bool binary(json::binary_t&) { return fail("unexpected binary value"); }
    bool start_object(size_t)
    {
        if (depth != 0) return not_int();
        ++depth;
        return true;
    }
    bool key(std::string& k)
    {
        key_ = std::move(k);
        return true;
    }
    bool end_object()
    {
        --depth;
        return true;
    }
    bool start_array(size_t) { return depth == 1 ? not_int() : fail("expected an object"); }
    bool end_array() { return fail("unexpected array"); }
    bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& ex)
    {
        return fail(ex.what());
    }
};

uint32_t hex4(std::string_view s, size_t i, bool& ok)
{
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
        const char c = i + k < s.size() ? s[i + k] : 0;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= uint32_t(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= uint32_t(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= uint32_t(c - 'A' + 10);
        else
            ok = false;
    }
    return v;
}

// Fast path for vocab.json's usual shape, {"token": id, ...}: about five times faster than the
// SAX parser. Gives up (returns false) on anything unusual, and the SAX parser then decides
// and reports the error.
bool parse_flat_vocab(std::string_view t, VocabEntries& out)
{
    if (!utf8_valid(t)) return false;
    size_t i = 0;
    auto ws = [&] {
        while (i < t.size() && (t[i] == ' ' || t[i] == '\n' || t[i] == '\r' || t[i] == '\t')) ++i;
    };
    auto at = [&](char c) { return i < t.size() && t[i] == c; };
    ws();
    if (!at('{')) return false;
    ++i;
    ws();
    if (at('}')) {
        ++i;
        ws();
        return i == t.size();
    }
    std::string key;
    while (true) {
        if (!at('"')) return false;
        ++i;
        key.clear();
        while (true) {
            if (i >= t.size()) return false;
            const char c = t[i];
            if (c == '"') break;
            if ((unsigned char)c < 0x20) return false;
            if (c != '\\') {
                const size_t run = t.find_first_of("\"\\", i);
                if (run == std::string_view::npos) return false;
                key.append(t.data() + i, run - i);
                i = run;
                continue;
            }
            if (i + 1 >= t.size()) return false;
            const char e = t[i + 1];
            i += 2;
            switch (e) {
            case '"':
                key += '"';
                break;
            case '\\':
                key += '\\';
                break;
            case '/':
                key += '/';
                break;
            case 'b':
                key += '\b';
                break;
            case 'f':
                key += '\f';
                break;
            case 'n':
                key += '\n';
                break;
            case 'r':
                key += '\r';
                break;
            case 't':
                key += '\t';
                break;
            case 'u': {
                bool ok = true;
                uint32_t cp = hex4(t, i, ok);
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (i + 6 > t.size() || t[i] != '\\' || t[i + 1] != 'u') return false;
                    const uint32_t lo = hex4(t, i + 2, ok);
                    if (lo < 0xDC00 || lo > 0xDFFF) return false;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return false;
                }
                if (!ok) return false;
                utf8_append(key, cp);
                break;
            }
            default:
                return false;
            }
        }
        ++i; // closing quote
        ws();
        if (!at(':')) return false;
        ++i;
        ws();
        const bool neg = at('-');
        if (neg) ++i;
        const size_t digits = i;
        int64_t v = 0;
        while (i < t.size() && t[i] >= '0' && t[i] <= '9' && i - digits < 12)
            v = v * 10 + (t[i++] - '0');
        if (i == digits || (i - digits > 1 && t[digits] == '0')) return false;
        if (i < t.size()
            && (t[i] == '.' || t[i] == 'e' || t[i] == 'E' || (t[i] >= '0' && t[i] <= '9')))
            return false;
        out.emplace_back(key, neg ? -v : v);
        ws();
        if (at(',')) {
            ++i;
            ws();
            continue;
        }
        if (!at('}')) return false;
        ++i;
        ws();
        return i == t.size();
    }
}

VocabEntries read_vocab_json(const std::string& path)
{
    const std::string text = read_file(path);
    VocabEntries entries;
    entries.reserve(text.size() / 16);
    if (parse_flat_vocab(text, entries)) return entries;
    entries.clear();
    VocabSax sax {entries};
    if (!json::sax_parse(text, &sax) || !sax.error.empty())
        throw Error(ErrorKind::invalid_input,
                    "'" + path + "' is not a valid vocabulary: "
                        + (sax.error.empty() ? "malformed JSON" : sax.error));
    return entries;
}

bool is_strip_space(char c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
}

// merges.txt as Qwen2Tokenizer reads it: lines stripped, a "#version:" first line and empty
// lines skipped, everything else "left right".
MergeEntries read_merges_txt(const std::string& path)
{
    const std::string text = read_file(path);
    MergeEntries merges;
    merges.reserve(text.size() / 10);
    size_t line_no = 0;
    for (size_t pos = 0; pos < text.size(); ++line_no) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string_view line(text.data() + pos, eol - pos);
        pos = eol + 1;
        while (!line.empty() && is_strip_space(line.front())) line.remove_prefix(1);
        while (!line.empty() && is_strip_space(line.back())) line.remove_suffix(1);
        if (line.empty() || (line_no == 0 && line.starts_with("#version:"))) continue;
        std::vector<std::string_view> parts;
        for (size_t i = 0; i < line.size();) {
            if (is_strip_space(line[i])) {
                ++i;
                continue;
            }
            size_t j = i;
            while (j < line.size() && !is_strip_space(line[j])) ++j;
            parts.push_back(line.substr(i, j - i));
            i = j;
        }
        if (parts.size() != 2)
            throw Error(
                ErrorKind::invalid_input,
                strfmt("'%s' line %zu: expected two tokens separated by a space, got '%.*s'",
                       path.c_str(), line_no + 1, int(std::min<size_t>(line.size(), 80)),
                       line.data()));
        merges.emplace_back(std::string(parts[0]), std::string(parts[1]));
    }
    return merges;
}

// Whether a pre_tokenizer (or one of a Sequence's) has the given type; returns that node.
const json* find_pretokenizer(const json& node, const char* type)
{
    if (!node.is_object()) return nullptr;
    if (auto t = node.find("type"); t != node.end() && t->is_string() && *t == type) return &node;
    if (auto seq = node.find("pretokenizers"); seq != node.end() && seq->is_array())
        for (const auto& sub : *seq)
            if (const json* hit = find_pretokenizer(sub, type)) return hit;
    return nullptr;
}

// ---------------------------------------------------------------------------------------------

class BpeTokenizer final : public TokenizerBase
{
public:
    // keep_add_special: honour settings.add_bos_token / add_eos_token (a GGUF's, which
    // llama.cpp follows) instead of adding nothing like Qwen2Tokenizer.
    BpeTokenizer(TokenizerSettings s, VocabEntries vocab, const MergeEntries& merges,
                 bool ignore_merges, const std::string& vocab_origin,
                 const std::string& merges_origin, bool keep_add_special = false)
        : ignore_merges_(ignore_merges)
    {
        if (vocab.empty())
            throw Error(ErrorKind::invalid_input,
                        "'" + vocab_origin + "' has no vocabulary entries");
        int64_t max_id = -1;
        for (const auto& [token, id] : vocab) {
            if (id < 0 || id >= (int64_t(1) << 26))
                throw Error(ErrorKind::invalid_input,
                            strfmt("'%s': id %lld of '%s' is out of range", vocab_origin.c_str(),
                                   (long long)id, token.c_str()));
            max_id = std::max(max_id, id);
        }
        present_.assign(size_t(max_id + 1), 0);
        symbols_.reserve(vocab.size() + merges.size() / 8);
        for (auto& [token, id] : vocab) {
            if (present_[size_t(id)])
                throw Error(ErrorKind::invalid_input,
                            strfmt("'%s': id %lld is used by both '%s' and '%s'",
                                   vocab_origin.c_str(), (long long)id,
                                   symbols_.str(int32_t(id)).c_str(), token.c_str()));
            if (symbols_.find(token) >= 0)
                throw Error(ErrorKind::invalid_input,
                            "'" + vocab_origin + "': token '" + token + "' appears twice");
            present_[size_t(id)] = 1;
            symbols_.insert(std::move(token), int32_t(id));
        }
        vocab_limit_ = int32_t(max_id + 1);

        // Symbols: vocabulary ids, plus ids above the vocabulary for strings that only merges
        // mention (never emitted as such; their bytes are).
        auto symbol = [&](std::string_view str) -> int32_t {
            int32_t id = symbols_.find(str);
            if (id < 0) {
                id = int32_t(std::max<size_t>(symbols_.size(), size_t(vocab_limit_)));
                symbols_.insert(std::string(str), id);
            }
            return id;
        };
        const ByteMap& bm = byte_map();
        for (int b = 0; b < 256; ++b) {
            byte_symbol_[b] = symbol(bm.byte_str[b]);
            byte_id_[b] = byte_symbol_[b] < vocab_limit_ ? byte_symbol_[b] : -1;
        }
        merges_.reserve(merges.size());
        std::string joined;
        for (size_t rank = 0; rank < merges.size(); ++rank) {
            const auto& [a, b] = merges[rank];
            if (a.empty() || b.empty())
                throw Error(
                    ErrorKind::invalid_input,
                    strfmt("'%s': merge %zu has an empty side", merges_origin.c_str(), rank));
            joined.assign(a).append(b);
            const int32_t sa = symbol(a), sb = symbol(b), sab = symbol(joined);
            merges_.insert_or_assign(sa, sb, int32_t(rank), sab);
        }
        n_merges_ = merges.size();

        TokenizerSettings defaults;
        defaults.bos = {true, std::nullopt};
        defaults.eos = {true, "<|endoftext|>"};
        defaults.unk = {true, "<|endoftext|>"};
        defaults.pad = {true, "<|endoftext|>"};
        // Qwen2Tokenizer._decode: spaces_between_special_tokens=False and no clean-up.
        init_common(std::move(s), defaults, /*default_add_bos=*/false, false, false);
        // Qwen2Tokenizer adds no special tokens whatever the config says.
        if (!keep_add_special) add_bos_ = add_eos_ = false;
    }

    size_t n_merges() const { return n_merges_; }

protected:
    std::string normalize(std::string_view text) const override { return utf8_nfc(text); }

    void encode_segment(std::string_view segment, std::vector<int32_t>& out) const override
    {
        pretokenize(segment,
                    [&](uint32_t b, uint32_t e) { encode_word(segment.substr(b, e - b), out); });
    }

    std::string decode_run(std::span<const int32_t> ids) const override
    {
        std::string bytes;
        for (int32_t id : ids) append_token_bytes(bytes, symbols_.str(id));
        return utf8_sanitize(bytes);
    }

    // Above every piece: a GGUF's pieces may skip the ids of its control and unused tokens, and
    // a special token added at model_size() must not take one of theirs.
    int32_t model_size() const override { return vocab_limit_; }
    bool model_has_id(int32_t id) const override
    {
        return id >= 0 && id < vocab_limit_ && present_[size_t(id)];
    }
    bool model_is_control(int32_t) const override { return false; }
    std::string model_token_text(int32_t id) const override { return symbols_.str(id); }
    std::optional<int32_t> model_token_id(std::string_view token) const override
    {
        const int32_t id = symbols_.find(token);
        if (!model_has_id(id)) return std::nullopt;
        return id;
    }

    std::string hf_tokens_to_string(const std::vector<std::string>& tokens) const override
    {
        std::string bytes;
        for (const auto& t : tokens) append_token_bytes(bytes, t);
        return utf8_sanitize(bytes);
    }

private:
    static constexpr size_t kMaxCachedWord = 128; // bytes
    static constexpr size_t kMaxCacheEntries = 1 << 16; // then the cache starts over

    void encode_word(std::string_view word, std::vector<int32_t>& out) const
    {
        if (word.size() == 1) {
            emit_bytes(word, out);
            return;
        }
        const bool cacheable = word.size() <= kMaxCachedWord;
        if (cacheable) {
            std::shared_lock lock(cache_mutex_);
            if (auto it = cache_.find(word); it != cache_.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        const size_t first = out.size();
        bpe(word, out);
        if (cacheable) {
            std::vector<int32_t> ids(out.begin() + std::ptrdiff_t(first), out.end());
            std::unique_lock lock(cache_mutex_);
            if (cache_.size() >= kMaxCacheEntries) cache_.clear();
            cache_.emplace(std::string(word), std::move(ids));
        }
    }

    void emit_bytes(std::string_view bytes, std::vector<int32_t>& out) const
    {
        for (unsigned char c : bytes)
            if (byte_id_[c] >= 0) out.push_back(byte_id_[c]);
        // A vocabulary without that byte cannot encode it; the slow tokenizer would produce
        // None. The byte is dropped.
    }

    // Qwen2Tokenizer.bpe(): repeatedly take the adjacent pair of lowest rank and merge all its
    // non-overlapping occurrences left to right. A heap of (rank, position) does the same in
    // O(n log n): all entries of the lowest rank are taken left to right as one round, and the
    // pairs that round creates wait until it ends.
    void bpe(std::string_view word, std::vector<int32_t>& out) const
    {
        if (ignore_merges_) {
            std::string mapped;
            for (unsigned char c : word) mapped += byte_map().byte_str[c];
            if (auto id = model_token_id(mapped)) {
                out.push_back(*id);
                return;
            }
        }
        struct Entry
        {
            int32_t rank, pos, left, right;
            bool operator>(const Entry& o) const
            {
                return rank != o.rank ? rank > o.rank : pos > o.pos;
            }
        };
        thread_local std::vector<int32_t> sym, next, prev;
        thread_local std::vector<Entry> heap, created;
        const int32_t n = int32_t(word.size());
        sym.resize(size_t(n));
        next.resize(size_t(n));
        prev.resize(size_t(n));
        heap.clear();
        for (int32_t i = 0; i < n; ++i) {
            sym[size_t(i)] = byte_symbol_[(unsigned char)word[size_t(i)]];
            next[size_t(i)] = i + 1 < n ? i + 1 : -1;
            prev[size_t(i)] = i - 1;
        }
        auto consider = [&](int32_t left, std::vector<Entry>& into) {
            const int32_t right = next[size_t(left)];
            if (right < 0) return;
            if (const auto* m = merges_.find(sym[size_t(left)], sym[size_t(right)]))
                into.push_back({m->rank, left, sym[size_t(left)], sym[size_t(right)]});
        };
        for (int32_t i = 0; i + 1 < n; ++i) consider(i, heap);
        std::make_heap(heap.begin(), heap.end(), std::greater<>());
        while (!heap.empty()) {
            const int32_t rank = heap.front().rank;
            created.clear();
            while (!heap.empty() && heap.front().rank == rank) {
                std::pop_heap(heap.begin(), heap.end(), std::greater<>());
                const Entry e = heap.back();
                heap.pop_back();
                const int32_t right = next[size_t(e.pos)];
                if (sym[size_t(e.pos)] != e.left || right < 0 || sym[size_t(right)] != e.right)
                    continue; // stale: one side was merged since
                sym[size_t(e.pos)] = merges_.find(e.left, e.right)->result;
                const int32_t after = next[size_t(right)];
                next[size_t(e.pos)] = after;
                if (after >= 0) prev[size_t(after)] = e.pos;
                sym[size_t(right)] = -1;
                if (prev[size_t(e.pos)] >= 0) consider(prev[size_t(e.pos)], created);
                consider(e.pos, created);
            }
            for (const Entry& c : created) {
                heap.push_back(c);
                std::push_heap(heap.begin(), heap.end(), std::greater<>());
            }
        }
        for (int32_t i = 0; i >= 0; i = next[size_t(i)]) {
            const int32_t s = sym[size_t(i)];
            if (s < vocab_limit_ && present_[size_t(s)]) {
                out.push_back(s);
            } else {
                // A merge result missing from the vocabulary: fall back to its bytes.
                const int32_t end = next[size_t(i)] < 0 ? n : next[size_t(i)];
                emit_bytes(word.substr(size_t(i), size_t(end - i)), out);
            }
        }
        if (sym.capacity() > (1u << 16)) { // a huge word: do not keep its buffers for the thread
            sym = {};
            next = {};
            prev = {};
            heap = {};
            created = {};
        }
    }

    bool ignore_merges_ = false;
    SymbolTable symbols_; // vocabulary ids, then merge-only symbols above vocab_limit_
    std::vector<uint8_t> present_; // [vocab_limit_]: whether the id is a vocabulary entry
    int32_t vocab_limit_ = 0;
    int32_t byte_symbol_[256];
    int32_t byte_id_[256];
    MergeTable merges_;
    size_t n_merges_ = 0;

    mutable std::shared_mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int32_t>, TransparentHash, std::equal_to<>>
        cache_;
};

// A Hugging Face vocabulary numbers its n tokens 0..n-1 (the rows of the model's embedding).
// With a gap, encode could emit ids of size() and above, and a special token missing from the
// vocabulary would be given id size(), which a token may already have. Ids outside 0..n-1 are
// refused here; the constructor refuses an id used twice, so none is missing either.
void check_ids_dense(const VocabEntries& vocab, const std::string& origin)
{
    for (const auto& [token, id] : vocab)
        if (id < 0 || id >= int64_t(vocab.size()))
            throw Error(ErrorKind::invalid_input,
                        strfmt("'%s': id %lld of '%s' is out of range (%zu entries: the ids "
                               "must be 0 to %zu, without gaps)",
                               origin.c_str(), (long long)id, token.c_str(), vocab.size(),
                               vocab.size() - 1));
}

} // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer(TokenizerSettings s)
{
    const std::string vocab_path = path_join(s.dir, "vocab.json");
    const std::string merges_path = path_join(s.dir, "merges.txt");
    if (file_exists(vocab_path) && file_exists(merges_path)) {
        VocabEntries vocab = read_vocab_json(vocab_path);
        check_ids_dense(vocab, vocab_path);
        MergeEntries merges = read_merges_txt(merges_path);
        return std::make_unique<BpeTokenizer>(std::move(s), std::move(vocab), merges, false,
                                              vocab_path, merges_path);
    }

    const std::string path = path_join(s.dir, "tokenizer.json");
    json tj;
    try {
        tj = json::parse(read_file(path));
    } catch (const json::exception& e) {
        throw Error(ErrorKind::invalid_input, "'" + path + "' is not valid JSON: " + e.what());
    }
    if (!tj.is_object())
        throw Error(ErrorKind::invalid_input, "'" + path + "' is not a JSON object");
    auto model = tj.find("model");
    if (model == tj.end() || !model->is_object())
        throw Error(ErrorKind::invalid_input, "'" + path + "' has no 'model' object");
    if (auto type = model->find("type"); type != model->end() && *type != "BPE")
        throw Error(ErrorKind::unsupported,
                    "'" + path + "': model type " + type->dump() + " is not supported (only BPE)");
    const json* pre = tj.contains("pre_tokenizer") ? &tj["pre_tokenizer"] : nullptr;
    if (!pre || !find_pretokenizer(*pre, "ByteLevel"))
        throw Error(ErrorKind::unsupported,
                    "'" + path + "' is not a byte-level BPE (no ByteLevel pre-tokenizer)");
    const json* split = find_pretokenizer(*pre, "Split");
    const json* regex = split && split->contains("pattern") ? &(*split)["pattern"] : nullptr;
    if (!regex || !regex->contains("Regex") || (*regex)["Regex"] != kQwen2Pattern)
        IRIS_LOG_WARN("'%s': the pre-tokenizer is not Qwen2's; encoding uses Qwen2's regex anyway",
                      path.c_str());

    auto vocab_it = model->find("vocab");
    if (vocab_it == model->end() || !vocab_it->is_object())
        throw Error(ErrorKind::invalid_input, "'" + path + "': model.vocab must be an object");
    VocabEntries vocab;
    vocab.reserve(vocab_it->size());
    for (const auto& [token, id] : vocab_it->items()) {
        if (!id.is_number_integer())
            throw Error(ErrorKind::invalid_input,
                        "'" + path + "': model.vocab['" + token + "'] is not an integer id");
        vocab.emplace_back(token, id.get<int64_t>());
    }
    check_ids_dense(vocab, path);
    MergeEntries merges;
    if (auto m = model->find("merges"); m != model->end() && !m->is_null()) {
        if (!m->is_array())
            throw Error(ErrorKind::invalid_input, "'" + path + "': model.merges must be an array");
        merges.reserve(m->size());
        for (size_t i = 0; i < m->size(); ++i) {
            const json& v = (*m)[i];
            if (v.is_string()) {
                const std::string& line = v.get_ref<const std::string&>();
                const size_t sp = line.find(' ');
                if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
                    throw Error(
                        ErrorKind::invalid_input,
                        strfmt(
                            "'%s': model.merges[%zu] '%s' is not two tokens separated by a space",
                            path.c_str(), i, line.c_str()));
                merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
            } else if (v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_string()) {
                merges.emplace_back(v[0].get<std::string>(), v[1].get<std::string>());
            } else {
                throw Error(ErrorKind::invalid_input,
                            strfmt("'%s': model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]",
                                   path.c_str(), i));
            }
        }
    }
    bool ignore_merges = false;
    if (auto im = model->find("ignore_merges"); im != model->end() && im->is_boolean())
        ignore_merges = im->get<bool>();
    if (auto it = tj.find("added_tokens"); it != tj.end())
        merge_added_tokens(s, parse_added_tokens_array(*it, path), path);
    return std::make_unique<BpeTokenizer>(std::move(s), std::move(vocab), merges, ignore_merges,
                                          path, path);
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerSettings settings, VocabEntries vocab,
                                              const MergeEntries& merges,
                                              const std::string& vocab_origin,
                                              const std::string& merges_origin)
{
    return std::make_unique<BpeTokenizer>(std::move(settings), std::move(vocab), merges, false,
                                          vocab_origin, merges_origin, true);
}

} // namespace iris::model::detail
