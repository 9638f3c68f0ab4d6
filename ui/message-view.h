// One message of the chat: who said it, its text rendered as Markdown, and its images.
#pragma once

#include <QFrame>
#include <QImage>
#include <QList>
#include <QString>

class QLabel;

namespace iris::ui {

class MessageView : public QFrame
{
    Q_OBJECT

public:
    enum class Role { User, Assistant };

    MessageView(Role role, const QString& text, const QList<QImage>& images,
                QWidget* parent = nullptr);

    Role role() const { return m_role; }
    QString text() const { return m_text; }
    QList<QImage> images() const { return m_images; }
    void appendText(const QString& piece); // a streamed piece of the answer
    void setText(const QString& text);
    // A line under the text: "stopped", an error.
    void setNote(const QString& note);
    QString note() const;

private:
    void render();

    Role m_role;
    QString m_text;
    QList<QImage> m_images;
    QLabel* m_body = nullptr;
    QLabel* m_note = nullptr;
};

} // namespace iris::ui
