// The memory timeline: the long-term entries newest first with a key-frame thumbnail, their time
// range, caption and transcript; a search box (hybrid retrieval); open and delete.
#pragma once

#include "ui/memory-library.h"

#include <QList>
#include <QWidget>

class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QTimer;

namespace iris::ui {

class TimelinePane : public QWidget
{
    Q_OBJECT

public:
    TimelinePane(MemoryLibrary* memory, QWidget* parent = nullptr);

    QLineEdit* searchBox() const { return m_search; }
    QListWidget* list() const { return m_list; }
    QList<qint64> entryIds() const;
    bool isLoaded() const { return m_loaded; } // a first listing has arrived

public slots:
    void reload();
    void openSelected();
    void deleteSelected();

signals:
    void loaded(int count);
    void message(const QString& text);

private:
    void showEntries(const QList<TimelineEntry>& entries, const QString& query);

    MemoryLibrary* m_memory;
    QLineEdit* m_search = nullptr;
    QListWidget* m_list = nullptr;
    QLabel* m_summary = nullptr;
    QPushButton* m_open = nullptr;
    QPushButton* m_delete = nullptr;
    QTimer* m_debounce = nullptr;
    bool m_loaded = false;
};

} // namespace iris::ui
