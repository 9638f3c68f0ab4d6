#include "ui/main-window.h"

#include "assistant/assistant.h"
#include "ui/assistant.h"
#include "ui/chat-input.h"
#include "ui/chat-pane.h"
#include "ui/compose-pane.h"
#include "ui/memory-library.h"
#include "ui/recorder.h"
#include "ui/settings-dialog.h"
#include "ui/speaker.h"
#include "ui/timeline-pane.h"
#include "ui/video-feed.h"
#include "ui/video-pane.h"
#include "ui/voice-input.h"

#include <QAction>
#include <QLabel>
#include <QMenuBar>
#include <QPushButton>
#include <QSplitter>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTabWidget>
#include <QToolBar>

#include <memory>

namespace iris::ui {

namespace {

constexpr int kMessageMs = 8000;

std::unique_ptr<QSettings> settingsStore(const QString& file)
{
    if (file.isEmpty()) return std::make_unique<QSettings>();
    return std::make_unique<QSettings>(file, QSettings::IniFormat);
}

QString megabytes(qint64 bytes)
{
    return QString::number(double(bytes) / double(1 << 20), 'f', 2) + " MiB";
}

} // namespace

MainWindow::MainWindow(Bus& bus, const MainWindowOptions& options, QWidget* parent)
    : QMainWindow(parent)
    , m_bus(bus)
    , m_options(options)
    , m_settings(Settings::load(*settingsStore(options.settingsFile)))
{
    setWindowTitle(tr("Iris"));
    resize(1280, 800);
    const QString dataDir = options.dataDir.isEmpty()
        ? QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)
        : options.dataDir;

    m_assistant = new Assistant(bus, this);
    m_memory = new MemoryLibrary(this);
    m_feed = new VideoFeed(bus, this);
    m_recorder = new Recorder(bus, m_memory, this);
    m_voice = new VoiceInput(bus, this);
    m_speaker = new Speaker(this);
    m_assistant->setRecall(
        [memory = m_memory](const std::string& q, int k) { return memory->recall(q, k); });

    m_video = new VideoPane(bus, m_feed, options.source, this);
    m_timeline = new TimelinePane(m_memory, this);
    m_chat = new ChatPane(m_assistant, dataDir + "/conversations", this);
    auto* left = new QSplitter(Qt::Vertical, this);
    left->addWidget(m_video);
    left->addWidget(m_timeline);
    left->setStretchFactor(0, 3);
    left->setStretchFactor(1, 2);
    auto* split = new QSplitter(Qt::Horizontal, this);
    m_compose = new ComposePane(m_assistant, m_memory, this);
    m_tabs = new QTabWidget(this);
    m_tabs->addTab(m_chat, tr("Chat"));
    m_tabs->addTab(m_compose, tr("Compose"));
    split->addWidget(left);
    split->addWidget(m_tabs);
    split->setStretchFactor(0, 1);
    split->setStretchFactor(1, 1);
    setCentralWidget(split);

    auto* settingsAction = new QAction(tr("Settings…"), this);
    connect(settingsAction, &QAction::triggered, this, &MainWindow::editSettings);
    m_micAction = new QAction(tr("Microphone"), this);
    m_micAction->setCheckable(true);
    m_micAction->setToolTip(tr("Listen: what you say goes into the question box, and what you "
                               "say after the wake phrase is asked"));
    m_speakAction = new QAction(tr("Speak answers"), this);
    m_speakAction->setCheckable(true);
    m_speakAction->setChecked(m_settings.speakAnswers);
    auto* quit = new QAction(tr("Quit"), this);
    quit->setShortcut(QKeySequence::Quit);
    connect(quit, &QAction::triggered, this, &QWidget::close);
    QMenu* file = menuBar()->addMenu(tr("&File"));
    file->addAction(settingsAction);
    file->addSeparator();
    file->addAction(quit);
    QToolBar* tools = addToolBar(tr("Voice"));
    tools->setMovable(false);
    tools->addAction(m_micAction);
    tools->addAction(m_speakAction);
    tools->addSeparator();
    tools->addAction(settingsAction);

