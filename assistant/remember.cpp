// A clip becomes a long-term memory entry: key frames, caption, transcript, embedding.
#include "assistant/assistant.h"
#include "reasoning/image.h"

#include <algorithm>

namespace iris::assistant {
namespace {

// The frame as a key frame: scaled down to kKeyFrameSide on its longer side, never up.
Image key_frame_image(const Image& image)
{
    const int side = std::max(image.width, image.height);
    if (side <= kKeyFrameSide) return image;
    const int w = std::max(1, int(int64_t(image.width) * kKeyFrameSide / side));
    const int h = std::max(1, int(int64_t(image.height) * kKeyFrameSide / side));
    return reasoning::resize_bicubic(image, w, h);
}

} // namespace

std::string heard_during(std::span<const memory::Text> transcripts, int64_t from_us, int64_t to_us)
{
    std::string text;
    for (const auto& t : transcripts)
        if (t.t_end_us >= from_us && t.t_start_us < to_us && !t.text.empty())
            text += (text.empty() ? "" : " ") + t.text;
    return text;
}

memory::Entry clip_entry(const reasoning::Engine& engine, const Clip& clip)
{
    memory::Entry e;
    e.t_start_us = clip.t_start_us;
    e.t_end_us = clip.t_end_us;
    e.transcript = clip.transcript;
    std::vector<Image> images;
    for (size_t i : reasoning::clip_key_frames(clip.frames.size())) {
        images.push_back(key_frame_image(clip.frames[i].image));
        e.key_frames.push_back({.t_us = clip.frames[i].t_us,
                                .jpeg = Buffer::adopt(reasoning::encode_jpeg(images.back()))});
    }
    reasoning::ClipDescription d = reasoning::describe_clip(engine, images, clip.transcript);
    e.caption = std::move(d.caption);
    e.embedding = std::move(d.embedding);
    return e;
}

int embedding_dim(const reasoning::Engine& engine)
{
    return 2 * engine.config().llm.hidden_size;
}

} // namespace iris::assistant
