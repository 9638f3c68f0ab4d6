// Recording: the live frames go through perception's frame sampler into clips, and each clip
// becomes a long-term memory entry (key frames, the model's caption, what was heard, an
// embedding), all on a worker thread.
#pragma once

#include "core/bus.h"
#include "reasoning/engine.h"

#include <QObject>
#include <QString>

#include <atomic>
#include <memory>
#include <thread>

namespace iris::ui {

class MemoryLibrary;

class Recorder : public QObject
{
    Q_OBJECT

public:
    Recorder(Bus& bus, MemoryLibrary* memory, QObject* parent = nullptr);
    ~Recorder() override; // stores the clip in progress

    // Returns an error for the user (no model, a read-only memory), or an empty string.
    QString start(std::shared_ptr<const reasoning::Engine> engine);
    // Stores the clip in progress on the worker thread, which then ends.
    void stop();
    bool isRecording() const { return m_recording; }

signals:
    void stored(qint64 id, const QString& caption);
    void failed(const QString& error);

private:
    Bus& m_bus;
    MemoryLibrary* m_memory;
    bool m_recording = false;
    std::jthread m_worker;
};

} // namespace iris::ui
