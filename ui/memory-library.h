// The long-term memory as the app sees it: the store in the memory folder, listed and searched
// on a worker thread for the timeline, and shared with the responder (recall) and the recorder.
#pragma once

#include "memory/memory.h"
#include "reasoning/composer.h"
#include "reasoning/responder.h"

#include <QImage>
#include <QList>
#include <QObject>
#include <QString>
#include <QThreadPool>

#include <memory>
#include <mutex>
#include <optional>

namespace iris::ui {

// One row of the timeline.
struct TimelineEntry
{
    qint64 id = 0;
    qint64 startUs = 0; // wall clock, microseconds since the Unix epoch
    qint64 endUs = 0;
    QString caption;
    QString transcript;
    QImage thumbnail; // the first key frame, small; null when the entry has none
};

class MemoryLibrary : public QObject
{
    Q_OBJECT

public:
    explicit MemoryLibrary(QObject* parent = nullptr);
    ~MemoryLibrary() override; // waits for a listing in progress

    // Opens the store in `dir` for writing, creating it, when `dim` > 0 (the engine's embedding
    // length); with `dim` 0 (no model yet) an existing store is opened read-only to be looked
    // at. A store another process is writing is opened read-only. Returns an error or a warning
    // for the user, or an empty string.
    QString open(const QString& dir, int dim);
    bool isOpen() const;
    bool isReadOnly() const { return m_readOnly; }
    QString dir() const { return m_dir; }
    // Query embeddings come from this engine; without one, search matches words only.
    void setEngine(std::shared_ptr<const reasoning::Engine> engine);

    // The newest entries (empty query), or those the hybrid search finds; entriesLoaded()
    // follows from a worker thread.
    void refresh(const QString& query = {});
    // With key frames; nullopt when there is no such entry (or it cannot be read: failed()).
    std::optional<memory::Entry> entry(qint64 id);
    // Returns an error for the user, or an empty string.
    QString remove(qint64 id);
    qint64 count() const;

    // For other threads (the responder, the recorder).
    std::vector<reasoning::Remembered> recall(const std::string& question, int k) const;
    // The middle key frame of each of the k memories that best match `text` (the composer's
    // image pool); entries without frames are skipped.
    std::vector<reasoning::PoolImage> keyFrames(const std::string& text, int k) const;
    int64_t add(const memory::Entry& entry); // throws iris::Error as Store::add does

signals:
    void entriesLoaded(const QList<iris::ui::TimelineEntry>& entries, const QString& query);
    void changed(); // an entry was added or removed
    void failed(const QString& error);

private:
    struct Snapshot
    {
        std::shared_ptr<memory::Store> store;
        std::shared_ptr<const reasoning::Engine> engine;
    };
    Snapshot snapshot() const;

    mutable std::mutex m_mutex; // guards m_store and m_engine
    std::shared_ptr<memory::Store> m_store;
    std::shared_ptr<const reasoning::Engine> m_engine;
    QString m_dir;
    bool m_readOnly = false;
    quint64 m_generation = 0; // of the newest refresh: older results are dropped
    QThreadPool m_pool; // last: waited for first
};

} // namespace iris::ui
