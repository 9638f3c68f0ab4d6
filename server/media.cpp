// Images named in requests: data: URLs, and (only when allowed) https URLs of public hosts.
#include "server/internal.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netdb.h>

#include <cstring>

namespace iris::server {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix)
{
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

std::vector<uint8_t> decode_data_url(const std::string& url)
{
    size_t comma = url.find(',');
    if (comma == std::string::npos) bad_request("the data: URL has no ',' before its data");
    std::string_view meta(url.data() + 5, comma - 5);
    if (meta.size() < 7 || meta.substr(meta.size() - 7) != ";base64")
        bad_request("only base64 data: URLs are accepted (data:image/png;base64,...)");
    std::string_view type = meta.substr(0, meta.size() - 7);
    if (!type.empty() && type != "image/png" && type != "image/jpeg" && type != "image/jpg"
        && type != "image/webp" && type != "image/bmp")
        bad_request("unsupported media type '" + std::string(type)
                    + "': send PNG, JPEG, WebP or BMP");
    try {
        return base64_decode(std::string_view(url).substr(comma + 1));
    } catch (const Error& e) {
        bad_request(std::string("image data: ") + e.what());
    }
}

std::vector<uint8_t> fetch_https(const std::string& url, const MediaPolicy& policy)
{
    // https://host[:port]/path — no userinfo, no other schemes.
    std::string rest = url.substr(8);
    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
    if (authority.empty() || authority.find('@') != std::string::npos)
        bad_request("the image URL has no host, or carries credentials");
    std::string host = authority;
    int port = 443;
    if (host.front() == '[') {
        size_t close = host.find(']');
        if (close == std::string::npos) bad_request("the image URL's IPv6 host is not closed");
        if (close + 1 < host.size()) {
            if (host[close + 1] != ':') bad_request("the image URL's host is malformed");
            port = std::atoi(host.c_str() + close + 2);
        }
        host = host.substr(1, close - 1);
    } else if (size_t colon = host.rfind(':'); colon != std::string::npos) {
        port = std::atoi(host.c_str() + colon + 1);
        host = host.substr(0, colon);
    }
    if (port <= 0 || port > 65535) bad_request("the image URL's port is out of range");

    // Every address the name resolves to must be public, and the connection goes to the one
    // checked (no second lookup that could answer differently).
    addrinfo hints {};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res)
        bad_request("the image URL's host '" + host + "' cannot be resolved");
    std::string chosen;
    bool refused = false;
    for (addrinfo* a = res; a; a = a->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {};
        const void* src = a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
        if (!inet_ntop(a->ai_family, src, buf, sizeof buf)) continue;
        if (is_private_address(buf)) refused = true;
        if (chosen.empty()) chosen = buf;
    }
    freeaddrinfo(res);
    if (refused || chosen.empty())
        throw ApiError {403, "image URLs may only name public internet addresses",
                        "invalid_request_error", ""};

    httplib::SSLClient client(host, port);
    client.set_hostname_addr_map({{host, chosen}});
    client.enable_server_certificate_verification(true);
    client.set_follow_location(false);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    std::vector<uint8_t> body;
    bool too_big = false;
    auto r = client.Get(path.c_str(), [&](const char* data, size_t n) {
        if (body.size() + n > policy.max_url_bytes) {
            too_big = true;
            return false;
        }
        body.insert(body.end(), data, data + n);
        return true;
    });
    if (too_big)
        throw ApiError {413, strfmt("the image at the URL is over %zu bytes", policy.max_url_bytes),
                        "invalid_request_error", ""};
    if (!r) bad_request("the image URL could not be fetched: " + httplib::to_string(r.error()));
    if (r->status != 200) bad_request(strfmt("the image URL answered HTTP %d", r->status));
    return body;
}

} // namespace

bool is_private_address(const std::string& ip)
{
    in6_addr a6 {};
    in_addr a4 {};
    uint32_t v4 = 0;
    if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) {
        v4 = ntohl(a4.s_addr);
    } else if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) {
        const uint8_t* b = a6.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(b, mapped, 12) == 0) {
            v4 = uint32_t(b[12]) << 24 | uint32_t(b[13]) << 16 | uint32_t(b[14]) << 8 | b[15];
        } else {
            // Public unicast is 2000::/3, minus documentation (2001:db8::/32), the NAT64,
            // 6to4 and Teredo forms that can hide any IPv4 address.
            if ((b[0] & 0xe0) != 0x20) return true;
            if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return true;
            if (b[0] == 0x20 && b[1] == 0x02) return true; // 6to4
            if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) return true; // Teredo
            return false;
        }
    } else {
        return true; // not an address: never trusted
    }
    struct Net
    {
        uint32_t base;
        int bits;
    };
    static const Net blocked[] = {
        {0x00000000, 8}, // "this" network
        {0x0a000000, 8}, // private
        {0x64400000, 10}, // carrier-grade NAT
        {0x7f000000, 8}, // loopback
        {0xa9fe0000, 16}, // link-local (cloud metadata services live here)
        {0xac100000, 12}, // private
        {0xc0000000, 24}, // IETF protocol assignments
        {0xc0000200, 24}, // documentation
        {0xc0a80000, 16}, // private
        {0xc6120000, 15}, // benchmarking
        {0xc6336400, 24}, // documentation
        {0xcb007100, 24}, // documentation
        {0xe0000000, 3}, // multicast, reserved, broadcast
    };
    for (const Net& n : blocked)
        if ((v4 >> (32 - n.bits)) == (n.base >> (32 - n.bits))) return true;
    return false;
}

Image decode_request_image(std::span<const uint8_t> bytes, const reasoning::ImageLimits& limits,
                           const std::string& param)
{
    try {
        return reasoning::decode_image(bytes, limits, param);
    } catch (const Error& e) {
        // Within the encoded size limit, a limit hit is the image's width and height.
        if (e.kind() != ErrorKind::resource || bytes.size() > limits.max_encoded_bytes) throw;
        throw ApiError {400, e.what(), "invalid_request_error", param};
    }
}

std::vector<uint8_t> fetch_media(const std::string& url, const MediaPolicy& policy)
{
    if (starts_with_ci(url, "data:")) return decode_data_url(url);
    if (!starts_with_ci(url, "https://") && !starts_with_ci(url, "http://"))
        bad_request("image_url must be a data: URL (or an https URL when the server allows them)");
    if (!policy.allow_url)
        throw ApiError {400,
                        "image URLs are disabled on this server: send the image as a data: URL "
                        "(data:image/png;base64,...), or start the server with --allow-media-url",
                        "invalid_request_error", "image_url"};
    if (!starts_with_ci(url, "https://")) bad_request("only https image URLs are fetched");
    return fetch_https(url, policy);
}

} // namespace iris::server
