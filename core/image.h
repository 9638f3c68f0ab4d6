// core/image — immutable bytes and RGB images shared by reference count across modules.
//
//   iris::Image img = iris::Image::adopt(w, h, std::move(pixels)); // no copy of the pixels
//   frames.publish(Frame{t, img});      // the bus, the memory and the model share one decode
//   const uint8_t* p = img.pixel(x, y); // R, G, B
//
// A camera frame, a decoded upload, a memory's key frame and the model's input are the same
// Image: handing one on copies a pointer, never the pixels. Nothing writes to the bytes once
// they are built, so any number of threads may read them without locking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace iris {

// Immutable bytes: copying a Buffer copies a pointer; the bytes are freed with the last copy.
class Buffer
{
public:
    Buffer() = default; // empty: data() == nullptr, size() == 0

    // Copies `size` bytes from `data`. Throws std::bad_alloc.
    static Buffer copy_of(const void* data, size_t size);
    // Takes the vector without copying its bytes.
    static Buffer adopt(std::vector<uint8_t>&& bytes);
    // Allocates `size` uninitialised bytes and calls fill(uint8_t* data, size_t size) once to
    // write them, before any other thread can see them (decoders write straight into it).
    template<class Fill> static Buffer allocate(size_t size, Fill&& fill)
    {
        std::shared_ptr<uint8_t[]> bytes = std::make_shared_for_overwrite<uint8_t[]>(size);
        uint8_t* data = bytes.get();
        std::forward<Fill>(fill)(data, size);
        return Buffer(std::shared_ptr<const void>(std::move(bytes), data), data, size);
    }

    const uint8_t* data() const noexcept { return data_; }
    size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::span<const uint8_t> bytes() const noexcept { return {data_, size_}; }
    const uint8_t* begin() const noexcept { return data_; }
    const uint8_t* end() const noexcept { return data_ + size_; }
    const uint8_t& operator[](size_t i) const noexcept { return data_[i]; }
    // Number of Buffers sharing these bytes (0 for an empty Buffer); for tests and stats.
    long use_count() const noexcept { return owner_.use_count(); }

private:
    Buffer(std::shared_ptr<const void> owner, const uint8_t* data, size_t size)
        : owner_(std::move(owner))
        , data_(data)
        , size_(size)
    { }
    std::shared_ptr<const void> owner_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// An 8-bit RGB image: rows top to bottom, 3 bytes per pixel (R, G, B), no row padding.
struct Image
{
    int width = 0;
    int height = 0;
    Buffer rgb; // width * height * 3 bytes

    // These three check the size: a negative side, or pixels of another size than
    // width * height * 3 bytes, is Error(invalid_argument).
    // Takes `rgb` without copying it.
    static Image adopt(int width, int height, std::vector<uint8_t>&& rgb);
    // Copies width * height * 3 bytes from `rgb`.
    static Image copy_of(int width, int height, const uint8_t* rgb);
    // Allocates the pixels uninitialised and calls fill(uint8_t* rgb) once to write them all.
    template<class Fill> static Image allocate(int width, int height, Fill&& fill)
    {
        return Image {
            width, height,
            Buffer::allocate(byte_size(width, height), [&](uint8_t* data, size_t) { fill(data); })};
    }

    bool empty() const noexcept { return rgb.empty(); }
    size_t row_bytes() const noexcept { return size_t(width) * 3; }
    const uint8_t* pixel(int x, int y) const noexcept
    {
        return rgb.data() + (size_t(y) * size_t(width) + size_t(x)) * 3;
    }

    // width * height * 3, after checking that neither side is negative.
    static size_t byte_size(int width, int height);
};

} // namespace iris
