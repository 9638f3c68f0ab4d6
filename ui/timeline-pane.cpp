#include "ui/timeline-pane.h"

#include "ui/entry-dialog.h"

#include <QDateTime>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMessageBox>
#include <QPushButton>
#include <QTimer>
#include <QVBoxLayout>

namespace iris::ui {

namespace {

constexpr int kSearchDelayMs = 250;

QString clockText(qint64 unixUs)
{
    return QDateTime::fromMSecsSinceEpoch(unixUs / 1000).toString("HH:mm:ss");
}

} // namespace

TimelinePane::TimelinePane(MemoryLibrary* memory, QWidget* parent)
    : QWidget(parent)
    , m_memory(memory)
{
    auto* layout = new QVBoxLayout(this);
    m_search = new QLineEdit(this);
    m_search->setPlaceholderText(tr("Search memories (words, meaning, \"in the last hour\")"));
    m_search->setClearButtonEnabled(true);
    layout->addWidget(m_search);
    m_list = new QListWidget(this);
    m_list->setIconSize(QSize(96, 72));
    m_list->setWordWrap(true);
    m_list->setSelectionMode(QAbstractItemView::SingleSelection);
    layout->addWidget(m_list, 1);
    auto* row = new QHBoxLayout;
    m_summary = new QLabel(this);
    m_open = new QPushButton(tr("Open"), this);
    m_delete = new QPushButton(tr("Delete"), this);
    row->addWidget(m_summary, 1);
    row->addWidget(m_open);
    row->addWidget(m_delete);
    layout->addLayout(row);

    m_debounce = new QTimer(this);
    m_debounce->setSingleShot(true);
    m_debounce->setInterval(kSearchDelayMs);
    connect(m_search, &QLineEdit::textChanged, m_debounce, qOverload<>(&QTimer::start));
    connect(m_debounce, &QTimer::timeout, this, &TimelinePane::reload);
    connect(m_list, &QListWidget::itemActivated, this, &TimelinePane::openSelected);
    connect(m_open, &QPushButton::clicked, this, &TimelinePane::openSelected);
    connect(m_delete, &QPushButton::clicked, this, &TimelinePane::deleteSelected);
    connect(m_memory, &MemoryLibrary::entriesLoaded, this, &TimelinePane::showEntries);
    connect(m_memory, &MemoryLibrary::changed, this, &TimelinePane::reload);
    connect(m_memory, &MemoryLibrary::failed, this, &TimelinePane::message);
    reload();
}

QList<qint64> TimelinePane::entryIds() const
{
    QList<qint64> ids;
    for (int i = 0; i < m_list->count(); ++i)
        ids.push_back(m_list->item(i)->data(Qt::UserRole).toLongLong());
    return ids;
}

void TimelinePane::reload()
{
    m_memory->refresh(m_search->text());
}

void TimelinePane::showEntries(const QList<TimelineEntry>& entries, const QString& query)
{
    m_list->clear();
    for (const TimelineEntry& e : entries) {
        QString text = QString("%1 – %2  #%3\n%4")
                           .arg(clockText(e.startUs), clockText(e.endUs))
                           .arg(e.id)
                           .arg(e.caption);
        if (!e.transcript.isEmpty()) text += tr("\nheard: “%1”").arg(e.transcript);
        auto* item = new QListWidgetItem(QIcon(QPixmap::fromImage(e.thumbnail)), text, m_list);
        item->setData(Qt::UserRole, e.id);
        item->setToolTip(QDateTime::fromMSecsSinceEpoch(e.startUs / 1000).toString());
    }
    if (!m_memory->isOpen() || (query.trimmed().isEmpty() && entries.isEmpty()))
        m_summary->setText(tr("No memories yet: press Record to remember what you see."));
    else if (query.trimmed().isEmpty())
        m_summary->setText(tr("%n memories", nullptr, int(m_memory->count())));
    else
        m_summary->setText(tr("%n found", nullptr, int(entries.size())));
    m_open->setEnabled(!entries.isEmpty());
    m_delete->setEnabled(!entries.isEmpty() && !m_memory->isReadOnly());
    m_loaded = true;
    emit loaded(int(entries.size()));
}

void TimelinePane::openSelected()
{
    QListWidgetItem* item = m_list->currentItem();
    if (!item) return;
    auto entry = m_memory->entry(item->data(Qt::UserRole).toLongLong());
    if (!entry) return;
    auto* dialog = new EntryDialog(*entry, this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->show();
}

void TimelinePane::deleteSelected()
{
    QListWidgetItem* item = m_list->currentItem();
    if (!item) return;
    const qint64 id = item->data(Qt::UserRole).toLongLong();
    if (QMessageBox::question(this, tr("Delete memory"),
                              tr("Delete memory #%1 and its key frames?").arg(id))
        != QMessageBox::Yes)
        return;
    if (QString error = m_memory->remove(id); !error.isEmpty()) emit message(error);
}

} // namespace iris::ui
