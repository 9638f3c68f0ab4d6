// The chat pane with the real demo model behind reasoning::Responder: a question about an
// attached image gets the model's answer streamed piece by piece (the answer `iris ask` prints),
// Enter sends and Shift+Enter breaks the line, pasted and dropped images become attachments, the
// stop button cancels, and conversations are saved and reopened.
#include "ui-fixture.h"

#include "ui/assistant.h"
#include "ui/chat-input.h"
#include "ui/chat-pane.h"
#include "ui/conversation-store.h"
#include "ui/message-view.h"

#include <QApplication>
#include <QClipboard>
#include <QDropEvent>
#include <QMimeData>
#include <QPushButton>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QUrl>

using namespace iris;
using namespace iris::ui;

namespace {

constexpr int kAnswerTimeoutMs = 60'000;

// What `iris ask --image FILE QUESTION` prints: a fresh session, the default options.
std::string askLikeTheCli(const std::string& image, const std::string& question)
{
    auto engine = reasoning::Engine::load(test::kDemoModel);
    reasoning::Session session(*engine);
    return session.ask(question, {reasoning::load_image(image)}, {}, {}).text;
}

bool loadDemo(Assistant& assistant, const reasoning::AskOptions& ask = {})
{
    QSignalSpy loaded(&assistant, &Assistant::loaded);
    if (!assistant.load(QString::fromStdString(test::kDemoModel), {}, ask)) return false;
    return loaded.wait(kAnswerTimeoutMs);
}

} // namespace

