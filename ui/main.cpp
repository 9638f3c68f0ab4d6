// iris-desktop: the Qt desktop app. See README.md, "Desktop app".
#include "core/bus.h"
#include "ui/assistant.h"
#include "ui/chat-input.h"
#include "ui/chat-pane.h"
#include "ui/main-window.h"
#include "ui/timeline-pane.h"
#include "ui/video-feed.h"
#include "ui/video-pane.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QImageReader>
#include <QTimer>

#include <cstdio>

using namespace iris::ui;

namespace {

// --screenshot waits this long at most for the content to appear.
constexpr int kScreenshotTimeoutMs = 60'000;

// Saves the window once the first frame, the timeline, the model and the answer to --ask (each
// that was asked for) are there, then quits.
void scheduleScreenshot(MainWindow& window, const QString& path, bool waitForFrame,
                        bool waitForAnswer)
{
    struct Waiting
    {
        bool frame, timeline = true, model = true, answer;
        bool done = false;
    };
    auto waiting
        = std::make_shared<Waiting>(Waiting {.frame = waitForFrame, .answer = waitForAnswer});
    auto shoot = [&window, path, waiting](bool timedOut) {
        if (waiting->done) return;
        waiting->done = true;
        if (timedOut)
            std::fprintf(stderr, "iris-desktop: content still missing after %d s (%s%s%s%s)\n",
                         kScreenshotTimeoutMs / 1000, waiting->frame ? "video frame " : "",
                         waiting->timeline ? "timeline " : "", waiting->model ? "model " : "",
                         waiting->answer ? "answer" : "");
        const bool saved = window.grab().save(path, "PNG");
        if (!saved)
            std::fprintf(stderr, "iris-desktop: cannot write %s\n", qPrintable(path));
        else
            std::fprintf(stderr, "iris-desktop: wrote %s\n", qPrintable(path));
        QCoreApplication::exit(saved && !timedOut ? 0 : 1);
    };
    auto check = [waiting, shoot] {
        if (!waiting->frame && !waiting->timeline && !waiting->model && !waiting->answer)
            // One more turn of the event loop lets the last pieces paint.
            QTimer::singleShot(200, [shoot] { shoot(false); });
    };
    QObject::connect(window.videoPane(), &VideoPane::firstFrame, [waiting, check] {
        waiting->frame = false;
        check();
    });
    QObject::connect(window.timelinePane(), &TimelinePane::loaded, [waiting, check] {
        waiting->timeline = false;
        check();
    });
    auto modelDone = [waiting, check] {
        waiting->model = false;
        check();
    };
    QObject::connect(window.assistant(), &Assistant::loaded, modelDone);
    QObject::connect(window.assistant(), &Assistant::loadFailed, modelDone);
    QObject::connect(window.chatPane(), &ChatPane::answerFinished, [waiting, check] {
        waiting->answer = false;
        check();
    });
    QTimer::singleShot(kScreenshotTimeoutMs, [shoot] { shoot(true); });
}

} // namespace

int main(int argc, char** argv)
{
    // Qt 6.4 picks GStreamer by default; its FFmpeg backend needs no extra plugins and reads
    // cameras through V4L2 as well (docs/platform.md §1).
    if (qEnvironmentVariableIsEmpty("QT_MEDIA_BACKEND")) qputenv("QT_MEDIA_BACKEND", "ffmpeg");
    // Without a display Qt would abort; the window still runs (and --screenshot works).
    const bool noDisplay = qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")
        && qEnvironmentVariableIsEmpty("DISPLAY") && qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY");
    if (noDisplay) {
        std::fprintf(stderr, "iris-desktop: no display (DISPLAY is not set): running offscreen\n");
        qputenv("QT_QPA_PLATFORM", "offscreen");
    }
    QApplication app(argc, argv);
    QApplication::setOrganizationName("Iris");
    QApplication::setApplicationName("iris-desktop");
    QApplication::setApplicationVersion(iris::version());

    QCommandLineParser parser;
    parser.setApplicationDescription(
        "Iris: chat about images, watch a camera and remember, answer from memory.");
    parser.addHelpOption();
    parser.addVersionOption();
    QCommandLineOption source("source",
                              "Video source instead of the camera: a file, /dev/videoN or testsrc.",
                              "FILE|testsrc");
    QCommandLineOption audio("audio", "What the microphone toggle hears: mic (default) or a file.",
                             "mic|FILE");
    QCommandLineOption model("model", "Model folder (default: the settings', else the demo model).",
                             "DIR");
    QCommandLineOption memory("memory", "Memory folder (default: the settings').", "DIR");
    QCommandLineOption settings("settings", "Settings file (INI) instead of the user's.", "FILE");
    QCommandLineOption data("data", "Folder for saved conversations.", "DIR");
    QCommandLineOption ask("ask", "Ask this question once the model is loaded.", "TEXT");
    QCommandLineOption image("image", "Attach this image to --ask (repeatable).", "FILE");
    QCommandLineOption screenshot(
        "screenshot",
        "Render the window to a PNG once its content is shown (first video frame, timeline, "
        "model, the answer to --ask), then exit.",
        "FILE");
    parser.addOptions({source, audio, model, memory, settings, data, ask, image, screenshot});
    parser.process(app);

    QList<QImage> images;
    for (const QString& file : parser.values(image)) {
        QImageReader reader(file);
        QImage picture = reader.read();
        if (picture.isNull()) {
            std::fprintf(stderr, "iris-desktop: cannot read the image %s: %s\n", qPrintable(file),
                         qPrintable(reader.errorString()));
            return 2;
        }
        images.push_back(picture);
    }
    if (!images.isEmpty() && !parser.isSet(ask)) {
        std::fprintf(stderr, "iris-desktop: --image goes with --ask\n");
        return 2;
    }

    iris::Bus bus;
    MainWindow window(bus,
                      {.source = parser.value(source),
                       .audio = parser.value(audio),
                       .modelDir = parser.value(model),
                       .memoryDir = parser.value(memory),
                       .settingsFile = parser.value(settings),
                       .dataDir = parser.value(data)});
    if (parser.isSet(ask)) {
        QObject::connect(window.assistant(), &Assistant::loaded, &window,
                         [&window, images, question = parser.value(ask)] {
                             window.chatPane()->addAttachments(images);
                             window.chatPane()->input()->setPlainText(question);
                             window.chatPane()->send();
                         });
    }
    if (parser.isSet(screenshot)) {
        // Offscreen unless a display was asked for: the window is rendered, never shown.
        window.setAttribute(Qt::WA_DontShowOnScreen);
        const bool hasSource = !parser.value(source).isEmpty() || !VideoFeed::cameras().isEmpty();
        scheduleScreenshot(window, parser.value(screenshot), hasSource, parser.isSet(ask));
    }
    window.show();
    return app.exec();
}
