// What the settings dialog edits, kept with QSettings.
#pragma once

#include "model/model.h"
#include "reasoning/prompt.h"

#include <QSettings>
#include <QString>

namespace iris::ui {

struct Settings
{
    QString modelDir; // empty: $IRIS_MODEL, else the embedded demo model
    int maxTiles = 0; // tiles per attached image; 0: the model's
    QString kvKeys = "f32"; // f32, f16, q8, q4 or skvq (keys and values both, for skvq)
    QString kvValues = "f32";
    int kvBlockTokens = 64;
    double temperature = 0; // 0: greedy
    int topK = 0;
    double topP = 1;
    double repetitionPenalty = 1;
    int maxNewTokens = 512;
    QString wakePhrase = "hey iris";
    QString memoryDir; // empty: <app data>/memory
    bool speakAnswers = false;

    static Settings load(const QSettings& store);
    void save(QSettings& store) const;

    // Throw iris::Error(invalid_argument) naming a bad value.
    reasoning::SamplingParams sampling() const;
    model::KvCacheOptions kvCache() const;
    // Throws iris::Error(not_found) saying where the demo model was looked for.
    QString resolvedModelDir() const;
    QString resolvedMemoryDir() const;
};

} // namespace iris::ui
