// Dynamic tiling, Pillow BICUBIC resize and pixel values against the official implementation:
// the shared goldens (golden/preprocess) and Pillow 9.4 fixtures in tests/reasoning/data.
//
// Fixtures: grid_orders.json comes from tools/gen_grid_orders.py (CPython's real set order).
// pillow_resize.json was written by Pillow 9.4.0 with the official dynamic_preprocess on
// pattern() below: fnv1a64 of the RGB bytes (and row sums to locate a difference).
#include "model/model.h"
#include "reasoning/image.h"
#include "tests/golden.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>

namespace fs = std::filesystem;
using iris::Error;
using iris::ErrorKind;
using namespace iris::reasoning;
using iris::Image;

namespace {

// The pixels as a vector: comparisons that fail print where they differ.
std::vector<uint8_t> pixels(const Image& image)
{
    return {image.rgb.begin(), image.rgb.end()};
}

const std::string kData = IRIS_SOURCE_DIR "/tests/reasoning/data/";
const std::string kGolden = iris::test::golden_dir();

nlohmann::json read_json(const std::string& path)
{
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(in);
}

// The procedural image of the Pillow fixtures: noise blocks between gradients.
Image pattern(int w, int h)
{
    return Image::allocate(w, h, [&](uint8_t* rgb) {
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                for (int c = 0; c < 3; ++c) {
                    uint32_t v;
                    if (((x >> 3) + (y >> 3)) % 3 == 0) {
                        v = uint32_t(x) * 73856093u ^ uint32_t(y) * 19349663u
                            ^ uint32_t(c + 1) * 83492791u;
                        v = (v ^ (v >> 13)) * 0x5bd1e995u;
                        v = (v ^ (v >> 15)) & 255;
                    } else if (c == 0) {
                        v = uint32_t(x * 255 / std::max(w - 1, 1));
                    } else if (c == 1) {
                        v = uint32_t(y * 255 / std::max(h - 1, 1));
                    } else {
                        v = uint32_t(x * 3 + y * 5) & 255;
                    }
                    rgb[(size_t(y) * w + x) * 3 + c] = uint8_t(v);
                }
    });
}

std::string fnv1a64(std::span<const uint8_t> bytes)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
    return iris::strfmt("%016llx", (unsigned long long)h);
}

// Index of the first differing byte, or -1.
long first_difference(const Image& a, const Image& b)
{
    if (a.rgb.size() != b.rgb.size()) return 0;
    for (size_t i = 0; i < a.rgb.size(); ++i)
        if (a.rgb[i] != b.rgb[i]) return long(i);
    return -1;
}

