// InternViT, pixel shuffle and mlp1 against the official goldens (shared/golden/vision), plus
// the CPU ops they rely on.
#include "model/cpu/ops.h"
#include "model/cpu/vec-math.h"
#include "network-golden.h"

#include <cmath>

namespace iris::test {
namespace {

TEST(VisionOps, ErfAndExpAreWithinTwoUlpOfDoublePrecisionLibm)
{
    std::vector<float> x;
    for (double v = -10; v <= 10; v += 1.0 / 4096) x.push_back(float(v));
    std::vector<float> y(x.size());
    model::cpu::erf_array(x.data(), y.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        double ref = std::erf(double(x[i]));
        double ulp = std::max(
            double(std::nextafter(float(std::fabs(ref)), 2.f) - float(std::fabs(ref))), 1e-45);
        ASSERT_LE(std::fabs(y[i] - ref), 2 * ulp) << "erf(" << x[i] << ")";
    }
    x.clear();
    for (double v = -87; v <= 88; v += 1.0 / 1024) x.push_back(float(v));
    y.resize(x.size());
    model::cpu::exp_array(x.data(), y.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        double ref = std::exp(double(x[i]));
        ASSERT_LE(std::fabs(y[i] - ref) / ref, 2.5e-7) << "exp(" << x[i] << ")";
    }
    float edge[3] = {-1000.f, 0.f, -0.f};
    model::cpu::exp_array(edge, edge, 3);
    EXPECT_EQ(edge[0], 0.f);
    EXPECT_EQ(edge[1], 1.f);
    EXPECT_EQ(edge[2], 1.f);
}

TEST(VisionOps, BicubicResizeReproducesTorchInterpolateWithAlignCornersFalse)
{
    // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
    // mode='bicubic', align_corners=False)
    const float src[4] = {1, 2, 3, 4};
    const float expected[16]
        = {0.68359375f, 1.015625f,   1.5625f,     1.89453125f, 1.34765625f, 1.6796875f,
           2.2265625f,  2.55859375f, 2.44140625f, 2.7734375f,  3.3203125f,  3.65234375f,
           3.10546875f, 3.4375f,     3.984375f,   4.31640625f};
    float out[16];
    model::cpu::bicubic_resize(src, 1, 2, 2, 4, 4, out);
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(out[i], expected[i], 1e-6) << "index " << i;

    // Same size: the identity (InternViT skips nothing, torch copies).
    std::vector<float> grid(2 * 5 * 5);
    for (size_t i = 0; i < grid.size(); ++i) grid[i] = float(std::sin(double(i)));
    std::vector<float> same(grid.size());
    model::cpu::bicubic_resize(grid.data(), 2, 5, 5, 5, 5, same.data());
    EXPECT_EQ(grid, same);

    // A constant field stays constant when shrinking (the taps' weights sum to one).
    std::vector<float> flat(32 * 32, 0.25f), small(20 * 20);
    model::cpu::bicubic_resize(flat.data(), 1, 32, 32, 20, 20, small.data());
    for (float v : small) EXPECT_NEAR(v, 0.25f, 1e-6);
}

TEST(VisionOps, PixelShuffleV2ConcatenatesTwoByTwoNeighboursRowMajor)
{
    // x [1, 4, 4, 1] with value = 10·row + col; docs/model.md §5: token (r, s) is
    // [v(2r, 2s), v(2r, 2s+1), v(2r+1, 2s), v(2r+1, 2s+1)].
    float x[16];
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) x[r * 4 + c] = float(10 * r + c);
    float v2[16], v1[16];
    model::cpu::pixel_shuffle(x, 1, 4, 4, 1, 2, true, v2);
    model::cpu::pixel_shuffle(x, 1, 4, 4, 1, 2, false, v1);
    const float token_01[4] = {2, 3, 12, 13}; // r = 0, s = 1
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(v2[1 * 4 + i], token_01[i]);
        EXPECT_EQ(v1[2 * 4 + i], token_01[i]); // v1 is transposed: t = 2·s + r
    }
}

