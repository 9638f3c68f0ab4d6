// The chat: the conversation with streamed, Markdown-rendered answers, the question box with its
// attachments, send and stop, and the saved conversations.
#pragma once

#include "ui/assistant.h"
#include "ui/conversation-store.h"

#include <QImage>
#include <QList>
#include <QWidget>

class QComboBox;
class QHBoxLayout;
class QLabel;
class QPushButton;
class QScrollArea;
class QVBoxLayout;

namespace iris::ui {

class ChatInput;
class MessageView;

class ChatPane : public QWidget
{
    Q_OBJECT

public:
    ChatPane(Assistant* assistant, const QString& conversationsDir, QWidget* parent = nullptr);

    ChatInput* input() const { return m_input; }
    QPushButton* sendButton() const { return m_send; }
    QPushButton* stopButton() const { return m_stop; }
    QList<MessageView*> messages() const;
    bool isAnswering() const { return m_answering; }

    // Attachments for the next question. Frames (from the video pane) are asked about with the
    // memory, as video; pictures are asked about as they are.
    void addAttachments(const QList<QImage>& images, bool frames = false);
    void clearAttachments();
    int attachmentCount() const { return m_attachments.size(); }

public slots:
    void send();
    void stop();
    void newConversation();
    void openConversation(const QString& id);

signals:
    void answerFinished(const QString& text); // e.g. to speak it
    void message(const QString& text); // for the status bar

protected:
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void attachFromFiles();
    void onPiece(quint64 id, const QString& text);
    void onFinished(quint64 id, const AnswerResult& result);
    MessageView* addMessage(bool fromUser, const QString& text, const QList<QImage>& images);
    void clearMessages();
    void refreshConversations();
    void updateButtons();
    void scrollToEnd();

    Assistant* m_assistant;
    ConversationStore m_store;
    Conversation m_conversation;
    QList<QImage> m_attachments;
    bool m_attachedFrames = false;
    bool m_answering = false;
    quint64 m_answerId = 0;
    MessageView* m_answer = nullptr; // being streamed
    QComboBox* m_conversations = nullptr;
    QScrollArea* m_scroll = nullptr;
    QVBoxLayout* m_messages = nullptr;
    QHBoxLayout* m_attachmentStrip = nullptr;
    QWidget* m_attachmentBox = nullptr;
    ChatInput* m_input = nullptr;
    QPushButton* m_send = nullptr;
    QPushButton* m_stop = nullptr;
};

} // namespace iris::ui
