// The synthetic tokenizers of `iris make-random` (tools/synthetic-tokenizer.h): a BPE trained on a
// small built-in corpus, written in the real Qwen2 and InternLM2 file layouts.
#include "tools/synthetic-tokenizer.h"

#include "core/core.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace iris::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// =============================================================================================
// Files

void write_file(const fs::path& path, std::string_view content)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), std::streamsize(content.size()));
    out.close();
    if (!out) throw Error(ErrorKind::io, "cannot write '" + path.string() + "'");
}

void write_json(const fs::path& path, const json& j)
{
    write_file(path, j.dump(2) + "\n");
}

// A special_tokens_map.json entry, as save_pretrained writes it.
json special_token_json(const char* content)
{
    return json {{"content", content},
                 {"lstrip", false},
                 {"normalized", false},
                 {"rstrip", false},
                 {"single_word", false}};
}

// =============================================================================================
// Synthetic tokenizers
//
// A BPE trained on a small built-in "corpus" (common English words with Zipf frequencies, in
// their " word", "word", " Word" and "Word" forms, punctuation and whitespace runs, and the
// characters of the default Chinese system message), so frequent words are single tokens as in
// the real vocabularies. The rest of the real vocabulary size is filled with further unique
// merges of word-like tokens, which ordinary text seldom reaches.

// Most frequent first.
const char* const kEnglishWords
    = "the of and to a in is it you that he was for on are with as I his they be at one have "
      "this from or had by not word but what some we can out other were all there when up use "
      "your how said an each she which do their time if will way about many then them write "
      "would like so these her long make thing see him two has look more day could go come did "
      "number sound no most people my over know water than call first who may down side been "
      "now find any new work part take get place made live where after back little only round "
      "man year came show every good me give our under name very through just form sentence "
      "great think say help low line differ turn cause much mean before move right boy old too "
      "same tell does set three want air well also play small end put home read hand port large "
      "spell add even land here must big high such follow act why ask men change went light "
      "kind off need house picture try us again animal point mother world near build self earth "
      "father head stand own page should country found answer school grow study still learn "
      "plant cover food sun four between state keep eye never last let thought city tree cross "
      "farm hard start might story saw far sea draw left late run don while press close night "
      "real life few north open seem together next white children begin got walk example ease "
      "paper group always music those both mark often letter until mile river car feet care "
      "second book carry took science eat room friend began idea fish mountain stop once base "
      "hear horse cut sure watch color face wood main enough plain girl usual young ready above "
      "ever red list though feel talk bird soon body dog family direct pose leave song measure "
      "door product black short numeral class wind question happen complete ship area half rock "
      "order fire south problem piece told knew pass since top whole king space heard best hour "
      "better true during hundred five remember step early hold west ground interest reach fast "
      "verb sing listen six table travel less morning ten simple several vowel toward war lay "
      "against pattern slow center love person money serve appear road map rain rule govern "
      "pull cold notice voice unit power town fine certain fly fall lead cry dark machine note "
      "wait plan figure star box noun field rest correct able pound done beauty drive stood "
      "contain front teach week final gave green oh quick develop ocean warm free minute strong "
      "special mind behind clear tail produce fact street inch multiply nothing course stay "
      "wheel full force blue object decide surface deep moon island foot system busy test record "
      "boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape "
      "equate hot miss brought heat snow tire bring yes distant fill east paint language among "
      "image images describe assistant model photo shows bottom background foreground text chart "
      "data value wearing holding standing sitting yellow brown gray orange purple pink please "
      "hello thank thanks sorry information following provide based using used between "
      "different important however because another through without within around including "
      "question answers video frame scene object objects camera screen document page table "
      "tables code function return class value values string number numbers list user system "
      "quickly jumps lazy fox brown";

