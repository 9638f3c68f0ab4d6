// The memory timeline over a store made with the real memory module and the demo model's
// embeddings: it lists the entries newest first with thumbnails, the search filters them by
// words and time phrases, an entry opens and can be deleted, and a store that another writer
// holds is shown read-only.
#include "ui-fixture.h"

#include "ui/entry-dialog.h"
#include "ui/memory-library.h"
#include "ui/timeline-pane.h"

#include <QApplication>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMessageBox>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QTimer>

using namespace iris;
using namespace iris::ui;

class TimelineTest : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        m_engine = reasoning::Engine::load(test::kDemoModel);
        m_dim = test::prepareMemory(m_dir.path().toStdString(), *m_engine);
    }

    void listsTheEntriesNewestFirstWithThumbnails()
    {
        MemoryLibrary memory;
        memory.setEngine(m_engine);
        QCOMPARE(memory.open(m_dir.path(), m_dim), QString());
        TimelinePane pane(&memory);
        pane.show();
        QTRY_VERIFY(pane.isLoaded());
        QCOMPARE(pane.entryIds(), (QList<qint64> {3, 2, 1}));
        const QString newest = pane.list()->item(0)->text();
        QVERIFY2(newest.contains("a receipt") && newest.contains("what is the cash"),
                 qPrintable(newest));
        for (int i = 0; i < pane.list()->count(); ++i)
            QVERIFY(!pane.list()->item(i)->icon().isNull());
    }

    void theSearchFiltersTheEntries()
    {
        MemoryLibrary memory;
        memory.setEngine(m_engine);
        QCOMPARE(memory.open(m_dir.path(), m_dim), QString());
        TimelinePane pane(&memory);
        pane.show();
        QTRY_VERIFY(pane.isLoaded());
        QSignalSpy loaded(&pane, &TimelinePane::loaded);

        QTest::keyClicks(pane.searchBox(), "green star");
        QTRY_COMPARE(pane.entryIds(), (QList<qint64> {2}));
        pane.searchBox()->setText("milk");
        QTRY_COMPARE(pane.entryIds(), (QList<qint64> {2}));
        pane.searchBox()->setText("receipt");
        QTRY_COMPARE(pane.entryIds(), (QList<qint64> {3}));
        // Of the entries with a blue square, only the newer one started in the last 25 minutes.
        pane.searchBox()->setText("blue square in the last 25 minutes");
        QTRY_COMPARE(pane.entryIds(), (QList<qint64> {2}));
        pane.searchBox()->clear();
        QTRY_COMPARE(pane.entryIds(), (QList<qint64> {3, 2, 1}));
    }

    void opensAnEntryAndDeletesOne()
    {
        QTemporaryDir dir;
        test::prepareMemory(dir.path().toStdString(), *m_engine);
        MemoryLibrary memory;
        QCOMPARE(memory.open(dir.path(), m_dim), QString());
        TimelinePane pane(&memory);
        pane.show();
        QTRY_COMPARE(pane.entryIds().size(), 3);

        pane.list()->setCurrentRow(1);
        pane.openSelected();
        auto* dialog = pane.findChild<EntryDialog*>();
        QVERIFY(dialog);
        QCOMPARE(dialog->windowTitle(), QString("Memory #2"));
        QVERIFY(!dialog->findChildren<QLabel*>().isEmpty());
        dialog->close();

        // The confirmation is answered Yes.
        QTimer::singleShot(0, [] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (box) box->button(QMessageBox::Yes)->click();
        });
        pane.deleteSelected();
        QTRY_COMPARE(pane.entryIds(), (QList<qint64> {3, 1}));
        QCOMPARE(memory.count(), 2);
        QVERIFY(!memory.entry(2).has_value());
    }

    void aStoreAnotherWriterHoldsIsShownReadOnly()
    {
        memory::Store writer = memory::Store::open(m_dir.path().toStdString(), {.dim = m_dim});
        MemoryLibrary memory;
        const QString warning = memory.open(m_dir.path(), m_dim);
        QVERIFY2(warning.contains("in use by another process"), qPrintable(warning));
        QVERIFY(memory.isReadOnly());
        TimelinePane pane(&memory);
        QTRY_COMPARE(pane.entryIds().size(), 3);
        QVERIFY(memory.remove(1).contains("read-only"));
        QCOMPARE(writer.count(), 3);
    }

private:
    QTemporaryDir m_dir;
    std::shared_ptr<const reasoning::Engine> m_engine;
    int m_dim = 0;
};

QTEST_MAIN(TimelineTest)
#include "timeline_test.moc"
