#include "ui/images.h"

#include <cstring>

namespace iris::ui {

namespace {

// Tightly packed RGB rows: QImage pads its rows to 4 bytes.
std::vector<uint8_t> packedRgb(const QImage& image)
{
    QImage rgb = image.convertToFormat(QImage::Format_RGB888);
    const size_t row = size_t(rgb.width()) * 3;
    std::vector<uint8_t> bytes(row * size_t(rgb.height()));
    for (int y = 0; y < rgb.height(); ++y)
        std::memcpy(bytes.data() + row * size_t(y), rgb.constScanLine(y), row);
    return bytes;
}

} // namespace

Image toImage(const QImage& image)
{
    return Image::adopt(image.width(), image.height(), packedRgb(image));
}

QImage toQImage(const Image& image)
{
    // The QImage borrows the pixels; copy() gives it its own.
    return QImage(image.rgb.data(), image.width, image.height, image.width * 3,
                  QImage::Format_RGB888)
        .copy();
}

QImage decodeJpeg(const Buffer& jpeg)
{
    return QImage::fromData(jpeg.data(), int(jpeg.size()), "JPEG");
}

} // namespace iris::ui
