// The Compose tab: an article with images chosen from a folder and the memory's key frames, or a
// self-contained web page from an instruction or a screenshot (reasoning's composer). Composing
// runs on a worker thread; progress and the result come back to the UI thread as queued calls.
#pragma once

#include "reasoning/composer.h"

#include <QImage>
#include <QString>
#include <QWidget>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QTextBrowser;

namespace iris::ui {

class Assistant;
class MemoryLibrary;

class ComposePane : public QWidget
{
    Q_OBJECT

public:
    enum class Kind { article, webpage };

    ComposePane(Assistant* assistant, MemoryLibrary* memory, QWidget* parent = nullptr);
    ~ComposePane() override; // cancels and joins a composition in progress

    void setKind(Kind kind);
    void setInstruction(const QString& text);
    void setImageFolder(const QString& dir); // the article's pool; empty: none
    void setUseMemory(bool on); // key frames of the memories that match the instruction
    void setScreenshot(const QString& file); // the page to rebuild; empty: none

    bool isBusy() const { return m_busy; }
    QString html() const { return m_html; } // of the last result
    QString markdown() const { return m_markdown; } // of the last article
    QTextBrowser* view() const { return m_view; }
    // Writes the last result: an article as DIR/article.md, DIR/images/, DIR/article.html; a web
    // page as DIR/page.html. Returns an error for the user, or an empty string.
    QString saveTo(const QString& dir) const;

public slots:
    void compose();
    void stop();

signals:
    void finished(const QString& summary);
    void failed(const QString& error);
    void message(const QString& text); // for the status bar

private:
    void updateControls();
    void showArticle(const reasoning::Article& article,
                     const std::vector<reasoning::PoolImage>& pool);
    void showWebpage(const reasoning::Webpage& page);

    Assistant* m_assistant;
    MemoryLibrary* m_memory;
    QComboBox* m_kind;
    QLineEdit* m_instruction;
    QPushButton* m_folderButton;
    QLabel* m_folderLabel;
    QCheckBox* m_useMemory;
    QPushButton* m_screenshotButton;
    QLabel* m_screenshotLabel;
    QPushButton* m_composeButton;
    QPushButton* m_stopButton;
    QPushButton* m_saveButton;
    QLabel* m_progress;
    QTextBrowser* m_view;

    QString m_folder;
    QString m_screenshot;
    bool m_busy = false;
    QString m_html;
    QString m_markdown;
    std::optional<reasoning::Article> m_article;
    std::vector<reasoning::PoolImage> m_pool; // of m_article
    std::shared_ptr<std::atomic<bool>> m_cancel;
    std::jthread m_worker; // last: joined first
};

} // namespace iris::ui
