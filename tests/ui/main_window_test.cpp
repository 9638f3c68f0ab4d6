// The whole window: the status bar shows the model, its speed, the KV cache and the memories;
// a missing model folder is reported; settings round-trip through QSettings; and the real
// iris-desktop binary renders a screenshot of real content offscreen.
#include "ui-fixture.h"

#include "ui/assistant.h"
#include "ui/chat-input.h"
#include "ui/chat-pane.h"
#include "ui/main-window.h"
#include "ui/message-view.h"
#include "ui/video-pane.h"

#include <QAction>
#include <QProcess>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QTest>

using namespace iris;
using namespace iris::ui;

class MainWindowTest : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase()
    {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_memoryDir.isValid());
        auto engine = reasoning::Engine::load(test::kDemoModel);
        test::prepareMemory(m_memoryDir.path().toStdString(), *engine);
    }

    void theStatusBarShowsTheModelItsSpeedTheKvCacheAndTheMemories()
    {
        QTemporaryDir data;
        Bus bus;
        MainWindow window(bus,
                          {.source = "testsrc",
                           .modelDir = QString::fromStdString(test::kDemoModel),
                           .memoryDir = m_memoryDir.path(),
                           .settingsFile = data.filePath("settings.ini"),
                           .dataDir = data.path()});
        window.show();
        QTRY_VERIFY_WITH_TIMEOUT(window.assistant()->isReady(), 30'000);
        QTRY_VERIFY(window.statusText().contains("Model: iris-demo"));
        QTRY_VERIFY2(window.statusText().contains("3 memories"), qPrintable(window.statusText()));
        QTRY_VERIFY_WITH_TIMEOUT(window.videoPane()->framesShown() > 0, 20'000);

        window.chatPane()->addAttachments(
            {QImage(QString::fromStdString(test::samplePath("scene-color.png")))});
        window.chatPane()->input()->setPlainText("Describe the image briefly.");
        window.chatPane()->send();
        QTRY_VERIFY_WITH_TIMEOUT(!window.chatPane()->isAnswering(), 60'000);
        QVERIFY(!window.chatPane()->messages().back()->text().isEmpty());
        const QString status = window.statusText();
        QVERIFY2(QRegularExpression("[0-9.]+ tok/s").match(status).hasMatch(), qPrintable(status));
        QVERIFY2(QRegularExpression("KV [0-9.]+ MiB f32/f32").match(status).hasMatch(),
                 qPrintable(status));
    }

    void whatTheMicrophoneHearsGoesIntoTheQuestionBox()
    {
        QTemporaryDir data;
        Bus bus;
        MainWindow window(bus,
                          {.source = "testsrc",
                           .audio = QString::fromStdString(test::samplePath("clip-speech-16k.wav")),
                           .modelDir = QString::fromStdString(test::kDemoModel),
                           .memoryDir = m_memoryDir.path(),
                           .settingsFile = data.filePath("settings.ini"),
                           .dataDir = data.path()});
        window.show();
        window.microphoneAction()->trigger();
        QVERIFY(window.microphoneAction()->isChecked());
        // No "hey iris" in the sample: what is heard waits in the box, nothing is asked.
        QTRY_VERIFY_WITH_TIMEOUT(window.chatPane()->input()->toPlainText().contains("blue square"),
                                 30'000);
        QTRY_VERIFY_WITH_TIMEOUT(!window.microphoneAction()->isChecked(), 10'000);
        QCOMPARE(window.chatPane()->messages().size(), 0);
    }

    void aMissingModelFolderIsReported()
    {
        QTemporaryDir data;
        Bus bus;
        MainWindow window(bus,
                          {.source = "testsrc",
                           .modelDir = "/nonexistent/model",
                           .memoryDir = m_memoryDir.path(),
                           .settingsFile = data.filePath("settings.ini"),
                           .dataDir = data.path()});
        QTRY_VERIFY_WITH_TIMEOUT(window.statusText().startsWith("No model"), 10'000);
        const QString message = window.statusBar()->currentMessage();
        QVERIFY2(message.startsWith("Cannot load the model")
                     && message.contains("/nonexistent/model"),
                 qPrintable(message));
    }

    void settingsAreKeptWithQSettings()
    {
        QTemporaryDir data;
        Settings s;
        s.maxTiles = 4;
        s.kvKeys = "q8";
        s.kvValues = "q4";
        s.temperature = 0.7;
        s.wakePhrase = "ok iris";
        s.memoryDir = data.filePath("memory");
        {
            QSettings store(data.filePath("settings.ini"), QSettings::IniFormat);
            s.save(store);
        }
        QSettings store(data.filePath("settings.ini"), QSettings::IniFormat);
        const Settings back = Settings::load(store);
        QCOMPARE(back.maxTiles, 4);
        QCOMPARE(back.wakePhrase, QString("ok iris"));
        QCOMPARE(back.memoryDir, s.memoryDir);
        QCOMPARE(back.kvCache().k_type, model::KvType::q8);
        QCOMPARE(back.kvCache().v_type, model::KvType::q4);
        QCOMPARE(back.sampling().temperature, 0.7f);
        Settings bad = back;
        bad.kvKeys = "q3";
        QVERIFY_THROWS_EXCEPTION(Error, bad.kvCache());
    }

    void theAppRendersAScreenshotOfItsContent()
    {
        QTemporaryDir data;
        const QString shot = QString(IRIS_TEST_OUTPUT_DIR) + "/main-window.png";
        QFile::remove(shot);
        QProcess app;
        app.setProcessChannelMode(QProcess::ForwardedChannels);
        app.start(IRIS_DESKTOP,
                  {"--source", "testsrc", "--model", QString::fromStdString(test::kDemoModel),
                   "--memory", m_memoryDir.path(), "--settings", data.filePath("settings.ini"),
                   "--data", data.path(), "--ask", "Describe the image briefly.", "--image",
                   QString::fromStdString(test::samplePath("scene-shapes.png")), "--screenshot",
                   shot});
        QVERIFY(app.waitForFinished(120'000));
        QCOMPARE(app.exitStatus(), QProcess::NormalExit);
        QCOMPARE(app.exitCode(), 0);
        const QImage image(shot);
        QVERIFY(!image.isNull());
        QVERIFY(image.width() >= 800 && image.height() >= 600);
        // The test pattern, the thumbnails and the text give thousands of colours; a blank or
        // unpainted window a handful.
        const int colors = test::distinctColors(image);
        QVERIFY2(colors > 500, qPrintable(QString::number(colors)));
    }

private:
    QTemporaryDir m_memoryDir;
};

QTEST_MAIN(MainWindowTest)
#include "main_window_test.moc"
