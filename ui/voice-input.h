// The microphone: PortAudio capture, voice activity detection and speech recognition from the
// perception module, on a worker thread. What is heard goes to the UI; the words after the wake
// phrase come as a question.
#pragma once

#include "core/bus.h"

#include <QObject>
#include <QString>

#include <thread>

namespace iris::ui {

class VoiceInput : public QObject
{
    Q_OBJECT

public:
    explicit VoiceInput(Bus& bus, QObject* parent = nullptr);
    ~VoiceInput() override;

    // `input`: "mic", or an audio file heard as if spoken (at its own pace). Errors (no
    // microphone, no speech model) come as failed().
    void start(const QString& input, const QString& wakePhrase);
    void stop();
    bool isListening() const { return m_listening; }

signals:
    void heard(const QString& text); // a transcript without the wake phrase
    void asked(const QString& question); // the words after the wake phrase
    void failed(const QString& error);
    void finished(); // the input ended, failed or was stopped

private:
    Bus& m_bus;
    bool m_listening = false;
    std::jthread m_worker;
};

} // namespace iris::ui
