// The memory index's vector for a clip (see memory_embedding in responder.h).
#include "reasoning/responder.h"

#include <cmath>

namespace iris::reasoning {
namespace {

// Mean of the rows of m [n, dim] scaled to unit length, written to out[0, dim); zeros when n is
// 0 or the mean is 0.
void unit_mean(std::span<const float> m, size_t dim, float* out)
{
    size_t n = dim ? m.size() / dim : 0;
    std::vector<double> sum(dim, 0.0);
    for (size_t r = 0; r < n; ++r)
        for (size_t c = 0; c < dim; ++c) sum[c] += m[r * dim + c];
    double norm = 0;
    for (double v : sum) norm += v * v;
    norm = std::sqrt(norm);
    for (size_t c = 0; c < dim; ++c) out[c] = norm > 0 ? float(sum[c] / norm) : 0.f;
}

} // namespace

std::vector<float> memory_embedding(const Engine& engine, const std::vector<Image>& images,
                                    std::string_view text)
{
    const auto& net = engine.network();
    size_t hidden = size_t(engine.config().llm.hidden_size);
    std::vector<float> out(2 * hidden, 0.f);
    if (!images.empty()) {
        TilingOptions tiling = engine.tiling(1);
        std::vector<float> pixels;
        for (const auto& img : images) {
            auto p = preprocess_image(img, tiling);
            pixels.insert(pixels.end(), p.pixel_values.begin(), p.pixel_values.end());
        }
        unit_mean(net.encode_images(pixels, int(images.size())), hidden, out.data());
    }
    auto ids = engine.tokenizer().encode_text(text, /*add_bos=*/false);
    if (!ids.empty())
        unit_mean(net.embed(ids, {}, engine.img_context_id()), hidden, out.data() + hidden);
    return out;
}

std::vector<size_t> clip_key_frames(size_t n)
{
    std::vector<size_t> picks;
    if (n > 0) picks.push_back(0);
    if (n > 2) picks.push_back(n / 2);
    if (n > 1) picks.push_back(n - 1);
    return picks;
}

ClipDescription describe_clip(const Engine& engine, const std::vector<Image>& key_frames,
                              const std::string& transcript)
{
    if (key_frames.empty()) throw Error(ErrorKind::invalid_argument, "a clip needs a key frame");
    Session session(engine);
    AskOptions options;
    options.max_tiles = 1;
    options.sampling.max_new_tokens = 48;
    ClipDescription d;
    d.caption
        = session
              .ask("Describe the image briefly.", {key_frames[key_frames.size() / 2]}, options, {})
              .text;
    d.embedding = memory_embedding(engine, key_frames, d.caption + " " + transcript);
    return d;
}

} // namespace iris::reasoning
