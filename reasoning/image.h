// reasoning/image — images as the model sees them: decoding under input limits, JPEG encoding,
// InternVL's dynamic-resolution tiling and pixel values.
//
//   Image img = load_image("photo.jpg");          // PNG, JPEG, WebP or BMP -> iris::Image
//   PreparedImage p = preprocess_image(img, {});   // tiles + thumbnail -> [n, 3, 448, 448]
//
// Decoding matches Pillow 9.4's `Image.open(f).convert('RGB')` and tiling matches the official
// InternVL `dynamic_preprocess` + `build_transform` bit for bit (docs/image-tiling.md).
//
// Thread safety: free functions are reentrant.
#pragma once

#include "core/image.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iris::model {
struct ModelConfig; // model/model.h
}

namespace iris::reasoning {

enum class ImageFormat { unknown, png, jpeg, webp, bmp };
const char* image_format_name(ImageFormat format); // "PNG", "JPEG", "WebP", "BMP", "unknown"
// The container named by the first bytes (magic numbers); a file name is never consulted.
ImageFormat sniff_image_format(std::span<const uint8_t> bytes);

// Gates applied to untrusted input before any pixel is decoded (docs/reliability.md §2).
struct ImageLimits
{
    int min_side = 2; // a smaller side is Error(invalid_input)
    int max_side = 16384; // a larger side is Error(resource)
    int64_t max_pixels = 40'000'000; // more pixels is Error(resource)
    size_t max_encoded_bytes = 20u << 20; // a larger file or buffer is Error(resource)
};

struct ImageInfo
{
    ImageFormat format = ImageFormat::unknown;
    int width = 0;
    int height = 0;
};

// Reads only the header: format and size, checked against the limits. `name` labels messages.
ImageInfo probe_image(std::span<const uint8_t> bytes, const ImageLimits& limits = {},
                      std::string_view name = "image");
// Decodes to RGB like Pillow's convert('RGB'): grey and palette expanded, alpha dropped without
// compositing, 16-bit PNG samples reduced as Pillow does, CMYK JPEG converted as Pillow does, no
// EXIF rotation; animated WebP gives its first frame. Truncated, corrupt or unknown data throws
// Error(invalid_input) (Error(unsupported) for a valid but unhandled variant, Error(resource) for
// the limits), naming `name` and the problem.
Image decode_image(std::span<const uint8_t> bytes, const ImageLimits& limits = {},
                   std::string_view name = "image");
// Reads and decodes a file; the size limit is checked before reading. Error(not_found/io) for
// a file that cannot be read.
Image load_image(const std::string& path, const ImageLimits& limits = {});
// A baseline JPEG file (libjpeg-turbo, 4:2:0) of the image; quality 1..100.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 85);

// Dynamic resolution (InternVL `dynamic_preprocess`). Video frames use max_tiles = 1.
struct TilingOptions
{
    int image_size = 448; // tile side (config force_image_size)
    int min_tiles = 1; // min_dynamic_patch
    int max_tiles = 12; // max_dynamic_patch, 1..64
    bool use_thumbnail = true;

    void validate() const; // throws Error(invalid_argument) naming the field
};
TilingOptions tiling_options(const model::ModelConfig& config);

struct Grid
{
    int cols = 1; // width multiplier
    int rows = 1; // height multiplier
    int n_tiles = 1; // cols * rows, plus the thumbnail when there is one
    bool has_thumbnail = false;
};

// The candidate grids (cols, rows) in the official order: CPython's set iteration order of
// {(i, j) : min <= i*j <= max}, stably sorted by i*j. The order decides ties.
std::vector<std::pair<int, int>> candidate_grids(int min_tiles, int max_tiles);
// find_closest_aspect_ratio for a width x height image (any size >= 1).
Grid choose_grid(int width, int height, const TilingOptions& options = {});
// Pillow's Image.resize(size, BICUBIC) for 8-bit RGB, bit-exact.
Image resize_bicubic(const Image& image, int width, int height);
Image crop_image(const Image& image, int x, int y, int width, int height);
// The tiles in row-major order, then the thumbnail of the original image when the grid has more
// than one tile and options.use_thumbnail.
std::vector<Image> make_tiles(const Image& image, const TilingOptions& options = {},
                              Grid* grid_out = nullptr);

// ImageNet normalisation as torchvision computes it in float32: (u8 / 255 - mean) / std.
// The constants are float32 roundings of the double literals, as torch.as_tensor makes them.
inline constexpr float kImageMean[3] = {float(0.485), float(0.456), float(0.406)};
inline constexpr float kImageStd[3] = {float(0.229), float(0.224), float(0.225)};
// Equally sized tiles -> float32 [n, 3, height, width] (CHW per tile).
std::vector<float> pixel_values(const std::vector<Image>& tiles);

struct PreparedImage
{
    Grid grid;
    int image_size = 0; // tile side
    std::vector<float> pixel_values; // [grid.n_tiles, 3, image_size, image_size]
};
PreparedImage preprocess_image(const Image& image, const TilingOptions& options = {});

} // namespace iris::reasoning
