// Dynamic-resolution tiling exactly as the official InternVL `dynamic_preprocess`, Pillow's
// BICUBIC resize bit for bit, and torchvision's ToTensor + Normalize (docs/image-tiling.md §2-§6).
#include "model/model.h"
#include "reasoning/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace iris::reasoning {

namespace {

// ---------------------------------------------------------------------------------------------
// CPython's set iteration order for the candidate grids.
//
// The official code builds set((i, j) for ...) and stably sorts it by i*j, so ties between
// equal areas keep the set's iteration order, and that order decides find_closest_aspect_ratio
// ties. We replay CPython (3.8+, 64-bit) exactly: the xxHash-based tuple hash over int hashes
// (hash(n) == n for small n), set_add_entry's linear probes plus perturbed open addressing, and
// set_table_resize when the table is 3/5 full. tools/gen_grid_orders.py records the real order.

constexpr uint64_t kXxPrime1 = 11400714785074694791ull;
constexpr uint64_t kXxPrime2 = 14029467366897019727ull;
constexpr uint64_t kXxPrime5 = 2870177450012600261ull;

uint64_t python_tuple_hash(std::initializer_list<uint64_t> items)
{
    uint64_t acc = kXxPrime5;
    for (uint64_t lane : items) {
        acc += lane * kXxPrime2;
        acc = (acc << 31) | (acc >> 33);
        acc *= kXxPrime1;
    }
    acc += items.size() ^ (kXxPrime5 ^ 3527539ull);
    if (acc == uint64_t(-1)) return 1546275796;
    return acc;
}

class PythonSetOfPairs
{
public:
    void add(int i, int j)
    {
        const uint64_t hash = python_tuple_hash({uint64_t(i), uint64_t(j)});
        size_t idx = hash & mask_;
        uint64_t perturb = hash;
        for (;;) {
            size_t e = idx;
            size_t probes = idx + kLinearProbes <= mask_ ? kLinearProbes : 0;
            for (;;) {
                Slot& s = table_[e];
                if (!s.used) {
                    s = {true, i, j, hash};
                    if (++fill_ * 5 >= mask_ * 3) resize(fill_ > 50000 ? fill_ * 2 : fill_ * 4);
                    return;
                }
                if (s.hash == hash && s.i == i && s.j == j) return;
                if (probes-- == 0) break;
                ++e;
            }
            perturb >>= kPerturbShift;
            idx = (idx * 5 + 1 + perturb) & mask_;
        }
    }

    std::vector<std::pair<int, int>> items() const
    {
        std::vector<std::pair<int, int>> out;
        for (const Slot& s : table_)
            if (s.used) out.emplace_back(s.i, s.j);
        return out;
    }

private:
    struct Slot
    {
        bool used = false;
        int i = 0, j = 0;
        uint64_t hash = 0;
    };
    static constexpr size_t kLinearProbes = 9;
    static constexpr int kPerturbShift = 5;

    void resize(size_t min_used)
    {
        size_t size = 8;
        while (size <= min_used) size <<= 1;
        std::vector<Slot> old = std::move(table_);
        table_.assign(size, Slot {});
        mask_ = size - 1;
        for (const Slot& s : old)
            if (s.used) insert_clean(s);
    }

    void insert_clean(const Slot& slot)
    {
        uint64_t perturb = slot.hash;
        size_t idx = slot.hash & mask_;
        for (;;) {
            if (!table_[idx].used) {
                table_[idx] = slot;
                return;
            }
            if (idx + kLinearProbes <= mask_) {
                for (size_t k = 1; k <= kLinearProbes; ++k) {
                    if (!table_[idx + k].used) {
                        table_[idx + k] = slot;
                        return;
                    }
                }
            }
            perturb >>= kPerturbShift;
            idx = (idx * 5 + 1 + perturb) & mask_;
        }
    }

    std::vector<Slot> table_ = std::vector<Slot>(8);
    size_t mask_ = 7;
    size_t fill_ = 0;
};

void check_image(const Image& image, const char* what)
{
    if (image.width <= 0 || image.height <= 0
        || image.rgb.size() != size_t(image.width) * size_t(image.height) * 3)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("%s: image of %dx%d pixels with %zu bytes is not a valid RGB image",
                           what, image.width, image.height, image.rgb.size()));
}

