// The live video: a camera through Qt Multimedia, or a perception source (a video file, a V4L2
// device, a test pattern) read on a worker thread. Every frame is published on the bus topic
// kTopicVideo, where the preview and the recorder take it.
#pragma once

#include "core/bus.h"
#include "perception/perception.h"

#include <QCameraDevice>
#include <QElapsedTimer>
#include <QList>
#include <QObject>
#include <QString>

#include <thread>

class QCamera;
class QMediaCaptureSession;
class QVideoFrame;
class QVideoSink;

namespace iris::ui {

inline constexpr const char* kTopicVideo = "ui.video.frames"; // perception::VideoFrame

class VideoFeed : public QObject
{
    Q_OBJECT

public:
    explicit VideoFeed(Bus& bus, QObject* parent = nullptr);
    ~VideoFeed() override;

    static QList<QCameraDevice> cameras();

    // A file (played in a loop at its own pace), "/dev/videoN" or "testsrc". Errors come as
    // failed().
    void startSource(const QString& input);
    void startCamera(const QCameraDevice& device);
    void stop();

signals:
    void failed(const QString& error);

private:
    void onCameraFrame(const QVideoFrame& frame);

    Topic<perception::VideoFrame> m_frames;
    QCamera* m_camera = nullptr;
    QMediaCaptureSession* m_session = nullptr;
    QVideoSink* m_sink = nullptr;
    QElapsedTimer m_cameraClock;
    std::jthread m_reader;
};

} // namespace iris::ui
