#include "perception/perception.h"

#include <algorithm>
#include <chrono>

namespace iris::perception {

namespace {

bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\''
        || static_cast<unsigned char>(c) >= 0x80; // UTF-8 letters stay in words
}

std::string join(const std::vector<std::string>& words, size_t from)
{
    std::string text;
    for (size_t i = from; i < words.size(); ++i) {
        if (i > from) text += ' ';
        text += words[i];
    }
    return text;
}

} // namespace

std::vector<std::string> words_of(std::string_view text)
{
    std::vector<std::string> words;
    std::string word;
    for (const char c : text) {
        if (is_word_char(c)) {
            word += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
        } else if (!word.empty()) {
            words.push_back(std::move(word));
            word.clear();
        }
    }
    if (!word.empty()) words.push_back(std::move(word));
    return words;
}

double word_error_rate(std::string_view reference, std::string_view hypothesis)
{
    const std::vector<std::string> ref = words_of(reference), hyp = words_of(hypothesis);
    if (ref.empty()) return hyp.empty() ? 0.0 : 1.0;
    // Levenshtein distance over words, one row at a time.
    std::vector<size_t> row(hyp.size() + 1), next(hyp.size() + 1);
    for (size_t j = 0; j <= hyp.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= ref.size(); ++i) {
        next[0] = i;
        for (size_t j = 1; j <= hyp.size(); ++j)
            next[j] = std::min(
                {row[j] + 1, next[j - 1] + 1, row[j - 1] + (ref[i - 1] == hyp[j - 1] ? 0 : 1)});
        std::swap(row, next);
    }
    return double(row[hyp.size()]) / double(ref.size());
}

Query typed_query(std::string_view text)
{
    Query query;
    query.text = trim(text);
    if (query.text.empty()) throw Error(ErrorKind::invalid_argument, "the question is empty");
    query.source = QuerySource::typed;
    query.unix_us = wall_us();
    return query;
}

WakeDetector::WakeDetector(WakeOptions options)
    : phrase_(words_of(options.phrase))
    , follow_us_(options.follow_us)
{
    if (phrase_.empty())
        throw Error(ErrorKind::invalid_argument,
                    "the wake phrase '" + options.phrase + "' has no words");
}

std::optional<Query> WakeDetector::feed(const Transcript& transcript)
{
    const std::vector<std::string> words = words_of(transcript.text);
    if (words.empty()) return std::nullopt;
    auto spoken = [&](size_t from) {
        Query query;
        query.text = join(words, from);
        query.source = QuerySource::spoken;
        query.unix_us = transcript.origin_unix_us + transcript.end_us;
        return query;
    };
    for (size_t i = 0; i + phrase_.size() <= words.size(); ++i) {
        if (!std::equal(phrase_.begin(), phrase_.end(), words.begin() + i)) continue;
        const size_t after = i + phrase_.size();
        if (after < words.size()) {
            armed_until_us_.reset();
            return spoken(after);
        }
        armed_until_us_ = transcript.end_us + follow_us_; // "hey iris" ... pause ... question
        return std::nullopt;
    }
    if (armed_until_us_ && transcript.start_us <= *armed_until_us_) {
        armed_until_us_.reset();
        return spoken(0);
    }
    armed_until_us_.reset();
    return std::nullopt;
}

} // namespace iris::perception
