// The live video pane: the picture of the chosen source, the source chooser, "Ask about what I
// see" and the record toggle. It says so when there is no camera or the source fails.
#pragma once

#include "core/bus.h"
#include "perception/perception.h"
#include "ui/bus-listener.h"

#include <QImage>
#include <QList>
#include <QWidget>

class QCheckBox;
class QComboBox;
class QLabel;
class QPushButton;

namespace iris::ui {

class VideoFeed;

class VideoPane : public QWidget
{
    Q_OBJECT

public:
    // `source`: a file, device or "testsrc" to start with; empty: the first camera.
    VideoPane(Bus& bus, VideoFeed* feed, const QString& source, QWidget* parent = nullptr);

    QImage currentFrame() const { return m_current; }
    // The current frame and up to three before it, about a second apart, oldest first.
    QList<QImage> recentFrames() const;
    qint64 framesShown() const { return m_framesShown; }
    QString message() const;
    QPushButton* askButton() const { return m_ask; }

    void showMessage(const QString& text); // over the picture; empty hides it
    void setRecording(bool on); // without emitting recordToggled

signals:
    void askAboutView(const QList<QImage>& frames);
    void recordToggled(bool on);
    void firstFrame();

protected:
    void resizeEvent(QResizeEvent* event) override;

private:
    void onFrame(perception::VideoFrame frame);
    void chooseSource(int index);
    void fillSources(const QString& source);
    void paintFrame();

    VideoFeed* m_feed;
    QImage m_current;
    QList<QImage> m_recent; // about a second apart, newest last
    qint64 m_recentPtsUs = 0;
    qint64 m_framesShown = 0;
    QLabel* m_view = nullptr;
    QLabel* m_message = nullptr;
    QComboBox* m_sources = nullptr;
    QCheckBox* m_withRecent = nullptr;
    QPushButton* m_ask = nullptr;
    QPushButton* m_record = nullptr;
    BusListener<perception::VideoFrame> m_listener; // last: stops first
};

} // namespace iris::ui