TEST(InternVitGolden, TilePixelValuesMatchTheOfficialNormalisation)
{
    IRIS_REQUIRE_GOLDEN();
    // cases.json names the tiles and the pixel_values file of the image that has one.
    const auto cases = read_json(
        golden_dir() + "/" + golden_index()["cases"]["preprocess"]["json"].get<std::string>());
    const auto& cs = cases.at("img_448x448");
    GoldenFile ref(cs.at("pixel_values_file").get<std::string>());
    std::vector<float> px = tile_pixel_values(tile_list(cs.at("tiles")));
    double err = max_abs_diff(px, ref.f32("pixel_values"));
    report("preprocess/img_448x448 pixel_values", err);
    EXPECT_LE(err, 1e-6);
}

TEST(InternVitGolden, EveryVisionCaseMatchesTheOfficialIntermediatesWithin1e4)
{
    IRIS_REQUIRE_GOLDEN();
    const auto& cases = golden_index()["cases"]["vision"];
    ASSERT_FALSE(cases.empty());
    for (const auto& item : cases.items()) {
        const std::string& name = item.key(); // named, not bound: the lambda below captures it
        const auto& cs = item.value();
        SCOPED_TRACE(name);
        auto net = golden_model(cs["model"].get<std::string>());
        GoldenFile ref(cs["file"].get<std::string>());
        std::vector<std::string> tiles = tile_list(cs["input_tiles"]);
        const int n_tiles = int(tiles.size());
        std::vector<float> px = tile_pixel_values(tiles);

        model::VisionTrace trace;
        int64_t t0 = now_us();
        std::vector<float> visual = net->encode_images(px, n_tiles, &trace);
        std::printf("[ timing   ] %s: encode_images of %d tiles %.1f ms\n", name.c_str(), n_tiles,
                    double(now_us() - t0) / 1000.0);

        ASSERT_EQ(ref.shape("visual_tokens"),
                  (std::vector<int64_t> {n_tiles, net->num_image_token(),
                                         net->config().llm.hidden_size}));
        auto check = [&](const std::string& tensor, std::span<const float> ours) {
            if (!ref.has(tensor)) return;
            double err = max_abs_diff(ours, ref.f32(tensor));
            report(name + " " + tensor, err);
            EXPECT_LE(err, kTolerance) << tensor;
        };
        check("vit_last_hidden_state", trace.selected);
        check("pixel_shuffle", trace.pixel_shuffle);
        check("visual_tokens", visual);
        check("embeddings", trace.embeddings);
        check("vit_hidden_states", trace.hidden_states);
    }
}

TEST(InternVitGolden, EncodingTilesOneByOneGivesTheSameTokensAsOneBatch)
{
    IRIS_REQUIRE_GOLDEN();
    for (const auto& [name, cs] : golden_index()["cases"]["vision"].items()) {
        std::vector<std::string> tiles = tile_list(cs["input_tiles"]);
        if (tiles.size() < 2) continue;
        SCOPED_TRACE(name);
        auto net = golden_model(cs["model"].get<std::string>());
        std::vector<float> px = tile_pixel_values(tiles);
        std::vector<float> batch = net->encode_images(px, int(tiles.size()));
        const size_t per_tile_px = px.size() / tiles.size(), per_tile = batch.size() / tiles.size();
        for (size_t t = 0; t < tiles.size(); ++t) {
            std::vector<float> one = net->encode_images(
                std::span<const float>(px).subspan(t * per_tile_px, per_tile_px), 1);
            EXPECT_LE(
                max_abs_diff(one, std::span<const float>(batch).subspan(t * per_tile, per_tile)),
                1e-5);
        }
        return; // one multi-tile case is enough
    }
}

TEST(InternVitGolden, EncodeImagesRejectsPixelBuffersOfTheWrongSize)
{
    IRIS_REQUIRE_GOLDEN();
    auto net = golden_model("models/tiny_qwen2");
    std::vector<float> px(3 * 448 * 448 - 1);
    try {
        net->encode_images(px, 1);
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    }
    EXPECT_TRUE(net->encode_images({}, 0).empty());
}

} // namespace
} // namespace iris::test
