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

QImage fromPackedRgb(const uint8_t* data, int width, int height)
{
    // The QImage borrows the bytes; copy() gives it its own.
    return QImage(data, width, height, width * 3, QImage::Format_RGB888).copy();
}

} // namespace

reasoning::Image toReasoningImage(const QImage& image)
{
    return {image.width(), image.height(), packedRgb(image)};
}

QImage toQImage(const perception::VideoFrame& frame)
{
    return fromPackedRgb(frame.rgb.data(), frame.width, frame.height);
}

QImage toQImage(const reasoning::Image& image)
{
    return fromPackedRgb(image.rgb.data(), image.width, image.height);
}

perception::VideoFrame toVideoFrame(const QImage& image, int64_t ptsUs)
{
    return {ptsUs, image.width(), image.height(), Buffer::adopt(packedRgb(image))};
}

QImage decodeJpeg(const Buffer& jpeg)
{
    return QImage::fromData(jpeg.data(), int(jpeg.size()), "JPEG");
}

} // namespace iris::ui
