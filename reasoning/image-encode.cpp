// JPEG encoding (libjpeg-turbo) for key frames kept in memory and thumbnails.
//
// libjpeg reports errors through longjmp; the only call that can fail on valid input is an
// allocation, so the error manager turns any fatal error into an Error after unwinding to the
// one setjmp below, and nothing with a destructor lives between setjmp and the libjpeg calls.
#include "reasoning/image.h"

#include "core/core.h"

#include <csetjmp>
#include <cstdio>
#include <jpeglib.h>

namespace iris::reasoning {
namespace {

struct JpegWriter
{
    jpeg_compress_struct cinfo;
    jpeg_error_mgr err;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo)
{
    auto* w = reinterpret_cast<JpegWriter*>(cinfo->client_data);
    (*cinfo->err->format_message)(cinfo, w->message);
    std::longjmp(w->jump, 1);
}

// Returns false with w.message set on a libjpeg error. out/out_size belong to libjpeg's
// memory destination and are freed by the caller.
bool compress(JpegWriter& w, const Image& image, int quality, unsigned char** out,
              unsigned long* out_size)
{
    if (setjmp(w.jump)) return false;
    w.cinfo.image_width = JDIMENSION(image.width);
    w.cinfo.image_height = JDIMENSION(image.height);
    w.cinfo.input_components = 3;
    w.cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&w.cinfo);
    jpeg_set_quality(&w.cinfo, quality, TRUE);
    jpeg_mem_dest(&w.cinfo, out, out_size);
    jpeg_start_compress(&w.cinfo, TRUE);
    while (w.cinfo.next_scanline < w.cinfo.image_height) {
        JSAMPROW row = const_cast<JSAMPROW>(image.pixel(0, int(w.cinfo.next_scanline)));
        jpeg_write_scanlines(&w.cinfo, &row, 1);
    }
    jpeg_finish_compress(&w.cinfo);
    return true;
}

} // namespace

std::vector<uint8_t> encode_jpeg(const Image& image, int quality)
{
    if (image.width < 1 || image.height < 1 || image.width > 65500 || image.height > 65500
        || image.rgb.size() != size_t(image.width) * size_t(image.height) * 3)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("cannot encode a %dx%d image with %zu bytes as JPEG", image.width,
                           image.height, image.rgb.size()));
    if (quality < 1 || quality > 100)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("JPEG quality must be 1..100, not %d", quality));
    JpegWriter w {};
    w.cinfo.err = jpeg_std_error(&w.err);
    w.err.error_exit = on_error;
    w.cinfo.client_data = &w;
    jpeg_create_compress(&w.cinfo);
    unsigned char* out = nullptr;
    unsigned long out_size = 0;
    bool ok = compress(w, image, quality, &out, &out_size);
    jpeg_destroy_compress(&w.cinfo);
    std::vector<uint8_t> bytes;
    if (ok) bytes.assign(out, out + out_size);
    std::free(out);
    if (!ok) throw Error(ErrorKind::resource, std::string("JPEG encoding failed: ") + w.message);
    return bytes;
}

} // namespace iris::reasoning