std::vector<std::pair<int, int>> pairs(std::initializer_list<int> flat)
{
    std::vector<std::pair<int, int>> out;
    for (auto it = flat.begin(); it != flat.end(); it += 2) out.emplace_back(it[0], it[1]);
    return out;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Candidate grids and the grid choice

TEST(CandidateGrids, MatchTheSpecVerbatimOrders)
{
    EXPECT_EQ(candidate_grids(1, 12),
              pairs({1, 1, 1,  2, 2, 1,  3,  1, 1, 3,  2,  2, 4, 1, 1, 4, 5, 1,  1, 5, 1, 6, 6, 1,
                     3, 2, 2,  3, 7, 1,  1,  7, 4, 2,  2,  4, 1, 8, 8, 1, 1, 9,  3, 3, 9, 1, 2, 5,
                     5, 2, 10, 1, 1, 10, 11, 1, 1, 11, 12, 1, 3, 4, 4, 3, 1, 12, 6, 2, 2, 6}));
    EXPECT_EQ(candidate_grids(1, 6), pairs({1, 1, 1, 2, 2, 1, 3, 1, 1, 3, 4, 1, 1, 4,
                                            2, 2, 1, 5, 5, 1, 6, 1, 2, 3, 1, 6, 3, 2}));
}

TEST(CandidateGrids, MatchCPythonSetOrderForEveryMaxUpTo64)
{
    const auto doc = read_json(kData + "grid_orders.json");
    int max_seen = 0, checked = 0;
    for (const auto& c : doc["cases"]) {
        const int mn = c["min"], mx = c["max"];
        std::vector<std::pair<int, int>> expected;
        const auto& flat = c["order"];
        for (size_t i = 0; i + 1 < flat.size(); i += 2) expected.emplace_back(flat[i], flat[i + 1]);
        EXPECT_EQ(candidate_grids(mn, mx), expected) << "min " << mn << " max " << mx;
        if (mn == 1) max_seen = std::max(max_seen, mx);
        ++checked;
    }
    EXPECT_EQ(max_seen, 64);
    EXPECT_GE(checked, 64);
}

TEST(ChooseGrid, SpecExamples)
{
    struct Case
    {
        int w, h, cols, rows, tiles;
    };
    for (const Case& c : std::vector<Case> {{448, 448, 1, 1, 1},
                                            {1000, 1000, 3, 3, 10},
                                            {640, 480, 4, 3, 13},
                                            {800, 600, 4, 3, 13},
                                            {1024, 768, 4, 3, 13},
                                            {4000, 3000, 4, 3, 13},
                                            {1920, 1080, 4, 2, 9},
                                            {1080, 1920, 2, 4, 9},
                                            {500, 2000, 1, 4, 5},
                                            {2000, 500, 4, 1, 5},
                                            {300, 200, 3, 2, 7},
                                            {224, 224, 1, 1, 1}}) {
        Grid g = choose_grid(c.w, c.h, {});
        EXPECT_EQ(g.cols, c.cols) << c.w << "x" << c.h;
        EXPECT_EQ(g.rows, c.rows) << c.w << "x" << c.h;
        EXPECT_EQ(g.n_tiles, c.tiles) << c.w << "x" << c.h;
        EXPECT_EQ(g.has_thumbnail, c.tiles != 1);
    }
    TilingOptions no_thumb;
    no_thumb.use_thumbnail = false;
    EXPECT_EQ(choose_grid(1920, 1080, no_thumb).n_tiles, 8);
}

TEST(ChooseGrid, GoldenGridTableAllRows)
{
    IRIS_REQUIRE_GOLDEN();
    const auto doc = read_json(kGolden + "/preprocess/grid_table.json");
    ASSERT_EQ(doc["min_num"], 1);
    ASSERT_EQ(doc["image_size"], 448);
    ASSERT_EQ(doc["use_thumbnail"], true);
    size_t rows = 0;
    for (const auto& r : doc["rows"]) {
        TilingOptions o;
        o.max_tiles = r[2];
        const Grid g = choose_grid(r[0], r[1], o);
        EXPECT_EQ(g.cols, r[3]) << r.dump();
        EXPECT_EQ(g.rows, r[4]) << r.dump();
        EXPECT_EQ(g.n_tiles, r[5]) << r.dump();
        ++rows;
    }
    EXPECT_EQ(rows, 1058u);
}

TEST(TilingOptions, ValidatesTheRanges)
{
    auto kind_of = [](TilingOptions o) {
        try {
            choose_grid(100, 100, o);
        } catch (const Error& e) {
            return e.kind();
        }
        return ErrorKind::internal;
    };
    TilingOptions o;
    o.max_tiles = 0;
    EXPECT_EQ(kind_of(o), ErrorKind::invalid_argument);
    o.max_tiles = 65;
    EXPECT_EQ(kind_of(o), ErrorKind::invalid_argument);
    o.max_tiles = 64;
    EXPECT_NO_THROW(choose_grid(100, 100, o));
    o.min_tiles = 65;
    EXPECT_EQ(kind_of(o), ErrorKind::invalid_argument);
    o = {};
    o.min_tiles = 0;
    EXPECT_EQ(kind_of(o), ErrorKind::invalid_argument);
    o = {};
    o.image_size = 0;
    EXPECT_EQ(kind_of(o), ErrorKind::invalid_argument);
    EXPECT_THROW(choose_grid(0, 10, {}), Error);
    EXPECT_THROW(candidate_grids(1, 65), Error);
    EXPECT_THROW(make_tiles(Image {}, {}), Error);
}

TEST(TilingOptions, FromModelConfig)
{
    iris::model::ModelConfig cfg;
    cfg.force_image_size = 448;
    cfg.min_dynamic_patch = 1;
    cfg.max_dynamic_patch = 40;
    cfg.use_thumbnail = true;
    cfg.dynamic_image_size = true;
    TilingOptions o = tiling_options(cfg);
    EXPECT_EQ(o.image_size, 448);
    EXPECT_EQ(o.min_tiles, 1);
    EXPECT_EQ(o.max_tiles, 40);
    EXPECT_TRUE(o.use_thumbnail);
    cfg.dynamic_image_size = false;
    EXPECT_EQ(tiling_options(cfg).max_tiles, 1);
    cfg.dynamic_image_size = true;
    cfg.max_dynamic_patch = 100;
    EXPECT_THROW(tiling_options(cfg), Error);
}

// ---------------------------------------------------------------------------------------------
// Goldens: every case of golden/preprocess, tiles bit-exact and pixel values

TEST(Preprocess, GoldenCasesTilesBitExactAndPixelStats)
{
    IRIS_REQUIRE_GOLDEN();
    const auto cases = read_json(kGolden + "/preprocess/cases.json");
    ASSERT_EQ(cases.size(), 7u);
    for (const auto& [name, c] : cases.items()) {
        SCOPED_TRACE(name);
        const Image img = load_image(kGolden + "/" + c["image"].get<std::string>());
        ASSERT_EQ(img.width, c["width"]);
        ASSERT_EQ(img.height, c["height"]);
        Grid grid;
        const std::vector<Image> tiles = make_tiles(img, {}, &grid);
        EXPECT_EQ(grid.cols, c["grid_cols_rows"][0]);
        EXPECT_EQ(grid.rows, c["grid_cols_rows"][1]);
        EXPECT_EQ(grid.n_tiles, c["num_tiles"]);
        EXPECT_EQ(grid.has_thumbnail, c["has_thumbnail"]);
        ASSERT_EQ(tiles.size(), c["tiles"].size());
        for (size_t t = 0; t < tiles.size(); ++t) {
            const Image expected = load_image(kGolden + "/" + c["tiles"][t].get<std::string>());
            ASSERT_EQ(tiles[t].width, 448);
            ASSERT_EQ(tiles[t].height, 448);
            EXPECT_EQ(first_difference(tiles[t], expected), -1) << "tile " << t;
        }
        const std::vector<float> pv = pixel_values(tiles);
        const auto& shape = c["pixel_values_shape"];
        ASSERT_EQ(pv.size(),
                  size_t(shape[0]) * size_t(shape[1]) * size_t(shape[2]) * size_t(shape[3]));
        const auto& stats = c["pixel_values_stats_per_tile_channel"];
        const size_t plane = 448 * 448;
        for (size_t t = 0; t < tiles.size(); ++t)
            for (int ch = 0; ch < 3; ++ch) {
                const float* p = pv.data() + (t * 3 + ch) * plane;
                double sum = 0;
                float lo = p[0], hi = p[0];
                for (size_t i = 0; i < plane; ++i) {
                    sum += p[i];
                    lo = std::min(lo, p[i]);
                    hi = std::max(hi, p[i]);
                }
                const double want = stats["sum"][t][ch];
                EXPECT_NEAR(sum, want, 1e-7 * std::max(1.0, std::fabs(want)))
                    << "tile " << t << " ch " << ch;
                EXPECT_EQ(lo, float(stats["min"][t][ch].get<double>()))
                    << "tile " << t << " ch " << ch;
                EXPECT_EQ(hi, float(stats["max"][t][ch].get<double>()))
                    << "tile " << t << " ch " << ch;
            }
    }
}

TEST(Preprocess, GoldenPixelValuesExact)
{
    IRIS_REQUIRE_GOLDEN();
    auto st = iris::model::SafeTensors::open(kGolden
                                             + "/preprocess/img_448x448_pixel_values.safetensors");
    const auto& t = st.get("pixel_values");
    ASSERT_EQ(t.shape, (std::vector<int64_t> {1, 3, 448, 448}));
    const std::vector<float> expected = t.to_f32();
    const PreparedImage p = preprocess_image(load_image(kGolden + "/images/img_448x448.png"), {});
    EXPECT_EQ(p.grid.n_tiles, 1);
    EXPECT_EQ(p.image_size, 448);
    ASSERT_EQ(p.pixel_values.size(), expected.size());
    double max_abs = 0;
    size_t unequal = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
        max_abs = std::max(max_abs, double(std::fabs(p.pixel_values[i] - expected[i])));
        unequal += p.pixel_values[i] != expected[i];
    }
    EXPECT_LE(max_abs, 1e-6);
    EXPECT_EQ(unequal, 0u) << "max abs " << max_abs;
}

