#include "ui/entry-dialog.h"

#include "ui/images.h"

#include <QDateTime>
#include <QDialogButtonBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QVBoxLayout>

namespace iris::ui {

namespace {
constexpr int kFrameSide = 320;

QString timeText(int64_t unixUs)
{
    return QDateTime::fromMSecsSinceEpoch(unixUs / 1000).toString("yyyy-MM-dd HH:mm:ss");
}
} // namespace

EntryDialog::EntryDialog(const memory::Entry& entry, QWidget* parent)
    : QDialog(parent)
{
    setWindowTitle(tr("Memory #%1").arg(entry.id));
    auto* layout = new QVBoxLayout(this);
    auto* frames = new QHBoxLayout;
    for (const memory::KeyFrame& frame : entry.key_frames) {
        auto* column = new QVBoxLayout;
        auto* picture = new QLabel(this);
        QImage image = decodeJpeg(frame.jpeg);
        if (image.isNull())
            picture->setText(tr("(unreadable key frame)"));
        else
            picture->setPixmap(QPixmap::fromImage(image.scaled(
                kFrameSide, kFrameSide, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        column->addWidget(picture);
        column->addWidget(new QLabel(
            QDateTime::fromMSecsSinceEpoch(frame.t_us / 1000).toString("HH:mm:ss"), this));
        frames->addLayout(column);
    }
    layout->addLayout(frames);
    auto* details = new QLabel(this);
    details->setWordWrap(true);
    details->setTextInteractionFlags(Qt::TextSelectableByMouse);
    details->setText(
        tr("<b>%1 – %2</b><br>%3%4")
            .arg(timeText(entry.t_start_us), timeText(entry.t_end_us),
                 QString::fromStdString(entry.caption).toHtmlEscaped(),
                 entry.transcript.empty()
                     ? QString()
                     : tr("<br><i>heard:</i> %1")
                           .arg(QString::fromStdString(entry.transcript).toHtmlEscaped())));
    layout->addWidget(details);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    layout->addWidget(buttons);
}

} // namespace iris::ui