// ---------------------------------------------------------------------------------------------
// Pillow BICUBIC (libImaging/Resample.c, 8 bits per channel)

constexpr int kPrecisionBits = 22; // 32 - 8 - 2

double bicubic_filter(double x)
{
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// precompute_coeffs + normalize_coeffs_8bpc, for the whole input range (box 0..in_size).
struct Coefficients
{
    int ksize = 0;
    std::vector<int> bounds; // per output: first input index, tap count
    std::vector<int32_t> k; // per output: ksize fixed-point weights
};

Coefficients precompute_coefficients(int in_size, int out_size)
{
    const double scale = double(float(in_size) - 0.0f) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * filterscale; // bicubic support 2, antialiased when shrinking
    Coefficients c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.bounds.resize(size_t(out_size) * 2);
    c.k.assign(size_t(out_size) * c.ksize, 0);
    std::vector<double> w(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = 0.0 + (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = int(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            w[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t* k = &c.k[size_t(xx) * c.ksize];
        for (int x = 0; x < xmax; ++x) {
            const double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? int32_t(-0.5 + v * (1 << kPrecisionBits))
                         : int32_t(0.5 + v * (1 << kPrecisionBits));
        }
        c.bounds[2 * xx] = xmin;
        c.bounds[2 * xx + 1] = xmax;
    }
    return c;
}

inline uint8_t clip8(int32_t v)
{
    if (v >= (1 << kPrecisionBits << 8)) return 255;
    if (v <= 0) return 0;
    return uint8_t(v >> kPrecisionBits);
}

// Vertical pass over rows of `width` pixels: out row yy = sum of src rows bounds[2yy] + t.
// Accumulating whole rows tap by tap gives the same integer sums as Pillow's pixel-major loop,
// but over contiguous memory, so the compiler vectorises it.
void resample_vertical(const uint8_t* src, int width, uint8_t* dst, int out_rows,
                       const Coefficients& c)
{
    const size_t stride = size_t(width) * 3;
    std::vector<int32_t> acc(stride);
    for (int yy = 0; yy < out_rows; ++yy) {
        const int ymin = c.bounds[2 * yy];
        const int n = c.bounds[2 * yy + 1];
        const int32_t* k = &c.k[size_t(yy) * c.ksize];
        std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
        for (int y = 0; y < n; ++y) {
            const uint8_t* row = src + size_t(ymin + y) * stride;
            const int32_t ky = k[y];
            int32_t* a = acc.data();
            for (size_t i = 0; i < stride; ++i) a[i] += row[i] * ky;
        }
        uint8_t* out = dst + size_t(yy) * stride;
        for (size_t i = 0; i < stride; ++i) out[i] = clip8(acc[i]);
    }
}

// dst pixel (sy, sx) = src pixel (sx, sy) for an src of src_w x src_h pixels; strides in pixels.
void transpose(const uint8_t* src, int src_w, int src_h, size_t src_stride, uint8_t* dst,
               size_t dst_stride)
{
    constexpr int kBlock = 8; // 8x8 pixel blocks keep both sides in L1
    for (int y0 = 0; y0 < src_h; y0 += kBlock)
        for (int x0 = 0; x0 < src_w; x0 += kBlock)
            for (int y = y0; y < std::min(y0 + kBlock, src_h); ++y)
                for (int x = x0; x < std::min(x0 + kBlock, src_w); ++x)
                    std::memcpy(dst + (size_t(x) * dst_stride + y) * 3,
                                src + (size_t(y) * src_stride + x) * 3, 3);
}

// Rows [row0, row0 + height) of `in`, resampled horizontally to `width` columns into `out`
// (width * height pixels). It runs as the
// vertical pass between two transposes, in strips that stay in cache: the same sums, but over
// contiguous rows the compiler vectorises (a direct loop over 3-byte pixels with varying taps
// does not), about 5x faster for 1920 -> 1792 or 448 columns.
void resample_horizontal(const Image& in, int row0, int width, int height, uint8_t* out,
                         const Coefficients& c)
{
    constexpr int kStrip = 128;
    const int strip = std::min(kStrip, height);
    std::vector<uint8_t> columns(size_t(strip) * in.width * 3);
    std::vector<uint8_t> resampled(size_t(strip) * width * 3);
    for (int y0 = 0; y0 < height; y0 += strip) {
        const int rows = std::min(strip, height - y0);
        transpose(in.pixel(0, row0 + y0), in.width, rows, size_t(in.width), columns.data(),
                  size_t(rows));
        resample_vertical(columns.data(), rows, resampled.data(), width, c);
        transpose(resampled.data(), rows, width, size_t(rows), out + size_t(y0) * width * 3,
                  size_t(width));
    }
}

} // namespace

// ---------------------------------------------------------------------------------------------

void TilingOptions::validate() const
{
    // 64 tiles of 1024^2 already make a 200 MB resized image.
    if (image_size < 1 || image_size > 1024)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("tiling: image_size %d is outside 1..1024", image_size));
    if (max_tiles < 1 || max_tiles > 64)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("tiling: max_tiles %d is outside 1..64", max_tiles));
    if (min_tiles < 1 || min_tiles > max_tiles)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("tiling: min_tiles %d is outside 1..max_tiles (%d)", min_tiles, max_tiles));
}

