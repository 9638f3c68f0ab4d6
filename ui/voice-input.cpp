#include "ui/voice-input.h"

#include "perception/perception.h"

#include <chrono>

namespace iris::ui {

VoiceInput::VoiceInput(Bus& bus, QObject* parent)
    : QObject(parent)
    , m_bus(bus)
{ }

VoiceInput::~VoiceInput()
{
    stop();
}

void VoiceInput::stop()
{
    m_worker.request_stop();
    if (m_worker.joinable()) m_worker.join();
    m_listening = false;
}

void VoiceInput::start(const QString& input, const QString& wakePhrase)
{
    stop();
    m_listening = true;
    auto post = [this](auto fn) { QMetaObject::invokeMethod(this, fn, Qt::QueuedConnection); };
    m_worker = std::jthread([this, post, input = input.toStdString(),
                             phrase = wakePhrase.toStdString()](std::stop_token stop) {
        try {
            perception::WakeDetector wake({.phrase = phrase});
            perception::AudioSource source(input, {.realtime = input != "mic"}, stop);
            perception::Recognizer recognizer;
            perception::Vad vad;
            // Transcripts go on the bus too, where the recorder files them with the clips.
            auto transcripts = m_bus.topic<perception::Transcript>(perception::kTopicTranscripts);
            const int64_t origin = wall_us();
            auto hear = [&](const perception::SpeechSegment& segment) {
                perception::Transcript t = recognizer.recognize(segment);
                t.origin_unix_us = origin;
                transcripts.try_publish(t, std::chrono::milliseconds(0));
                if (auto query = wake.feed(t)) {
                    if (!query->text.empty())
                        post([this, q = QString::fromStdString(query->text)] { emit asked(q); });
                } else if (!t.text.empty()) {
                    post([this, text = QString::fromStdString(t.text)] { emit heard(text); });
                }
            };
            while (auto chunk = source.read())
                for (const auto& segment : vad.push(chunk->samples)) hear(segment);
            if (auto last = vad.flush(); last && !stop.stop_requested()) hear(*last);
        } catch (const std::exception& e) {
            post([this, error = QString::fromUtf8(e.what())] { emit failed(error); });
        }
        post([this] {
            m_listening = false;
            emit finished();
        });
    });
}

} // namespace iris::ui
