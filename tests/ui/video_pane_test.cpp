// The live video pane with perception sources: the test pattern and the sample clip play, "Ask
// about what I see" hands over the current frame, a source that cannot be opened or a missing
// camera is said in the pane, and recording stores the clip in the memory with the demo model.
#include "ui-fixture.h"

#include "ui/memory-library.h"
#include "ui/recorder.h"
#include "ui/video-feed.h"
#include "ui/video-pane.h"

#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

using namespace iris;
using namespace iris::ui;

class VideoPaneTest : public QObject
{
    Q_OBJECT

private slots:
    void showsFramesFromTheTestSource()
    {
        Bus bus;
        VideoFeed feed(bus);
        VideoPane pane(bus, &feed, "testsrc");
        pane.resize(640, 480);
        pane.show();
        QSignalSpy first(&pane, &VideoPane::firstFrame);
        QTRY_VERIFY_WITH_TIMEOUT(pane.framesShown() >= 10, 20'000);
        QCOMPARE(first.size(), 1);
        QVERIFY(pane.message().isEmpty());
        const QImage frame = pane.currentFrame();
        QCOMPARE(frame.size(), QSize(640, 480));
        QVERIFY(test::distinctColors(frame) > 10); // the pattern, not a blank

        QSignalSpy ask(&pane, &VideoPane::askAboutView);
        QTest::mouseClick(pane.askButton(), Qt::LeftButton);
        QCOMPARE(ask.size(), 1);
        const auto frames = ask[0][0].value<QList<QImage>>();
        QCOMPARE(frames.size(), 1);
        QCOMPARE(frames[0].size(), QSize(640, 480));
    }

    void playsAVideoFile()
    {
        Bus bus;
        VideoFeed feed(bus);
        VideoPane pane(bus, &feed, QString::fromStdString(test::samplePath("clip-shapes.mp4")));
        pane.show();
        QTRY_VERIFY_WITH_TIMEOUT(pane.framesShown() >= 5, 20'000);
        QCOMPARE(pane.currentFrame().size(), QSize(224, 224));
    }

    void saysSoWhenTheSourceCannotBeOpened()
    {
        Bus bus;
        VideoFeed feed(bus);
        VideoPane pane(bus, &feed, "/nonexistent/clip.mp4");
        pane.show();
        QTRY_VERIFY_WITH_TIMEOUT(pane.message().contains("/nonexistent/clip.mp4"), 10'000);
        QCOMPARE(pane.framesShown(), 0);
    }

    void saysSoWithoutACamera()
    {
        if (!VideoFeed::cameras().isEmpty()) QSKIP("this machine has a camera");
        Bus bus;
        VideoFeed feed(bus);
        VideoPane pane(bus, &feed, QString());
        pane.show();
        QVERIFY2(pane.message().contains("No camera found"), qPrintable(pane.message()));
    }

    void recordingStoresTheClipInTheMemory()
    {
        auto engine
            = std::shared_ptr<const reasoning::Engine>(reasoning::Engine::load(test::kDemoModel));
        QTemporaryDir dir;
        MemoryLibrary memory;
        QCOMPARE(memory.open(dir.path(), 2 * engine->config().llm.hidden_size), QString());
        Bus bus;
        VideoFeed feed(bus);
        Recorder recorder(bus, &memory);
        QSignalSpy stored(&recorder, &Recorder::stored);
        QCOMPARE(recorder.start(engine), QString());
        feed.startSource(QString::fromStdString(test::samplePath("clip-shapes.mp4")));
        QTest::qWait(3500); // three or four sampled frames at 1 fps
        recorder.stop();
        QTRY_VERIFY_WITH_TIMEOUT(stored.size() > 0, 30'000);
        const qint64 id = stored[0][0].toLongLong();
        const auto entry = memory.entry(id);
        QVERIFY(entry.has_value());
        QVERIFY(!entry->caption.empty());
        QCOMPARE(stored[0][1].toString().toStdString(), entry->caption);
        QVERIFY(entry->key_frames.size() >= 2);
        QVERIFY(entry->t_end_us > entry->t_start_us);
        QTRY_COMPARE_WITH_TIMEOUT(memory.count(), qint64(stored.size()), 30'000);
    }
};

QTEST_MAIN(VideoPaneTest)
#include "video_pane_test.moc"