TilingOptions tiling_options(const model::ModelConfig& config)
{
    TilingOptions o;
    o.image_size = config.force_image_size;
    // Without dynamic resolution the official loaders resize the whole image to one tile.
    o.min_tiles = config.dynamic_image_size ? config.min_dynamic_patch : 1;
    o.max_tiles = config.dynamic_image_size ? config.max_dynamic_patch : 1;
    o.use_thumbnail = config.use_thumbnail;
    o.validate();
    return o;
}

std::vector<std::pair<int, int>> candidate_grids(int min_tiles, int max_tiles)
{
    TilingOptions o;
    o.min_tiles = min_tiles;
    o.max_tiles = max_tiles;
    o.validate();
    PythonSetOfPairs set;
    for (int n = min_tiles; n <= max_tiles; ++n)
        for (int i = 1; i <= n; ++i)
            for (int j = 1; j <= n; ++j)
                if (i * j <= max_tiles && i * j >= min_tiles) set.add(i, j);
    std::vector<std::pair<int, int>> grids = set.items();
    std::stable_sort(grids.begin(), grids.end(), [](const auto& a, const auto& b) {
        return a.first * a.second < b.first * b.second;
    });
    return grids;
}

Grid choose_grid(int width, int height, const TilingOptions& options)
{
    options.validate();
    if (width < 1 || height < 1)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("tiling: image size %dx%d is empty", width, height));
    // find_closest_aspect_ratio, in double like Python's floats.
    const double aspect = double(width) / double(height);
    const double area = double(int64_t(width) * height); // exact: below 2^53
    const int s = options.image_size;
    double best_diff = INFINITY;
    std::pair<int, int> best {1, 1};
    for (const auto& [i, j] : candidate_grids(options.min_tiles, options.max_tiles)) {
        const double diff = std::fabs(aspect - double(i) / double(j));
        if (diff < best_diff) {
            best_diff = diff;
            best = {i, j};
        } else if (diff == best_diff) {
            if (area > 0.5 * s * s * i * j) best = {i, j};
        }
    }
    Grid g;
    g.cols = best.first;
    g.rows = best.second;
    g.has_thumbnail = options.use_thumbnail && g.cols * g.rows != 1;
    g.n_tiles = g.cols * g.rows + (g.has_thumbnail ? 1 : 0);
    return g;
}

