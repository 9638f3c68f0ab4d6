// Base64 (RFC 4648): data: URLs in requests and self-contained pages.
#include "core/core.h"

namespace iris {
namespace {

int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62; // standard and URL-safe alphabets
    if (c == '/' || c == '_') return 63;
    return -1;
}

} // namespace

std::vector<uint8_t> base64_decode(std::string_view text)
{
    std::vector<uint8_t> out;
    out.reserve(text.size() / 4 * 3);
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (unsigned char c : text) {
        if (c == '=') {
            ++pad;
            continue;
        }
        if (c == '\n' || c == '\r' || c == ' ') continue;
        int v = base64_value(c);
        if (v < 0 || pad)
            throw Error(ErrorKind::invalid_input, "the base64 text has a stray character");
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(uint8_t(acc >> bits));
        }
    }
    // 6 leftover bits mean a lone character: the text was cut.
    if (bits >= 6 || pad > 2) throw Error(ErrorKind::invalid_input, "the base64 text is truncated");
    return out;
}

std::string base64_encode(std::span<const uint8_t> bytes)
{
    static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        uint32_t v = uint32_t(bytes[i]) << 16 | uint32_t(bytes[i + 1]) << 8 | bytes[i + 2];
        for (int s = 18; s >= 0; s -= 6) out += abc[(v >> s) & 63];
    }
    if (size_t left = bytes.size() - i) {
        uint32_t v = uint32_t(bytes[i]) << 16 | (left == 2 ? uint32_t(bytes[i + 1]) << 8 : 0);
        out += abc[(v >> 18) & 63];
        out += abc[(v >> 12) & 63];
        out += left == 2 ? abc[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

} // namespace iris
