// Private to perception/: where AudioSource gets its samples. Not part of the API.
#pragma once

#include "perception/perception.h"

#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

namespace iris::perception::detail {

class AudioBackend
{
public:
    virtual ~AudioBackend() = default;
    // The next 16 kHz mono samples (never empty); nullopt at the end or once stop is requested.
    virtual std::optional<std::vector<int16_t>> read() = 0;

    AudioInfo info;
    AudioStats stats; // n_samples is kept by AudioSource
    std::stop_token stop;
};

// audio-source.cpp: the audio stream of a media file, decoded and resampled with FFmpeg.
std::unique_ptr<AudioBackend> open_audio_file(const std::string& input, std::stop_token stop);
// microphone.cpp: the default PortAudio input device.
std::unique_ptr<AudioBackend> open_microphone(const AudioOptions& options, std::stop_token stop);

} // namespace iris::perception::detail
