#include "ui/chat-input.h"

#include <QFileInfo>
#include <QImageReader>
#include <QKeyEvent>
#include <QMimeData>
#include <QUrl>

namespace iris::ui {

ChatInput::ChatInput(QWidget* parent)
    : QPlainTextEdit(parent)
{
    setPlaceholderText(tr("Ask Iris… (Enter sends, Shift+Enter breaks the line; paste or drop "
                          "images to attach them)"));
    setTabChangesFocus(true);
}

bool ChatInput::hasImages(const QMimeData* data)
{
    if (data->hasImage()) return true;
    for (const QUrl& url : data->urls())
        if (url.isLocalFile() && !QImageReader::imageFormat(url.toLocalFile()).isEmpty())
            return true;
    return false;
}

QList<QImage> ChatInput::imagesFrom(const QMimeData* data, QStringList* errors)
{
    QList<QImage> images;
    if (data->hasImage()) {
        QImage image = qvariant_cast<QImage>(data->imageData());
        if (!image.isNull()) images.push_back(image);
    }
    for (const QUrl& url : data->urls()) {
        if (!url.isLocalFile()) continue;
        QImageReader reader(url.toLocalFile());
        QImage image = reader.read();
        if (image.isNull())
            errors->push_back(
                tr("Cannot read the image %1: %2")
                    .arg(QFileInfo(url.toLocalFile()).fileName(), reader.errorString()));
        else
            images.push_back(image);
    }
    return images;
}

void ChatInput::keyPressEvent(QKeyEvent* event)
{
    const bool enter = event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter;
    if (enter && !(event->modifiers() & Qt::ShiftModifier)) {
        emit submitted();
        return;
    }
    if (enter) {
        insertPlainText("\n");
        return;
    }
    QPlainTextEdit::keyPressEvent(event);
}

bool ChatInput::canInsertFromMimeData(const QMimeData* source) const
{
    return hasImages(source) || QPlainTextEdit::canInsertFromMimeData(source);
}

void ChatInput::insertFromMimeData(const QMimeData* source)
{
    if (!hasImages(source) && !source->hasUrls()) {
        QPlainTextEdit::insertFromMimeData(source);
        return;
    }
    QStringList errors;
    QList<QImage> images = imagesFrom(source, &errors);
    if (!images.isEmpty()) emit imagesAdded(images);
    if (!errors.isEmpty()) emit imageErrors(errors);
    // Text that came with image files (their names) is not wanted in the question.
    if (images.isEmpty() && errors.isEmpty()) QPlainTextEdit::insertFromMimeData(source);
}

} // namespace iris::ui