TEST(PixelValues, TorchvisionFloat32Formula)
{
    const Image img = Image::allocate(16, 16, [](uint8_t* rgb) {
        for (size_t i = 0; i < 16 * 16 * 3; ++i) rgb[i] = uint8_t(i * 7);
    });
    const std::vector<float> pv = pixel_values({img, img});
    ASSERT_EQ(pv.size(), 2u * 3 * 256);
    for (int ch = 0; ch < 3; ++ch)
        for (int i = 0; i < 256; ++i) {
            const float x = float(img.rgb[size_t(i) * 3 + ch]) / 255.0f;
            const float want = (x - kImageMean[ch]) / kImageStd[ch];
            EXPECT_EQ(pv[size_t(ch) * 256 + i], want);
            EXPECT_EQ(pv[3 * 256 + size_t(ch) * 256 + i], want);
        }
    EXPECT_EQ(kImageMean[0], float(0.485));
    EXPECT_EQ(kImageStd[2], float(0.225));
    const Image other = Image::copy_of(8, 16, img.rgb.data());
    EXPECT_THROW(pixel_values({img, other}), Error);
    EXPECT_TRUE(pixel_values({}).empty());
}

// ---------------------------------------------------------------------------------------------
// Pillow fixtures beyond the goldens

TEST(Resize, MatchesPillowBicubicBeyondTheGoldens)
{
    const auto doc = read_json(kData + "pillow_resize.json");
    ASSERT_GE(doc["resize"].size(), 5u);
    for (const auto& c : doc["resize"]) {
        const int sw = c["src"][0], sh = c["src"][1], dw = c["dst"][0], dh = c["dst"][1];
        SCOPED_TRACE(iris::strfmt("%dx%d -> %dx%d", sw, sh, dw, dh));
        const Image out = resize_bicubic(pattern(sw, sh), dw, dh);
        ASSERT_EQ(out.width, dw);
        ASSERT_EQ(out.height, dh);
        if (fnv1a64(out.rgb.bytes()) == c["fnv1a64"]) continue;
        for (int y = 0; y < dh; ++y) {
            long sum = 0;
            for (int i = 0; i < dw * 3; ++i) sum += out.rgb[size_t(y) * dw * 3 + i];
            if (sum != c["row_sums"][y].get<long>()) {
                ADD_FAILURE() << "row " << y << " differs from Pillow (sum " << sum << " vs "
                              << c["row_sums"][y] << ")";
                break;
            }
        }
        ADD_FAILURE() << "hash differs from Pillow";
    }
}

