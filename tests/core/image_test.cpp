// Buffer and Image: immutable pixels shared by reference count.
#include "core/core.h"
#include "core/image.h"
#include "tests/errors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

TEST(Buffer, CopiesShareOneImmutableAllocation)
{
    const char text[] = "pixels";
    iris::Buffer a = iris::Buffer::copy_of(text, sizeof text);
    ASSERT_EQ(a.size(), sizeof text);
    EXPECT_EQ(std::memcmp(a.data(), text, sizeof text), 0);
    EXPECT_NE(static_cast<const void*>(a.data()), static_cast<const void*>(text));
    iris::Buffer b = a;
    EXPECT_EQ(a.data(), b.data());
    EXPECT_EQ(a.use_count(), 2);

    std::vector<uint8_t> bytes(1000, 7);
    const uint8_t* where = bytes.data();
    iris::Buffer adopted = iris::Buffer::adopt(std::move(bytes));
    EXPECT_EQ(adopted.data(), where); // adopted, not copied
    EXPECT_EQ(adopted.size(), 1000u);

    iris::Buffer filled = iris::Buffer::allocate(4, [](uint8_t* p, size_t n) {
        for (size_t i = 0; i < n; ++i) p[i] = uint8_t(i * 3);
    });
    EXPECT_EQ(std::vector<uint8_t>(filled.bytes().begin(), filled.bytes().end()),
              (std::vector<uint8_t> {0, 3, 6, 9}));

    iris::Buffer empty;
    EXPECT_TRUE(empty.empty());
    EXPECT_EQ(empty.use_count(), 0);
}

TEST(Image, ConstructorsCheckTheSizeAndShareThePixels)
{
    std::vector<uint8_t> rgb(4 * 2 * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i);
    const uint8_t* where = rgb.data();
    const iris::Image img = iris::Image::adopt(4, 2, std::move(rgb));
    EXPECT_EQ(img.rgb.data(), where); // adopted, not copied
    EXPECT_EQ(img.pixel(0, 0), where);
    EXPECT_EQ(img.pixel(3, 1)[2], 23); // (1 * 4 + 3) * 3 + 2
    EXPECT_EQ(img.row_bytes(), 12u);

    const iris::Image copy = img; // a second handle on the same pixels
    EXPECT_EQ(copy.rgb.data(), where);
    EXPECT_EQ(img.rgb.use_count(), 2);

    const iris::Image deep = iris::Image::copy_of(4, 2, img.rgb.data());
    EXPECT_NE(deep.rgb.data(), where);
    EXPECT_EQ(std::memcmp(deep.rgb.data(), where, 24), 0);

    const iris::Image grey
        = iris::Image::allocate(3, 3, [](uint8_t* p) { std::memset(p, 128, 27); });
    EXPECT_EQ(grey.rgb.size(), 27u);
    EXPECT_EQ(grey.pixel(2, 2)[0], 128);

    using iris::test::thrown_kind;
    EXPECT_EQ(
        thrown_kind([] { iris::Image::adopt(2, 2, std::vector<uint8_t>(11)); }, "needs 12 bytes"),
        iris::ErrorKind::invalid_argument);
    EXPECT_EQ(thrown_kind([] { iris::Image::adopt(-1, 2, {}); }, "negative"),
              iris::ErrorKind::invalid_argument);
    EXPECT_EQ(thrown_kind([] { iris::Image::allocate(2, -3, [](uint8_t*) {}); }, "negative"),
              iris::ErrorKind::invalid_argument);
    EXPECT_TRUE(iris::Image {}.empty());
}
