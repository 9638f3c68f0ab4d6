#include "perception/audio-impl.h"
#include "perception/ffmpeg-impl.h"

extern "C" {
#include <libavutil/channel_layout.h>
#include <libavutil/samplefmt.h>
}

namespace iris::perception {

using namespace detail;

namespace {

class FileAudio final : public AudioBackend
{
public:
    FileAudio(const std::string& input, std::stop_token stop_token)
        : decoder_(open_input(input, AVMEDIA_TYPE_AUDIO, {}, stop_token), AVMEDIA_TYPE_AUDIO, 1,
                   input)
    {
        stop = std::move(stop_token);
        const AVCodecParameters& par = *decoder_.stream().codecpar;
        info.description
            = strfmt("%s/%s, %d Hz, %d ch", decoder_.format().iformat->name,
                     avcodec_get_name(par.codec_id), par.sample_rate, par.ch_layout.nb_channels);
        const AVFormatContext& fmt = decoder_.format();
        const AVStream& st = decoder_.stream();
        if (fmt.duration > 0)
            info.duration_us = fmt.duration;
        else if (st.duration > 0)
            info.duration_us = av_rescale_q(st.duration, st.time_base, kAvTimeBase);
    }

    ~FileAudio() override { av_channel_layout_uninit(&in_layout_); }

    std::optional<std::vector<int16_t>> read() override
    {
        while (!flushed_) {
            std::vector<int16_t> out;
            if (decoder_.next(frame_.get())) {
                configure(*frame_);
                out.resize(size_t(swr_get_out_samples(swr_.get(), frame_->nb_samples)));
                uint8_t* planes[1] = {reinterpret_cast<uint8_t*>(out.data())};
                const int n = swr_convert(swr_.get(), planes, int(out.size()),
                                          const_cast<const uint8_t**>(frame_->extended_data),
                                          frame_->nb_samples);
                if (n < 0) {
                    ++stats.n_corrupt;
                    continue;
                }
                out.resize(size_t(n));
            } else {
                flushed_ = true;
                if (!swr_ || stop.stop_requested()) break;
                out.resize(size_t(swr_get_out_samples(swr_.get(), 0)));
                uint8_t* planes[1] = {reinterpret_cast<uint8_t*>(out.data())};
                out.resize(size_t(
                    std::max(0, swr_convert(swr_.get(), planes, int(out.size()), nullptr, 0))));
            }
            stats.n_corrupt = decoder_.n_corrupt();
            if (!out.empty()) return out;
        }
        stats.n_corrupt = decoder_.n_corrupt();
        return std::nullopt;
    }

private:
    // (Re)creates the resampler when the decoded format changes (it may, mid-stream).
    void configure(const AVFrame& f)
    {
        AVChannelLayout layout {};
        if (f.ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
            av_channel_layout_default(&layout, f.ch_layout.nb_channels);
        else
            av_channel_layout_copy(&layout, &f.ch_layout);
        if (swr_ && f.format == in_format_ && f.sample_rate == in_rate_
            && av_channel_layout_compare(&layout, &in_layout_) == 0) {
            av_channel_layout_uninit(&layout);
            return;
        }
        av_channel_layout_uninit(&in_layout_);
        in_layout_ = layout;
        in_format_ = f.format;
        in_rate_ = f.sample_rate;
        AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO; // FFmpeg 5 takes it non-const
        SwrContext* swr = nullptr;
        int err = swr_alloc_set_opts2(&swr, &mono, AV_SAMPLE_FMT_S16, kSampleRate, &in_layout_,
                                      AVSampleFormat(f.format), f.sample_rate, 0, nullptr);
        swr_.reset(swr);
        if (err >= 0) err = swr_init(swr);
        if (err < 0)
            throw Error(ErrorKind::unsupported,
                        strfmt("'%s': cannot resample %s %d Hz audio: %s", decoder_.name().c_str(),
                               av_get_sample_fmt_name(AVSampleFormat(f.format)), f.sample_rate,
                               av_error_text(err).c_str()));
    }

    StreamDecoder decoder_;
    FramePtr frame_ = make_frame();
    SwrPtr swr_;
    AVChannelLayout in_layout_ {};
    int in_format_ = -1;
    int in_rate_ = 0;
    bool flushed_ = false;
};

} // namespace

std::unique_ptr<AudioBackend> detail::open_audio_file(const std::string& input,
                                                      std::stop_token stop)
{
    return std::make_unique<FileAudio>(input, std::move(stop));
}

AudioSource::AudioSource(const std::string& input, AudioOptions options, std::stop_token stop)
    : backend_(input == "mic" ? open_microphone(options, std::move(stop))
                              : open_audio_file(input, std::move(stop)))
    , options_(options)
{
    IRIS_LOG_DEBUG("audio '%s': %s", input.c_str(), backend_->info.description.c_str());
}

AudioSource::~AudioSource() = default;
AudioSource::AudioSource(AudioSource&&) noexcept = default;
AudioSource& AudioSource::operator=(AudioSource&&) noexcept = default;

const AudioInfo& AudioSource::info() const
{
    return backend_->info;
}

AudioStats AudioSource::stats() const
{
    AudioStats stats = backend_->stats;
    stats.n_samples = uint64_t(n_samples_);
    return stats;
}

std::optional<AudioChunk> AudioSource::read()
{
    if (ended_) return std::nullopt;
    std::optional<std::vector<int16_t>> samples = backend_->read();
    const int64_t limit = options_.duration_us > 0 ? options_.duration_us * kSampleRate / 1'000'000
                                                   : std::numeric_limits<int64_t>::max();
    if (!samples || n_samples_ >= limit) {
        ended_ = true;
        return std::nullopt;
    }
    if (int64_t(samples->size()) > limit - n_samples_) samples->resize(size_t(limit - n_samples_));
    AudioChunk chunk;
    chunk.pts_us = n_samples_ * 1'000'000 / kSampleRate;
    chunk.samples = std::move(*samples);
    n_samples_ += int64_t(chunk.samples.size());
    if (options_.realtime && !backend_->info.live) {
        // A chunk is due once its last sample would have been heard.
        if (pace_wall_us_ == 0) pace_wall_us_ = now_us();
        if (!sleep_until_us(pace_wall_us_ + n_samples_ * 1'000'000 / kSampleRate, backend_->stop)) {
            ended_ = true;
            return std::nullopt;
        }
    }
    return chunk;
}

} // namespace iris::perception
