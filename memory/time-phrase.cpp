// Time phrases in questions ("in the last 10 minutes", "between 15:00 and 16:00") to ranges.
//
// Calendar arithmetic goes through mktime, so days that are 23 or 25 hours long around a
// daylight-saving change come out right. Ranges are inclusive, so a range that ends at a clock
// time stops one microsecond before it.
#include "memory/memory.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <regex>

namespace iris::memory {

namespace {

constexpr int64_t kUsPerS = 1'000'000;

const std::regex& last_re()
{
    static const std::regex re(
        R"(\b(?:in\s+)?(?:the\s+)?(?:last|past)\s+(?:(\d{1,6}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|sixty)\s+)?(sec(?:ond)?s?|min(?:ute)?s?|h(?:ou)?rs?|days?|weeks?)\b)",
        std::regex::icase | std::regex::optimize);
    return re;
}

const std::regex& between_re()
{
    static const std::regex re(
        R"(\b(?:between|from)\s+(\d{1,2})(?::(\d{2}))?\s*([ap]m)?\s+(?:and|to)\s+(\d{1,2})(?::(\d{2}))?\s*([ap]m)?\b)",
        std::regex::icase | std::regex::optimize);
    return re;
}

const std::regex& day_re()
{
    static const std::regex re(R"(\b(today|yesterday)\b)",
                               std::regex::icase | std::regex::optimize);
    return re;
}

std::string lower(std::string s)
{
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

int64_t count_of(const std::string& word)
{
    static const char* names[] = {"one",   "two",   "three", "four", "five",   "six",
                                  "seven", "eight", "nine",  "ten",  "eleven", "twelve"};
    if (word.empty() || word == "a" || word == "an") return 1;
    if (std::isdigit(static_cast<unsigned char>(word[0]))) return std::stoll(word);
    for (int i = 0; i < 12; ++i)
        if (word == names[i]) return i + 1;
    if (word == "fifteen") return 15;
    if (word == "twenty") return 20;
    if (word == "thirty") return 30;
    if (word == "forty") return 40;
    if (word == "fifty") return 50;
    return 60; // "sixty"
}

int64_t unit_us(const std::string& unit)
{
    switch (unit[0]) {
    case 's':
        return kUsPerS;
    case 'm':
        return 60 * kUsPerS;
    case 'h':
        return 3600 * kUsPerS;
    case 'd':
        return 86400 * kUsPerS;
    default:
        return 7 * 86400 * kUsPerS; // weeks
    }
}

// Local midnight `day_offset` days from the day of now_us, plus hour:minute; in microseconds.
int64_t local_time_us(int64_t now_us, int day_offset, int hour, int minute)
{
    time_t now_s = time_t(now_us / kUsPerS);
    std::tm tm {};
    localtime_r(&now_s, &tm);
    tm.tm_mday += day_offset;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = 0;
    tm.tm_isdst = -1; // let mktime decide for that date
    return int64_t(std::mktime(&tm)) * kUsPerS;
}

// 12-hour clock to 24-hour: 12am is 0, 12pm is 12.
int to_24h(int hour, const std::string& ampm)
{
    if (ampm.empty()) return hour;
    return hour % 12 + (ampm == "pm" ? 12 : 0);
}

std::optional<TimeRange> between_range(const std::smatch& m, int64_t now_us)
{
    int h1 = std::stoi(m[1]), h2 = std::stoi(m[4]);
    int m1 = m[2].matched ? std::stoi(m[2]) : 0, m2 = m[5].matched ? std::stoi(m[5]) : 0;
    std::string ap1 = lower(m[3]), ap2 = lower(m[6]);
    if (m1 > 59 || m2 > 59) return std::nullopt;
    if ((!ap1.empty() && (h1 < 1 || h1 > 12)) || (!ap2.empty() && (h2 < 1 || h2 > 12)))
        return std::nullopt;
    // "between 3 and 4pm" means 15:00 to 16:00, but "between 11 and 1pm" 11:00 to 13:00.
    if (ap1.empty() && !ap2.empty() && h1 >= 1 && h1 <= 12
        && to_24h(h1, ap2) * 60 + m1 <= to_24h(h2, ap2) * 60 + m2)
        ap1 = ap2;
    h1 = to_24h(h1, ap1);
    h2 = to_24h(h2, ap2);
    if (h1 > 23 || h2 > 24 || (h2 == 24 && m2 != 0)) return std::nullopt;
    int64_t start = local_time_us(now_us, 0, h1, m1);
    int day_end = h2 * 60 + m2 <= h1 * 60 + m1 ? 1 : 0; // "between 23:00 and 01:00"
    // The past is what memory holds: a range that has not started today is yesterday's.
    int back = start > now_us ? -1 : 0;
    return TimeRange {local_time_us(now_us, back, h1, m1),
                      local_time_us(now_us, back + day_end, h2, m2) - 1};
}

} // namespace

std::optional<TimePhrase> parse_time_phrase(std::string_view text, int64_t now_us)
{
    std::string s(text);
    std::optional<TimeRange> best;
    size_t best_pos = std::string::npos, best_len = 0;
    auto consider = [&](const std::smatch& m, std::optional<TimeRange> range) {
        if (range && size_t(m.position(0)) < best_pos) {
            best = range;
            best_pos = size_t(m.position(0));
            best_len = size_t(m.length(0));
        }
    };
    std::smatch m;
    if (std::regex_search(s, m, last_re())) {
        int64_t span = count_of(lower(m[1])) * unit_us(lower(m[2]));
        consider(m, TimeRange {now_us - span, now_us});
    }
    for (auto it = std::sregex_iterator(s.begin(), s.end(), between_re());
         it != std::sregex_iterator(); ++it) {
        if (auto r = between_range(*it, now_us)) {
            consider(*it, r);
            break;
        }
    }
    if (std::regex_search(s, m, day_re())) {
        bool today = lower(m[1]) == "today";
        int64_t midnight = local_time_us(now_us, 0, 0, 0);
        consider(m,
                 today ? TimeRange {midnight, now_us}
                       : TimeRange {local_time_us(now_us, -1, 0, 0), midnight - 1});
    }
    if (!best) return std::nullopt;

    std::string rest = s.substr(0, best_pos) + " " + s.substr(best_pos + best_len);
    // Collapse the whitespace left behind and trim.
    std::string out;
    for (char c : rest) {
        bool space = std::isspace(static_cast<unsigned char>(c));
        if (space && (out.empty() || out.back() == ' ')) continue;
        out += space ? ' ' : c;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return TimePhrase {*best, std::move(out)};
}

} // namespace iris::memory
