// Conversions between Qt images and the pixels of the reasoning and perception modules.
#pragma once

#include "perception/perception.h"
#include "reasoning/image.h"

#include <QImage>

namespace iris::ui {

reasoning::Image toReasoningImage(const QImage& image);
QImage toQImage(const perception::VideoFrame& frame);
QImage toQImage(const reasoning::Image& image);
perception::VideoFrame toVideoFrame(const QImage& image, int64_t ptsUs);
// A JPEG (key frames of memory entries); a null image when the bytes do not decode.
QImage decodeJpeg(const Buffer& jpeg);

} // namespace iris::ui
