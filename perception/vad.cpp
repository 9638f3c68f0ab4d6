#include "perception/perception.h"

#include <algorithm>
#include <cmath>

namespace iris::perception {

namespace {

// How fast the noise floor may rise, per frame: slow enough that speech does not lift it
// between its pauses, fast enough to follow a fan switched on (about 2.5 dB/s at 20 ms frames).
constexpr float kFloorRiseDb = 0.05f;

float energy_db(const int16_t* samples, int n)
{
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += double(samples[i]) * samples[i];
    return float(10.0 * std::log10(sum / n / (32768.0 * 32768.0) + 1e-12));
}

} // namespace

void VadOptions::validate() const
{
    auto fail = [](const char* what) {
        throw Error(ErrorKind::invalid_argument, std::string("VAD options: ") + what);
    };
    if (frame_ms < 5 || frame_ms > 100) fail("frame_ms must be 5..100");
    if (start_ms < 0 || end_ms < frame_ms || pad_ms < 0)
        fail("start_ms, end_ms and pad_ms must not be negative, end_ms at least one frame");
    if (pad_ms > end_ms) fail("pad_ms must not exceed end_ms");
    if (max_ms < 10 * frame_ms) fail("max_ms must be at least 10 frames");
    if (!(threshold_db > 0)) fail("threshold_db must be positive");
}

Vad::Vad(VadOptions options)
    : options_(options)
{
    options_.validate();
    frame_len_ = kSampleRate * options_.frame_ms / 1000;
    start_frames_ = std::max(1, options_.start_ms / options_.frame_ms);
    end_frames_ = std::max(1, options_.end_ms / options_.frame_ms);
    pad_len_ = kSampleRate * options_.pad_ms / 1000;
    max_len_ = kSampleRate * options_.max_ms / 1000;
    // Full scale: the first frame sets the floor, and quieter ones lower it.
    floor_db_ = 0.f;
}

std::vector<SpeechSegment> Vad::push(std::span<const int16_t> samples)
{
    std::vector<SpeechSegment> out;
    size_t pos = 0;
    if (!partial_.empty()) {
        pos = std::min(samples.size(), size_t(frame_len_) - partial_.size());
        partial_.insert(partial_.end(), samples.begin(), samples.begin() + pos);
        if (partial_.size() < size_t(frame_len_)) return out;
        on_frame(partial_.data(), out);
        partial_.clear();
    }
    for (; pos + frame_len_ <= samples.size(); pos += frame_len_)
        on_frame(samples.data() + pos, out);
    partial_.assign(samples.begin() + pos, samples.end());
    return out;
}

void Vad::on_frame(const int16_t* frame, std::vector<SpeechSegment>& out)
{
    kept_.insert(kept_.end(), frame, frame + frame_len_);
    const int64_t frame_start = n_samples_;
    n_samples_ += frame_len_;

    const float e = energy_db(frame, frame_len_);
    const bool speech = e > floor_db_ + options_.threshold_db && e > options_.min_db;
    floor_db_ = e < floor_db_ ? e : std::min(e, floor_db_ + kFloorRiseDb);

    if (!speaking_) {
        if (speech) {
            if (n_run_++ == 0) run_start_ = frame_start;
            if (n_run_ >= start_frames_) {
                speaking_ = true;
                n_run_ = 0;
                segment_start_ = std::max(kept_start_, run_start_ - pad_len_);
                last_speech_end_ = n_samples_;
            }
        } else {
            n_run_ = 0;
        }
        if (!speaking_ && n_run_ == 0) { // keep only what a segment starting next may need
            const int64_t keep = pad_len_ + int64_t(start_frames_) * frame_len_;
            if (int64_t(kept_.size()) > keep) {
                kept_.erase(kept_.begin(), kept_.end() - keep);
                kept_start_ = n_samples_ - keep;
            }
        }
        return;
    }

    if (speech) {
        n_run_ = 0;
        last_speech_end_ = n_samples_;
    } else if (++n_run_ >= end_frames_) {
        out.push_back(cut(std::min(last_speech_end_ + pad_len_, n_samples_)));
        speaking_ = false;
        n_run_ = 0;
        return;
    }
    if (n_samples_ - segment_start_ >= max_len_) {
        out.push_back(cut(n_samples_));
        segment_start_ = n_samples_;
    }
}

SpeechSegment Vad::cut(int64_t end_sample)
{
    SpeechSegment segment;
    segment.start_us = time_us(segment_start_);
    segment.end_us = time_us(end_sample);
    segment.samples.assign(kept_.begin() + (segment_start_ - kept_start_),
                           kept_.begin() + (end_sample - kept_start_));
    kept_.erase(kept_.begin(), kept_.begin() + (end_sample - kept_start_));
    kept_start_ = end_sample;
    return segment;
}

std::optional<SpeechSegment> Vad::flush()
{
    if (!speaking_) return std::nullopt;
    speaking_ = false;
    n_run_ = 0;
    return cut(std::min(last_speech_end_ + pad_len_, n_samples_));
}

std::optional<int64_t> Vad::speech_start_us() const
{
    if (!speaking_) return std::nullopt;
    return time_us(segment_start_);
}

} // namespace iris::perception
