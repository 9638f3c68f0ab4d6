#include "perception/audio-impl.h"
#include "perception/ffmpeg-impl.h"

#include <alsa/asoundlib.h>
#include <portaudio.h>

#include <cstdarg>
#include <cstdlib>
#include <dlfcn.h>
#include <mutex>

namespace iris::perception {

using namespace detail;

namespace {

std::mutex g_portaudio_mutex; // Pa_Initialize and Pa_Terminate are not thread-safe

// ALSA prints every device it probes and fails to open; that goes to the debug log.
void alsa_to_log(const char* file, int line, const char*, int, const char* fmt, ...)
{
    if (log_level() > LogLevel::debug) return;
    char text[512];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    IRIS_LOG_DEBUG("alsa %s:%d: %s", file, line, text);
}

void jack_to_log(const char* text)
{
    IRIS_LOG_DEBUG("jack: %s", text);
}

// PortAudio probes JACK, whose library prints to stderr when no JACK server runs. Its message
// functions are set through the process's symbols, so that Iris need not link JACK itself.
void quiet_jack()
{
    using SetFunction = void (*)(void (*)(const char*));
    for (const char* name : {"jack_set_error_function", "jack_set_info_function"})
        if (void* symbol = dlsym(RTLD_DEFAULT, name))
            reinterpret_cast<SetFunction>(symbol)(jack_to_log);
}

// One PortAudio initialisation (PortAudio counts them).
class PortAudio
{
public:
    PortAudio()
    {
        std::lock_guard lock(g_portaudio_mutex);
        // Probing JACK would otherwise start a JACK server when none runs.
        setenv("JACK_NO_START_SERVER", "1", 0);
        snd_lib_error_set_handler(alsa_to_log);
        quiet_jack();
        const PaError err = Pa_Initialize();
        if (err != paNoError)
            throw Error(
                ErrorKind::not_found,
                strfmt("no microphone: PortAudio did not start (%s)", Pa_GetErrorText(err)));
    }
    ~PortAudio()
    {
        std::lock_guard lock(g_portaudio_mutex);
        Pa_Terminate();
    }
    PortAudio(const PortAudio&) = delete;
    PortAudio& operator=(const PortAudio&) = delete;
};

struct StreamCloser
{
    void operator()(PaStream* s) const
    {
        Pa_AbortStream(s);
        Pa_CloseStream(s);
    }
};

class Microphone final : public AudioBackend
{
public:
    Microphone(const AudioOptions& options, std::stop_token stop_token)
    {
        stop = std::move(stop_token);
        info.live = true;
        const PaDeviceIndex device = Pa_GetDefaultInputDevice();
        const PaDeviceInfo* device_info = device == paNoDevice ? nullptr : Pa_GetDeviceInfo(device);
        if (!device_info)
            throw Error(ErrorKind::not_found,
                        "no microphone: PortAudio found no audio input device (no sound card, "
                        "or no PulseAudio or PipeWire server running)");
        info.description = strfmt("mic: %s", device_info->name);

        PaStreamParameters params {};
        params.device = device;
        params.channelCount = 1;
        params.sampleFormat = paInt16;
        params.suggestedLatency = device_info->defaultLowInputLatency;
        rate_ = Pa_IsFormatSupported(&params, nullptr, kSampleRate) == paFormatIsSupported
            ? kSampleRate
            : int(device_info->defaultSampleRate);
        frames_ = std::max(1, rate_ * std::max(1, options.chunk_ms) / 1000);
        PaStream* raw = nullptr;
        PaError err = Pa_OpenStream(&raw, &params, nullptr, rate_, unsigned(frames_), paClipOff,
                                    nullptr, nullptr);
        if (err == paNoError) {
            stream_.reset(raw);
            err = Pa_StartStream(raw);
        }
        if (err != paNoError)
            throw Error(ErrorKind::io,
                        strfmt("cannot open the microphone '%s' at %d Hz: %s", device_info->name,
                               rate_, Pa_GetErrorText(err)));
        if (rate_ != kSampleRate) {
            AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO; // FFmpeg 5 takes it non-const
            SwrContext* swr = nullptr;
            int averr = swr_alloc_set_opts2(&swr, &mono, AV_SAMPLE_FMT_S16, kSampleRate, &mono,
                                            AV_SAMPLE_FMT_S16, rate_, 0, nullptr);
            swr_.reset(swr);
            if (averr >= 0) averr = swr_init(swr);
            if (averr < 0)
                throw Error(ErrorKind::unsupported,
                            strfmt("cannot resample the microphone from %d Hz: %s", rate_,
                                   av_error_text(averr).c_str()));
        }
        IRIS_LOG_INFO("microphone: %s at %d Hz", device_info->name, rate_);
    }

    std::optional<std::vector<int16_t>> read() override
    {
        if (stop.stop_requested()) return std::nullopt;
        std::vector<int16_t> in(static_cast<size_t>(frames_));
        const PaError err
            = Pa_ReadStream(stream_.get(), in.data(), static_cast<unsigned long>(frames_));
        if (err == paInputOverflowed)
            ++stats.n_overflows; // samples were lost before these; these are good
        else if (err != paNoError)
            throw Error(ErrorKind::io,
                        strfmt("reading the microphone failed: %s", Pa_GetErrorText(err)));
        if (!swr_) return in;
        std::vector<int16_t> out(size_t(swr_get_out_samples(swr_.get(), frames_)));
        uint8_t* out_planes[1] = {reinterpret_cast<uint8_t*>(out.data())};
        const uint8_t* in_planes[1] = {reinterpret_cast<const uint8_t*>(in.data())};
        const int n = swr_convert(swr_.get(), out_planes, int(out.size()), in_planes, frames_);
        out.resize(size_t(std::max(0, n)));
        return out;
    }

private:
    PortAudio portaudio_; // first in, last out
    std::unique_ptr<PaStream, StreamCloser> stream_;
    SwrPtr swr_;
    int rate_ = kSampleRate;
    int frames_ = 0;
};

} // namespace

std::unique_ptr<AudioBackend> detail::open_microphone(const AudioOptions& options,
                                                      std::stop_token stop)
{
    return std::make_unique<Microphone>(options, std::move(stop));
}

} // namespace iris::perception
