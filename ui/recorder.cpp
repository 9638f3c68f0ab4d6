#include "ui/recorder.h"

#include "assistant/assistant.h"
#include "memory/memory.h"
#include "perception/perception.h"
#include "ui/memory-library.h"
#include "ui/video-feed.h"

#include <chrono>

namespace iris::ui {

Recorder::Recorder(Bus& bus, MemoryLibrary* memory, QObject* parent)
    : QObject(parent)
    , m_bus(bus)
    , m_memory(memory)
{ }

Recorder::~Recorder()
{
    stop();
}

QString Recorder::start(std::shared_ptr<const reasoning::Engine> engine)
{
    if (m_recording) return {};
    if (!engine) return tr("The model is not loaded yet: it writes the memories' captions.");
    if (!m_memory->isOpen() || m_memory->isReadOnly())
        return tr("The memory cannot be written: %1").arg(m_memory->dir());
    if (m_worker.joinable()) m_worker.join(); // the last recording's final clip
    auto frames
        = m_bus.topic<perception::VideoFrame>(kTopicVideo)
              .subscribe({.delivery = Delivery::latest, .capacity = 8, .name = "ui.record"});
    auto heard
        = m_bus.topic<perception::Transcript>(perception::kTopicTranscripts)
              .subscribe({.delivery = Delivery::latest, .capacity = 64, .name = "ui.record"});
    m_recording = true;
    m_worker = std::jthread([this, engine, frames = std::move(frames),
                             heard = std::move(heard)](std::stop_token stop) mutable {
        perception::FrameSampler sampler;
        assistant::Clip clip; // wall-clock times, the frames' pixels shared with the bus
        std::vector<memory::Text> transcripts; // the newest 64, wall-clock times
        std::optional<int64_t> originUs; // wall clock of the source's pts 0
        auto store = [&] {
            if (clip.frames.empty()) return;
            clip.t_start_us = clip.frames.front().t_us;
            clip.t_end_us = clip.frames.back().t_us;
            // What was said while the clip was seen; its last frame stands for the second until
            // the sampler (1 frame/s) takes the next.
            clip.transcript
                = assistant::heard_during(transcripts, clip.t_start_us, clip.t_end_us + 1'000'000);
            try {
                memory::Entry e = assistant::clip_entry(*engine, clip);
                const int64_t id = m_memory->add(e);
                QMetaObject::invokeMethod(
                    this,
                    [this, id, caption = QString::fromStdString(e.caption)] {
                        emit stored(id, caption);
                    },
                    Qt::QueuedConnection);
            } catch (const std::exception& e) {
                QMetaObject::invokeMethod(
                    this,
                    [this, error = QString::fromUtf8(e.what())] {
                        emit failed(tr("Recording failed: %1").arg(error));
                    },
                    Qt::QueuedConnection);
            }
            clip = {};
        };
        while (!stop.stop_requested()) {
            while (auto t = heard.try_receive())
                transcripts.push_back({.t_start_us = t->origin_unix_us + t->start_us,
                                       .t_end_us = t->origin_unix_us + t->end_us,
                                       .text = std::move(t->text)});
            if (transcripts.size() > 64)
                transcripts.erase(transcripts.begin(), transcripts.end() - 64);
            auto frame = frames.receive_for(std::chrono::milliseconds(50));
            if (!frame) continue;
            if (!originUs) originUs = wall_us() - frame->pts_us;
            auto step = sampler.offer(*frame);
            if (step.closed_before) store();
            if (step.sampled) {
                const perception::VideoFrame& f = step.sampled->frame;
                clip.frames.push_back({.t_us = *originUs + f.pts_us, .image = f.image});
            }
            if (step.closed_after) store();
        }
        store(); // the clip in progress
    });
    return {};
}

void Recorder::stop()
{
    m_recording = false;
    m_worker.request_stop();
}

} // namespace iris::ui
