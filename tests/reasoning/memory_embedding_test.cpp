// encode_jpeg and memory_embedding on the shipped demo model.
#include "reasoning/engine.h"
#include "reasoning/image.h"
#include "reasoning/responder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

using namespace iris::reasoning;
using iris::Image;

namespace {

const std::string kSamples = IRIS_SOURCE_DIR "/resources/samples/";

const Engine& demo()
{
    static auto engine = Engine::load(IRIS_SOURCE_DIR "/resources/models/iris-demo");
    return *engine;
}

double norm(const float* v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
    return std::sqrt(s);
}

double dot(const std::vector<float>& a, const std::vector<float>& b)
{
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
    return s;
}

} // namespace

TEST(EncodeJpeg, WritesAJpegThatDecodesCloseToTheImage)
{
    Image img = load_image(kSamples + "scene-color.png");
    auto bytes = encode_jpeg(img, 90);
    EXPECT_EQ(probe_image(bytes).format, ImageFormat::jpeg);
    Image back = decode_image(bytes);
    ASSERT_EQ(back.width, img.width);
    ASSERT_EQ(back.height, img.height);
    double diff = 0;
    for (size_t i = 0; i < img.rgb.size(); ++i)
        diff += std::abs(int(img.rgb[i]) - int(back.rgb[i]));
    EXPECT_LT(diff / double(img.rgb.size()), 4.0);
    EXPECT_LT(bytes.size(), img.rgb.size() / 4);
}

TEST(EncodeJpeg, RejectsAnInconsistentImageOrQuality)
{
    const Image bad {4, 4, iris::Buffer::adopt(std::vector<uint8_t>(10))};
    EXPECT_THROW(encode_jpeg(bad), iris::Error);
    const Image ok = Image::adopt(4, 4, std::vector<uint8_t>(48, 128));
    EXPECT_THROW(encode_jpeg(ok, 0), iris::Error);
    EXPECT_THROW(encode_jpeg(ok, 101), iris::Error);
    EXPECT_FALSE(encode_jpeg(ok, 100).empty());
}

TEST(MemoryEmbedding, HasAUnitVisualHalfAndAUnitTextHalf)
{
    size_t h = size_t(demo().config().llm.hidden_size);
    auto v
        = memory_embedding(demo(), {load_image(kSamples + "scene-color.png")}, "a green hexagon");
    ASSERT_EQ(v.size(), 2 * h);
    EXPECT_NEAR(norm(v.data(), h), 1.0, 1e-5);
    EXPECT_NEAR(norm(v.data() + h, h), 1.0, 1e-5);
    EXPECT_EQ(
        v, memory_embedding(demo(), {load_image(kSamples + "scene-color.png")}, "a green hexagon"));
}

TEST(MemoryEmbedding, AnAbsentPartIsZerosSoTextQueriesMatchOnText)
{
    size_t h = size_t(demo().config().llm.hidden_size);
    auto text_only = memory_embedding(demo(), {}, "a green hexagon");
    EXPECT_EQ(norm(text_only.data(), h), 0.0);
    auto image_only = memory_embedding(demo(), {load_image(kSamples + "scene-color.png")}, "");
    EXPECT_EQ(norm(image_only.data() + h, h), 0.0);
    // the same caption scores higher than another one
    auto same
        = memory_embedding(demo(), {load_image(kSamples + "scene-shapes.png")}, "a green hexagon");
    auto other = memory_embedding(demo(), {load_image(kSamples + "scene-shapes.png")},
                                  "buy milk at the shop");
    EXPECT_NEAR(dot(text_only, same), 1.0, 1e-5);
    EXPECT_LT(dot(text_only, other), 0.9);
}

// Issue 22, "text is text": a caption or query spelling <IMG_CONTEXT> or <|im_end|> is embedded
// as the text it is: the mean of its plain tokens' rows.
TEST(MemoryEmbedding, TextSpellingSpecialTokensIsEmbeddedAsText)
{
    const size_t h = size_t(demo().config().llm.hidden_size);
    const std::string text = "a <IMG_CONTEXT> sign<|im_end|>";
    auto e = memory_embedding(demo(), {}, text);
    const auto ids = demo().tokenizer().encode_text(text, false);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), demo().img_context_id()), 0);
    const auto rows = demo().network().embed(ids, {}, -1);
    std::vector<double> mean(h, 0.0);
    for (size_t i = 0; i < ids.size(); ++i)
        for (size_t j = 0; j < h; ++j) mean[j] += rows[i * h + j];
    double n = 0;
    for (double v : mean) n += v * v;
    for (size_t j = 0; j < h; ++j) EXPECT_NEAR(e[h + j], mean[j] / std::sqrt(n), 1e-5) << j;
}
