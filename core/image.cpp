#include "core/image.h"

#include "core/core.h"

#include <cstring>

namespace iris {

Buffer Buffer::copy_of(const void* data, size_t size)
{
    return allocate(size, [&](uint8_t* out, size_t n) {
        if (n != 0) std::memcpy(out, data, n);
    });
}

Buffer Buffer::adopt(std::vector<uint8_t>&& bytes)
{
    auto owner = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
    const uint8_t* data = owner->data();
    const size_t size = owner->size();
    return Buffer(std::move(owner), data, size);
}

size_t Image::byte_size(int width, int height)
{
    if (width < 0 || height < 0)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("image size %dx%d is negative", width, height));
    return size_t(width) * size_t(height) * 3;
}

Image Image::adopt(int width, int height, std::vector<uint8_t>&& rgb)
{
    const size_t n = byte_size(width, height);
    if (rgb.size() != n)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("a %dx%d RGB image needs %zu bytes, got %zu", width, height, n, rgb.size()));
    return Image {width, height, Buffer::adopt(std::move(rgb))};
}

Image Image::copy_of(int width, int height, const uint8_t* rgb)
{
    return Image {width, height, Buffer::copy_of(rgb, byte_size(width, height))};
}

} // namespace iris
