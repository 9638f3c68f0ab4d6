#include "ui/speaker.h"

#include <QProcess>

namespace iris::ui {

Speaker::Speaker(QObject* parent)
    : QObject(parent)
    , m_process(new QProcess(this))
{
    connect(m_process, &QProcess::errorOccurred, this, [this](QProcess::ProcessError error) {
        if (error == QProcess::FailedToStart)
            emit failed(tr("Cannot speak: espeak-ng is not installed (scripts/setup installs it)"));
    });
    connect(m_process, &QProcess::finished, this, [this](int code, QProcess::ExitStatus status) {
        if (status != QProcess::NormalExit) return; // killed by stop()
        // espeak-ng exits with 0 when it finds no sound card, and says so on stderr.
        const QString err = QString::fromLocal8Bit(m_process->readAllStandardError());
        if (code != 0 || err.contains("Unknown PCM") || err.contains("error:"))
            emit failed(tr("Cannot speak: espeak-ng found no sound output (%1)")
                            .arg(err.trimmed().section('\n', -1)));
    });
}

void Speaker::say(const QString& text)
{
    stop();
    if (text.trimmed().isEmpty()) return;
    // Through stdin: an answer that starts with '-' is not read as an option.
    m_process->start("espeak-ng", {"-v", "en-us", "--stdin"});
    m_process->write(text.toUtf8());
    m_process->closeWriteChannel();
}

void Speaker::stop()
{
    if (m_process->state() == QProcess::NotRunning) return;
    m_process->kill();
    m_process->waitForFinished(1000);
}

} // namespace iris::ui
