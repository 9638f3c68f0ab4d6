#include "ui/video-feed.h"

#include "ui/images.h"

#include <QCamera>
#include <QMediaCaptureSession>
#include <QMediaDevices>
#include <QVideoFrame>
#include <QVideoSink>

namespace iris::ui {

namespace {
// Frames are published at most this wide (a 4K camera would cost the preview for nothing).
constexpr int kMaxWidth = 960;
} // namespace

VideoFeed::VideoFeed(Bus& bus, QObject* parent)
    : QObject(parent)
    , m_frames(bus.topic<perception::VideoFrame>(kTopicVideo))
{ }

VideoFeed::~VideoFeed()
{
    stop();
}

QList<QCameraDevice> VideoFeed::cameras()
{
    return QMediaDevices::videoInputs();
}

void VideoFeed::stop()
{
    m_reader.request_stop();
    if (m_reader.joinable()) m_reader.join();
    delete m_session;
    delete m_camera;
    delete m_sink;
    m_session = nullptr;
    m_camera = nullptr;
    m_sink = nullptr;
}

void VideoFeed::startSource(const QString& input)
{
    stop();
    m_reader = std::jthread([this, input = input.toStdString()](std::stop_token stop) {
        try {
            // A file plays in a loop; its timestamps go on increasing across the loops.
            int64_t offsetUs = 0;
            while (!stop.stop_requested()) {
                perception::VideoSource source(input, {.realtime = true}, stop);
                int64_t lastUs = offsetUs;
                int64_t n = 0;
                while (auto frame = source.read()) {
                    frame->pts_us += offsetUs;
                    lastUs = frame->pts_us;
                    if (frame->image.width > kMaxWidth)
                        frame->image
                            = toImage(toQImage(frame->image)
                                          .scaledToWidth(kMaxWidth, Qt::SmoothTransformation));
                    m_frames.try_publish(std::move(*frame), std::chrono::milliseconds(0));
                    ++n;
                }
                if (n == 0 && !stop.stop_requested())
                    throw Error(ErrorKind::invalid_input, input + " has no video frames");
                offsetUs = lastUs + 40'000;
            }
        } catch (const std::exception& e) {
            QMetaObject::invokeMethod(
                this, [this, error = QString::fromUtf8(e.what())] { emit failed(error); },
                Qt::QueuedConnection);
        }
    });
}

void VideoFeed::startCamera(const QCameraDevice& device)
{
    stop();
    m_camera = new QCamera(device);
    m_session = new QMediaCaptureSession;
    m_sink = new QVideoSink;
    m_session->setCamera(m_camera);
    m_session->setVideoSink(m_sink);
    connect(m_sink, &QVideoSink::videoFrameChanged, this, &VideoFeed::onCameraFrame);
    connect(m_camera, &QCamera::errorOccurred, this,
            [this, name = device.description()](QCamera::Error, const QString& error) {
                emit failed(tr("Camera %1: %2").arg(name, error));
            });
    m_cameraClock.start();
    m_camera->start();
}

void VideoFeed::onCameraFrame(const QVideoFrame& frame)
{
    QImage image = frame.toImage();
    if (image.isNull()) return;
    if (image.width() > kMaxWidth) image = image.scaledToWidth(kMaxWidth, Qt::FastTransformation);
    m_frames.try_publish(
        perception::VideoFrame {m_cameraClock.nsecsElapsed() / 1000, toImage(image)},
        std::chrono::milliseconds(0));
}

} // namespace iris::ui
