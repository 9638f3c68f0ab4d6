// Request parsing, errors and the engine queue.
#include "server/internal.h"

#include <chrono>
#include <cmath>

namespace iris::server {

void bad_request(std::string message, std::string param)
{
    throw ApiError {400, std::move(message), "invalid_request_error", std::move(param)};
}

ApiError api_error(const Error& e)
{
    switch (e.kind()) {
    case ErrorKind::invalid_argument:
    case ErrorKind::invalid_input:
    case ErrorKind::unsupported:
        return {400, e.what()};
    case ErrorKind::resource:
        return {413, e.what()};
    case ErrorKind::not_found:
        return {404, e.what()};
    default:
        return {500, e.what(), "server_error"};
    }
}

std::string error_body(const ApiError& e)
{
    json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
    if (!e.param.empty()) err["param"] = e.param;
    return json {{"error", err}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parse_body(std::string_view body, int max_depth)
{
    // Nesting is measured before parsing, so a deep document costs one linear scan and no
    // recursion anywhere.
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < body.size(); ++i) {
        char c = body[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                bad_request(strfmt("the JSON body nests deeper than %d levels", max_depth));
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) bad_request("the body is not valid JSON");
    if (!j.is_object()) bad_request("the body must be a JSON object");
    return j;
}

bool Fields::has(const char* key) const
{
    auto it = obj.find(key);
    return it != obj.end() && !it->is_null();
}

std::optional<std::string> Fields::str(const char* key, size_t max_len) const
{
    if (!has(key)) return std::nullopt;
    const json& v = obj[key];
    if (!v.is_string()) bad_request(where + key + " must be a string", where + key);
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() > max_len)
        bad_request(strfmt("%s%s is longer than %zu bytes", where.c_str(), key, max_len),
                    where + key);
    return s;
}

std::optional<double> Fields::number(const char* key, double lo, double hi) const
{
    if (!has(key)) return std::nullopt;
    const json& v = obj[key];
    if (!v.is_number()) bad_request(where + key + " must be a number", where + key);
    double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi)
        bad_request(strfmt("%s%s must be between %g and %g", where.c_str(), key, lo, hi),
                    where + key);
    return x;
}

std::optional<int64_t> Fields::integer(const char* key, int64_t lo, int64_t hi) const
{
    if (!has(key)) return std::nullopt;
    const json& v = obj[key];
    bool whole = v.is_number_integer()
        || (v.is_number_float() && std::isfinite(v.get<double>())
            && v.get<double>() == std::floor(v.get<double>()));
    if (!whole) bad_request(where + key + " must be an integer", where + key);
    double d = v.get<double>();
    if (d < double(lo) || d > double(hi))
        bad_request(strfmt("%s%s must be between %lld and %lld", where.c_str(), key, (long long)lo,
                           (long long)hi),
                    where + key);
    if (v.is_number_unsigned()) return int64_t(v.get<uint64_t>());
    return v.is_number_integer() ? v.get<int64_t>() : int64_t(d);
}

std::optional<bool> Fields::boolean(const char* key) const
{
    if (!has(key)) return std::nullopt;
    if (!obj[key].is_boolean()) bad_request(where + key + " must be true or false", where + key);
    return obj[key].get<bool>();
}

// ---------------------------------------------------------------------------------------------

std::unique_ptr<EngineQueue::Place> EngineQueue::enter()
{
    std::lock_guard lock(mu_);
    if (stopping_ || int(line_.size()) >= capacity_) return nullptr;
    auto place = std::make_unique<Place>(*this);
    line_.push_back(place.get());
    return place;
}

std::unique_ptr<EngineQueue::Place> enter_queue(const Context& ctx, httplib::Response& res)
{
    std::unique_ptr<EngineQueue::Place> place = ctx.queue.enter();
    if (!place) {
        ctx.metrics.rejected();
        res.set_header("Retry-After", "2");
        throw ApiError {503, "the server is busy: too many requests are waiting; retry shortly",
                        "server_error"};
    }
    return place;
}

bool EngineQueue::Place::wait_turn()
{
    std::unique_lock lock(q_.mu_);
    q_.cv_.wait(lock, [&] {
        if (q_.stopping_) return true;
        const auto at = std::find(q_.line_.begin(), q_.line_.end(), this);
        return at - q_.line_.begin() < q_.running_;
    });
    if (q_.stopping_) return false;
    ++q_.turns_;
    q_.waited_s_ += double(now_us() - entered_us_) / 1e6;
    return true;
}

EngineQueue::Place::~Place()
{
    std::lock_guard lock(q_.mu_);
    std::erase(q_.line_, this);
    q_.cv_.notify_all();
}

int EngineQueue::depth() const
{
    std::lock_guard lock(mu_);
    return int(line_.size());
}

std::pair<int64_t, double> EngineQueue::waited() const
{
    std::lock_guard lock(mu_);
    return {turns_, waited_s_};
}

void EngineQueue::shut_down()
{
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
}

} // namespace iris::server