TEST(Tiles, MatchOfficialDynamicPreprocessBeyondTheGoldens)
{
    const auto doc = read_json(kData + "pillow_resize.json");
    for (const auto& c : doc["tiles"]) {
        const int sw = c["src"][0], sh = c["src"][1];
        SCOPED_TRACE(iris::strfmt("%dx%d max %d", sw, sh, c["max_num"].get<int>()));
        TilingOptions o;
        o.max_tiles = c["max_num"];
        o.image_size = c["image_size"];
        Grid grid;
        const std::vector<Image> tiles = make_tiles(pattern(sw, sh), o, &grid);
        EXPECT_EQ(grid.cols, c["grid"][0]);
        EXPECT_EQ(grid.rows, c["grid"][1]);
        ASSERT_EQ(tiles.size(), c["tiles_fnv1a64"].size());
        EXPECT_EQ(int(tiles.size()), grid.n_tiles);
        for (size_t t = 0; t < tiles.size(); ++t)
            EXPECT_EQ(fnv1a64(tiles[t].rgb.bytes()), c["tiles_fnv1a64"][t].get<std::string>())
                << "tile " << t;
    }
}

TEST(Resize, SameSizeSharesThePixelsAndCropChecksBounds)
{
    const Image img = pattern(40, 30);
    const Image same = resize_bicubic(img, 40, 30);
    EXPECT_EQ(same.rgb.data(), img.rgb.data());
    const Image c = crop_image(img, 10, 5, 20, 10);
    EXPECT_EQ(c.width, 20);
    EXPECT_EQ(c.height, 10);
    EXPECT_EQ(0, std::memcmp(c.pixel(0, 0), img.pixel(10, 5), 3));
    EXPECT_EQ(0, std::memcmp(c.pixel(19, 9), img.pixel(29, 14), 3));
    EXPECT_THROW(crop_image(img, 30, 0, 20, 10), Error);
    EXPECT_THROW(crop_image(img, -1, 0, 20, 10), Error);
    EXPECT_THROW(resize_bicubic(img, 0, 10), Error);
    const Image broken {img.width, img.height,
                        iris::Buffer::copy_of(img.rgb.data(), img.rgb.size() - 1)};
    EXPECT_THROW(resize_bicubic(broken, 10, 10), Error);
}

