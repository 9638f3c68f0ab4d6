// Every image decoder (reasoning/image-decode.cpp: PNG, JPEG, WebP, BMP) through decode_image and
// probe_image, under limits small enough that one execution stays well under a second. What
// decodes must agree with what the header probe said, and survive a JPEG round trip at its size.
#include "reasoning/image.h"
#include "tests/fuzz/fuzz.h"

using namespace iris;
using namespace iris::reasoning;

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    ImageLimits limits;
    limits.max_side = 2048;
    limits.max_pixels = 1 << 20;
    limits.max_encoded_bytes = 1 << 20;
    const std::span<const uint8_t> bytes(data, size);
    const ImageFormat format = sniff_image_format(bytes);
    (void)image_format_name(format);

    std::optional<ImageInfo> info;
    fuzz::accepts([&] { info = probe_image(bytes, limits, "fuzz"); });
    std::optional<Image> img;
    if (!fuzz::accepts([&] { img = decode_image(bytes, limits, "fuzz"); })) return 0;

    IRIS_FUZZ_CHECK(info, "decode_image accepted what probe_image refused");
    IRIS_FUZZ_CHECK(info->format == format && info->width == img->width
                        && info->height == img->height,
                    "probe said %s %dx%d, decode gave %dx%d", image_format_name(info->format),
                    info->width, info->height, img->width, img->height);
    IRIS_FUZZ_CHECK(img->width >= limits.min_side && img->height >= limits.min_side
                        && int64_t(img->width) * img->height <= limits.max_pixels,
                    "decoded %dx%d outside the limits", img->width, img->height);
    IRIS_FUZZ_CHECK(img->rgb.size() == Image::byte_size(img->width, img->height),
                    "%zu bytes of pixels for %dx%d", img->rgb.size(), img->width, img->height);

    const std::vector<uint8_t> jpeg = encode_jpeg(*img, 50);
    const Image again = decode_image(jpeg, limits, "re-encoded");
    IRIS_FUZZ_CHECK(again.width == img->width && again.height == img->height,
                    "JPEG round trip changed %dx%d to %dx%d", img->width, img->height, again.width,
                    again.height);
    return 0;
}
