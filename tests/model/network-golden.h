// Helpers shared by the InternVL network golden tests (vision_test, llm_test,
// internvl_full_test): the golden folder, index.json, golden tensors, tile pixel values and a
// per-process cache of loaded models.
#pragma once

#include "model/model.h"
#include "reasoning/image.h"
#include "tests/golden.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace iris::test {

inline nlohmann::json read_json(const std::string& path)
{
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(in);
}

inline const nlohmann::json& golden_index()
{
    static nlohmann::json index = read_json(golden_dir() + "/index.json");
    return index;
}

// A golden .safetensors file (path relative to the golden folder).
class GoldenFile
{
public:
    explicit GoldenFile(const std::string& rel)
        : st_(model::SafeTensors::open(golden_dir() + "/" + rel))
    { }
    std::vector<float> f32(const std::string& name) const { return st_.get(name).to_f32(); }
    std::vector<int32_t> ids(const std::string& name) const
    {
        std::vector<int64_t> v = st_.get(name).to_i64();
        return {v.begin(), v.end()};
    }
    const std::vector<int64_t>& shape(const std::string& name) const { return st_.get(name).shape; }
    bool has(const std::string& name) const { return st_.find(name) != nullptr; }

private:
    model::SafeTensors st_;
};

// Loaded once per process and shared by the tests of a binary.
inline std::shared_ptr<const model::InternVL> golden_model(const std::string& rel_dir)
{
    static std::mutex mutex;
    static std::map<std::string, std::shared_ptr<const model::InternVL>> models;
    std::lock_guard lock(mutex);
    auto& slot = models[rel_dir];
    if (!slot) slot = model::InternVL::load(golden_dir() + "/" + rel_dir);
    return slot;
}

// pixel_values [n, 3, 448, 448] of tile PNGs (paths relative to the golden folder), decoded and
// normalised by the reasoning module exactly as the official build_transform does.
inline std::vector<float> tile_pixel_values(const std::vector<std::string>& rel_paths)
{
    std::vector<Image> tiles;
    for (const auto& p : rel_paths) tiles.push_back(reasoning::load_image(golden_dir() + "/" + p));
    return reasoning::pixel_values(tiles);
}

inline std::vector<std::string> tile_list(const nlohmann::json& j)
{
    std::vector<std::string> out;
    for (const auto& t : j) out.push_back(t.get<std::string>());
    return out;
}

inline double max_abs_diff(std::span<const float> a, std::span<const float> b)
{
    EXPECT_EQ(a.size(), b.size());
    double m = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        double d = std::fabs(double(a[i]) - double(b[i]));
        if (!(d <= m)) m = d; // NaN propagates as a failure
    }
    return m;
}

inline double cosine(std::span<const float> a, std::span<const float> b)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        ab += double(a[i]) * b[i];
        aa += double(a[i]) * a[i];
        bb += double(b[i]) * b[i];
    }
    return ab / std::sqrt(aa * bb);
}

inline int32_t argmax(std::span<const float> v)
{
    return int32_t(std::max_element(v.begin(), v.end()) - v.begin()); // first of equal maxima
}

// The error budget of the README for fp32 engines.
inline constexpr double kTolerance = 1e-4;

// Prints one line per comparison, so the measured errors appear in the test log.
inline void report(const std::string& what, double err)
{
    std::printf("[ golden   ] %-60s max abs %.3g\n", what.c_str(), err);
}

} // namespace iris::test
