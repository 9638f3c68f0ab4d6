#include "perception/ffmpeg-impl.h"

extern "C" {
#include <libavutil/pixdesc.h>
}

#include <algorithm>
#include <array>
#include <cmath>

namespace iris::perception {

using namespace detail;

namespace {

int sws_colorspace_of(const AVFrame& frame)
{
    switch (frame.colorspace) {
    case AVCOL_SPC_BT709:
        return SWS_CS_ITU709;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:
        return SWS_CS_BT2020;
    case AVCOL_SPC_SMPTE240M:
        return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M:
        return SWS_CS_ITU601;
    default: // unspecified: HD sources are BT.709 by convention, SD ones BT.601
        return frame.height >= 720 ? SWS_CS_ITU709 : SWS_CS_ITU601;
    }
}

} // namespace

struct VideoSource::Impl
{
    Impl(const std::string& input, const VideoOptions& opts, std::stop_token stop)
        : options(opts)
        , decoder(open_input(input, AVMEDIA_TYPE_VIDEO,
                             {opts.capture_width, opts.capture_height, opts.capture_fps},
                             std::move(stop)),
                  AVMEDIA_TYPE_VIDEO, opts.threads, input)
    { }

    VideoOptions options;
    StreamDecoder decoder;
    FramePtr frame = make_frame();
    SwsPtr sws;
    std::array<int, 5> sws_geometry {}; // source width, height, pixel format; output size
    int sws_colorspace = -1; // what sws converts from; -1: not set yet
    int sws_full_range = -1;
    VideoInfo info;
    uint64_t n_converted = 0;
    int64_t start_us = AV_NOPTS_VALUE; // source time of pts 0
    int64_t frame_us = 0; // nominal frame duration, for frames without a timestamp
    int64_t last_pts_us = -1;
    int64_t pace_wall_us = 0; // realtime: wall time of the first returned frame...
    int64_t pace_pts_us = AV_NOPTS_VALUE; // ...and its pts
    bool ended = false;

    int64_t frame_pts_us(const AVFrame& f)
    {
        const int64_t ts = f.best_effort_timestamp;
        if (ts == AV_NOPTS_VALUE) return last_pts_us < 0 ? 0 : last_pts_us + frame_us;
        const int64_t us = av_rescale_q(ts, decoder.stream().time_base, kAvTimeBase);
        if (start_us == AV_NOPTS_VALUE) {
            const int64_t container = decoder.format().start_time;
            start_us = !decoder.live() && container != AV_NOPTS_VALUE ? container : us;
        }
        return us - start_us;
    }

    VideoFrame convert(const AVFrame& f, int64_t pts_us)
    {
        int w = options.width, h = options.height;
        if (w <= 0 && h <= 0) {
            w = f.width;
            h = f.height;
        } else if (w <= 0) {
            w = std::max(1, int(std::lround(double(f.width) * h / f.height)));
        } else if (h <= 0) {
            h = std::max(1, int(std::lround(double(f.height) * w / f.width)));
        }
        const std::array<int, 5> geometry {f.width, f.height, f.format, w, h};
        if (!sws || geometry != sws_geometry) {
            sws.reset(sws_getContext(f.width, f.height, AVPixelFormat(f.format), w, h,
                                     AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr, nullptr));
            if (!sws)
                throw Error(
                    ErrorKind::unsupported,
                    strfmt("'%s': cannot convert %s %dx%d frames to RGB", decoder.name().c_str(),
                           av_get_pix_fmt_name(AVPixelFormat(f.format)), f.width, f.height));
            sws_geometry = geometry;
            sws_colorspace = -1;
        }
        const int colorspace = sws_colorspace_of(f);
        const int full_range = f.color_range == AVCOL_RANGE_JPEG ? 1 : 0;
        if (colorspace != sws_colorspace || full_range != sws_full_range) {
            // Setting the details rebuilds swscale's tables: only when something changed.
            const int* coefficients = sws_getCoefficients(colorspace);
            sws_setColorspaceDetails(sws.get(), coefficients, full_range, coefficients, 1, 0,
                                     1 << 16, 1 << 16);
            sws_colorspace = colorspace;
            sws_full_range = full_range;
        }
        VideoFrame out;
        out.pts_us = pts_us;
        out.image = Image::allocate(w, h, [&](uint8_t* data) {
            uint8_t* planes[4] = {data, nullptr, nullptr, nullptr};
            const int strides[4] = {w * 3, 0, 0, 0};
            sws_scale(sws.get(), f.data, f.linesize, 0, f.height, planes, strides);
        });
        ++n_converted;
        return out;
    }
};

VideoSource::VideoSource(const std::string& input, VideoOptions options, std::stop_token stop)
    : impl_(std::make_unique<Impl>(input, options, std::move(stop)))
{
    Impl& s = *impl_;
    AVStream& st = s.decoder.stream();
    const AVRational rate = av_guess_frame_rate(&s.decoder.format(), &st, nullptr);
    s.info.format = s.decoder.format().iformat->name;
    s.info.codec = avcodec_get_name(st.codecpar->codec_id);
    s.info.width = st.codecpar->width;
    s.info.height = st.codecpar->height;
    s.info.fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
    s.info.live = s.decoder.live();
    if (!s.info.live) {
        if (s.decoder.format().duration > 0)
            s.info.duration_us = s.decoder.format().duration;
        else if (st.duration > 0)
            s.info.duration_us = av_rescale_q(st.duration, st.time_base, kAvTimeBase);
    }
    s.frame_us = s.info.fps > 0 ? int64_t(std::llround(1e6 / s.info.fps)) : 33'333;
    IRIS_LOG_DEBUG("video '%s': %s %s %dx%d %.2f fps", input.c_str(), s.info.format.c_str(),
                   s.info.codec.c_str(), s.info.width, s.info.height, s.info.fps);
}

VideoSource::~VideoSource() = default;
VideoSource::VideoSource(VideoSource&&) noexcept = default;
VideoSource& VideoSource::operator=(VideoSource&&) noexcept = default;

const VideoInfo& VideoSource::info() const
{
    return impl_->info;
}

VideoStats VideoSource::stats() const
{
    return {impl_->decoder.n_decoded(), impl_->n_converted, impl_->decoder.n_corrupt()};
}

std::optional<VideoFrame> VideoSource::read(int64_t min_pts_us)
{
    Impl& s = *impl_;
    while (!s.ended && s.decoder.next(s.frame.get())) {
        const int64_t pts_us = s.frame_pts_us(*s.frame);
        s.last_pts_us = pts_us;
        if (s.options.duration_us > 0 && pts_us >= s.options.duration_us) break;
        if (pts_us < min_pts_us) continue;
        VideoFrame out = s.convert(*s.frame, pts_us);
        if (s.options.realtime && !s.decoder.device()) {
            if (s.pace_pts_us == AV_NOPTS_VALUE) {
                s.pace_pts_us = pts_us;
                s.pace_wall_us = now_us();
            } else if (!sleep_until_us(s.pace_wall_us + (pts_us - s.pace_pts_us),
                                       s.decoder.stop())) {
                return std::nullopt;
            }
        }
        return out;
    }
    s.ended = true;
    return std::nullopt;
}

} // namespace iris::perception
