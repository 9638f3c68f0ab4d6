// GET /v1/memory, POST /v1/memory/search and GET /v1/memory/{id}: what the assistant remembers.
#include "assistant/assistant.h"
#include "server/internal.h"

#include <cmath>
#include <cstdlib>
#include <ctime>

namespace iris::server {
namespace {

std::string iso_time(int64_t t_us)
{
    std::time_t t = std::time_t(t_us / 1'000'000);
    std::tm tm {};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return strfmt("%s.%03dZ", buf, int((t_us / 1000) % 1000 + 1000) % 1000);
}

// An entry read with its key frames, which are named by time and URL (the frames themselves are
// GET /v1/memory/{id}?frame=N, so that a list stays small).
json entry_json(const memory::Entry& e)
{
    json j = {{"id", e.id},
              {"start", double(e.t_start_us) / 1e6},
              {"end", double(e.t_end_us) / 1e6},
              {"start_time", iso_time(e.t_start_us)},
              {"end_time", iso_time(e.t_end_us)},
              {"caption", e.caption},
              {"transcript", e.transcript},
              {"key_frames", json::array()}};
    for (size_t k = 0; k < e.key_frames.size(); ++k)
        j["key_frames"].push_back(
            {{"time", double(e.key_frames[k].t_us) / 1e6},
             {"url", strfmt("/v1/memory/%lld?frame=%zu", (long long)e.id, k)}});
    return j;
}

std::string dump_list(const json& data)
{
    return json {{"object", "list"}, {"data", data}}.dump(-1, ' ', false,
                                                          json::error_handler_t::replace);
}

// A query parameter that must be a number in [lo, hi], if given.
std::optional<double> number_param(const httplib::Request& req, const char* name, double lo,
                                   double hi)
{
    if (!req.has_param(name)) return std::nullopt;
    const std::string& v = req.get_param_value(name);
    char* end = nullptr;
    const double x = v.empty() || v.size() > 32 ? NAN : std::strtod(v.c_str(), &end);
    if (std::isnan(x) || end != v.c_str() + v.size() || x < lo || x > hi)
        bad_request(strfmt("%s must be a number from %g to %g", name, lo, hi), name);
    return x;
}

// Seconds since the Unix epoch (as every time in this API) -> microseconds, range-checked.
std::optional<int64_t> time_field(const Fields& f, const char* key)
{
    auto s = f.number(key, 0, 32503680000.0); // up to the year 3000
    if (!s) return std::nullopt;
    return int64_t(*s * 1e6);
}

} // namespace

void memory_list(const httplib::Request& req, httplib::Response& res, const Context& ctx)
{
    memory::ListOptions o;
    o.limit = int64_t(number_param(req, "limit", 1, 100).value_or(20));
    o.offset = int64_t(number_param(req, "offset", 0, 1e15).value_or(0));
    if (auto v = number_param(req, "from", 0, 32503680000.0)) o.t_from_us = int64_t(*v * 1e6);
    if (auto v = number_param(req, "to", 0, 32503680000.0)) o.t_to_us = int64_t(*v * 1e6);
    if (o.t_from_us > o.t_to_us) bad_request("from must not be after to", "from");
    o.with_frames = true;
    json data = json::array();
    for (const auto& e : ctx.store->list(o)) data.push_back(entry_json(e));
    res.set_content(dump_list(data), "application/json");
}

void memory_search(const httplib::Request& http_req, httplib::Response& res, const Context& ctx)
{
    json body = parse_body(http_req.body, ctx.options.max_json_depth);
    Fields f {body, ""};
    const std::string text = f.str("query", 2000).value_or("");
    if (trim(text).empty()) bad_request("query is missing: give the text to search for", "query");
    assistant::FindOptions o;
    o.k = int(f.integer("k", 1, 100).value_or(5));
    o.with_frames = true;
    if (auto v = time_field(f, "from")) o.t_from_us = *v;
    if (auto v = time_field(f, "to")) o.t_to_us = *v;
    if (o.t_from_us > o.t_to_us) bad_request("from must not be after to", "from");
    // A time phrase in the query ("in the last hour") narrows the range further.
    std::vector<memory::Hit> hits = assistant::find_memories(&ctx.engine, *ctx.store, text, o);
    json data = json::array();
    for (const auto& h : hits) {
        json j = entry_json(h.entry);
        j["score"] = h.score;
        j["similarity"] = std::isnan(h.similarity) ? json(nullptr) : json(h.similarity);
        data.push_back(std::move(j));
    }
    res.set_content(dump_list(data), "application/json");
}

void memory_get(const httplib::Request& req, httplib::Response& res, const Context& ctx)
{
    const std::string& s = req.matches[1];
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
        throw ApiError {404, "no memory entry '" + s.substr(0, 40) + "'"};
    int64_t id = std::stoll(s);
    auto entry = ctx.store->get(id, /*with_frames=*/true);
    if (!entry) throw ApiError {404, strfmt("no memory entry %lld", (long long)id)};
    // ?frame=N answers with the key frame itself, for an <img src>.
    if (req.has_param("frame")) {
        const std::string& n = req.get_param_value("frame");
        if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos)
            bad_request("frame must be the number of a key frame, from 0", "frame");
        const size_t k = n.size() <= 3 ? std::stoul(n) : size_t(-1);
        if (k >= entry->key_frames.size())
            throw ApiError {
                404,
                strfmt("entry %lld has %zu key frames", (long long)id, entry->key_frames.size())};
        const Buffer& jpeg = entry->key_frames[k].jpeg;
        res.set_content(std::string(reinterpret_cast<const char*>(jpeg.data()), jpeg.size()),
                        "image/jpeg");
        return;
    }
    json j = entry_json(*entry);
    for (size_t k = 0; k < entry->key_frames.size(); ++k) {
        const Buffer& jpeg = entry->key_frames[k].jpeg;
        j["key_frames"][k]["image_url"]
            = "data:image/jpeg;base64," + base64_encode({jpeg.data(), jpeg.size()});
    }
    res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

} // namespace iris::server
