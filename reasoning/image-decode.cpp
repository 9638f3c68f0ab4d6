// Image decoding: PNG (libpng), JPEG (libjpeg-turbo), WebP (libwebp), BMP (stb_image) to 8-bit
// RGB, matching Pillow 9.4's Image.open(f).convert('RGB').
//
// libpng and libjpeg report errors through longjmp. Every setjmp lives in a C-style "stage"
// function whose frame holds no object with a destructor, and everything those stages need
// (the output buffers included) is allocated by the C++ caller beforehand, so a longjmp never
// skips a destructor and never crosses a C++ frame.
#include "reasoning/image.h"

#include "core/core.h"

#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>

#include <jerror.h>
#include <jpeglib.h>
#include <stb_image.h>
#include <sys/stat.h>
#include <webp/decode.h>
#include <webp/demux.h>

namespace iris::reasoning {

namespace {

// ---------------------------------------------------------------------------------------------
// Shared checks

std::string label(std::string_view name)
{
    return "image '" + std::string(name) + "'";
}

[[noreturn]] void fail(ErrorKind kind, std::string_view name, const std::string& what)
{
    throw Error(kind, label(name) + ": " + what);
}

void check_size(ImageFormat format, int64_t width, int64_t height, const ImageLimits& limits,
                std::string_view name)
{
    const char* fmt = image_format_name(format);
    if (width <= 0 || height <= 0)
        fail(ErrorKind::invalid_input, name,
             strfmt("%s header gives a zero size (%lldx%lld)", fmt, (long long)width,
                    (long long)height));
    if (width > limits.max_side || height > limits.max_side)
        fail(ErrorKind::resource, name,
             strfmt("%s is %lldx%lld pixels, more than the limit of %d pixels per side", fmt,
                    (long long)width, (long long)height, limits.max_side));
    if (width * height > limits.max_pixels)
        fail(ErrorKind::resource, name,
             strfmt("%s is %lldx%lld = %lld pixels, more than the limit of %lld", fmt,
                    (long long)width, (long long)height, (long long)(width * height),
                    (long long)limits.max_pixels));
    if (width < limits.min_side || height < limits.min_side)
        fail(ErrorKind::invalid_input, name,
             strfmt("%s is %lldx%lld pixels, smaller than the minimum of %dx%d", fmt,
                    (long long)width, (long long)height, limits.min_side, limits.min_side));
}

// Pixels being decoded: writable until the decoder hands them on as an Image.
struct Pixels
{
    int width = 0;
    int height = 0;
    std::vector<uint8_t> rgb;

