// Conversions between Qt images and Iris's (core/image.h).
#pragma once

#include "core/image.h"

#include <QImage>

namespace iris::ui {

Image toImage(const QImage& image);
QImage toQImage(const Image& image);
// A JPEG (key frames of memory entries); a null image when the bytes do not decode.
QImage decodeJpeg(const Buffer& jpeg);

} // namespace iris::ui
