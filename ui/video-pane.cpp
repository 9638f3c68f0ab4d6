#include "ui/video-pane.h"

#include "ui/images.h"
#include "ui/video-feed.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QVBoxLayout>

namespace iris::ui {

namespace {
constexpr int kRecentMax = 4;
constexpr qint64 kRecentSpacingUs = 1'000'000;
const QString kCameraPrefix = QStringLiteral("camera:");
const QString kOpenFile = QStringLiteral("open-file");
} // namespace

VideoPane::VideoPane(Bus& bus, VideoFeed* feed, const QString& source, QWidget* parent)
    : QWidget(parent)
    , m_feed(feed)
    , m_listener(
          bus.topic<perception::VideoFrame>(kTopicVideo)
              .subscribe({.delivery = Delivery::latest, .capacity = 2, .name = "ui.preview"}),
          this, [this](perception::VideoFrame f) { onFrame(std::move(f)); })
{
    auto* layout = new QVBoxLayout(this);
    auto* top = new QHBoxLayout;
    m_sources = new QComboBox(this);
    top->addWidget(new QLabel(tr("Source:"), this));
    top->addWidget(m_sources, 1);
    layout->addLayout(top);

    m_view = new QLabel(this);
    m_view->setAlignment(Qt::AlignCenter);
    m_view->setMinimumSize(320, 180);
    m_view->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Ignored);
    m_view->setStyleSheet("background: #202020; color: #ddd;");
    layout->addWidget(m_view, 1);
    m_message = new QLabel(m_view);
    m_message->setWordWrap(true);
    m_message->setAlignment(Qt::AlignCenter);
    m_message->setStyleSheet("color: #eee; background: rgba(0, 0, 0, 160); padding: 8px;");
    m_message->hide();

    auto* buttons = new QHBoxLayout;
    m_ask = new QPushButton(tr("Ask about what I see"), this);
    m_ask->setToolTip(tr("Attach the current frame to the next question"));
    m_withRecent = new QCheckBox(tr("with recent frames"), this);
    m_record = new QPushButton(tr("Record"), this);
    m_record->setCheckable(true);
    m_record->setToolTip(tr("Remember what the camera sees: clips go into the memory"));
    buttons->addWidget(m_ask);
    buttons->addWidget(m_withRecent);
    buttons->addStretch();
    buttons->addWidget(m_record);
    layout->addLayout(buttons);

    connect(m_ask, &QPushButton::clicked, this, [this] {
        if (m_current.isNull()) {
            showMessage(tr("There is no picture to ask about yet."));
            return;
        }
        emit askAboutView(m_withRecent->isChecked() ? recentFrames() : QList<QImage> {m_current});
    });
    connect(m_record, &QPushButton::toggled, this, &VideoPane::recordToggled);
    connect(m_feed, &VideoFeed::failed, this, [this](const QString& error) {
        showMessage(error);
        m_current = QImage();
        paintFrame();
    });
    fillSources(source);
    connect(m_sources, &QComboBox::activated, this, &VideoPane::chooseSource);
    chooseSource(m_sources->currentIndex());
}

void VideoPane::fillSources(const QString& source)
{
    for (const QCameraDevice& camera : VideoFeed::cameras())
        m_sources->addItem(camera.description(), kCameraPrefix + camera.id());
    if (!source.isEmpty() && source != "testsrc")
        m_sources->addItem(QFileInfo(source).fileName(), source);
    m_sources->addItem(tr("Test pattern"), QStringLiteral("testsrc"));
    m_sources->addItem(tr("Open a video file…"), kOpenFile);
    if (!source.isEmpty()) {
        m_sources->setCurrentIndex(m_sources->findData(source));
        return;
    }
    // No camera and no --source: nothing plays until the user picks something.
    if (VideoFeed::cameras().isEmpty()) {
        m_sources->insertItem(0, tr("No camera found"), QString());
        m_sources->setCurrentIndex(0);
    }
}

void VideoPane::chooseSource(int index)
{
    QString choice = m_sources->itemData(index).toString();
    m_current = QImage();
    m_recent.clear();
    paintFrame();
    if (choice.isEmpty()) {
        m_feed->stop();
        showMessage(tr("No camera found. Choose the test pattern or a video file above, or start "
                       "with --source FILE|testsrc."));
        return;
    }
    if (choice == kOpenFile) {
        choice = QFileDialog::getOpenFileName(this, tr("Open a video"), QString(),
                                              tr("Videos (*.mp4 *.mkv *.webm *.mov *.avi)"));
        if (choice.isEmpty()) return;
        m_sources->insertItem(index, QFileInfo(choice).fileName(), choice);
        m_sources->setCurrentIndex(index);
    }
    showMessage(tr("Starting %1…").arg(m_sources->currentText()));
    if (choice.startsWith(kCameraPrefix)) {
        const QByteArray id = choice.mid(kCameraPrefix.size()).toUtf8();
        for (const QCameraDevice& camera : VideoFeed::cameras())
            if (camera.id() == id) m_feed->startCamera(camera);
        return;
    }
    m_feed->startSource(choice);
}

QList<QImage> VideoPane::recentFrames() const
{
    QList<QImage> frames = m_recent;
    if (frames.isEmpty() || frames.back() != m_current) frames.push_back(m_current);
    while (frames.size() > kRecentMax) frames.pop_front();
    return frames;
}

QString VideoPane::message() const
{
    return m_message->isVisible() ? m_message->text() : QString();
}

void VideoPane::showMessage(const QString& text)
{
    m_message->setText(text);
    m_message->setVisible(!text.isEmpty());
    m_message->setGeometry(m_view->rect().adjusted(12, 12, -12, -12));
    m_message->adjustSize();
    m_message->move((m_view->width() - m_message->width()) / 2,
                    (m_view->height() - m_message->height()) / 2);
}

void VideoPane::setRecording(bool on)
{
    QSignalBlocker block(m_record);
    m_record->setChecked(on);
}

void VideoPane::onFrame(perception::VideoFrame frame)
{
    m_current = toQImage(frame.image);
    if (m_recent.isEmpty() || frame.pts_us - m_recentPtsUs >= kRecentSpacingUs
        || frame.pts_us < m_recentPtsUs) {
        m_recent.push_back(m_current);
        m_recentPtsUs = frame.pts_us;
        while (m_recent.size() > kRecentMax) m_recent.pop_front();
    }
    if (m_framesShown++ == 0 || m_message->isVisible()) showMessage({});
    paintFrame();
    if (m_framesShown == 1) emit firstFrame();
}

void VideoPane::paintFrame()
{
    if (m_current.isNull()) {
        m_view->setPixmap(QPixmap());
        return;
    }
    m_view->setPixmap(QPixmap::fromImage(
        m_current.scaled(m_view->size(), Qt::KeepAspectRatio, Qt::SmoothTransformation)));
}

void VideoPane::resizeEvent(QResizeEvent* event)
{
    QWidget::resizeEvent(event);
    paintFrame();
    if (m_message->isVisible()) showMessage(m_message->text());
}

} // namespace iris::ui