Image resize_bicubic(const Image& image, int width, int height)
{
    check_image(image, "resize");
    if (width < 1 || height < 1 || int64_t(width) * height > (int64_t(1) << 31))
        throw Error(ErrorKind::invalid_argument,
                    strfmt("resize: target size %dx%d is invalid", width, height));
    if (width == image.width && height == image.height) return image;
    const bool horizontal = width != image.width;
    const bool vertical = height != image.height;
    Coefficients ch, cv;
    if (horizontal) ch = precompute_coefficients(image.width, width);
    if (!vertical)
        return Image::allocate(width, height, [&](uint8_t* out) {
            resample_horizontal(image, 0, width, height, out, ch);
        });
    cv = precompute_coefficients(image.height, height);
    if (!horizontal)
        return Image::allocate(width, height, [&](uint8_t* out) {
            resample_vertical(image.rgb.data(), width, out, height, cv);
        });
    // Horizontal first into uint8, only over the rows the vertical pass reads.
    const int first = cv.bounds[0];
    const int last = cv.bounds[2 * (height - 1)] + cv.bounds[2 * (height - 1) + 1];
    for (int yy = 0; yy < height; ++yy) cv.bounds[2 * yy] -= first;
    std::vector<uint8_t> temp(size_t(width) * size_t(last - first) * 3);
    resample_horizontal(image, first, width, last - first, temp.data(), ch);
    return Image::allocate(width, height, [&](uint8_t* out) {
        resample_vertical(temp.data(), width, out, height, cv);
    });
}

Image crop_image(const Image& image, int x, int y, int width, int height)
{
    check_image(image, "crop");
    if (x < 0 || y < 0 || width < 1 || height < 1 || x > image.width - width
        || y > image.height - height)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("crop: box %d,%d %dx%d is outside the %dx%d image", x, y, width, height,
                           image.width, image.height));
    return Image::allocate(width, height, [&](uint8_t* out) {
        for (int r = 0; r < height; ++r)
            std::memcpy(out + size_t(r) * width * 3, image.pixel(x, y + r), size_t(width) * 3);
    });
}

std::vector<Image> make_tiles(const Image& image, const TilingOptions& options, Grid* grid_out)
{
    check_image(image, "tiling");
    const Grid grid = choose_grid(image.width, image.height, options);
    const int s = options.image_size;
    std::vector<Image> tiles;
    tiles.reserve(size_t(grid.n_tiles));
    {
        const Image resized = resize_bicubic(image, s * grid.cols, s * grid.rows);
        for (int k = 0; k < grid.cols * grid.rows; ++k)
            tiles.push_back(crop_image(resized, (k % grid.cols) * s, (k / grid.cols) * s, s, s));
    }
    if (grid.has_thumbnail) tiles.push_back(resize_bicubic(image, s, s));
    if (grid_out) *grid_out = grid;
    return tiles;
}

std::vector<float> pixel_values(const std::vector<Image>& tiles)
{
    if (tiles.empty()) return {};
    const int w = tiles[0].width, h = tiles[0].height;
    for (const Image& t : tiles) {
        check_image(t, "pixel_values");
        if (t.width != w || t.height != h)
            throw Error(ErrorKind::invalid_argument,
                        strfmt("pixel_values: tiles differ in size (%dx%d and %dx%d)", w, h,
                               t.width, t.height));
    }
    // ToTensor divides by 255 in float32, Normalize subtracts then divides, in float32: with
    // only 256 inputs per channel a table gives the identical values.
    float lut[3][256];
    for (int c = 0; c < 3; ++c)
        for (int v = 0; v < 256; ++v) {
            const float x = float(v) / 255.0f;
            lut[c][v] = (x - kImageMean[c]) / kImageStd[c];
        }
    const size_t plane = size_t(w) * h;
    std::vector<float> out(tiles.size() * 3 * plane);
    float* dst = out.data();
    for (const Image& t : tiles) {
        const uint8_t* src = t.rgb.data();
        for (int c = 0; c < 3; ++c, dst += plane)
            for (size_t i = 0; i < plane; ++i) dst[i] = lut[c][src[3 * i + c]];
    }
    return out;
}

PreparedImage preprocess_image(const Image& image, const TilingOptions& options)
{
    PreparedImage p;
    std::vector<Image> tiles = make_tiles(image, options, &p.grid);
    p.image_size = options.image_size;
    p.pixel_values = pixel_values(tiles);
    return p;
}

} // namespace iris::reasoning
