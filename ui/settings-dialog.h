// Edits the Settings: model folder, tiles, KV cache, sampling, wake phrase, memory folder.
#pragma once

#include "ui/settings.h"

#include <QDialog>

class QComboBox;
class QFormLayout;
class QDoubleSpinBox;
class QLineEdit;
class QSpinBox;

namespace iris::ui {

class SettingsDialog : public QDialog
{
    Q_OBJECT

public:
    SettingsDialog(const Settings& settings, QWidget* parent = nullptr);

    Settings settings() const;

    void accept() override; // refuses a model folder without config.json

private:
    QLineEdit* folderRow(const QString& value, const QString& title, QFormLayout* form,
                         const QString& label);

    Settings m_original;
    QLineEdit* m_modelDir = nullptr;
    QSpinBox* m_maxTiles = nullptr;
    QComboBox* m_kvKeys = nullptr;
    QComboBox* m_kvValues = nullptr;
    QSpinBox* m_kvBlock = nullptr;
    QDoubleSpinBox* m_temperature = nullptr;
    QSpinBox* m_topK = nullptr;
    QDoubleSpinBox* m_topP = nullptr;
    QDoubleSpinBox* m_repetition = nullptr;
    QSpinBox* m_maxNewTokens = nullptr;
    QLineEdit* m_wakePhrase = nullptr;
    QLineEdit* m_memoryDir = nullptr;
};

} // namespace iris::ui
