#include "perception/perception.h"

#include <cmath>
#include <cstdlib>

namespace iris::perception {

namespace {

constexpr int kThumbSide = 32;

// A 32x32 grey thumbnail: each cell is the mean BT.601 luma of its block of the frame. Averaging
// whole blocks makes the measure insensitive to sensor noise and to the frame size.
std::vector<uint8_t> thumbnail(const Image& frame)
{
    std::vector<uint64_t> sum(kThumbSide * kThumbSide, 0);
    std::vector<uint32_t> count(kThumbSide * kThumbSide, 0);
    std::vector<int> column(frame.width);
    for (int x = 0; x < frame.width; ++x) column[x] = int(int64_t(x) * kThumbSide / frame.width);
    for (int y = 0; y < frame.height; ++y) {
        const int cell_row = int(int64_t(y) * kThumbSide / frame.height) * kThumbSide;
        const uint8_t* p = frame.pixel(0, y);
        for (int x = 0; x < frame.width; ++x, p += 3) {
            sum[cell_row + column[x]] += 77u * p[0] + 150u * p[1] + 29u * p[2];
            ++count[cell_row + column[x]];
        }
    }
    std::vector<uint8_t> out(kThumbSide * kThumbSide, 0);
    for (size_t i = 0; i < out.size(); ++i)
        if (count[i]) out[i] = uint8_t(sum[i] / count[i] >> 8);
    return out;
}

float difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b)
{
    uint64_t total = 0;
    for (size_t i = 0; i < a.size(); ++i) total += uint64_t(std::abs(int(a[i]) - int(b[i])));
    return float(double(total) / (255.0 * double(a.size())));
}

void check_frame(const VideoFrame& frame)
{
    const Image& im = frame.image;
    if (im.width <= 0 || im.height <= 0 || im.rgb.size() != size_t(im.width) * im.height * 3)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("frame at %lld us: %dx%d with %zu bytes is not RGB24",
                           (long long)frame.pts_us, im.width, im.height, im.rgb.size()));
}

} // namespace

const char* clip_end_name(ClipEnd reason)
{
    switch (reason) {
    case ClipEnd::scene_change:
        return "scene_change";
    case ClipEnd::full:
        return "full";
    case ClipEnd::end_of_stream:
        return "end_of_stream";
    }
    return "unknown";
}

void SamplerOptions::validate() const
{
    if (!(fps > 0 && fps <= 1000))
        throw Error(ErrorKind::invalid_argument, strfmt("sampler fps %g is not in (0, 1000]", fps));
    if (!(scene_threshold > 0))
        throw Error(ErrorKind::invalid_argument,
                    strfmt("sampler scene_threshold %g must be positive", double(scene_threshold)));
    if (clip_frames_max < 1 || clip_frames_min < 1 || clip_frames_min > clip_frames_max)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("sampler clip frames min %d / max %d: need 1 <= min <= max",
                           clip_frames_min, clip_frames_max));
}

FrameSampler::FrameSampler(SamplerOptions options)
    : options_(options)
{
    options_.validate();
    interval_us_ = std::max<int64_t>(1, std::llround(1e6 / options_.fps));
}

float FrameSampler::scene_difference(const VideoFrame& a, const VideoFrame& b)
{
    check_frame(a);
    check_frame(b);
    return difference(thumbnail(a.image), thumbnail(b.image));
}

ClipEvent FrameSampler::close_clip(ClipEnd reason, int64_t end_us)
{
    ClipEvent clip;
    clip.clip_id = next_clip_id_++;
    clip.start_us = clip_start_us_;
    clip.end_us = end_us;
    clip.n_frames = n_clip_frames_;
    clip.reason = reason;
    n_clip_frames_ = 0;
    return clip;
}

FrameSampler::Step FrameSampler::offer(const VideoFrame& frame)
{
    Step step;
    if (frame.pts_us < next_pts_us_) return step;
    check_frame(frame);
    // Keep the grid steady, but restart it after a gap rather than sampling a burst.
    next_pts_us_ = next_pts_us_ + interval_us_ > frame.pts_us ? next_pts_us_ + interval_us_
                                                              : frame.pts_us + interval_us_;

    std::vector<uint8_t> thumb = thumbnail(frame.image);
    float diff = 0.f;
    if (n_clip_frames_ > 0) {
        diff = difference(clip_thumb_, thumb);
        if (diff >= options_.scene_threshold && n_clip_frames_ >= options_.clip_frames_min)
            step.closed_before = close_clip(ClipEnd::scene_change,
                                            std::min(last_pts_us_ + interval_us_, frame.pts_us));
    }
    if (n_clip_frames_ == 0) {
        clip_thumb_ = std::move(thumb);
        clip_start_us_ = frame.pts_us;
        diff = 0.f;
    }
    FrameEvent& event = step.sampled.emplace();
    event.frame = frame;
    event.clip_id = next_clip_id_;
    event.index_in_clip = n_clip_frames_++;
    event.scene_diff = diff;
    last_pts_us_ = frame.pts_us;
    if (n_clip_frames_ >= options_.clip_frames_max)
        step.closed_after = close_clip(ClipEnd::full, frame.pts_us + interval_us_);
    return step;
}

std::optional<ClipEvent> FrameSampler::finish()
{
    if (n_clip_frames_ == 0) return std::nullopt;
    return close_clip(ClipEnd::end_of_stream, last_pts_us_ + interval_us_);
}

} // namespace iris::perception
