// Speaks answers with the espeak-ng command (installed by scripts/setup).
#pragma once

#include <QObject>
#include <QString>

class QProcess;

namespace iris::ui {

class Speaker : public QObject
{
    Q_OBJECT

public:
    explicit Speaker(QObject* parent = nullptr);

    // Stops what is being said and says `text`.
    void say(const QString& text);
    void stop();

signals:
    void failed(const QString& error);

private:
    QProcess* m_process = nullptr;
};

} // namespace iris::ui
