// POST /v1/memory/search and GET /v1/memory/{id}: what the assistant remembers.
#include "assistant/assistant.h"
#include "server/internal.h"

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

json entry_json(const memory::Entry& e)
{
    return {{"id", e.id},
            {"start", double(e.t_start_us) / 1e6},
            {"end", double(e.t_end_us) / 1e6},
            {"start_time", iso_time(e.t_start_us)},
            {"end_time", iso_time(e.t_end_us)},
            {"caption", e.caption},
            {"transcript", e.transcript}};
}

// Seconds since the Unix epoch (as every time in this API) -> microseconds, range-checked.
std::optional<int64_t> time_field(const Fields& f, const char* key)
{
    auto s = f.number(key, 0, 32503680000.0); // up to the year 3000
    if (!s) return std::nullopt;
    return int64_t(*s * 1e6);
}

} // namespace

void memory_search(const httplib::Request& http_req, httplib::Response& res, const Context& ctx)
{
    json body = parse_body(http_req.body, ctx.options.max_json_depth);
    Fields f {body, ""};
    const std::string text = f.str("query", 2000).value_or("");
    if (trim(text).empty()) bad_request("query is missing: give the text to search for", "query");
    assistant::FindOptions o;
    o.k = int(f.integer("k", 1, 100).value_or(5));
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
    res.set_content(json {{"object", "list"}, {"data", data}}.dump(-1, ' ', false,
                                                                   json::error_handler_t::replace),
                    "application/json");
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
    json frames = json::array();
    for (size_t k = 0; k < entry->key_frames.size(); ++k) {
        const auto& kf = entry->key_frames[k];
        frames.push_back(
            {{"time", double(kf.t_us) / 1e6},
             {"url", strfmt("/v1/memory/%lld?frame=%zu", (long long)id, k)},
             {"image_url",
              "data:image/jpeg;base64," + base64_encode({kf.jpeg.data(), kf.jpeg.size()})}});
    }
    j["key_frames"] = frames;
    res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

} // namespace iris::server