// Whole pre-tokens (Qwen2's pre-tokenizer keeps a leading space with punctuation and splits
// contractions and single digits), weighted like frequent words.
const char* const kFrequentSymbols[] = {
    ".",   ",",    "?",  "!",   ":",     ";",   "'",   "\"",    " \"", "(",    " (",     ")",  ").",
    "),",  "-",    " -", " –",  "/",     " /",  "*",   " *",    "**",  " **",  "#",      " #", "##",
    "###", "`",    " `", "```", "=",     " =",  "<",   ">",     " <",  "_",    "[",      "]",  " [",
    "{",   "}",    " {", ".\n", ".\n\n", ",\n", ":\n", ":\n\n", "\n",  "\n\n", "\n\n\n", " ",  "  ",
    "   ", "    ", "\t", "'s",  "'t",    "'re", "'ve", "'m",    "'ll", "'d",   " 1",     " 2", "0",
    "1",   "2",    "3",  "4",   "5",     "6",   "7",   "8",     "9",   "%",    "$",      " $", "&",
    " &",  "+",    " +", "|",   " |",    "。",  "，",  "：",    "？",  "！",   "、",     "（", "）",
};

// The default system message of the internvl2_5 template (docs/tokenizer.md §1): its characters
// become single tokens, as in the real vocabularies.
const char* const kChineseText
    = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合"
      "开发的多模态大语言模型。图片中有什么请描述这张的内容一个和了在我们";

std::vector<std::string> split_spaces(std::string_view s)
{
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        size_t j = std::min(s.find(' ', i), s.size());
        if (j > i) out.emplace_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

std::vector<std::string> split_utf8_chars(std::string_view s)
{
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        out.emplace_back(s.substr(i, len));
        i += len;
    }
    return out;
}

// Pre-tokens of the built-in corpus with integer frequencies (integers keep training exact).
std::vector<std::pair<std::string, int64_t>> corpus()
{
    std::vector<std::pair<std::string, int64_t>> words;
    std::unordered_set<std::string> seen;
    auto add = [&](std::string w, int64_t f) {
        if (f > 0 && seen.insert(w).second) words.emplace_back(std::move(w), f);
    };
    int rank = 0;
    for (const auto& w : split_spaces(kEnglishWords)) {
        const int64_t f = 10'000'000 / (rank++ + 10); // Zipf
        std::string cap = w;
        cap[0] = char(std::toupper(static_cast<unsigned char>(cap[0])));
        add(" " + w, f);
        add(w, f / 6);
        add(" " + cap, f / 8);
        add(cap, f / 12);
    }
    for (const char* s : kFrequentSymbols) add(s, 400'000);
    for (const auto& ch : split_utf8_chars(kChineseText))
        if (static_cast<unsigned char>(ch[0]) >= 0x80) add(ch, 60'000);
    return words;
}

// Learns up to max_merges merges over the given words (each a sequence of initial symbols):
// repeatedly the most frequent adjacent pair (ties: the smallest symbol ids) whose concatenation
// is not a symbol yet. Returns the merges in rank order.
std::vector<std::pair<std::string, std::string>>
train_bpe(const std::vector<std::pair<std::vector<std::string>, int64_t>>& corpus_words,
          size_t max_merges)
{
    std::vector<std::string> text;
    std::unordered_map<std::string, int32_t> ids;
    auto intern = [&](const std::string& s) {
        auto [it, fresh] = ids.emplace(s, int32_t(text.size()));
        if (fresh) text.push_back(s);
        return it->second;
    };
    struct Word
    {
        std::vector<int32_t> syms;
        int64_t freq;
    };
    std::vector<Word> words;
    for (const auto& [syms, freq] : corpus_words) {
        Word w {{}, freq};
        for (const auto& s : syms) w.syms.push_back(intern(s));
        words.push_back(std::move(w));
    }
    auto key = [](int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); };
    std::unordered_map<uint64_t, int64_t> counts;
    auto count_word = [&](const Word& w, int64_t sign) {
        for (size_t i = 0; i + 1 < w.syms.size(); ++i) {
            auto& c = counts[key(w.syms[i], w.syms[i + 1])];
            c += sign * w.freq;
        }
    };
    for (const auto& w : words) count_word(w, 1);

    std::vector<std::pair<std::string, std::string>> merges;
    std::unordered_set<uint64_t> banned;
    while (merges.size() < max_merges) {
        uint64_t best = 0;
        int64_t best_count = 0;
        for (const auto& [k, c] : counts)
            if (c > 0 && !banned.count(k) && (c > best_count || (c == best_count && k < best)))
                best = k, best_count = c;
        if (best_count == 0) break;
        const int32_t a = int32_t(best >> 32), b = int32_t(best & 0xFFFFFFFF);
        const std::string merged = text[size_t(a)] + text[size_t(b)];
        if (ids.count(merged)) { // another split of the same string came first
            banned.insert(best);
            continue;
        }
        merges.emplace_back(text[size_t(a)], text[size_t(b)]);
        const int32_t ab = intern(merged);
        for (auto& w : words) {
            bool has = false;
            for (size_t i = 0; i + 1 < w.syms.size() && !has; ++i)
                has = w.syms[i] == a && w.syms[i + 1] == b;
            if (!has) continue;
            count_word(w, -1);
            std::vector<int32_t> out;
            for (size_t i = 0; i < w.syms.size(); ++i) {
                if (i + 1 < w.syms.size() && w.syms[i] == a && w.syms[i + 1] == b) {
                    out.push_back(ab);
                    ++i;
                } else {
                    out.push_back(w.syms[i]);
                }
            }
            w.syms = std::move(out);
            count_word(w, 1);
        }
        counts.erase(best);
    }
    return merges;
}

// Fills `merges` up to `target` with merges of a word-like symbol (from `heads`) and a
// continuation (from `tails`) into a string that is not a symbol yet. Deterministic.
void fill_merges(std::vector<std::pair<std::string, std::string>>& merges,
                 std::unordered_set<std::string>& symbols, const std::vector<std::string>& heads,
                 const std::vector<std::string>& tails, size_t target)
{
    if (heads.empty() || tails.empty()) return;
    uint64_t state = 0x5EED5EED5EEDull;
    size_t misses = 0;
    while (merges.size() < target) {
        const auto& a = heads[splitmix64(state) % heads.size()];
        const auto& b = tails[splitmix64(state) % tails.size()];
        std::string ab = a + b;
        if (!symbols.insert(ab).second) {
            if (++misses > 100 * target)
                throw Error(ErrorKind::internal, "make-random: ran out of merges");
            continue;
        }
        merges.emplace_back(a, b);
    }
}

bool is_ascii_letters(std::string_view s)
{
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalpha(static_cast<unsigned char>(c));
    });
}

