// Private to perception/: FFmpeg handles and the one way inputs are opened. Not part of the API.
#pragma once

#include "perception/perception.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>

namespace iris::perception::detail {

// AV_TIME_BASE_Q is a C compound literal, which is not C++.
inline constexpr AVRational kAvTimeBase {1, AV_TIME_BASE};

struct FormatCloser
{
    void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct CodecFreer
{
    void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct FrameFreer
{
    void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct PacketFreer
{
    void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFreer
{
    void operator()(SwsContext* p) const { sws_freeContext(p); }
};
struct SwrFreer
{
    void operator()(SwrContext* p) const { swr_free(&p); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;
using SwrPtr = std::unique_ptr<SwrContext, SwrFreer>;

FramePtr make_frame();
PacketPtr make_packet();

// FFmpeg's message for an error code.
std::string av_error_text(int code);

struct OpenOptions
{
    int capture_width = 0; // cameras and test patterns
    int capture_height = 0;
    int capture_fps = 0;
};

// An opened input and the stop token its blocking reads watch (the token lives here so that
// FFmpeg's interrupt callback can point at it).
struct Input
{
    std::unique_ptr<std::stop_token> stop;
    FormatPtr format;
    bool live = false; // a camera or a test pattern: endless
    bool device = false; // a camera: it delivers frames at its own pace
};

// Opens `input` as VideoSource/AudioSource document it: local files (protocol whitelist
// "file", media-container demuxers only), V4L2 devices and lavfi test patterns (video only).
Input open_input(const std::string& input, AVMediaType type, const OpenOptions& options,
                 std::stop_token stop);

// Demuxes the best stream of one type from an input and decodes it. Corrupt packets and
// frames are skipped and counted; they never end the stream.
class StreamDecoder
{
public:
    // Throws Error(invalid_input) when the input has no such stream, Error(unsupported) when
    // FFmpeg has no decoder for it. `name` labels messages.
    StreamDecoder(Input in, AVMediaType type, int threads, std::string name);

    // The next good frame into `frame` (unreferenced first). False at the end of the input or
    // once stop is requested. Throws Error(io) when reading keeps failing.
    bool next(AVFrame* frame);

    AVFormatContext& format() const { return *in_.format; }
    AVStream& stream() const { return *in_.format->streams[index_]; }
    const AVCodecContext& codec() const { return *codec_; }
    bool live() const { return in_.live; }
    bool device() const { return in_.device; }
    const std::stop_token& stop() const { return *in_.stop; }
    const std::string& name() const { return name_; }
    uint64_t n_decoded() const { return n_decoded_; }
    uint64_t n_corrupt() const { return n_corrupt_; }

private:
    bool feed();

    Input in_;
    std::string name_;
    int index_ = -1;
    CodecPtr codec_;
    PacketPtr packet_;
    bool draining_ = false;
    bool ended_ = false;
    int read_failures_ = 0;
    uint64_t n_decoded_ = 0;
    uint64_t n_corrupt_ = 0;
};

// Sleeps until `due_us` on the now_us() clock, in slices so that a stop request is seen.
// Returns false if stop was requested.
bool sleep_until_us(int64_t due_us, const std::stop_token& stop);

} // namespace iris::perception::detail