    m_modelLabel = new QLabel(this);
    m_speedLabel = new QLabel(tr("– tok/s"), this);
    m_kvLabel = new QLabel(tr("KV –"), this);
    m_memoryLabel = new QLabel(this);
    for (QLabel* label : {m_modelLabel, m_speedLabel, m_kvLabel, m_memoryLabel})
        statusBar()->addPermanentWidget(label);

    connect(m_assistant, &Assistant::loadProgress, this, [this](double f, const QString& what) {
        m_modelLabel->setText(tr("Loading model… %1% %2").arg(int(f * 100)).arg(what));
    });
    connect(m_assistant, &Assistant::loaded, this, &MainWindow::onModelLoaded);
    connect(m_assistant, &Assistant::loadFailed, this, [this](const QString& error) {
        m_modelLabel->setText(tr("No model"));
        say(tr("Cannot load the model: %1").arg(error));
    });
    connect(m_assistant, &Assistant::answerFinished, this, [this](quint64, const AnswerResult& r) {
        if (r.tokensPerSecond > 0)
            m_speedLabel->setText(tr("%1 tok/s").arg(r.tokensPerSecond, 0, 'f', 1));
        if (r.kvCacheBytes > 0)
            m_kvLabel->setText(
                tr("KV %1 %2/%3")
                    .arg(megabytes(r.kvCacheBytes), m_settings.kvKeys, m_settings.kvValues));
    });
    connect(m_chat, &ChatPane::message, this, &MainWindow::say);
    connect(m_compose, &ComposePane::message, this, &MainWindow::say);
    connect(m_compose, &ComposePane::finished, this,
            [this](const QString& summary) { say(tr("Composed %1").arg(summary)); });
    connect(m_compose, &ComposePane::failed, this,
            [this](const QString& error) { say(tr("Compose: %1").arg(error)); });
    connect(m_chat, &ChatPane::answerFinished, this, [this](const QString& text) {
        if (m_speakAction->isChecked()) m_speaker->say(text);
    });
    connect(m_speakAction, &QAction::toggled, this, [this](bool on) {
        m_settings.speakAnswers = on;
        m_settings.save(*settingsStore(m_options.settingsFile));
        if (!on) m_speaker->stop();
    });
    connect(m_speaker, &Speaker::failed, this, &MainWindow::say);
    connect(m_video, &VideoPane::askAboutView, this, [this](const QList<QImage>& frames) {
        m_chat->addAttachments(frames, true);
        m_chat->input()->setFocus();
        say(tr("%n frame(s) attached: type your question about them", nullptr, int(frames.size())));
    });
    connect(m_video, &VideoPane::recordToggled, this, &MainWindow::toggleRecording);
    connect(m_recorder, &Recorder::stored, this, [this](qint64 id, const QString& caption) {
        say(tr("Remembered #%1: %2").arg(id).arg(caption));
    });
    connect(m_recorder, &Recorder::failed, this, &MainWindow::say);
    connect(m_micAction, &QAction::toggled, this, &MainWindow::toggleMicrophone);
    connect(m_voice, &VoiceInput::heard, this, [this](const QString& text) {
        QString current = m_chat->input()->toPlainText();
        m_chat->input()->setPlainText(current.isEmpty() ? text : current + " " + text);
    });
    connect(m_voice, &VoiceInput::asked, this, [this](const QString& question) {
        m_speaker->stop(); // the user is talking
        m_chat->input()->setPlainText(question);
        m_chat->send();
    });
    connect(m_voice, &VoiceInput::failed, this,
            [this](const QString& error) { say(tr("Microphone: %1").arg(error)); });
    connect(m_voice, &VoiceInput::finished, this, [this] {
        QSignalBlocker block(m_micAction);
        m_micAction->setChecked(false);
    });
    connect(m_memory, &MemoryLibrary::changed, this, &MainWindow::updateMemoryCount);
    connect(m_timeline, &TimelinePane::message, this, &MainWindow::say);

    openMemory();
    loadModel();
}

