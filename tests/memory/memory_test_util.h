// Shared by the memory tests: synthetic entries and raw SQLite access (the store directory is
// tests/files.h's TempDir).
#pragma once

#include "memory/memory.h"
#include "tests/files.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace iris::test {

// Bytes that pass for a JPEG file (SOI, APP0 marker, payload, EOI); the store does not decode.
inline Buffer fake_jpeg(size_t size, uint32_t seed)
{
    std::vector<uint8_t> b(std::max<size_t>(size, 8));
    std::mt19937 rng(seed);
    for (uint8_t& x : b) x = uint8_t(rng());
    b[0] = 0xFF, b[1] = 0xD8, b[2] = 0xFF, b[3] = 0xE0;
    b[b.size() - 2] = 0xFF, b[b.size() - 1] = 0xD9;
    return Buffer::adopt(std::move(b));
}

// A unit vector pointing mostly along axis `axis`, with a little seeded noise.
inline std::vector<float> embedding_near(int dim, int axis, uint32_t seed, float noise = 0.05f)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, noise);
    std::vector<float> v(static_cast<size_t>(dim));
    for (float& x : v) x = g(rng);
    v[size_t(axis % dim)] += 1.0f;
    return v;
}

inline memory::Entry make_entry(int64_t t_start_s, std::string caption, std::vector<float> emb,
                                int n_frames = 2, std::string transcript = "")
{
    memory::Entry e;
    e.t_start_us = t_start_s * 1'000'000;
    e.t_end_us = e.t_start_us + 5'000'000;
    e.caption = std::move(caption);
    e.transcript = std::move(transcript);
    e.embedding = std::move(emb);
    for (int i = 0; i < n_frames; ++i)
        e.key_frames.push_back({e.t_start_us + i * 1'000'000,
                                fake_jpeg(500 + 300 * size_t(i), uint32_t(t_start_s * 7 + i)), 0});
    return e;
}

// A plain SQLite connection to DIR/memory.db, for checks and damage the API does not offer.
class RawDb
{
public:
    explicit RawDb(const std::string& dir)
    {
        if (sqlite3_open((dir + "/memory.db").c_str(), &db_) != SQLITE_OK)
            throw std::runtime_error("cannot open memory.db");
        sqlite3_busy_timeout(db_, 10000);
    }
    ~RawDb() { sqlite3_close(db_); }
    RawDb(const RawDb&) = delete;
    RawDb& operator=(const RawDb&) = delete;
    sqlite3* get() const { return db_; }

    void exec(const std::string& sql) const
    {
        char* err = nullptr;
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
            std::string msg = err ? err : "?";
            sqlite3_free(err);
            throw std::runtime_error(sql + ": " + msg);
        }
    }
    std::string text(const std::string& sql) const
    {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
        std::string out;
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
            out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        return out;
    }

private:
    sqlite3* db_ = nullptr;
};

} // namespace iris::test
