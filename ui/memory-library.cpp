#include "ui/memory-library.h"

#include "assistant/assistant.h"
#include "ui/images.h"

#include <QDir>

namespace iris::ui {

namespace {

// Entries whose embedding is less similar to the query than this are not search results unless
// their words match: the nearest embeddings alone would list every entry. A typed query has
// only the text half of memory_embedding, so even a perfect match scores about 0.7; unrelated
// entries of the demo model score below 0.2.
constexpr float kMinSimilarity = 0.35f;
constexpr int kTimelineMax = 200;
constexpr int kThumbnailSide = 96;

TimelineEntry timelineEntry(const memory::Entry& e)
{
    TimelineEntry t {.id = e.id,
                     .startUs = e.t_start_us,
                     .endUs = e.t_end_us,
                     .caption = QString::fromStdString(e.caption),
                     .transcript = QString::fromStdString(e.transcript)};
    if (!e.key_frames.empty())
        t.thumbnail = decodeJpeg(e.key_frames.front().jpeg)
                          .scaled(kThumbnailSide, kThumbnailSide, Qt::KeepAspectRatio,
                                  Qt::SmoothTransformation);
    return t;
}

} // namespace

MemoryLibrary::MemoryLibrary(QObject* parent)
    : QObject(parent)
{
    m_pool.setMaxThreadCount(1);
}

MemoryLibrary::~MemoryLibrary()
{
    m_pool.clear();
    m_pool.waitForDone();
}

QString MemoryLibrary::open(const QString& dir, int dim)
{
    std::shared_ptr<memory::Store> store;
    bool readOnly = false;
    QString warning;
    try {
        if (dim > 0) QDir().mkpath(dir);
        try {
            store = std::make_shared<memory::Store>(
                memory::Store::open(dir.toStdString(), {.dim = dim, .read_only = dim <= 0}));
            readOnly = dim <= 0;
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::resource) throw;
            // Another process (`iris watch`, a second window) is writing it: look, don't touch.
            store = std::make_shared<memory::Store>(
                memory::Store::open(dir.toStdString(), {.read_only = true}));
            readOnly = true;
            warning
                = tr("The memory at %1 is in use by another process: opened read-only.").arg(dir);
        }
    } catch (const Error& e) {
        // Before the model is loaded a new store cannot be created: it is made on the next open.
        if (dim <= 0 && e.kind() == ErrorKind::not_found) return {};
        return tr("Cannot open the memory at %1: %2").arg(dir, QString::fromUtf8(e.what()));
    } catch (const std::exception& e) {
        return tr("Cannot open the memory at %1: %2").arg(dir, QString::fromUtf8(e.what()));
    }
    {
        std::lock_guard lock(m_mutex);
        m_store = std::move(store);
    }
    m_dir = dir;
    m_readOnly = readOnly;
    emit changed();
    return warning;
}

bool MemoryLibrary::isOpen() const
{
    std::lock_guard lock(m_mutex);
    return m_store != nullptr;
}

void MemoryLibrary::setEngine(std::shared_ptr<const reasoning::Engine> engine)
{
    std::lock_guard lock(m_mutex);
    m_engine = std::move(engine);
}

MemoryLibrary::Snapshot MemoryLibrary::snapshot() const
{
    std::lock_guard lock(m_mutex);
    return {m_store, m_engine};
}

void MemoryLibrary::refresh(const QString& query)
{
    const quint64 generation = ++m_generation;
    m_pool.start([this, s = snapshot(), text = query.trimmed().toStdString(), query, generation] {
        QList<TimelineEntry> entries;
        QString error;
        try {
            if (!s.store) {
                // nothing to list yet
            } else if (text.empty()) {
                for (const auto& e : s.store->list({.limit = kTimelineMax, .with_frames = true}))
                    entries.push_back(timelineEntry(e));
            } else {
                for (const auto& hit : assistant::find_memories(
                         s.engine.get(), *s.store, text, {.k = kTimelineMax, .with_frames = true}))
                    if (hit.rank_text > 0 || hit.similarity >= kMinSimilarity)
                        entries.push_back(timelineEntry(hit.entry));
            }
        } catch (const std::exception& e) {
            error = QString::fromUtf8(e.what());
        }
        QMetaObject::invokeMethod(
            this,
            [this, entries, error, query, generation] {
                if (generation != m_generation) return; // a newer search is on its way
                if (!error.isEmpty()) emit failed(tr("Memory search failed: %1").arg(error));
                emit entriesLoaded(entries, query);
            },
            Qt::QueuedConnection);
    });
}

std::optional<memory::Entry> MemoryLibrary::entry(qint64 id)
{
    Snapshot s = snapshot();
    if (!s.store) return std::nullopt;
    try {
        return s.store->get(id, true);
    } catch (const std::exception& e) {
        emit failed(tr("Cannot read memory #%1: %2").arg(id).arg(QString::fromUtf8(e.what())));
        return std::nullopt;
    }
}

QString MemoryLibrary::remove(qint64 id)
{
    Snapshot s = snapshot();
    if (!s.store) return tr("No memory is open.");
    if (m_readOnly) return tr("The memory is read-only: it is in use by another process.");
    try {
        if (!s.store->remove(id)) return tr("There is no memory #%1.").arg(id);
    } catch (const std::exception& e) {
        return tr("Cannot delete memory #%1: %2").arg(id).arg(QString::fromUtf8(e.what()));
    }
    emit changed();
    return {};
}

qint64 MemoryLibrary::count() const
{
    Snapshot s = snapshot();
    return s.store ? s.store->count() : 0;
}

std::vector<reasoning::Remembered> MemoryLibrary::recall(const std::string& question, int k) const
{
    Snapshot s = snapshot();
    if (!s.store) return {};
    return assistant::recall(s.engine.get(), *s.store, question, k);
}

std::vector<reasoning::PoolImage> MemoryLibrary::keyFrames(const std::string& text, int k) const
{
    Snapshot s = snapshot();
    if (!s.store) return {};
    return assistant::memory_pool(s.engine.get(), *s.store, text, k);
}

int64_t MemoryLibrary::add(const memory::Entry& entry)
{
    Snapshot s = snapshot();
    if (!s.store) throw Error(ErrorKind::closed, "no memory is open");
    int64_t id = s.store->add(entry);
    QMetaObject::invokeMethod(
        this, [this] { emit changed(); }, Qt::QueuedConnection);
    return id;
}

} // namespace iris::ui