// ---------------------------------------------------------------------------------------------
// Qwen2: byte-level BPE (docs/tokenizer.md §6) + 31 added tokens (§2)

struct AddedToken
{
    int32_t id;
    std::string content;
    bool special;
};

json added_token_json(const AddedToken& t)
{
    return {{"content", t.content}, {"lstrip", false},      {"normalized", false},
            {"rstrip", false},      {"single_word", false}, {"special", t.special}};
}

// GPT-2's byte -> unicode map: printable bytes map to themselves, the other 68 in order to
// U+0100, U+0101, ...; `order` lists the bytes in vocabulary order (printable ones first).
void byte_to_unicode(std::string (&map)[256], std::vector<int>& order)
{
    auto utf8 = [](uint32_t cp) {
        std::string s;
        if (cp < 0x80) {
            s += char(cp);
        } else {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        }
        return s;
    };
    bool printable[256] = {};
    for (int b = 0; b < 256; ++b) {
        printable[b] = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable[b]) {
            map[b] = utf8(uint32_t(b));
            order.push_back(b);
        }
    }
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b)
        if (!printable[b]) {
            map[b] = utf8(next++);
            order.push_back(b);
        }
}

} // namespace

void write_qwen2_tokenizer(const fs::path& dir, int32_t vocab_size)
{
    // docs/tokenizer.md §2, in id order from <|endoftext|> = 151643.
    const auto added = split_spaces(
        "<|endoftext|> <|im_start|> <|im_end|> <|object_ref_start|> <|object_ref_end|> "
        "<|box_start|> <|box_end|> <|quad_start|> <|quad_end|> <|vision_start|> <|vision_end|> "
        "<|vision_pad|> <|image_pad|> <|video_pad|> <tool_call> </tool_call> <|fim_prefix|> "
        "<|fim_middle|> <|fim_suffix|> <|fim_pad|> <|repo_name|> <|file_sep|> <img> </img> "
        "<IMG_CONTEXT> <quad> </quad> <ref> </ref> <box> </box>");
    // <tool_call> .. <|file_sep|> (151657-151664) are the only ones not marked special.
    auto is_special = [](int32_t i) { return i < 14 || i > 21; };
    const int32_t n_added = int32_t(added.size());
    const int32_t n_bpe = vocab_size - n_added; // 151643 for the real vocabulary
    if (n_bpe < 256) throw Error(ErrorKind::internal, "make-random: vocabulary too small");

    std::string byte_map[256];
    std::vector<int> order;
    byte_to_unicode(byte_map, order);
    std::vector<std::pair<std::vector<std::string>, int64_t>> words;
    for (const auto& [w, f] : corpus()) {
        std::vector<std::string> syms;
        for (unsigned char c : w) syms.push_back(byte_map[c]);
        words.emplace_back(std::move(syms), f);
    }
    const size_t n_merges = size_t(n_bpe - 256);
    auto merges = train_bpe(words, n_merges);

    std::unordered_set<std::string> symbols;
    for (int b : order) symbols.insert(byte_map[b]);
    std::vector<std::string> heads, tails;
    for (const auto& [a, b] : merges) {
        const std::string ab = a + b;
        symbols.insert(ab);
        // "Ġ" is U+0120, two bytes: a head is Ġ + letters or letters; a tail is letters.
        const bool spaced = ab.rfind("\xC4\xA0", 0) == 0;
        if (is_ascii_letters(spaced ? std::string_view(ab).substr(2) : std::string_view(ab)))
            heads.push_back(ab);
        if (!spaced && is_ascii_letters(ab) && std::islower(static_cast<unsigned char>(ab[0])))
            tails.push_back(ab);
    }
    for (char c = 'a'; c <= 'z'; ++c) tails.emplace_back(1, c);
    fill_merges(merges, symbols, heads, tails, n_merges);

    json vocab = json::object();
    for (size_t i = 0; i < order.size(); ++i) vocab[byte_map[order[i]]] = int32_t(i);
    std::string merges_txt = "#version: 0.2\n";
    for (size_t i = 0; i < merges.size(); ++i) {
        vocab[merges[i].first + merges[i].second] = int32_t(256 + i);
        merges_txt += merges[i].first + " " + merges[i].second + "\n";
    }
    write_file(dir / "vocab.json", vocab.dump(2) + "\n");
    write_file(dir / "merges.txt", merges_txt);

    json decoder = json::object(), added_json = json::object(), extra = json::array();
    for (int32_t i = 0; i < n_added; ++i) {
        const AddedToken t {n_bpe + i, added[i], is_special(i)};
        decoder[std::to_string(t.id)] = added_token_json(t);
        added_json[t.content] = t.id;
        if (t.special && i > 0) extra.push_back(t.content); // all but <|endoftext|> (the pad)
    }
    json config = {
        {"add_prefix_space", false},
        {"added_tokens_decoder", decoder},
        {"additional_special_tokens", extra},
        {"bos_token", nullptr},
        {"clean_up_tokenization_spaces", false},
        {"eos_token", "<|im_end|>"},
        {"errors", "replace"},
        {"model_max_length", 8192},
        {"pad_token", "<|endoftext|>"},
        {"split_special_tokens", false},
        {"tokenizer_class", "Qwen2Tokenizer"},
        {"unk_token", nullptr},
    };
    write_json(dir / "tokenizer_config.json", config);
    write_json(dir / "added_tokens.json", added_json);
    write_json(dir / "special_tokens_map.json",
               {{"additional_special_tokens", extra},
                {"eos_token", special_token_json("<|im_end|>")},
                {"pad_token", special_token_json("<|endoftext|>")}});
}

