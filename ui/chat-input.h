// The question box: Enter sends, Shift+Enter breaks the line, and pasted or dropped images
// become attachments instead of text.
#pragma once

#include <QImage>
#include <QList>
#include <QPlainTextEdit>
#include <QStringList>

class QMimeData;

namespace iris::ui {

class ChatInput : public QPlainTextEdit
{
    Q_OBJECT

public:
    explicit ChatInput(QWidget* parent = nullptr);

    // The images in pasted or dropped data: image data, or image files. Files that cannot be
    // read are named in `errors`.
    static QList<QImage> imagesFrom(const QMimeData* data, QStringList* errors);
    static bool hasImages(const QMimeData* data);

signals:
    void submitted();
    void imagesAdded(const QList<QImage>& images);
    void imageErrors(const QStringList& errors);

protected:
    void keyPressEvent(QKeyEvent* event) override;
    bool canInsertFromMimeData(const QMimeData* source) const override;
    void insertFromMimeData(const QMimeData* source) override;
};

} // namespace iris::ui
