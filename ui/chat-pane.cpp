#include "ui/chat-pane.h"

#include "ui/chat-input.h"
#include "ui/images.h"
#include "ui/message-view.h"

#include <QComboBox>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QImageReader>
#include <QLabel>
#include <QMimeData>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

namespace iris::ui {

namespace {
constexpr int kThumbSide = 56;
}

ChatPane::ChatPane(Assistant* assistant, const QString& conversationsDir, QWidget* parent)
    : QWidget(parent)
    , m_assistant(assistant)
    , m_store(conversationsDir)
{
    setAcceptDrops(true);
    auto* layout = new QVBoxLayout(this);

    auto* top = new QHBoxLayout;
    m_conversations = new QComboBox(this);
    m_conversations->setToolTip(tr("Reopen a saved conversation"));
    auto* fresh = new QPushButton(tr("New chat"), this);
    top->addWidget(new QLabel(tr("Conversation:"), this));
    top->addWidget(m_conversations, 1);
    top->addWidget(fresh);
    layout->addLayout(top);

    m_scroll = new QScrollArea(this);
    m_scroll->setWidgetResizable(true);
    auto* list = new QWidget(m_scroll);
    m_messages = new QVBoxLayout(list);
    m_messages->addStretch();
    m_scroll->setWidget(list);
    layout->addWidget(m_scroll, 1);

    m_attachmentBox = new QWidget(this);
    auto* box = new QHBoxLayout(m_attachmentBox);
    box->setContentsMargins(0, 0, 0, 0);
    m_attachmentStrip = new QHBoxLayout;
    box->addLayout(m_attachmentStrip);
    box->addStretch();
    auto* remove = new QToolButton(m_attachmentBox);
    remove->setText(tr("Remove attachments"));
    box->addWidget(remove);
    m_attachmentBox->hide();
    layout->addWidget(m_attachmentBox);

    auto* row = new QHBoxLayout;
    auto* attach = new QToolButton(this);
    attach->setText(tr("Attach…"));
    attach->setToolTip(tr("Attach images (PNG, JPEG, WebP, BMP)"));
    m_input = new ChatInput(this);
    m_input->setMaximumHeight(90);
    m_send = new QPushButton(tr("Send"), this);
    m_stop = new QPushButton(tr("Stop"), this);
    m_stop->setToolTip(tr("Stop the answer being written"));
    row->addWidget(attach);
    row->addWidget(m_input, 1);
    row->addWidget(m_send);
    row->addWidget(m_stop);
    layout->addLayout(row);

    connect(attach, &QToolButton::clicked, this, &ChatPane::attachFromFiles);
    connect(remove, &QToolButton::clicked, this, &ChatPane::clearAttachments);
    connect(m_send, &QPushButton::clicked, this, &ChatPane::send);
    connect(m_stop, &QPushButton::clicked, this, &ChatPane::stop);
    connect(fresh, &QPushButton::clicked, this, &ChatPane::newConversation);
    connect(m_input, &ChatInput::submitted, this, &ChatPane::send);
    connect(m_input, &ChatInput::imagesAdded, this,
            [this](const QList<QImage>& images) { addAttachments(images); });
    connect(m_input, &ChatInput::imageErrors, this,
            [this](const QStringList& errors) { emit message(errors.join("; ")); });
    connect(m_conversations, &QComboBox::activated, this, [this](int index) {
        const QString id = m_conversations->itemData(index).toString();
        if (!id.isEmpty() && id != m_conversation.id) openConversation(id);
    });
    connect(m_assistant, &Assistant::answerPiece, this, &ChatPane::onPiece);
    connect(m_assistant, &Assistant::answerFinished, this, &ChatPane::onFinished);
    refreshConversations();
    updateButtons();
}

QList<MessageView*> ChatPane::messages() const
{
    return m_scroll->widget()->findChildren<MessageView*>(QString(), Qt::FindDirectChildrenOnly);
}

void ChatPane::addAttachments(const QList<QImage>& images, bool frames)
{
    for (const QImage& image : images) {
        m_attachments.push_back(image);
        auto* thumb = new QLabel(m_attachmentBox);
        thumb->setPixmap(QPixmap::fromImage(
            image.scaled(kThumbSide, kThumbSide, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        thumb->setToolTip(tr("%1×%2").arg(image.width()).arg(image.height()));
        m_attachmentStrip->addWidget(thumb);
    }
    m_attachedFrames = m_attachedFrames || frames;
    m_attachmentBox->setVisible(!m_attachments.isEmpty());
}

void ChatPane::clearAttachments()
{
    m_attachments.clear();
    m_attachedFrames = false;
    while (QLayoutItem* item = m_attachmentStrip->takeAt(0)) {
        if (item->widget()) item->widget()->deleteLater();
        delete item;
    }
    m_attachmentBox->hide();
}

void ChatPane::attachFromFiles()
{
    const QStringList files = QFileDialog::getOpenFileNames(
        this, tr("Attach images"), QString(), tr("Images (*.png *.jpg *.jpeg *.webp *.bmp)"));
    QStringList errors;
    for (const QString& file : files) {
        QImageReader reader(file);
        QImage image = reader.read();
        if (image.isNull())
            errors.push_back(tr("Cannot read the image %1: %2").arg(file, reader.errorString()));
        else
            addAttachments({image});
    }
    if (!errors.isEmpty()) emit message(errors.join("; "));
}

void ChatPane::dragEnterEvent(QDragEnterEvent* event)
{
    if (ChatInput::hasImages(event->mimeData())) event->acceptProposedAction();
}

void ChatPane::dropEvent(QDropEvent* event)
{
    QStringList errors;
    addAttachments(ChatInput::imagesFrom(event->mimeData(), &errors));
    if (!errors.isEmpty()) emit message(errors.join("; "));
    event->acceptProposedAction();
}

void ChatPane::send()
{
    const QString text = m_input->toPlainText().trimmed();
    if (m_answering || (text.isEmpty() && m_attachments.isEmpty())) return;
    const QString question = text.isEmpty() ? tr("Describe the image briefly.") : text;
    // Pictures are asked about as they are, and so is a typed follow-up in a conversation about
    // pictures (its earlier turns go with it); other typed questions and video frames are
    // answered from memory.
    std::vector<reasoning::PastTurn> history;
    bool aboutPictures = false;
    const auto& earlier = m_conversation.messages;
    for (qsizetype i = 0; i + 1 < earlier.size(); i += 2) {
        if (!earlier[i].fromUser || earlier[i + 1].fromUser) continue;
        aboutPictures = aboutPictures || !earlier[i].images.isEmpty();
        reasoning::PastTurn turn {
            earlier[i].text.toStdString(), {}, earlier[i + 1].text.toStdString()};
        for (const QImage& image : earlier[i].images) turn.images.push_back(toImage(image));
        history.push_back(std::move(turn));
    }
    const bool recall = m_attachedFrames || (m_attachments.isEmpty() && !aboutPictures);
    addMessage(true, question, m_attachments);
    m_conversation.messages.push_back(
        {.fromUser = true, .text = question, .images = m_attachments});
    m_answer = addMessage(false, {}, {});
    m_answering = true;
    m_answerId = m_assistant->ask(question, m_attachments, recall, history);
    m_input->clear();
    clearAttachments();
    updateButtons();
}

void ChatPane::stop()
{
    if (m_answering) m_assistant->cancel(m_answerId);
}

void ChatPane::onPiece(quint64 id, const QString& text)
{
    if (!m_answering || id != m_answerId) return;
    m_answer->appendText(text);
    scrollToEnd();
}

void ChatPane::onFinished(quint64 id, const AnswerResult& result)
{
    if (!m_answering || id != m_answerId) return;
    m_answering = false;
    if (!result.text.isEmpty() || result.finishReason != "cancelled")
        m_answer->setText(result.text);
    if (result.finishReason == "cancelled")
        m_answer->setNote(tr("stopped"));
    else if (result.finishReason == "error")
        m_answer->setNote(tr("No answer: %1").arg(result.error));
    m_conversation.messages.push_back({.fromUser = false, .text = m_answer->text()});
    m_answer = nullptr;
    const bool isNew = m_conversation.id.isEmpty();
    if (QString error = m_store.save(m_conversation); !error.isEmpty()) emit message(error);
    if (isNew) refreshConversations();
    updateButtons();
    scrollToEnd();
    if (result.finishReason == "stop" || result.finishReason == "length")
        emit answerFinished(result.text);
}

void ChatPane::newConversation()
{
    if (m_answering) stop();
    m_answering = false;
    m_answer = nullptr;
    m_conversation = {};
    clearMessages();
    refreshConversations();
    updateButtons();
}

void ChatPane::openConversation(const QString& id)
{
    auto loaded = m_store.load(id);
    if (!loaded) {
        emit message(tr("Cannot read the conversation %1 in %2").arg(id, m_store.dir()));
        return;
    }
    newConversation();
    m_conversation = *loaded;
    for (const ChatMessage& m : m_conversation.messages) addMessage(m.fromUser, m.text, m.images);
    refreshConversations();
}

MessageView* ChatPane::addMessage(bool fromUser, const QString& text, const QList<QImage>& images)
{
    auto* view = new MessageView(fromUser ? MessageView::Role::User : MessageView::Role::Assistant,
                                 text, images, m_scroll->widget());
    m_messages->insertWidget(m_messages->count() - 1, view); // before the stretch
    scrollToEnd();
    return view;
}

void ChatPane::clearMessages()
{
    for (MessageView* view : messages()) delete view;
}

void ChatPane::refreshConversations()
{
    m_conversations->clear();
    m_conversations->addItem(tr("(new conversation)"), QString());
    for (const Conversation& c : m_store.list())
        m_conversations->addItem(tr("%1 — %2").arg(c.updated.toString("yyyy-MM-dd HH:mm"), c.title),
                                 c.id);
    const int index = m_conversations->findData(m_conversation.id);
    m_conversations->setCurrentIndex(index < 0 ? 0 : index);
}

void ChatPane::updateButtons()
{
    m_send->setEnabled(!m_answering);
    m_stop->setEnabled(m_answering);
}

void ChatPane::scrollToEnd()
{
    // After the layout has placed the new message.
    QTimer::singleShot(0, this, [this] {
        m_scroll->verticalScrollBar()->setValue(m_scroll->verticalScrollBar()->maximum());
    });
}

} // namespace iris::ui