TEST(Tiles, RowMajorCropOfTheResizedImagePlusThumbnail)
{
    const Image img = pattern(500, 260); // 2x1 grid
    TilingOptions o;
    o.image_size = 64;
    o.max_tiles = 6;
    Grid g;
    const auto tiles = make_tiles(img, o, &g);
    ASSERT_EQ(g.cols * g.rows + 1, int(tiles.size()));
    const Image resized = resize_bicubic(img, 64 * g.cols, 64 * g.rows);
    for (int k = 0; k < g.cols * g.rows; ++k)
        EXPECT_EQ(pixels(tiles[size_t(k)]),
                  pixels(crop_image(resized, (k % g.cols) * 64, (k / g.cols) * 64, 64, 64)));
    EXPECT_EQ(pixels(tiles.back()), pixels(resize_bicubic(img, 64, 64)));
    o.use_thumbnail = false;
    EXPECT_EQ(make_tiles(img, o).size(), size_t(g.cols * g.rows));
}

// ---------------------------------------------------------------------------------------------
// Video

TEST(Video, OneTilePerFrame)
{
    TilingOptions o;
    o.max_tiles = 1;
    Grid g;
    const auto tiles = make_tiles(pattern(1920, 1080), o, &g);
    EXPECT_EQ(g.cols, 1);
    EXPECT_EQ(g.rows, 1);
    EXPECT_EQ(g.n_tiles, 1);
    ASSERT_EQ(tiles.size(), 1u);
    EXPECT_EQ(tiles[0].width, 448);
    EXPECT_EQ(tiles[0].height, 448);
}
