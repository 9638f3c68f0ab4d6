#include "ui/message-view.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPixmap>
#include <QVBoxLayout>

namespace iris::ui {

namespace {
constexpr int kImageSide = 240; // inline images are shown at most this large
}

MessageView::MessageView(Role role, const QString& text, const QList<QImage>& images,
                         QWidget* parent)
    : QFrame(parent)
    , m_role(role)
    , m_text(text)
    , m_images(images)
{
    setObjectName(role == Role::User ? "userMessage" : "assistantMessage");
    setFrameShape(QFrame::StyledPanel);
    setStyleSheet(role == Role::User
                      ? "#userMessage { background: #e3edf9; border-radius: 8px; }"
                      : "#assistantMessage { background: #f4f4f4; border-radius: 8px; }");
    auto* layout = new QVBoxLayout(this);
    auto* who = new QLabel(role == Role::User ? tr("You") : tr("Iris"), this);
    who->setStyleSheet("font-weight: bold; color: #555;");
    layout->addWidget(who);
    if (!images.isEmpty()) {
        auto* strip = new QHBoxLayout;
        for (const QImage& image : images) {
            auto* label = new QLabel(this);
            label->setPixmap(QPixmap::fromImage(image.scaled(
                kImageSide, kImageSide, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
            strip->addWidget(label);
        }
        strip->addStretch();
        layout->addLayout(strip);
    }
    m_body = new QLabel(this);
    // Answers are Markdown; a question is shown as typed, its line breaks kept.
    m_body->setTextFormat(role == Role::Assistant ? Qt::MarkdownText : Qt::PlainText);
    m_body->setWordWrap(true);
    m_body->setTextInteractionFlags(Qt::TextBrowserInteraction);
    m_body->setOpenExternalLinks(true);
    layout->addWidget(m_body);
    m_note = new QLabel(this);
    m_note->setStyleSheet("color: #a33; font-style: italic;");
    m_note->hide();
    layout->addWidget(m_note);
    render();
}

void MessageView::appendText(const QString& piece)
{
    m_text += piece;
    render();
}

void MessageView::setText(const QString& text)
{
    m_text = text;
    render();
}

void MessageView::setNote(const QString& note)
{
    m_note->setText(note);
    m_note->setVisible(!note.isEmpty());
}

QString MessageView::note() const
{
    return m_note->text();
}

void MessageView::render()
{
    // An answer that has not started yet shows an ellipsis.
    m_body->setText(m_text.isEmpty() && m_role == Role::Assistant ? QStringLiteral("…") : m_text);
}

} // namespace iris::ui