MainWindow::~MainWindow()
{
    // Workers first: they post to the panes and use the memory and the engine.
    delete m_compose;
    delete m_recorder;
    delete m_voice;
    delete m_feed;
    delete m_assistant;
}

QString MainWindow::statusText() const
{
    return QStringList {m_modelLabel->text(), m_speedLabel->text(), m_kvLabel->text(),
                        m_memoryLabel->text()}
        .join(" | ");
}

void MainWindow::say(const QString& text)
{
    statusBar()->showMessage(text, kMessageMs);
}

void MainWindow::loadModel()
{
    QString dir = m_options.modelDir;
    reasoning::AskOptions ask;
    model::KvCacheOptions kv;
    try {
        if (dir.isEmpty()) dir = m_settings.resolvedModelDir();
        ask.sampling = m_settings.sampling();
        ask.max_tiles = m_settings.maxTiles;
        kv = m_settings.kvCache();
    } catch (const std::exception& e) {
        m_modelLabel->setText(tr("No model"));
        say(tr("Cannot load the model: %1").arg(QString::fromUtf8(e.what())));
        return;
    }
    if (m_assistant->load(dir, kv, ask)) m_modelLabel->setText(tr("Loading model…"));
}

void MainWindow::openMemory()
{
    const QString dir
        = m_options.memoryDir.isEmpty() ? m_settings.resolvedMemoryDir() : m_options.memoryDir;
    auto engine = m_assistant->engine();
    const int dim = engine ? assistant::embedding_dim(*engine) : 0;
    if (QString problem = m_memory->open(dir, dim); !problem.isEmpty()) say(problem);
    updateMemoryCount();
}

void MainWindow::onModelLoaded(const QString& name)
{
    m_modelLabel->setText(tr("Model: %1").arg(name));
    m_memory->setEngine(m_assistant->engine());
    // Now the memory can be created or written: the engine gives the embedding length.
    openMemory();
}

void MainWindow::updateMemoryCount()
{
    m_memoryLabel->setText(m_memory->isOpen() ? tr("%n memories", nullptr, int(m_memory->count()))
                                              : tr("no memories"));
}

void MainWindow::toggleRecording(bool on)
{
    if (!on) {
        m_recorder->stop();
        say(tr("Recording stopped; the last clip is being remembered."));
        return;
    }
    if (QString problem = m_recorder->start(m_assistant->engine()); !problem.isEmpty()) {
        m_video->setRecording(false);
        say(problem);
        return;
    }
    say(tr("Recording: every clip of the video goes into the memory."));
}

void MainWindow::toggleMicrophone(bool on)
{
    if (!on) {
        m_voice->stop();
        return;
    }
    m_voice->start(m_options.audio.isEmpty() ? QStringLiteral("mic") : m_options.audio,
                   m_settings.wakePhrase);
    say(tr("Listening. Say \"%1\" and a question to ask it.").arg(m_settings.wakePhrase));
}

void MainWindow::editSettings()
{
    SettingsDialog dialog(m_settings, this);
    if (dialog.exec() != QDialog::Accepted) return;
    const Settings previous = m_settings;
    m_settings = dialog.settings();
    m_settings.save(*settingsStore(m_options.settingsFile));
    applySettings(previous);
}

void MainWindow::applySettings(const Settings& previous)
{
    const Settings& s = m_settings;
    if (s.modelDir != previous.modelDir || s.maxTiles != previous.maxTiles
        || s.kvKeys != previous.kvKeys || s.kvValues != previous.kvValues
        || s.kvBlockTokens != previous.kvBlockTokens || s.temperature != previous.temperature
        || s.topK != previous.topK || s.topP != previous.topP
        || s.repetitionPenalty != previous.repetitionPenalty
        || s.maxNewTokens != previous.maxNewTokens)
        loadModel();
    if (s.memoryDir != previous.memoryDir && m_options.memoryDir.isEmpty()) {
        m_recorder->stop();
        m_video->setRecording(false);
        openMemory();
    }
    if (s.wakePhrase != previous.wakePhrase && m_voice->isListening()) toggleMicrophone(true);
}

} // namespace iris::ui
