// Conversations kept on disk so that they can be reopened: one JSON file per conversation in
// the app's data folder, its images as PNG files in a folder of the same name.
#pragma once

#include <QDateTime>
#include <QImage>
#include <QList>
#include <QString>

#include <optional>

namespace iris::ui {

struct ChatMessage
{
    bool fromUser = true;
    QString text;
    QList<QImage> images;
};

struct Conversation
{
    QString id; // empty until saved
    QString title; // the first question
    QDateTime updated;
    QList<ChatMessage> messages; // empty in ConversationStore::list()
};

class ConversationStore
{
public:
    explicit ConversationStore(QString dir);

    const QString& dir() const { return m_dir; }
    // Newest first, without their messages. Unreadable files are skipped.
    QList<Conversation> list() const;
    std::optional<Conversation> load(const QString& id) const;
    // Gives a new conversation its id and title; returns an error for the user, or an empty
    // string. The JSON file is replaced atomically.
    QString save(Conversation& conversation) const;

private:
    QString m_dir;
};

} // namespace iris::ui