class ChatPaneTest : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

    void aQuestionAboutAnAttachedImageGetsTheModelsStreamedAnswer()
    {
        const std::string image = test::samplePath("scene-shapes.png");
        const QString question = "Describe the image briefly.";
        const std::string expected = askLikeTheCli(image, question.toStdString());
        QVERIFY(!expected.empty());

        Bus bus;
        Assistant assistant(bus);
        QVERIFY(loadDemo(assistant));
        QTemporaryDir data;
        ChatPane pane(&assistant, data.path());
        pane.resize(600, 500);
        pane.show();
        QSignalSpy pieces(&assistant, &Assistant::answerPiece);
        pane.addAttachments({QImage(QString::fromStdString(image))});
        QCOMPARE(pane.attachmentCount(), 1);
        pane.input()->setFocus();
        QTest::keyClicks(pane.input(), question);
        QTest::keyClick(pane.input(), Qt::Key_Return);
        QVERIFY(pane.isAnswering());
        QVERIFY(pane.stopButton()->isEnabled());
        QCOMPARE(pane.attachmentCount(), 0);
        QTRY_VERIFY_WITH_TIMEOUT(!pane.isAnswering(), kAnswerTimeoutMs);

        const auto messages = pane.messages();
        QCOMPARE(messages.size(), 2);
        QCOMPARE(messages[0]->role(), MessageView::Role::User);
        QCOMPARE(messages[0]->text(), question);
        QCOMPARE(messages[0]->images().size(), 1);
        QCOMPARE(messages[1]->role(), MessageView::Role::Assistant);
        QCOMPARE(messages[1]->text().toStdString(), expected);
        QVERIFY(messages[1]->note().isEmpty());
        // Streamed: several pieces that add up to the answer.
        QVERIFY2(pieces.size() > 1, qPrintable(QString::number(pieces.size())));
        QString streamed;
        for (const auto& args : pieces) streamed += args[1].toString();
        QCOMPARE(streamed.trimmed().toStdString(), expected);

        // Kept, and reopened by a new pane.
        ConversationStore store(data.path());
        const auto saved = store.list();
        QCOMPARE(saved.size(), 1);
        QCOMPARE(saved[0].title, question);
        ChatPane reopened(&assistant, data.path());
        reopened.openConversation(saved[0].id);
        const auto again = reopened.messages();
        QCOMPARE(again.size(), 2);
        QCOMPARE(again[0]->images().size(), 1);
        QCOMPARE(again[0]->images()[0].size(), QImage(QString::fromStdString(image)).size());
        QCOMPARE(again[1]->text().toStdString(), expected);
    }

    void aTypedFollowUpIsAboutTheSamePicture()
    {
        // What a two-turn session answers: the second question sees the first turn's image.
        const std::string image = test::samplePath("scene-shapes.png");
        auto engine = reasoning::Engine::load(test::kDemoModel);
        reasoning::Session session(*engine);
        const std::string first
            = session.ask("How many shapes are there?", {reasoning::load_image(image)}, {}, {})
                  .text;
        const std::string second
            = session.ask("How many stars are there?", std::vector<iris::Image> {}, {}, {}).text;
        QCOMPARE(second, std::string("3")); // the sample's answer (resources/samples)

        Bus bus;
        Assistant assistant(bus);
        QVERIFY(loadDemo(assistant));
        QTemporaryDir data;
        ChatPane pane(&assistant, data.path());
        pane.show();
        pane.addAttachments({QImage(QString::fromStdString(image))});
        pane.input()->setPlainText("How many shapes are there?");
        pane.send();
        QTRY_VERIFY_WITH_TIMEOUT(!pane.isAnswering(), kAnswerTimeoutMs);
        pane.input()->setPlainText("How many stars are there?");
        pane.send();
        QTRY_VERIFY_WITH_TIMEOUT(!pane.isAnswering(), kAnswerTimeoutMs);
        const auto messages = pane.messages();
        QCOMPARE(messages.size(), 4);
        QCOMPARE(messages[1]->text().toStdString(), first);
        QCOMPARE(messages[3]->text().toStdString(), second);
    }

    void shiftEnterBreaksTheLineAndEnterSends()
    {
        Bus bus;
        Assistant assistant(bus); // no model: the answer says so
        QTemporaryDir data;
        ChatPane pane(&assistant, data.path());
        pane.show();
        pane.input()->setFocus();
        QTest::keyClicks(pane.input(), "first line");
        QTest::keyClick(pane.input(), Qt::Key_Return, Qt::ShiftModifier);
        QTest::keyClicks(pane.input(), "second line");
        QCOMPARE(pane.input()->toPlainText(), QString("first line\nsecond line"));
        QCOMPARE(pane.messages().size(), 0);
        QTest::keyClick(pane.input(), Qt::Key_Return);
        QCOMPARE(pane.messages().size(), 2);
        QCOMPARE(pane.messages()[0]->text(), QString("first line\nsecond line"));
        QVERIFY(pane.input()->toPlainText().isEmpty());
        QTRY_VERIFY(!pane.isAnswering());
        QVERIFY2(pane.messages()[1]->note().contains("no model is loaded"),
                 qPrintable(pane.messages()[1]->note()));
    }

    void pastedAndDroppedImagesBecomeAttachments()
    {
        Bus bus;
        Assistant assistant(bus);
        QTemporaryDir data;
        ChatPane pane(&assistant, data.path());
        pane.show();
        QSignalSpy messages(&pane, &ChatPane::message);

        QApplication::clipboard()->setImage(
            QImage(QString::fromStdString(test::samplePath("scene-color.png"))));
        pane.input()->paste();
        QCOMPARE(pane.attachmentCount(), 1);
        QVERIFY(pane.input()->toPlainText().isEmpty());

        // A dropped image file is attached; a file that is no image is refused by name.
        const QString notAnImage = data.filePath("notes.png");
        QFile file(notAnImage);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write("not a picture");
        file.close();
        QMimeData mime;
        mime.setUrls(
            {QUrl::fromLocalFile(QString::fromStdString(test::samplePath("scene-position.png"))),
             QUrl::fromLocalFile(notAnImage)});
        // Qt delivers a drop to the widget that accepted the drag entering it.
        QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &mime, Qt::LeftButton,
                              Qt::NoModifier);
        QApplication::sendEvent(&pane, &enter);
        QVERIFY(enter.isAccepted());
        QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(&pane, &drop);
        QCOMPARE(pane.attachmentCount(), 2);
        QCOMPARE(messages.size(), 1);
        QVERIFY2(messages[0][0].toString().contains("notes.png"),
                 qPrintable(messages[0][0].toString()));
        pane.clearAttachments();
        QCOMPARE(pane.attachmentCount(), 0);
    }

    void theStopButtonCancelsTheAnswer()
    {
        Bus bus;
        Assistant assistant(bus);
        // Without the end token the answer would go on for a million tokens.
        reasoning::AskOptions endless;
        endless.ignore_eos = true;
        endless.sampling.max_new_tokens = 1 << 20;
        QVERIFY(loadDemo(assistant, endless));
        QTemporaryDir data;
        ChatPane pane(&assistant, data.path());
        pane.show();
        QSignalSpy pieces(&assistant, &Assistant::answerPiece);
        pane.input()->setPlainText("What did I see?");
        pane.send();
        QTRY_VERIFY_WITH_TIMEOUT(pieces.size() >= 3, kAnswerTimeoutMs);
        QTest::mouseClick(pane.stopButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(!pane.isAnswering(), 10'000);
        QCOMPARE(pane.messages().size(), 2);
        QCOMPARE(pane.messages()[1]->note(), QString("stopped"));
        QVERIFY(!pane.messages()[1]->text().isEmpty());
        QVERIFY(pane.sendButton()->isEnabled());
    }
};

QTEST_MAIN(ChatPaneTest)
#include "chat_pane_test.moc"
