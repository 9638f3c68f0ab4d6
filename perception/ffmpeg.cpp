#include "perception/ffmpeg-impl.h"

extern "C" {
#include <libavdevice/avdevice.h>
#include <libavutil/dict.h>
}

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdarg>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <thread>

namespace iris::perception::detail {
namespace {

// Demuxers of self-contained media files. Everything else is refused, above all the playlist
// and manifest demuxers (hls, dash, concat, ...) that open further URLs named in the file.
constexpr std::array<std::string_view, 35> kAllowedDemuxers
    = {"mov",       "matroska", "webm", "avi", "flv", "mpegts",       "mpeg", "ogg",  "asf",
       "nut",       "mxf",      "dv",   "rm",  "ivf", "yuv4mpegpipe", "h264", "hevc", "m4v",
       "mpegvideo", "mjpeg",    "gif",  "wav", "w64", "mp3",          "flac", "aac",  "aiff",
       "caf",       "au",       "wv",   "ape", "tta", "ac3",          "eac3", "amr"};

// Reads that fail in a row before a source gives up (a camera unplugged, a file gone).
constexpr int kMaxReadFailures = 100;

constexpr std::array<std::string_view, 3> kTestPatterns = {"testsrc", "testsrc2", "smptebars"};

bool demuxer_allowed(const AVInputFormat* format)
{
    std::string_view names = format->name; // "mov,mp4,m4a,3gp,3g2,mj2"
    while (!names.empty()) {
        const size_t comma = names.find(',');
        const std::string_view name = names.substr(0, comma);
        if (std::find(kAllowedDemuxers.begin(), kAllowedDemuxers.end(), name)
            != kAllowedDemuxers.end())
            return true;
        names = comma == std::string_view::npos ? std::string_view() : names.substr(comma + 1);
    }
    return false;
}

// The scheme of a URL ("http" in "http://x"), or empty for a plain path.
std::string_view url_scheme(std::string_view input)
{
    if (input.empty() || !std::isalpha(static_cast<unsigned char>(input[0]))) return {};
    for (size_t i = 1; i < input.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(input[i]);
        if (c == ':') return input.substr(0, i);
        if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return {};
    }
    return {};
}

void forward_ffmpeg_log(void* avcl, int level, const char* fmt, va_list args)
{
    if (level > AV_LOG_WARNING || log_level() > LogLevel::debug) return;
    char line[1024];
    int print_prefix = 1;
    av_log_format_line2(avcl, level, fmt, args, line, sizeof line, &print_prefix);
    std::string_view text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    if (!text.empty()) IRIS_LOG_DEBUG("ffmpeg: %.*s", int(text.size()), text.data());
}

// Corrupt input makes FFmpeg log a lot; its messages go to Iris's log at debug level.
void init_ffmpeg()
{
    static std::once_flag once;
    std::call_once(once, [] {
        av_log_set_callback(forward_ffmpeg_log);
        avdevice_register_all();
    });
}

int interrupt_requested(void* opaque)
{
    return static_cast<const std::stop_token*>(opaque)->stop_requested() ? 1 : 0;
}

// Owns an AVDictionary that FFmpeg may replace (it hands back the options it did not use).
class Dict
{
public:
    void set(const char* key, const std::string& value)
    {
        av_dict_set(&dict_, key, value.c_str(), 0);
    }
    AVDictionary** ptr() { return &dict_; }
    ~Dict() { av_dict_free(&dict_); }

private:
    AVDictionary* dict_ = nullptr;
};

// Opens `url` with `format` and `options`; the context is freed by FFmpeg on failure.
FormatPtr open_format(const std::string& url, const AVInputFormat* format, Dict& options,
                      const AVIOInterruptCB& interrupt, int* error)
{
    AVFormatContext* ctx = avformat_alloc_context();
    if (!ctx) throw std::bad_alloc();
    ctx->interrupt_callback = interrupt;
    *error = avformat_open_input(&ctx, url.c_str(), format, options.ptr());
    return FormatPtr(*error < 0 ? nullptr : ctx);
}

} // namespace

FramePtr make_frame()
{
    FramePtr frame(av_frame_alloc());
    if (!frame) throw std::bad_alloc();
    return frame;
}

PacketPtr make_packet()
{
    PacketPtr packet(av_packet_alloc());
    if (!packet) throw std::bad_alloc();
    return packet;
}

std::string av_error_text(int code)
{
    char text[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(code, text, sizeof text);
    return text;
}

Input open_input(const std::string& input, AVMediaType type, const OpenOptions& options,
                 std::stop_token stop)
{
    init_ffmpeg();
    Input in;
    in.stop = std::make_unique<std::stop_token>(std::move(stop));
    const AVIOInterruptCB interrupt {interrupt_requested, in.stop.get()};
    const char* what = type == AVMEDIA_TYPE_VIDEO ? "video" : "audio";
    int err = 0;

    const bool pattern
        = std::find(kTestPatterns.begin(), kTestPatterns.end(), input) != kTestPatterns.end();
    if (pattern || input.starts_with("/dev/video") || input.starts_with("/dev/v4l/")) {
        if (type != AVMEDIA_TYPE_VIDEO)
            throw Error(ErrorKind::unsupported,
                        strfmt("'%s' is a video device or pattern; it has no audio (use \"mic\" or "
                               "a file)",
                               input.c_str()));
        Dict dict;
        const AVInputFormat* format = nullptr;
        std::string url = input;
        if (pattern) {
            // Only our own graph string reaches lavfi: its filters can open files and URLs.
            format = av_find_input_format("lavfi");
            const bool sized = options.capture_width > 0 && options.capture_height > 0;
            url = strfmt("%s=size=%dx%d:rate=%d", input.c_str(),
                         sized ? options.capture_width : 640, sized ? options.capture_height : 480,
                         options.capture_fps > 0 ? options.capture_fps : 30);
        } else {
            if (!std::filesystem::exists(input))
                throw Error(ErrorKind::not_found, "no such camera device: " + input);
            format = av_find_input_format("video4linux2");
            if (options.capture_width > 0 && options.capture_height > 0)
                dict.set("video_size",
                         strfmt("%dx%d", options.capture_width, options.capture_height));
            if (options.capture_fps > 0) dict.set("framerate", std::to_string(options.capture_fps));
        }
        if (!format)
            throw Error(ErrorKind::unsupported,
                        strfmt("this FFmpeg has no %s input (needed for '%s')",
                               pattern ? "lavfi" : "video4linux2", input.c_str()));
        in.format = open_format(url, format, dict, interrupt, &err);
        if (!in.format)
            throw Error(
                ErrorKind::io,
                strfmt("cannot open %s '%s': %s", what, input.c_str(), av_error_text(err).c_str()));
        in.live = true;
        in.device = !pattern;
    } else {
        std::string path = input;
        const std::string_view scheme = url_scheme(input);
        if (scheme == "file") {
            path = input.substr(5);
            if (path.starts_with("//")) path = path.substr(2); // file:///abs -> /abs
        } else if (!scheme.empty() && !std::filesystem::exists(input)) {
            throw Error(ErrorKind::unsupported,
                        strfmt("'%s' names the protocol '%.*s'; only local files and devices "
                               "are opened",
                               input.c_str(), int(scheme.size()), scheme.data()));
        }
        std::error_code ec;
        if (!std::filesystem::exists(path, ec))
            throw Error(ErrorKind::not_found, strfmt("no such %s file: %s", what, path.c_str()));
        if (!std::filesystem::is_regular_file(path, ec))
            throw Error(ErrorKind::unsupported,
                        strfmt("'%s' is not a regular file; %s input is a file, \"/dev/videoN\" "
                               "or a test pattern",
                               path.c_str(), what));
        // FFmpeg takes "file:" + path, so that a ':' in the path cannot name a protocol.
        const std::string url = "file:" + path;

        // Probe first, so that a playlist is refused before its demuxer opens anything.
        AVIOContext* pb = nullptr;
        Dict io_options;
        io_options.set("protocol_whitelist", "file");
        err = avio_open2(&pb, url.c_str(), AVIO_FLAG_READ, &interrupt, io_options.ptr());
        if (err < 0)
            throw Error(ErrorKind::io,
                        strfmt("cannot read '%s': %s", path.c_str(), av_error_text(err).c_str()));
        const AVInputFormat* format = nullptr;
        err = av_probe_input_buffer2(pb, &format, url.c_str(), nullptr, 0, 0);
        avio_closep(&pb);
        if (err < 0 || !format)
            throw Error(ErrorKind::invalid_input,
                        strfmt("'%s' is not a media file FFmpeg recognises (%s)", path.c_str(),
                               av_error_text(err).c_str()));
        if (!demuxer_allowed(format))
            throw Error(ErrorKind::unsupported,
                        strfmt("'%s' is refused: FFmpeg reads it as '%s' (%s), and only "
                               "self-contained media files are opened, not playlists, manifests "
                               "or network streams",
                               path.c_str(), format->name,
                               format->long_name ? format->long_name : "no description"));

        Dict dict;
        dict.set("protocol_whitelist", "file");
        in.format = open_format(url, format, dict, interrupt, &err);
        if (!in.format)
            throw Error(ErrorKind::invalid_input,
                        strfmt("cannot open '%s': %s", path.c_str(), av_error_text(err).c_str()));
    }

    err = avformat_find_stream_info(in.format.get(), nullptr);
    if (err < 0)
        throw Error(ErrorKind::invalid_input,
                    strfmt("cannot read the streams of '%s': %s", input.c_str(),
                           av_error_text(err).c_str()));
    return in;
}

StreamDecoder::StreamDecoder(Input in, AVMediaType type, int threads, std::string name)
    : in_(std::move(in))
    , name_(std::move(name))
    , packet_(make_packet())
{
    AVFormatContext* fmt = in_.format.get();
    index_ = av_find_best_stream(fmt, type, -1, -1, nullptr, 0);
    if (index_ < 0)
        throw Error(ErrorKind::invalid_input,
                    strfmt("'%s' has no %s stream", name_.c_str(), av_get_media_type_string(type)));
    for (unsigned i = 0; i < fmt->nb_streams; ++i)
        if (int(i) != index_) fmt->streams[i]->discard = AVDISCARD_ALL;

    const AVStream* st = fmt->streams[index_];
    const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec)
        throw Error(ErrorKind::unsupported,
                    strfmt("'%s': this FFmpeg has no decoder for %s", name_.c_str(),
                           avcodec_get_name(st->codecpar->codec_id)));
    codec_.reset(avcodec_alloc_context3(codec));
    if (!codec_) throw std::bad_alloc();
    int err = avcodec_parameters_to_context(codec_.get(), st->codecpar);
    if (err >= 0) {
        codec_->pkt_timebase = st->time_base;
        codec_->thread_count = threads;
        err = avcodec_open2(codec_.get(), codec, nullptr);
    }
    if (err < 0)
        throw Error(ErrorKind::invalid_input,
                    strfmt("'%s': cannot open the %s decoder: %s", name_.c_str(), codec->name,
                           av_error_text(err).c_str()));
}

bool StreamDecoder::next(AVFrame* frame)
{
    av_frame_unref(frame);
    while (!ended_) {
        if (in_.stop->stop_requested()) return false;
        const int got = avcodec_receive_frame(codec_.get(), frame);
        if (got == AVERROR(EAGAIN)) {
            if (draining_ || !feed()) ended_ = true;
            continue;
        }
        if (got == AVERROR_EOF) break;
        if (got < 0) {
            ++n_corrupt_;
            continue;
        }
        if ((frame->flags & AV_FRAME_FLAG_CORRUPT) || frame->decode_error_flags) {
            ++n_corrupt_;
            av_frame_unref(frame);
            continue;
        }
        ++n_decoded_;
        return true;
    }
    ended_ = true;
    return false;
}

// Feeds the decoder one packet of our stream. Returns false when stop was requested.
bool StreamDecoder::feed()
{
    const int err = av_read_frame(in_.format.get(), packet_.get());
    if (err == AVERROR_EOF || (err < 0 && in_.format->pb && avio_feof(in_.format->pb))) {
        avcodec_send_packet(codec_.get(), nullptr); // let it return the frames it holds
        draining_ = true;
        return true;
    }
    if (err == AVERROR_EXIT) return false;
    if (err == AVERROR(EAGAIN)) { // a device with nothing ready yet
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        return true;
    }
    if (err < 0) {
        ++n_corrupt_;
        if (++read_failures_ > kMaxReadFailures)
            throw Error(ErrorKind::io,
                        strfmt("'%s': reading failed %d times in a row: %s", name_.c_str(),
                               read_failures_, av_error_text(err).c_str()));
        return true;
    }
    read_failures_ = 0;
    if (packet_->stream_index == index_) {
        const int sent = avcodec_send_packet(codec_.get(), packet_.get());
        if (sent < 0 && sent != AVERROR(EAGAIN)) ++n_corrupt_;
    }
    av_packet_unref(packet_.get());
    return true;
}

bool sleep_until_us(int64_t due_us, const std::stop_token& stop)
{
    for (;;) {
        if (stop.stop_requested()) return false;
        const int64_t left = due_us - now_us();
        if (left <= 0) return true;
        std::this_thread::sleep_for(std::chrono::microseconds(std::min<int64_t>(left, 20'000)));
    }
}

} // namespace iris::perception::detail
