#include "ui/compose-pane.h"

#include "assistant/assistant.h"
#include "ui/assistant.h"
#include "ui/images.h"
#include "ui/memory-library.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSaveFile>
#include <QTextBrowser>
#include <QVBoxLayout>

namespace iris::ui {

namespace {

std::vector<reasoning::PoolImage> folderPool(const QString& dir)
{
    std::vector<reasoning::PoolImage> pool;
    const QStringList files = QDir(dir).entryList(
        {"*.png", "*.jpg", "*.jpeg", "*.webp", "*.bmp", "*.PNG", "*.JPG", "*.JPEG"}, QDir::Files,
        QDir::Name);
    for (const QString& f : files)
        pool.push_back(
            {f.toStdString(), reasoning::load_image(QDir(dir).filePath(f).toStdString())});
    return pool;
}

QString writeFile(const QString& path, const QByteArray& bytes)
{
    QSaveFile out(path); // written whole or not at all
    if (!out.open(QIODevice::WriteOnly) || out.write(bytes) != bytes.size() || !out.commit())
        return QObject::tr("Cannot write %1: %2").arg(path, out.errorString());
    return {};
}

} // namespace

ComposePane::ComposePane(Assistant* assistant, MemoryLibrary* memory, QWidget* parent)
    : QWidget(parent)
    , m_assistant(assistant)
    , m_memory(memory)
{
    m_kind = new QComboBox(this);
    m_kind->addItem(tr("Article with images"));
    m_kind->addItem(tr("Web page"));
    m_instruction = new QLineEdit(this);
    m_instruction->setPlaceholderText(tr("What to write, e.g. \"Write a short article about the "
                                         "shapes we saw.\""));
    m_folderButton = new QPushButton(tr("Images folder…"), this);
    m_folderLabel = new QLabel(tr("no folder"), this);
    m_useMemory = new QCheckBox(tr("key frames from memory"), this);
    m_screenshotButton = new QPushButton(tr("Screenshot…"), this);
    m_screenshotLabel = new QLabel(tr("no screenshot"), this);
    m_composeButton = new QPushButton(tr("Compose"), this);
    m_stopButton = new QPushButton(tr("Stop"), this);
    m_saveButton = new QPushButton(tr("Save…"), this);
    m_progress = new QLabel(this);
    m_view = new QTextBrowser(this);
    m_view->setOpenLinks(false); // a composed page is looked at, not browsed
    m_view->setPlaceholderText(tr("The composed article or page appears here."));

    auto* top = new QHBoxLayout;
    top->addWidget(m_kind);
    top->addWidget(m_instruction, 1);
    auto* sources = new QHBoxLayout;
    sources->addWidget(m_folderButton);
    sources->addWidget(m_folderLabel, 1);
    sources->addWidget(m_useMemory);
    sources->addWidget(m_screenshotButton);
    sources->addWidget(m_screenshotLabel, 1);
    auto* actions = new QHBoxLayout;
    actions->addWidget(m_composeButton);
    actions->addWidget(m_stopButton);
    actions->addWidget(m_progress, 1);
    actions->addWidget(m_saveButton);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(top);
    layout->addLayout(sources);
    layout->addLayout(actions);
    layout->addWidget(m_view, 1);

    connect(m_kind, &QComboBox::currentIndexChanged, this, &ComposePane::updateControls);
    connect(m_instruction, &QLineEdit::returnPressed, this, &ComposePane::compose);
    connect(m_composeButton, &QPushButton::clicked, this, &ComposePane::compose);
    connect(m_stopButton, &QPushButton::clicked, this, &ComposePane::stop);
    connect(m_folderButton, &QPushButton::clicked, this, [this] {
        QString dir
            = QFileDialog::getExistingDirectory(this, tr("Images for the article"), m_folder);
        if (!dir.isEmpty()) setImageFolder(dir);
    });
    connect(m_screenshotButton, &QPushButton::clicked, this, [this] {
        QString file = QFileDialog::getOpenFileName(this, tr("Screenshot of a page"), {},
                                                    tr("Images (*.png *.jpg *.jpeg *.webp *.bmp)"));
        if (!file.isEmpty()) setScreenshot(file);
    });
    connect(m_saveButton, &QPushButton::clicked, this, [this] {
        QString dir = QFileDialog::getExistingDirectory(this, tr("Save into folder"));
        if (dir.isEmpty()) return;
        QString error = saveTo(dir);
        emit message(error.isEmpty() ? tr("Saved in %1").arg(dir) : error);
    });
    updateControls();
}

ComposePane::~ComposePane()
{
    if (m_cancel) *m_cancel = true;
}

void ComposePane::setKind(Kind kind)
{
    m_kind->setCurrentIndex(kind == Kind::article ? 0 : 1);
}

void ComposePane::setInstruction(const QString& text)
{
    m_instruction->setText(text);
}

void ComposePane::setImageFolder(const QString& dir)
{
    m_folder = dir;
    m_folderLabel->setText(dir.isEmpty() ? tr("no folder") : QDir(dir).dirName());
    m_folderLabel->setToolTip(dir);
}

void ComposePane::setUseMemory(bool on)
{
    m_useMemory->setChecked(on);
}

void ComposePane::setScreenshot(const QString& file)
{
    m_screenshot = file;
    m_screenshotLabel->setText(file.isEmpty() ? tr("no screenshot") : QFileInfo(file).fileName());
    m_screenshotLabel->setToolTip(file);
}

void ComposePane::updateControls()
{
    const bool article = m_kind->currentIndex() == 0;
    for (QWidget* w : {static_cast<QWidget*>(m_folderButton), static_cast<QWidget*>(m_folderLabel),
                       static_cast<QWidget*>(m_useMemory)})
        w->setVisible(article);
    m_screenshotButton->setVisible(!article);
    m_screenshotLabel->setVisible(!article);
    m_kind->setEnabled(!m_busy);
    m_composeButton->setEnabled(!m_busy);
    m_stopButton->setEnabled(m_busy);
    m_saveButton->setEnabled(!m_busy && !m_html.isEmpty());
}

void ComposePane::compose()
{
    if (m_busy) return;
    std::shared_ptr<const reasoning::Engine> engine = m_assistant->engine();
    if (!engine) {
        emit failed(tr("No model is loaded yet."));
        return;
    }
    const bool article = m_kind->currentIndex() == 0;
    const std::string instruction = m_instruction->text().trimmed().toStdString();
    if (instruction.empty() && (article || m_screenshot.isEmpty())) {
        emit failed(article ? tr("Say what the article is about.")
                            : tr("Say what the page shows, or choose a screenshot."));
        return;
    }
    m_busy = true;
    m_progress->setText(tr("starting…"));
    updateControls();

    auto cancel = std::make_shared<std::atomic<bool>>(false);
    m_cancel = cancel;
    reasoning::ComposeOptions options;
    options.cancelled = [cancel] { return cancel->load(); };
    options.progress = [this, cancel](const std::string& stage, int done, int total) {
        QString text = total > 1
            ? tr("%1 %2/%3").arg(QString::fromStdString(stage)).arg(done + 1).arg(total)
            : QString::fromStdString(stage);
        QMetaObject::invokeMethod(
            this, [this, text] { m_progress->setText(text); }, Qt::QueuedConnection);
        return !cancel->load();
    };
    // Reading the pool, scoring and writing all happen here; the UI thread only gets results.
    m_worker = std::jthread([this, engine, article, instruction, options, folder = m_folder,
                             useMemory = m_useMemory->isChecked(), shot = m_screenshot] {
        try {
            if (article) {
                reasoning::ArticleRequest req;
                req.instruction = instruction;
                if (!folder.isEmpty()) req.pool = folderPool(folder);
                if (useMemory && m_memory) {
                    auto frames = m_memory->keyFrames(instruction, assistant::kMemoryPoolSize);
                    req.pool.insert(req.pool.end(), frames.begin(), frames.end());
                }
                reasoning::Article a = reasoning::compose_article(*engine, req, options);
                QMetaObject::invokeMethod(
                    this,
                    [this, a = std::move(a), pool = std::move(req.pool)] { showArticle(a, pool); },
                    Qt::QueuedConnection);
            } else {
                reasoning::WebpageRequest req;
                req.instruction = instruction;
                if (!shot.isEmpty()) req.screenshot = reasoning::load_image(shot.toStdString());
                reasoning::Webpage page = reasoning::compose_webpage(*engine, req, options);
                QMetaObject::invokeMethod(
                    this, [this, page = std::move(page)] { showWebpage(page); },
                    Qt::QueuedConnection);
            }
        } catch (const std::exception& e) {
            QString error = QString::fromStdString(e.what());
            QMetaObject::invokeMethod(
                this,
                [this, error] {
                    m_busy = false;
                    m_progress->setText(error);
                    updateControls();
                    emit failed(error);
                },
                Qt::QueuedConnection);
        }
    });
}

void ComposePane::stop()
{
    if (m_cancel) *m_cancel = true;
}

void ComposePane::showArticle(const reasoning::Article& article,
                              const std::vector<reasoning::PoolImage>& pool)
{
    m_busy = false;
    m_article = article;
    m_pool = pool;
    m_markdown = QString::fromStdString(article.markdown);
    m_html = QString::fromStdString(reasoning::article_html(article, pool));
    // The Markdown names its images by file; the document gets them as resources by that name.
    for (size_t i = 0; i < article.images.size(); ++i) {
        std::string file = reasoning::article_image_file(article, i);
        if (file.empty()) continue;
        m_view->document()->addResource(QTextDocument::ImageResource,
                                        QUrl(QString::fromStdString(file)),
                                        toQImage(pool[size_t(article.images[i].pool_index)].image));
    }
    m_view->setMarkdown(m_markdown);
    int placed = int(std::count_if(article.images.begin(), article.images.end(),
                                   [](const auto& im) { return im.pool_index >= 0; }));
    QString summary = tr("\"%1\": %n section(s)", nullptr, int(article.sections.size()))
                          .arg(QString::fromStdString(article.title))
        + tr(", %n image(s) placed", nullptr, placed);
    m_progress->setText(summary);
    updateControls();
    emit finished(summary);
}

void ComposePane::showWebpage(const reasoning::Webpage& page)
{
    m_busy = false;
    m_article.reset();
    m_pool.clear();
    m_markdown.clear();
    m_html = QString::fromStdString(page.html);
    m_view->setHtml(m_html);
    QString summary = tr("web page, %1 bytes").arg(page.html.size());
    m_progress->setText(summary);
    updateControls();
    emit finished(summary);
}

QString ComposePane::saveTo(const QString& dir) const
{
    if (m_html.isEmpty()) return tr("Nothing composed yet.");
    if (!QDir().mkpath(dir)) return tr("Cannot create %1").arg(dir);
    if (!m_article) return writeFile(QDir(dir).filePath("page.html"), m_html.toUtf8());
    if (!QDir(dir).mkpath("images")) return tr("Cannot create %1/images").arg(dir);
    for (size_t i = 0; i < m_article->images.size(); ++i) {
        std::string file = reasoning::article_image_file(*m_article, i);
        if (file.empty()) continue;
        auto jpeg
            = reasoning::encode_jpeg(m_pool[size_t(m_article->images[i].pool_index)].image, 90);
        QString error = writeFile(
            QDir(dir).filePath(QString::fromStdString(file)),
            QByteArray(reinterpret_cast<const char*>(jpeg.data()), qsizetype(jpeg.size())));
        if (!error.isEmpty()) return error;
    }
    if (QString e = writeFile(QDir(dir).filePath("article.md"), m_markdown.toUtf8()); !e.isEmpty())
        return e;
    return writeFile(QDir(dir).filePath("article.html"), m_html.toUtf8());
}

} // namespace iris::ui
