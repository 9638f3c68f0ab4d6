// The Compose tab with the real demo model: an article from an images folder and a web page from
// a screenshot are composed off the UI thread, shown, equal to what reasoning's composer writes
// for the same input, and saved; missing input is explained.
#include "ui-fixture.h"

#include "ui/assistant.h"
#include "ui/compose-pane.h"

#include <QDir>
#include <QFile>
#include <QPushButton>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QTextBrowser>

using namespace iris;
using namespace iris::ui;

namespace {

constexpr int kTimeoutMs = 60'000;

bool loadDemo(Assistant& assistant)
{
    QSignalSpy loaded(&assistant, &Assistant::loaded);
    if (!assistant.load(QString::fromStdString(test::kDemoModel), {}, {})) return false;
    return loaded.wait(kTimeoutMs);
}

QString readAll(const QString& path)
{
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? QString::fromUtf8(f.readAll()) : QString();
}

} // namespace

class ComposePaneTest : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

    void anArticleFromAnImagesFolderIsComposedOffTheUiThreadAndShown()
    {
        QTemporaryDir images;
        for (const char* name : {"scene-color.png", "scene-position.png", "scene-shapes.png"})
            QVERIFY(
                QFile::copy(QString::fromStdString(test::samplePath(name)), images.filePath(name)));
        const QString instruction = "Write a short article about the shapes.";
        auto engine = reasoning::Engine::load(test::kDemoModel);
        reasoning::ArticleRequest req;
        req.instruction = instruction.toStdString();
        for (const char* name : {"scene-color.png", "scene-position.png", "scene-shapes.png"})
            req.pool.push_back({name, reasoning::load_image(test::samplePath(name))});
        const reasoning::Article expected = reasoning::compose_article(*engine, req);

        Bus bus;
        Assistant assistant(bus);
        QVERIFY(loadDemo(assistant));
        ComposePane pane(&assistant, nullptr);
        pane.resize(800, 600);
        pane.show();
        QSignalSpy finished(&pane, &ComposePane::finished);
        pane.setInstruction(instruction);
        pane.setImageFolder(images.path());
        pane.compose();
        // compose() returned at once: the work is on another thread.
        QVERIFY(pane.isBusy());
        QTRY_VERIFY_WITH_TIMEOUT(!pane.isBusy(), kTimeoutMs);
        QCOMPARE(finished.size(), 1);
        QCOMPARE(pane.markdown().toStdString(), expected.markdown);
        QVERIFY(pane.view()->toPlainText().contains(QString::fromStdString(expected.title)));
        QVERIFY(pane.html().startsWith("<!DOCTYPE html>"));
        QVERIFY(pane.html().contains("default-src 'none'"));

        QTemporaryDir out;
        QCOMPARE(pane.saveTo(out.path()), QString());
        QCOMPARE(readAll(out.filePath("article.md")), pane.markdown());
        QCOMPARE(readAll(out.filePath("article.html")), pane.html());
        for (size_t i = 0; i < expected.images.size(); ++i) {
            std::string file = reasoning::article_image_file(expected, i);
            if (!file.empty()) QVERIFY(QFile::exists(out.filePath(QString::fromStdString(file))));
        }
        const QString shot = QString(IRIS_TEST_OUTPUT_DIR) + "/compose-pane-article.png";
        QVERIFY(pane.grab().save(shot));
    }

    void aWebPageFromAScreenshotIsComposedAndShown()
    {
        const std::string screenshot = test::samplePath("page-screenshot.png");
        auto engine = reasoning::Engine::load(test::kDemoModel);
        reasoning::WebpageRequest req;
        req.screenshot = reasoning::load_image(screenshot);
        const reasoning::Webpage expected = reasoning::compose_webpage(*engine, req);

        Bus bus;
        Assistant assistant(bus);
        QVERIFY(loadDemo(assistant));
        ComposePane pane(&assistant, nullptr);
        pane.show();
        pane.setKind(ComposePane::Kind::webpage);
        pane.setScreenshot(QString::fromStdString(screenshot));
        pane.compose();
        QVERIFY(pane.isBusy());
        QTRY_VERIFY_WITH_TIMEOUT(!pane.isBusy(), kTimeoutMs);
        QCOMPARE(pane.html().toStdString(), expected.html);
        QTemporaryDir out;
        QCOMPARE(pane.saveTo(out.path()), QString());
        QCOMPARE(readAll(out.filePath("page.html")), pane.html());
    }

    void missingInputIsExplained()
    {
        Bus bus;
        Assistant assistant(bus);
        ComposePane pane(&assistant, nullptr);
        QSignalSpy failed(&pane, &ComposePane::failed);
        pane.setInstruction("Write about shapes.");
        pane.compose(); // no model yet
        QCOMPARE(failed.size(), 1);
        QVERIFY(failed[0][0].toString().contains("No model"));
        QVERIFY(!pane.isBusy());
        QVERIFY(pane.saveTo(QDir::tempPath()).contains("Nothing composed"));

        QVERIFY(loadDemo(assistant));
        pane.setInstruction("  ");
        pane.compose();
        QCOMPARE(failed.size(), 2);
        QVERIFY(failed[1][0].toString().contains("what the article is about"));
        QVERIFY(!pane.isBusy());
    }
};

QTEST_MAIN(ComposePaneTest)
#include "compose_pane_test.moc"