    Image take() { return Image::adopt(width, height, std::move(rgb)); }
};

Pixels new_pixels(int width, int height, std::string_view name)
{
    Pixels img;
    img.width = width;
    img.height = height;
    try {
        img.rgb.resize(size_t(width) * size_t(height) * 3);
    } catch (const std::bad_alloc&) {
        fail(ErrorKind::resource, name, strfmt("out of memory for %dx%d pixels", width, height));
    }
    return img;
}

uint32_t read_le32(const uint8_t* p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24;
}
uint16_t read_le16(const uint8_t* p)
{
    return uint16_t(p[0] | p[1] << 8);
}

// ---------------------------------------------------------------------------------------------
// PNG

// Plain data shared with the libpng callbacks and stages.
struct PngReader
{
    png_structp png;
    png_infop info;
    const uint8_t* data;
    size_t size;
    size_t pos;
    bool truncated;
    char message[256];
};

void png_read_bytes(png_structp png, png_bytep out, size_t n)
{
    auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
    if (n > r->size - r->pos) {
        r->truncated = true;
        png_error(png, "truncated PNG data (unexpected end of file)");
    }
    std::memcpy(out, r->data + r->pos, n);
    r->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg)
{
    auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
    std::snprintf(r->message, sizeof r->message, "%s", msg);
    png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) { }

struct PngHeader
{
    png_uint_32 width, height;
    int bit_depth, color_type, interlace;
    uint8_t palette[256 * 3];
};

// Stage 1: everything before the first IDAT. C-style: see the file comment.
bool png_read_header(PngReader* r, PngHeader* h)
{
    if (setjmp(png_jmpbuf(r->png))) return false;
    png_set_read_fn(r->png, r, png_read_bytes);
    // A bad CRC is an error even on ancillary chunks (libpng would only warn).
    png_set_crc_action(r->png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    // Size limits are ours (checked right after the header); libpng's default would cut first.
    png_set_user_limits(r->png, 0x7fffffff, 0x7fffffff);
    // Skip (but CRC-check) the ancillary chunks we never use instead of decompressing them.
    png_set_keep_unknown_chunks(r->png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
    png_set_benign_errors(r->png, 1);
    png_read_info(r->png, r->info);
    int compression, filter;
    png_get_IHDR(r->png, r->info, &h->width, &h->height, &h->bit_depth, &h->color_type,
                 &h->interlace, &compression, &filter);
    // Pillow's palette: entries from PLTE; indices past them read as grey (i, i, i).
    for (int i = 0; i < 256; ++i)
        h->palette[3 * i] = h->palette[3 * i + 1] = h->palette[3 * i + 2] = uint8_t(i);
    png_colorp plte = nullptr;
    int n_plte = 0;
    if (h->color_type == PNG_COLOR_TYPE_PALETTE
        && png_get_PLTE(r->png, r->info, &plte, &n_plte) == PNG_INFO_PLTE) {
        for (int i = 0; i < n_plte && i < 256; ++i) {
            h->palette[3 * i] = plte[i].red;
            h->palette[3 * i + 1] = plte[i].green;
            h->palette[3 * i + 2] = plte[i].blue;
        }
    }
    return true;
}

enum class PngPath {
    direct, // libpng's transforms give RGB rows that land in the output
    indexed, // palette indices, mapped with Pillow's palette afterwards
    grey16, // 16-bit grey, clamped like Pillow's I -> RGB afterwards
};

// Stage 2: the pixels and the rest of the file (up to IEND, so truncation is always caught).
bool png_read_pixels(PngReader* r, PngPath path, size_t row_bytes, png_bytep* rows)
{
    if (setjmp(png_jmpbuf(r->png))) return false;
    if (path == PngPath::direct) {
        // Pillow keeps the high byte of 16-bit RGB(A)/LA samples, expands 1/2/4-bit grey by
        // bit replication (x255, x85, x17) and drops alpha without compositing.
        png_set_strip_16(r->png);
        png_set_strip_alpha(r->png);
        png_set_expand_gray_1_2_4_to_8(r->png);
        png_set_gray_to_rgb(r->png);
    } else if (path == PngPath::indexed) {
        png_set_packing(r->png);
    }
    png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
    if (png_get_rowbytes(r->png, r->info) != row_bytes) {
        std::snprintf(r->message, sizeof r->message, "unexpected PNG row size %zu (expected %zu)",
                      size_t(png_get_rowbytes(r->png, r->info)), row_bytes);
        return false;
    }
    png_read_image(r->png, rows);
    png_read_end(r->png, nullptr);
    return true;
}

Image decode_png(std::span<const uint8_t> bytes, const ImageLimits& limits, std::string_view name,
                 ImageInfo* info_only)
{
    PngReader r {};
    r.data = bytes.data();
    r.size = bytes.size();
    r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_on_error, png_on_warning);
    if (r.png) r.info = png_create_info_struct(r.png);
    struct Guard
    {
        PngReader& r;
        ~Guard() { png_destroy_read_struct(&r.png, r.info ? &r.info : nullptr, nullptr); }
    } guard {r};
    if (!r.png || !r.info)
        fail(ErrorKind::resource, name, "out of memory creating the PNG decoder");

    auto png_failed = [&]() {
        fail(ErrorKind::invalid_input, name,
             r.truncated ? std::string(r.message) : std::string("corrupt PNG: ") + r.message);
    };
    PngHeader h {};
    if (!png_read_header(&r, &h)) png_failed();
    check_size(ImageFormat::png, h.width, h.height, limits, name);
    if (info_only) {
        *info_only = {ImageFormat::png, int(h.width), int(h.height)};
        return {};
    }

    Pixels img = new_pixels(int(h.width), int(h.height), name);
    const size_t w = h.width;
    PngPath path = PngPath::direct;
    size_t row_bytes = w * 3;
    if (h.color_type == PNG_COLOR_TYPE_PALETTE) {
        path = PngPath::indexed;
        row_bytes = w;
    } else if (h.color_type == PNG_COLOR_TYPE_GRAY && h.bit_depth == 16) {
        path = PngPath::grey16;
        row_bytes = w * 2;
    }
    // Indexed and 16-bit grey rows are converted after the (possibly interlaced) read, so they
    // need the whole raw image; both are at most 2 bytes per pixel.
    std::vector<uint8_t> raw(path == PngPath::direct ? 0 : row_bytes * h.height);
    uint8_t* base = path == PngPath::direct ? img.rgb.data() : raw.data();
    std::vector<png_bytep> rows(h.height);
    for (size_t y = 0; y < h.height; ++y) rows[y] = base + y * row_bytes;

    if (!png_read_pixels(&r, path, row_bytes, rows.data())) png_failed();

    uint8_t* out = img.rgb.data();
    const size_t n = w * h.height;
    if (path == PngPath::indexed) {
        for (size_t i = 0; i < n; ++i) std::memcpy(out + 3 * i, h.palette + 3 * raw[i], 3);
    } else if (path == PngPath::grey16) {
        // Pillow opens 16-bit grey as mode I and clamps to 0..255 when converting to RGB.
        for (size_t i = 0; i < n; ++i) {
            unsigned v = unsigned(raw[2 * i]) << 8 | raw[2 * i + 1];
            out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = uint8_t(v > 255 ? 255 : v);
        }
    }
    return img.take();
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct JpegReader
{
    jpeg_decompress_struct cinfo;
    jpeg_error_mgr err;
    jpeg_source_mgr src;
    jpeg_progress_mgr progress;
    std::jmp_buf jump;
    bool created;
    bool truncated;
    int error_code; // libjpeg's msg_code of the fatal error
    const uint8_t* data;
    size_t size;
    char message[JMSG_LENGTH_MAX + 64];
    char warning[JMSG_LENGTH_MAX];
};

// Progressive files can hold thousands of tiny scans that each cost a full pass (a known
// denial-of-service pattern); real files have at most a few dozen.
constexpr int kMaxJpegScans = 500;

JpegReader* jpeg_reader(j_common_ptr cinfo)
{
    return static_cast<JpegReader*>(cinfo->client_data);
}

void jpeg_on_error(j_common_ptr cinfo)
{
    JpegReader* r = jpeg_reader(cinfo);
    if (!r->message[0]) {
        cinfo->err->format_message(cinfo, r->message);
        r->error_code = cinfo->err->msg_code;
    }
    std::longjmp(r->jump, 1);
}

// Pillow ignores libjpeg's warnings (corrupt-data notes) and keeps decoding; so do we, keeping
// the first one for the log.
void jpeg_on_message(j_common_ptr cinfo, int level)
{
    JpegReader* r = jpeg_reader(cinfo);
    if (level < 0 && !r->warning[0]) cinfo->err->format_message(cinfo, r->warning);
}

void jpeg_src_init(j_decompress_ptr) { }
void jpeg_src_term(j_decompress_ptr) { }

// All input is in memory from the start, so a refill means the data ended early. Pillow fails
// on any truncation (even a missing EOI), unlike libjpeg's fake-EOI default.
boolean jpeg_src_fill(j_decompress_ptr cinfo)
{
    JpegReader* r = jpeg_reader(reinterpret_cast<j_common_ptr>(cinfo));
    r->truncated = true;
    std::snprintf(r->message, sizeof r->message, "truncated JPEG data (unexpected end of file)");
    std::longjmp(r->jump, 1);
}

void jpeg_src_skip(j_decompress_ptr cinfo, long n)
{
    if (n <= 0) return;
    if (size_t(n) > cinfo->src->bytes_in_buffer) jpeg_src_fill(cinfo);
    cinfo->src->next_input_byte += n;
    cinfo->src->bytes_in_buffer -= size_t(n);
}

void jpeg_on_progress(j_common_ptr cinfo)
{
    if (!cinfo->is_decompressor) return;
    auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
    if (d->input_scan_number > kMaxJpegScans) {
        JpegReader* r = jpeg_reader(cinfo);
        std::snprintf(r->message, sizeof r->message, "JPEG has more than %d scans", kMaxJpegScans);
        std::longjmp(r->jump, 1);
    }
}

// Stage 1: markers up to the first SOS. C-style: see the file comment.
bool jpeg_read_header_stage(JpegReader* r)
{
    if (setjmp(r->jump)) return false;
    r->cinfo.err = jpeg_std_error(&r->err);
    r->err.error_exit = jpeg_on_error;
    r->err.emit_message = jpeg_on_message;
    r->cinfo.client_data = r;
    jpeg_create_decompress(&r->cinfo);
    r->created = true;
    r->cinfo.client_data = r; // jpeg_create_decompress clears the struct but keeps err
    r->src.init_source = jpeg_src_init;
    r->src.fill_input_buffer = jpeg_src_fill;
    r->src.skip_input_data = jpeg_src_skip;
    r->src.resync_to_restart = jpeg_resync_to_restart;
    r->src.term_source = jpeg_src_term;
    r->src.next_input_byte = r->data;
    r->src.bytes_in_buffer = r->size;
    r->cinfo.src = &r->src;
    r->progress.progress_monitor = jpeg_on_progress;
    r->cinfo.progress = &r->progress;
    r->cinfo.mem->max_memory_to_use = 2048L << 20;
    jpeg_read_header(&r->cinfo, TRUE);
    return true;
}

// Stage 2: pixels. `out` is width*height*3; `scratch` holds one CMYK row.
bool jpeg_read_pixels_stage(JpegReader* r, uint8_t* out, uint8_t* scratch)
{
    if (setjmp(r->jump)) return false;
    j_decompress_ptr c = &r->cinfo;
    const int comps = c->num_components;
    // Pillow's decoder settings: the output colour space by layer count, libjpeg's defaults for
    // the rest (ISLOW IDCT, fancy upsampling).
    c->out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    c->dct_method = JDCT_ISLOW;
    c->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(c);
    if (int(c->output_components) != (comps == 3 ? 3 : comps)) {
        std::snprintf(r->message, sizeof r->message, "unexpected JPEG output components %d",
                      c->output_components);
        return false;
    }
    const size_t w = c->output_width;
    while (c->output_scanline < c->output_height) {
        uint8_t* row = out + size_t(c->output_scanline) * w * 3;
        JSAMPROW target = comps == 4 ? scratch : row;
        if (jpeg_read_scanlines(c, &target, 1) != 1) {
            std::snprintf(r->message, sizeof r->message, "JPEG decoder returned no scanline");
            return false;
        }
        if (comps == 1) {
            // Grey -> RGB in place, right to left.
            for (size_t x = w; x-- > 0;) row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = row[x];
        } else if (comps == 4) {
            // Pillow reads CMYK JPEGs with Adobe's inverted convention ("CMYK;I") and converts
            // with cmyk2rgb: nk = 255 - K, channel = nk - nk * C / 255 (rounded as below).
            for (size_t x = 0; x < w; ++x) {
                const uint8_t* p = scratch + 4 * x;
                int nk = p[3]; // 255 - (255 - raw K)
                for (int ch = 0; ch < 3; ++ch) {
                    int cv = 255 - p[ch];
                    int t = cv * nk + 128;
                    int v = nk - (((t >> 8) + t) >> 8);
                    row[3 * x + ch] = uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    jpeg_finish_decompress(c);
    return true;
}

Image decode_jpeg(std::span<const uint8_t> bytes, const ImageLimits& limits, std::string_view name,
                  ImageInfo* info_only)
{
    JpegReader r {};
    r.data = bytes.data();
    r.size = bytes.size();
    struct Guard
    {
        JpegReader& r;
        ~Guard()
        {
            if (r.created) jpeg_destroy_decompress(&r.cinfo);
        }
    } guard {r};
    auto jpeg_failed = [&]() {
        if (r.truncated) fail(ErrorKind::invalid_input, name, r.message);
        // Valid files this libjpeg cannot decode (12-bit, lossless, ...) and its own size cap.
        const ErrorKind kind = r.error_code == JERR_IMAGE_TOO_BIG ? ErrorKind::resource
            : r.error_code == JERR_BAD_PRECISION || r.error_code == JERR_NOT_COMPILED
                || r.error_code == JERR_CONVERSION_NOTIMPL
            ? ErrorKind::unsupported
            : ErrorKind::invalid_input;
        fail(kind, name,
             std::string(kind == ErrorKind::invalid_input ? "corrupt JPEG: " : "JPEG: ")
                 + r.message);
    };
    if (!jpeg_read_header_stage(&r)) jpeg_failed();
    const int comps = r.cinfo.num_components;
    check_size(ImageFormat::jpeg, r.cinfo.image_width, r.cinfo.image_height, limits, name);
    if (comps != 1 && comps != 3 && comps != 4)
        fail(ErrorKind::unsupported, name,
             strfmt("JPEG with %d components is not supported", comps));
    if (info_only) {
        *info_only = {ImageFormat::jpeg, int(r.cinfo.image_width), int(r.cinfo.image_height)};
        return {};
    }
    Pixels img = new_pixels(int(r.cinfo.image_width), int(r.cinfo.image_height), name);
    std::vector<uint8_t> scratch(comps == 4 ? size_t(img.width) * 4 : 0);
    if (!jpeg_read_pixels_stage(&r, img.rgb.data(), scratch.data())) jpeg_failed();
    if (r.warning[0]) log_write(LogLevel::debug, "%s: libjpeg: %s", label(name).c_str(), r.warning);
    return img.take();
}

// ---------------------------------------------------------------------------------------------
// WebP

const char* webp_status_text(VP8StatusCode status)
{
    switch (status) {
    case VP8_STATUS_OK:
        return "ok";
    case VP8_STATUS_OUT_OF_MEMORY:
        return "out of memory";
    case VP8_STATUS_INVALID_PARAM:
        return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR:
        return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        return "unsupported feature";
    case VP8_STATUS_SUSPENDED:
        return "suspended";
    case VP8_STATUS_USER_ABORT:
        return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA:
        return "truncated data (unexpected end of file)";
    }
    return "unknown error";
}

[[noreturn]] void webp_fail(std::string_view name, VP8StatusCode status)
{
    ErrorKind kind = status == VP8_STATUS_OUT_OF_MEMORY ? ErrorKind::resource
        : status == VP8_STATUS_UNSUPPORTED_FEATURE      ? ErrorKind::unsupported
                                                        : ErrorKind::invalid_input;
    fail(kind, name, std::string("corrupt or truncated WebP: ") + webp_status_text(status));
}

Image decode_webp(std::span<const uint8_t> bytes, const ImageLimits& limits, std::string_view name,
                  ImageInfo* info_only)
{
    WebPBitstreamFeatures features;
    VP8StatusCode status = WebPGetFeatures(bytes.data(), bytes.size(), &features);
    if (status != VP8_STATUS_OK) webp_fail(name, status);
    check_size(ImageFormat::webp, features.width, features.height, limits, name);
    if (info_only) {
        *info_only = {ImageFormat::webp, features.width, features.height};
        return {};
    }
    Pixels img = new_pixels(features.width, features.height, name);
    if (!features.has_animation) {
        // Pillow decodes through WebPAnimDecoder into RGBA; for a still image that canvas is
        // exactly the frame, so decoding straight to RGB gives the same bytes (alpha dropped).
        WebPDecoderConfig config;
        if (!WebPInitDecoderConfig(&config))
            fail(ErrorKind::internal, name, "libwebp version mismatch");
        config.output.colorspace = MODE_RGB;
        config.output.is_external_memory = 1;
        config.output.u.RGBA.rgba = img.rgb.data();
        config.output.u.RGBA.stride = img.width * 3;
        config.output.u.RGBA.size = img.rgb.size();
        status = WebPDecode(bytes.data(), bytes.size(), &config);
        WebPFreeDecBuffer(&config.output);
        if (status != VP8_STATUS_OK) webp_fail(name, status);
        return img.take();
    }
    // Animated: like Pillow, the first frame composited on the (transparent black) canvas.
    WebPAnimDecoderOptions options;
    if (!WebPAnimDecoderOptionsInit(&options))
        fail(ErrorKind::internal, name, "libwebp version mismatch");
    options.color_mode = MODE_RGBA;
    options.use_threads = 0;
    WebPData data {bytes.data(), bytes.size()};
    WebPAnimDecoder* dec = WebPAnimDecoderNew(&data, &options);
    if (!dec) fail(ErrorKind::invalid_input, name, "corrupt or truncated animated WebP");
    struct Guard
    {
        WebPAnimDecoder* dec;
        ~Guard() { WebPAnimDecoderDelete(dec); }
    } guard {dec};
    WebPAnimInfo info;
    uint8_t* canvas = nullptr;
    int timestamp = 0;
    if (!WebPAnimDecoderGetInfo(dec, &info) || int(info.canvas_width) != img.width
        || int(info.canvas_height) != img.height
        || !WebPAnimDecoderGetNext(dec, &canvas, &timestamp))
        fail(ErrorKind::invalid_input, name, "corrupt or truncated animated WebP (first frame)");
    const size_t n = size_t(img.width) * img.height;
    for (size_t i = 0; i < n; ++i) std::memcpy(img.rgb.data() + 3 * i, canvas + 4 * i, 3);
    return img.take();
}

// ---------------------------------------------------------------------------------------------
// BMP: our own header walk (size, layout, truncation, palette indices), stb_image for pixels.

bool byte_mask(uint32_t m)
{
    return m == 0xffu || m == 0xff00u || m == 0xff0000u || m == 0xff000000u;
}

Image decode_bmp(std::span<const uint8_t> bytes, const ImageLimits& limits, std::string_view name,
                 ImageInfo* info_only)
{
    const uint8_t* p = bytes.data();
    const size_t size = bytes.size();
    auto corrupt = [&](const char* what) {
        fail(ErrorKind::invalid_input, name, std::string("corrupt or truncated BMP: ") + what);
    };
    if (size < 14 + 12) corrupt("file shorter than its headers");
    const uint32_t offset = read_le32(p + 10);
    const uint32_t hsz = read_le32(p + 14);
    if (hsz != 12 && hsz != 40 && hsz != 52 && hsz != 56 && hsz != 108 && hsz != 124)
        fail(ErrorKind::unsupported, name, strfmt("BMP header size %u is not supported", hsz));
    if (size < 14 + size_t(hsz)) corrupt("file shorter than its headers");
    int64_t width, height;
    int bpp;
    uint32_t compression = 0, colors_used = 0;
    if (hsz == 12) {
        width = read_le16(p + 18);
        height = read_le16(p + 20);
        bpp = read_le16(p + 24);
    } else {
        width = int32_t(read_le32(p + 18));
        height = int32_t(read_le32(p + 22));
        bpp = read_le16(p + 28);
        compression = read_le32(p + 30);
        colors_used = read_le32(p + 46);
    }
    const int64_t abs_height = height < 0 ? -height : height;
    if (width < 0) corrupt("negative width");
    check_size(ImageFormat::bmp, width, abs_height, limits, name);
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        fail(ErrorKind::unsupported, name,
             strfmt("BMP with %d bits per pixel is not supported", bpp));
    if (compression != 0 && !(compression == 3 && (bpp == 16 || bpp == 32)))
        fail(ErrorKind::unsupported, name,
             strfmt("BMP compression %u with %d bits per pixel is not supported (RLE is not)",
                    compression, bpp));
    size_t after_header = 14 + hsz;
    uint32_t masks[3] = {0, 0, 0};
    if (compression == 3) {
        const uint8_t* m = p + 14 + 40;
        if (hsz == 40) {
            if (size < 14 + 40 + 12) corrupt("file shorter than its colour masks");
            after_header += 12;
        }
        for (int i = 0; i < 3; ++i) masks[i] = read_le32(m + 4 * i);
        const bool rgb555 = masks[0] == 0x7c00 && masks[1] == 0x3e0 && masks[2] == 0x1f;
        const bool rgb565 = masks[0] == 0xf800 && masks[1] == 0x7e0 && masks[2] == 0x1f;
        const bool ok = bpp == 16
            ? (rgb555 || rgb565)
            : byte_mask(masks[0]) && byte_mask(masks[1]) && byte_mask(masks[2]);
        if (!ok)
            fail(ErrorKind::unsupported, name,
                 strfmt("BMP colour masks %08x/%08x/%08x are not supported", masks[0], masks[1],
                        masks[2]));
    } else if (bpp == 16) {
        masks[0] = 0x7c00;
        masks[1] = 0x3e0;
        masks[2] = 0x1f;
    }
    if (info_only) {
        *info_only = {ImageFormat::bmp, int(width), int(abs_height)};
        return {};
    }
    const size_t stride = size_t((width * bpp + 31) / 32) * 4;
    if (offset < after_header || offset > size || size - offset < stride * size_t(abs_height))
        corrupt("pixel data missing or cut short");
    if (bpp <= 8) {
        // stb_image leaves palette entries past those in the file uninitialised, so an index
        // outside the palette (Pillow's count, within the bytes stb reads) is an error.
        const size_t entry = hsz == 12 ? 3 : 4;
        size_t n_pal = colors_used ? colors_used : size_t(1) << bpp;
        n_pal = std::min(n_pal, (offset - after_header) / entry);
        if (n_pal == 0 || colors_used > 256) corrupt("bad palette size");
        if (n_pal < (size_t(1) << bpp)) {
            const int per_byte = 8 / bpp;
            for (int64_t y = 0; y < abs_height; ++y) {
                const uint8_t* row = p + offset + size_t(y) * stride;
                for (int64_t x = 0; x < width; ++x) {
                    const int shift = 8 - bpp * (1 + int(x % per_byte));
                    const unsigned idx = (row[x / per_byte] >> shift) & ((1u << bpp) - 1);
                    if (idx >= n_pal) corrupt("palette index out of range");
                }
            }
        }
    }
    if (size > size_t(std::numeric_limits<int>::max())) corrupt("file too large");
    int w = 0, h = 0, comp = 0;
    stbi_uc* pixels = stbi_load_from_memory(p, int(size), &w, &h, &comp, 3);
    if (!pixels) corrupt(stbi_failure_reason() ? stbi_failure_reason() : "stb_image failed");
    struct Guard
    {
        stbi_uc* pixels;
        ~Guard() { stbi_image_free(pixels); }
    } guard {pixels};
    if (w != width || h != abs_height) corrupt("size differs from the header");
    Pixels img = new_pixels(w, h, name);
    std::memcpy(img.rgb.data(), pixels, img.rgb.size());
    if (bpp == 16) {
        // stb widens 5/6-bit fields by bit replication; Pillow by v * 255 / max (truncated).
        // Replication is invertible, so recover v and apply Pillow's mapping.
        uint8_t lut[3][256];
        for (int ch = 0; ch < 3; ++ch) {
            const int bits = masks[ch] == 0x7e0 ? 6 : 5;
            const int maxv = (1 << bits) - 1;
            for (int v = 0; v < 256; ++v) lut[ch][v] = uint8_t((v >> (8 - bits)) * 255 / maxv);
        }
        for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = lut[i % 3][img.rgb[i]];
    }
    return img.take();
}

Image decode_any(std::span<const uint8_t> bytes, const ImageLimits& limits, std::string_view name,
                 ImageInfo* info_only)
{
    if (bytes.size() > limits.max_encoded_bytes)
        fail(ErrorKind::resource, name,
             strfmt("%zu bytes of encoded data, more than the limit of %zu", bytes.size(),
                    limits.max_encoded_bytes));
    if (bytes.empty()) fail(ErrorKind::invalid_input, name, "empty data");
    switch (sniff_image_format(bytes)) {
    case ImageFormat::png:
        return decode_png(bytes, limits, name, info_only);
    case ImageFormat::jpeg:
        return decode_jpeg(bytes, limits, name, info_only);
    case ImageFormat::webp:
        return decode_webp(bytes, limits, name, info_only);
    case ImageFormat::bmp:
        return decode_bmp(bytes, limits, name, info_only);
    case ImageFormat::unknown:
        break;
    }
    std::string head;
    for (size_t i = 0; i < bytes.size() && i < 8; ++i) head += strfmt(" %02x", bytes[i]);
    fail(ErrorKind::invalid_input, name,
         "not a PNG, JPEG, WebP or BMP image (first bytes:" + head + ")");
}

} // namespace

const char* image_format_name(ImageFormat format)
{
    switch (format) {
    case ImageFormat::png:
        return "PNG";
    case ImageFormat::jpeg:
        return "JPEG";
    case ImageFormat::webp:
        return "WebP";
    case ImageFormat::bmp:
        return "BMP";
    case ImageFormat::unknown:
        break;
    }
    return "unknown";
}

ImageFormat sniff_image_format(std::span<const uint8_t> b)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (b.size() >= 8 && std::memcmp(b.data(), png_sig, 8) == 0) return ImageFormat::png;
    if (b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return ImageFormat::jpeg;
    if (b.size() >= 12 && std::memcmp(b.data(), "RIFF", 4) == 0
        && std::memcmp(b.data() + 8, "WEBP", 4) == 0)
        return ImageFormat::webp;
    if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') return ImageFormat::bmp;
    return ImageFormat::unknown;
}

ImageInfo probe_image(std::span<const uint8_t> bytes, const ImageLimits& limits,
                      std::string_view name)
{
    ImageInfo info;
    decode_any(bytes, limits, name, &info);
    return info;
}

Image decode_image(std::span<const uint8_t> bytes, const ImageLimits& limits, std::string_view name)
{
    return decode_any(bytes, limits, name, nullptr);
}

Image load_image(const std::string& path, const ImageLimits& limits)
{
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) fail(ErrorKind::not_found, path, "no such file");
        fail(ErrorKind::io, path, std::string("cannot read: ") + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) fail(ErrorKind::invalid_input, path, "not a regular file");
    if (uint64_t(st.st_size) > limits.max_encoded_bytes)
        fail(ErrorKind::resource, path,
             strfmt("file is %lld bytes, more than the limit of %zu", (long long)st.st_size,
                    limits.max_encoded_bytes));
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorKind::io, path, "cannot open for reading");
    // Read at most one byte past the limit: the file may have grown since stat.
    std::vector<uint8_t> bytes(size_t(st.st_size) + 1);
    in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
    if (in.bad()) fail(ErrorKind::io, path, "read failed");
    bytes.resize(size_t(in.gcount()));
    return decode_any(bytes, limits, path, nullptr);
}

} // namespace iris::reasoning