namespace {

// ---------------------------------------------------------------------------------------------
// InternLM2: SentencePiece BPE tokenizer.model (docs/tokenizer.md §7) + special tokens (§3)

// Protocol-buffer wire format, enough for sentencepiece_model.proto.
struct Proto
{
    std::string bytes;
    void varint(uint64_t v)
    {
        while (v >= 0x80) {
            bytes += char(0x80 | (v & 0x7F));
            v >>= 7;
        }
        bytes += char(v);
    }
    void tag(int field, int wire) { varint(uint64_t(field) << 3 | uint64_t(wire)); }
    void int_field(int field, int64_t v) // int32/enum/bool; negatives as 10-byte varints
    {
        tag(field, 0);
        varint(uint64_t(v));
    }
    void bytes_field(int field, std::string_view s)
    {
        tag(field, 2);
        varint(s.size());
        bytes += s;
    }
    void float_field(int field, float f)
    {
        tag(field, 5);
        uint32_t u;
        std::memcpy(&u, &f, 4);
        for (int i = 0; i < 4; ++i) bytes += char((u >> (8 * i)) & 0xFF);
    }
};

enum PieceType { normal = 1, unknown = 2, control = 3, user_defined = 4, byte_piece = 6 };

} // namespace

void write_internlm2_tokenizer(const fs::path& dir, int32_t vocab_size)
{
    static const char* const relabelled[]
        = {"<|plugin|>",       "<|interpreter|>", "<|action_end|>",
           "<|action_start|>", "<|im_end|>",      "<|im_start|>"};
    static const char* const internvl_added[]
        = {"<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>",
           "<ref>", "</ref>", "<box>",         "</box>"};
    const int32_t n_pieces
        = vocab_size - int32_t(std::size(internvl_added)); // 92544 for the real one
    // The real model ends with 147 USER_DEFINED [UNUSED_TOKEN_0..146]; the last six are relabelled.
    const int32_t n_unused = n_pieces >= 10000 ? 147 : 6;

    // Single characters: printable ASCII, the escaped space, newline, tab and the corpus'
    // characters; everything else falls back to <0xNN> byte pieces.
    const std::string space = "\xE2\x96\x81"; // ▁
    std::vector<std::pair<std::vector<std::string>, int64_t>> words;
    std::vector<std::string> chars;
    std::unordered_set<std::string> char_set;
    auto add_char = [&](const std::string& c) {
        if (char_set.insert(c).second) chars.push_back(c);
    };
    add_char(space);
    add_char("\n");
    add_char("\t");
    for (int c = 33; c < 127; ++c) add_char(std::string(1, char(c)));
    for (const auto& [w, f] : corpus()) {
        std::vector<std::string> syms;
        for (auto& c : split_utf8_chars(w)) {
            if (c == " ") c = space;
            add_char(c);
            syms.push_back(c);
        }
        words.emplace_back(std::move(syms), f);
    }
    const int64_t budget = int64_t(n_pieces) - 3 - 256 - int64_t(chars.size()) - n_unused;
    if (budget < 0) throw Error(ErrorKind::internal, "make-random: vocabulary too small");
    auto merges = train_bpe(words, size_t(budget));
    std::unordered_set<std::string> symbols(char_set.begin(), char_set.end());
    std::vector<std::string> heads, tails;
    for (const auto& [a, b] : merges) {
        const std::string ab = a + b;
        symbols.insert(ab);
        const bool spaced = ab.rfind(space, 0) == 0;
        if (is_ascii_letters(spaced ? std::string_view(ab).substr(space.size())
                                    : std::string_view(ab)))
            heads.push_back(ab);
        if (!spaced && is_ascii_letters(ab) && std::islower(static_cast<unsigned char>(ab[0])))
            tails.push_back(ab);
    }
    for (char c = 'a'; c <= 'z'; ++c) tails.emplace_back(1, c);
    const size_t n_trained = merges.size();
    fill_merges(merges, symbols, heads, tails, size_t(budget));

    // Pieces in id order; scores fall with the id so that SentencePiece's BPE (highest score
    // first) replays the merges in training order.
    Proto model;
    int32_t next_id = 0;
    auto piece = [&](std::string_view text, float score, PieceType type) {
        Proto p;
        p.bytes_field(1, text);
        p.float_field(2, score);
        p.int_field(3, type);
        model.bytes_field(1, p.bytes);
        ++next_id;
    };
    piece("<unk>", 0.f, unknown);
    piece("<s>", 0.f, control);
    piece("</s>", 0.f, control);
    for (int b = 0; b < 256; ++b) piece(strfmt("<0x%02X>", b), 0.f, byte_piece);
    float score = 0.f;
    for (size_t i = 0; i < n_trained; ++i)
        piece(merges[i].first + merges[i].second, score -= 1.f, normal);
    for (const auto& c : chars) piece(c, score -= 1.f, normal);
    for (size_t i = n_trained; i < merges.size(); ++i)
        piece(merges[i].first + merges[i].second, score -= 1.f, normal);
    for (int32_t i = 0; i < n_unused; ++i)
        piece(strfmt("[UNUSED_TOKEN_%d]", 147 - n_unused + i), 0.f, user_defined);
    if (next_id != n_pieces)
        throw Error(ErrorKind::internal,
                    strfmt("make-random: %d pieces, expected %d", next_id, n_pieces));

    Proto trainer;
    trainer.int_field(3, 2); // model_type BPE
    trainer.int_field(4, n_pieces);
    trainer.int_field(35, 1); // byte_fallback
    trainer.int_field(40, 0); // unk_id
    trainer.int_field(41, 1); // bos_id
    trainer.int_field(42, 2); // eos_id
    trainer.int_field(43, -1); // pad_id
    model.bytes_field(2, trainer.bytes);
    Proto normalizer;
    normalizer.bytes_field(1, "identity");
    normalizer.bytes_field(2, "");
    normalizer.int_field(3, 0); // add_dummy_prefix (the default is true)
    normalizer.int_field(4, 0); // remove_extra_whitespaces
    normalizer.int_field(5, 1); // escape_whitespaces
    model.bytes_field(3, normalizer.bytes);
    write_file(dir / "tokenizer.model", model.bytes);

    json decoder = json::object(), added_json = json::object(), extra = json::array();
    const std::pair<int32_t, const char*> specials[] = {{0, "<unk>"}, {1, "<s>"}, {2, "</s>"}};
    for (const auto& [id, text] : specials)
        decoder[std::to_string(id)] = added_token_json({id, text, true});
    for (int32_t i = 0; i < int32_t(std::size(relabelled)); ++i) {
        const int32_t id = n_pieces - int32_t(std::size(relabelled)) + i;
        decoder[std::to_string(id)] = added_token_json({id, relabelled[i], true});
        extra.push_back(relabelled[i]);
    }
    for (int32_t i = 0; i < int32_t(std::size(internvl_added)); ++i) {
        const int32_t id = n_pieces + i;
        decoder[std::to_string(id)] = added_token_json({id, internvl_added[i], true});
        added_json[internvl_added[i]] = id;
        extra.push_back(internvl_added[i]);
    }
    json config = {
        {"add_bos_token", true},
        {"add_eos_token", false},
        {"added_tokens_decoder", decoder},
        {"additional_special_tokens", extra},
        {"auto_map", {{"AutoTokenizer", {"tokenization_internlm2.InternLM2Tokenizer", nullptr}}}},
        {"bos_token", "<s>"},
        {"clean_up_tokenization_spaces", false},
        {"eos_token", "</s>"},
        {"model_max_length", 8192},
        {"pad_token", "</s>"},
        {"tokenizer_class", "InternLM2Tokenizer"},
        {"unk_token", "<unk>"},
    };
    write_json(dir / "tokenizer_config.json", config);
    write_json(dir / "added_tokens.json", added_json);
    write_json(dir / "special_tokens_map.json",
               {{"additional_special_tokens", extra},
                {"bos_token", special_token_json("<s>")},
                {"eos_token", special_token_json("</s>")},
                {"pad_token", special_token_json("</s>")},
                {"unk_token", special_token_json("<unk>")}});
}

} // namespace iris::tools
