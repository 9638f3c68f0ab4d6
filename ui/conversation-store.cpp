#include "ui/conversation-store.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QObject>
#include <QSaveFile>

#include <algorithm>

namespace iris::ui {

namespace {

std::optional<QJsonObject> readJson(const QString& path)
{
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) return std::nullopt;
    QJsonDocument doc = QJsonDocument::fromJson(file.readAll());
    if (!doc.isObject()) return std::nullopt;
    return doc.object();
}

} // namespace

ConversationStore::ConversationStore(QString dir)
    : m_dir(std::move(dir))
{ }

QList<Conversation> ConversationStore::list() const
{
    QList<Conversation> out;
    const QDir dir(m_dir);
    for (const QString& name : dir.entryList({"*.json"}, QDir::Files)) {
        auto json = readJson(dir.filePath(name));
        if (!json) continue;
        out.push_back(
            {.id = QFileInfo(name).completeBaseName(),
             .title = (*json)["title"].toString(),
             .updated = QDateTime::fromString((*json)["updated"].toString(), Qt::ISODateWithMs)});
    }
    std::sort(out.begin(), out.end(),
              [](const Conversation& a, const Conversation& b) { return a.updated > b.updated; });
    return out;
}

std::optional<Conversation> ConversationStore::load(const QString& id) const
{
    const QDir dir(m_dir);
    auto json = readJson(dir.filePath(id + ".json"));
    if (!json) return std::nullopt;
    Conversation c {.id = id,
                    .title = (*json)["title"].toString(),
                    .updated
                    = QDateTime::fromString((*json)["updated"].toString(), Qt::ISODateWithMs)};
    for (const QJsonValue& m : (*json)["messages"].toArray()) {
        ChatMessage message {.fromUser = m["role"].toString() == "user",
                             .text = m["text"].toString()};
        for (const QJsonValue& file : m["images"].toArray())
            message.images.push_back(QImage(dir.filePath(id + "/" + file.toString())));
        c.messages.push_back(message);
    }
    return c;
}

QString ConversationStore::save(Conversation& c) const
{
    QDir dir(m_dir);
    if (!dir.mkpath(".")) return QObject::tr("Cannot create the folder %1").arg(m_dir);
    c.updated = QDateTime::currentDateTime();
    if (c.id.isEmpty()) c.id = c.updated.toString("yyyyMMdd-HHmmss-zzz");
    if (c.title.isEmpty() && !c.messages.isEmpty())
        c.title = c.messages.front().text.simplified().left(60);
    QJsonArray messages;
    for (int i = 0; i < c.messages.size(); ++i) {
        const ChatMessage& m = c.messages[i];
        QJsonArray images;
        for (int j = 0; j < m.images.size(); ++j) {
            // Images never change once sent: write each one once.
            const QString name = QString("%1-%2.png").arg(i).arg(j);
            const QString path = dir.filePath(c.id + "/" + name);
            if (!QFile::exists(path) && !(dir.mkpath(c.id) && m.images[j].save(path, "PNG")))
                return QObject::tr("Cannot write %1").arg(path);
            images.push_back(name);
        }
        messages.push_back(QJsonObject {
            {"role", m.fromUser ? "user" : "assistant"}, {"text", m.text}, {"images", images}});
    }
    QJsonObject json {{"title", c.title},
                      {"updated", c.updated.toString(Qt::ISODateWithMs)},
                      {"messages", messages}};
    QSaveFile file(dir.filePath(c.id + ".json"));
    if (!file.open(QIODevice::WriteOnly) || file.write(QJsonDocument(json).toJson()) < 0
        || !file.commit())
        return QObject::tr("Cannot write %1: %2").arg(file.fileName(), file.errorString());
    return {};
}

} // namespace iris::ui
