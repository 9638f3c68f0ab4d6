#include "ui/recorder.h"

#include "memory/memory.h"
#include "perception/perception.h"
#include "ui/images.h"
#include "ui/memory-library.h"
#include "ui/video-feed.h"

#include <chrono>
#include <deque>

namespace iris::ui {

namespace {

// Key frames are stored at most this large, as `iris watch` stores them.
constexpr int kKeyFrameSide = 448;

reasoning::Image keyFrameImage(const perception::VideoFrame& f)
{
    reasoning::Image image = toReasoningImage(f);
    const int side = std::max(f.width, f.height);
    if (side <= kKeyFrameSide) return image;
    return reasoning::resize_bicubic(image, std::max(1, f.width * kKeyFrameSide / side),
                                     std::max(1, f.height * kKeyFrameSide / side));
}

// A clip as `iris watch` remembers it: the first, middle and last frames as key frames, the
// model's caption of the middle one, and memory_embedding of the frames and the text.
memory::Entry compress(const reasoning::Engine& engine,
                       const std::vector<perception::VideoFrame>& frames, int64_t originUs,
                       const std::string& transcript)
{
    memory::Entry e;
    e.t_start_us = originUs + frames.front().pts_us;
    e.t_end_us = originUs + frames.back().pts_us;
    e.transcript = transcript;
    std::vector<reasoning::Image> images;
    for (size_t i : reasoning::clip_key_frames(frames.size())) {
        images.push_back(keyFrameImage(frames[i]));
        e.key_frames.push_back({.t_us = originUs + frames[i].pts_us,
                                .jpeg = Buffer::adopt(reasoning::encode_jpeg(images.back()))});
    }
    reasoning::ClipDescription d = reasoning::describe_clip(engine, images, transcript);
    e.caption = std::move(d.caption);
    e.embedding = std::move(d.embedding);
    return e;
}

} // namespace

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
        std::vector<perception::VideoFrame> clip;
        std::deque<perception::Transcript> transcripts;
        std::optional<int64_t> originUs; // wall clock of the source's pts 0
        auto store = [&] {
            if (clip.empty()) return;
            // What was said while the clip was seen.
            std::string text;
            const int64_t from = *originUs + clip.front().pts_us;
            const int64_t to = *originUs + clip.back().pts_us + 1'000'000;
            for (const auto& t : transcripts)
                if (t.origin_unix_us + t.end_us >= from && t.origin_unix_us + t.start_us < to
                    && !t.text.empty())
                    text += (text.empty() ? "" : " ") + t.text;
            try {
                memory::Entry e = compress(*engine, clip, *originUs, text);
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
            clip.clear();
        };
        while (!stop.stop_requested()) {
            while (auto t = heard.try_receive()) transcripts.push_back(std::move(*t));
            while (transcripts.size() > 64) transcripts.pop_front();
            auto frame = frames.receive_for(std::chrono::milliseconds(50));
            if (!frame) continue;
            if (!originUs) originUs = wall_us() - frame->pts_us;
            auto step = sampler.offer(*frame);
            if (step.closed_before) store();
            if (step.sampled) clip.push_back(step.sampled->frame);
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
