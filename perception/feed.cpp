// Feed (perception.h): frames and audio pushed by a caller, read by the pipeline's threads.
#include "perception/perception.h"

#include <algorithm>

namespace iris::perception {

namespace {

// The audio thread takes at most this much at once, so that voice events stay timely.
constexpr size_t kMaxChunkSamples = kSampleRate / 2;

int64_t samples_us(int64_t n)
{
    return n * 1'000'000 / kSampleRate;
}

} // namespace

Feed::Feed(FeedOptions options)
    : options_(std::move(options))
{
    if (!options_.decode)
        throw Error(ErrorKind::invalid_argument, "a feed needs a decode function for its frames");
    if (options_.max_frames_queued < 1 || options_.max_audio_queued_us < 0)
        throw Error(ErrorKind::invalid_argument, "a feed's queue limits must be positive");
}

void Feed::push_frame(int64_t pts_us, Buffer bytes)
{
    {
        std::lock_guard lock(mutex_);
        if (closed_) return;
        if (!frames_.empty()) pts_us = std::max(pts_us, frames_.back().first);
        if (int(frames_.size()) >= options_.max_frames_queued) {
            frames_.pop_front();
            ++stats_.n_dropped;
        }
        frames_.emplace_back(pts_us, std::move(bytes));
        ++stats_.n_frames;
    }
    ready_.notify_all();
}

void Feed::push_audio(std::span<const int16_t> samples)
{
    {
        std::lock_guard lock(mutex_);
        if (closed_) return;
        const int64_t queued = samples_us(int64_t(audio_.size() + samples.size()));
        if (queued > options_.max_audio_queued_us)
            throw Error(ErrorKind::resource,
                        strfmt("audio comes faster than it is heard: %.1f s would wait, %.1f s "
                               "at most",
                               double(queued) / 1e6, double(options_.max_audio_queued_us) / 1e6));
        audio_.insert(audio_.end(), samples.begin(), samples.end());
        stats_.n_samples += samples.size();
    }
    ready_.notify_all();
}

void Feed::close()
{
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    ready_.notify_all();
}

FeedStats Feed::stats() const
{
    std::lock_guard lock(mutex_);
    FeedStats s = stats_;
    s.audio_queued_us = samples_us(int64_t(audio_.size()));
    return s;
}

std::optional<VideoFrame> Feed::read_frame(int64_t min_pts_us, std::stop_token stop)
{
    std::unique_lock lock(mutex_);
    for (;;) {
        ready_.wait(lock, stop, [&] { return closed_ || !frames_.empty(); });
        if (stop.stop_requested() || frames_.empty()) return std::nullopt;
        auto [pts_us, bytes] = std::move(frames_.front());
        frames_.pop_front();
        if (pts_us < min_pts_us) {
            ++stats_.n_skipped;
            continue;
        }
        // Decoding takes milliseconds: pushes go on meanwhile.
        lock.unlock();
        std::optional<VideoFrame> frame;
        try {
            frame = VideoFrame {pts_us, options_.decode(bytes)};
        } catch (const Error& e) {
            IRIS_LOG_DEBUG("perception: a pushed frame at %.2f s was refused: %s", pts_us / 1e6,
                           e.what());
        }
        lock.lock();
        if (frame) {
            ++stats_.n_decoded;
            return frame;
        }
        ++stats_.n_corrupt;
    }
}

std::optional<AudioChunk> Feed::read_audio(std::stop_token stop)
{
    std::unique_lock lock(mutex_);
    ready_.wait(lock, stop, [&] { return closed_ || !audio_.empty(); });
    if (stop.stop_requested() || audio_.empty()) return std::nullopt;
    const size_t n = std::min(audio_.size(), kMaxChunkSamples);
    AudioChunk chunk {samples_us(audio_taken_), {audio_.begin(), audio_.begin() + ptrdiff_t(n)}};
    audio_.erase(audio_.begin(), audio_.begin() + ptrdiff_t(n));
    audio_taken_ += int64_t(n);
    return chunk;
}

} // namespace iris::perception
