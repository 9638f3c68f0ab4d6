// GET / and GET /web/{file}: the web app, served from the files built into the binary. Its
// policy lets the page load only its own scripts and styles and talk only to this server, so a
// model's answer rendered in it can neither run code nor reach anywhere else.
#include "server/internal.h"

namespace iris::server {
namespace {

// 'self' covers ws:// and wss:// to the page's own host (CSP level 3), the live WebSocket.
constexpr const char* kPolicy
    = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
      "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
      "frame-ancestors 'none'";

const char* media_type(std::string_view name)
{
    if (name.ends_with(".html")) return "text/html; charset=utf-8";
    if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
    if (name.ends_with(".css")) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

void serve(std::string_view name, httplib::Response& res)
{
    for (size_t i = 0; i < kEmbeddedCount; ++i) {
        if (kEmbedded[i].name != name) continue;
        res.set_header("Content-Security-Policy", kPolicy);
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_header("X-Frame-Options", "DENY");
        res.set_header("Referrer-Policy", "no-referrer");
        res.set_header("Permissions-Policy",
                       "camera=(self), microphone=(self), geolocation=(), payment=()");
        // The files change with the binary: revalidated each time, never served stale.
        res.set_header("Cache-Control", "no-cache");
        res.set_content(std::string(kEmbedded[i].bytes), media_type(name));
        return;
    }
    throw ApiError {404, "no file '" + std::string(name.substr(0, 100)) + "' in the web app"};
}

} // namespace

void web_page(const httplib::Request&, httplib::Response& res, const Context&)
{
    serve("index.html", res);
}

void web_file(const httplib::Request& req, httplib::Response& res, const Context&)
{
    serve(std::string_view(req.matches[1].first, req.matches[1].second), res);
}

} // namespace iris::server
