// Voice input through perception's VAD and pocketsphinx: the sample speech (played as if a
// microphone heard it) is recognised, the words after the wake phrase become a question, the
// transcripts go on the bus for the recorder, and a missing microphone is reported.
#include "ui-fixture.h"

#include "perception/perception.h"
#include "ui/voice-input.h"

#include <QSignalSpy>
#include <QTest>

using namespace iris;
using namespace iris::ui;

class VoiceTest : public QObject
{
    Q_OBJECT

private slots:
    void theWordsAfterTheWakePhraseBecomeAQuestion()
    {
        Bus bus;
        auto transcripts = bus.topic<perception::Transcript>(perception::kTopicTranscripts)
                               .subscribe({.name = "test"});
        VoiceInput voice(bus);
        QSignalSpy asked(&voice, &VoiceInput::asked);
        QSignalSpy failed(&voice, &VoiceInput::failed);
        QSignalSpy finished(&voice, &VoiceInput::finished);
        // pocketsphinx hears "look the blue square is moving ..." in the sample.
        voice.start(QString::fromStdString(test::samplePath("clip-speech-16k.wav")), "blue square");
        QVERIFY(voice.isListening());
        QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, 30'000);
        QVERIFY2(failed.isEmpty(), failed.isEmpty() ? "" : qPrintable(failed[0][0].toString()));
        QVERIFY(!voice.isListening());
        auto heard = transcripts.try_receive();
        QVERIFY(heard.has_value());
        const std::string text = heard->text;
        QVERIFY2(text.find("blue square") != std::string::npos, text.c_str());
        QCOMPARE(asked.size(), 1);
        QCOMPARE(asked[0][0].toString().toStdString(),
                 text.substr(text.find("blue square") + std::string("blue square ").size()));
    }

    void aMissingMicrophoneIsReported()
    {
        Bus bus;
        VoiceInput voice(bus);
        QSignalSpy failed(&voice, &VoiceInput::failed);
        voice.start("mic", "hey iris");
        if (!failed.wait(5000)) QSKIP("this machine has a microphone");
        QVERIFY2(failed[0][0].toString().contains("no microphone"),
                 qPrintable(failed[0][0].toString()));
        QTRY_VERIFY(!voice.isListening());
    }
};

QTEST_MAIN(VoiceTest)
#include "voice_test.moc"
