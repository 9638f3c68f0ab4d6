// Files and base64 for the server tests and server_bench (no test framework needed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace iris::test {

inline std::string read_file(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline std::string base64(const std::string& bytes)
{
    static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8
            | uint8_t(bytes[i + 2]);
        for (int s = 18; s >= 0; s -= 6) out += abc[(v >> s) & 63];
    }
    if (size_t left = bytes.size() - i) {
        uint32_t v = uint32_t(uint8_t(bytes[i])) << 16
            | (left == 2 ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0);
        out += abc[(v >> 18) & 63];
        out += abc[(v >> 12) & 63];
        out += left == 2 ? abc[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

} // namespace iris::test
