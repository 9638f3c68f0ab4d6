#include "ui/settings-dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLineEdit>
#include <QMessageBox>
#include <QSpinBox>
#include <QToolButton>

namespace iris::ui {

namespace {
const QStringList kKvTypes = {"f32", "f16", "q8", "q4", "skvq"};
}

SettingsDialog::SettingsDialog(const Settings& s, QWidget* parent)
    : QDialog(parent)
    , m_original(s)
{
    setWindowTitle(tr("Iris settings"));
    auto* form = new QFormLayout(this);
    m_modelDir = folderRow(s.modelDir, tr("Model folder"), form, tr("Model folder"));
    m_modelDir->setPlaceholderText(tr("the embedded demo model"));
    m_maxTiles = new QSpinBox(this);
    m_maxTiles->setRange(0, 64);
    m_maxTiles->setSpecialValueText(tr("the model's"));
    m_maxTiles->setValue(s.maxTiles);
    form->addRow(tr("Max tiles per image"), m_maxTiles);
    m_kvKeys = new QComboBox(this);
    m_kvKeys->addItems(kKvTypes);
    m_kvKeys->setCurrentText(s.kvKeys);
    m_kvValues = new QComboBox(this);
    m_kvValues->addItems(kKvTypes);
    m_kvValues->setCurrentText(s.kvValues);
    form->addRow(tr("KV cache keys"), m_kvKeys);
    form->addRow(tr("KV cache values"), m_kvValues);
    m_kvBlock = new QSpinBox(this);
    m_kvBlock->setRange(1, 65536);
    m_kvBlock->setValue(s.kvBlockTokens);
    form->addRow(tr("KV block (tokens)"), m_kvBlock);
    m_temperature = new QDoubleSpinBox(this);
    m_temperature->setRange(0, 5);
    m_temperature->setSingleStep(0.1);
    m_temperature->setSpecialValueText(tr("0 (greedy)"));
    m_temperature->setValue(s.temperature);
    form->addRow(tr("Temperature"), m_temperature);
    m_topK = new QSpinBox(this);
    m_topK->setRange(0, 100000);
    m_topK->setSpecialValueText(tr("off"));
    m_topK->setValue(s.topK);
    form->addRow(tr("Top-k"), m_topK);
    m_topP = new QDoubleSpinBox(this);
    m_topP->setRange(0.01, 1);
    m_topP->setSingleStep(0.05);
    m_topP->setValue(s.topP);
    form->addRow(tr("Top-p"), m_topP);
    m_repetition = new QDoubleSpinBox(this);
    m_repetition->setRange(0.5, 5);
    m_repetition->setSingleStep(0.05);
    m_repetition->setValue(s.repetitionPenalty);
    form->addRow(tr("Repetition penalty"), m_repetition);
    m_maxNewTokens = new QSpinBox(this);
    m_maxNewTokens->setRange(1, 1 << 20);
    m_maxNewTokens->setValue(s.maxNewTokens);
    form->addRow(tr("Max new tokens"), m_maxNewTokens);
    m_wakePhrase = new QLineEdit(s.wakePhrase, this);
    form->addRow(tr("Wake phrase"), m_wakePhrase);
    m_memoryDir = folderRow(s.memoryDir, tr("Memory folder"), form, tr("Memory folder"));
    m_memoryDir->setPlaceholderText(Settings {}.resolvedMemoryDir());
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &SettingsDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    form->addRow(buttons);
}

QLineEdit* SettingsDialog::folderRow(const QString& value, const QString& title, QFormLayout* form,
                                     const QString& label)
{
    auto* row = new QHBoxLayout;
    auto* edit = new QLineEdit(value, this);
    auto* browse = new QToolButton(this);
    browse->setText(tr("…"));
    connect(browse, &QToolButton::clicked, this, [this, edit, title] {
        QString dir = QFileDialog::getExistingDirectory(this, title, edit->text());
        if (!dir.isEmpty()) edit->setText(dir);
    });
    row->addWidget(edit, 1);
    row->addWidget(browse);
    form->addRow(label, row);
    return edit;
}

Settings SettingsDialog::settings() const
{
    Settings s = m_original;
    s.modelDir = m_modelDir->text().trimmed();
    s.maxTiles = m_maxTiles->value();
    s.kvKeys = m_kvKeys->currentText();
    s.kvValues = m_kvValues->currentText();
    s.kvBlockTokens = m_kvBlock->value();
    s.temperature = m_temperature->value();
    s.topK = m_topK->value();
    s.topP = m_topP->value();
    s.repetitionPenalty = m_repetition->value();
    s.maxNewTokens = m_maxNewTokens->value();
    s.wakePhrase = m_wakePhrase->text().trimmed();
    s.memoryDir = m_memoryDir->text().trimmed();
    return s;
}

void SettingsDialog::accept()
{
    const Settings s = settings();
    QString problem;
    if (!s.modelDir.isEmpty() && !QFileInfo::exists(s.modelDir + "/config.json"))
        problem = tr("%1 is not a model folder: it has no config.json.").arg(s.modelDir);
    else if ((s.kvKeys == "skvq") != (s.kvValues == "skvq"))
        problem = tr("SKVQ quantizes keys and values together: choose it for both or neither.");
    else if (s.wakePhrase.isEmpty())
        problem = tr("The wake phrase cannot be empty.");
    if (!problem.isEmpty()) {
        QMessageBox::warning(this, tr("Iris settings"), problem);
        return;
    }
    QDialog::accept();
}

} // namespace iris::ui
