// The Iris desktop window: live video and memory timeline on the left, the chat and the composer
// in tabs on the right, microphone and speech toggles, settings, and a status bar with the model,
// its speed, the KV cache and the number of memories.
#pragma once

#include "core/bus.h"
#include "ui/settings.h"

#include <QMainWindow>

class QAction;
class QLabel;
class QTabWidget;

namespace iris::ui {

class Assistant;
class ChatPane;
class ComposePane;
class MemoryLibrary;
class Recorder;
class Speaker;
class TimelinePane;
class VideoFeed;
class VideoPane;
class VoiceInput;

struct MainWindowOptions
{
    QString source; // a video file, device or "testsrc"; empty: the first camera
    QString audio; // what the microphone toggle listens to: "mic" or an audio file
    QString modelDir; // overrides the settings' (not saved)
    QString memoryDir; // overrides the settings' (not saved)
    QString settingsFile; // an INI file; empty: the user's settings
    QString dataDir; // conversations are kept in dataDir/conversations; empty: app data
};

class MainWindow : public QMainWindow
{
    Q_OBJECT

public:
    // The bus must outlive the window.
    MainWindow(Bus& bus, const MainWindowOptions& options, QWidget* parent = nullptr);
    ~MainWindow() override;

    Assistant* assistant() const { return m_assistant; }
    MemoryLibrary* memory() const { return m_memory; }
    ChatPane* chatPane() const { return m_chat; }
    ComposePane* composePane() const { return m_compose; }
    QTabWidget* tabs() const { return m_tabs; } // Chat and Compose
    VideoPane* videoPane() const { return m_video; }
    TimelinePane* timelinePane() const { return m_timeline; }
    QAction* microphoneAction() const { return m_micAction; }
    QString statusText() const; // the status bar's fields, for tests and logs

public slots:
    void editSettings();

private:
    void applySettings(const Settings& previous);
    void loadModel();
    void openMemory();
    void onModelLoaded(const QString& name);
    void toggleRecording(bool on);
    void toggleMicrophone(bool on);
    void updateMemoryCount();
    void say(const QString& text); // in the status bar for a while

    Bus& m_bus;
    MainWindowOptions m_options;
    Settings m_settings;
    Assistant* m_assistant = nullptr;
    MemoryLibrary* m_memory = nullptr;
    VideoFeed* m_feed = nullptr;
    Recorder* m_recorder = nullptr;
    VoiceInput* m_voice = nullptr;
    Speaker* m_speaker = nullptr;
    ChatPane* m_chat = nullptr;
    ComposePane* m_compose = nullptr;
    QTabWidget* m_tabs = nullptr;
    VideoPane* m_video = nullptr;
    TimelinePane* m_timeline = nullptr;
    QAction* m_micAction = nullptr;
    QAction* m_speakAction = nullptr;
    QLabel* m_modelLabel = nullptr;
    QLabel* m_speedLabel = nullptr;
    QLabel* m_kvLabel = nullptr;
    QLabel* m_memoryLabel = nullptr;
};

} // namespace iris::ui
