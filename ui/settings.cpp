#include "ui/settings.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

namespace iris::ui {

Settings Settings::load(const QSettings& store)
{
    Settings d;
    Settings s;
    s.modelDir = store.value("model/dir", d.modelDir).toString();
    s.maxTiles = store.value("model/maxTiles", d.maxTiles).toInt();
    s.kvKeys = store.value("kv/keys", d.kvKeys).toString();
    s.kvValues = store.value("kv/values", d.kvValues).toString();
    s.kvBlockTokens = store.value("kv/blockTokens", d.kvBlockTokens).toInt();
    s.temperature = store.value("sampling/temperature", d.temperature).toDouble();
    s.topK = store.value("sampling/topK", d.topK).toInt();
    s.topP = store.value("sampling/topP", d.topP).toDouble();
    s.repetitionPenalty = store.value("sampling/repetitionPenalty", d.repetitionPenalty).toDouble();
    s.maxNewTokens = store.value("sampling/maxNewTokens", d.maxNewTokens).toInt();
    s.wakePhrase = store.value("voice/wakePhrase", d.wakePhrase).toString();
    s.speakAnswers = store.value("voice/speakAnswers", d.speakAnswers).toBool();
    s.memoryDir = store.value("memory/dir", d.memoryDir).toString();
    return s;
}

void Settings::save(QSettings& store) const
{
    store.setValue("model/dir", modelDir);
    store.setValue("model/maxTiles", maxTiles);
    store.setValue("kv/keys", kvKeys);
    store.setValue("kv/values", kvValues);
    store.setValue("kv/blockTokens", kvBlockTokens);
    store.setValue("sampling/temperature", temperature);
    store.setValue("sampling/topK", topK);
    store.setValue("sampling/topP", topP);
    store.setValue("sampling/repetitionPenalty", repetitionPenalty);
    store.setValue("sampling/maxNewTokens", maxNewTokens);
    store.setValue("voice/wakePhrase", wakePhrase);
    store.setValue("voice/speakAnswers", speakAnswers);
    store.setValue("memory/dir", memoryDir);
    store.sync();
}

reasoning::SamplingParams Settings::sampling() const
{
    reasoning::SamplingParams p;
    p.temperature = float(temperature);
    p.top_k = topK;
    p.top_p = float(topP);
    p.repetition_penalty = float(repetitionPenalty);
    p.max_new_tokens = maxNewTokens;
    p.validate();
    return p;
}

model::KvCacheOptions Settings::kvCache() const
{
    model::KvCacheOptions kv;
    kv.k_type = model::kv_type_from_name(kvKeys.toStdString());
    kv.v_type = model::kv_type_from_name(kvValues.toStdString());
    if (kvBlockTokens < 1)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("KV block size %d must be at least 1", kvBlockTokens));
    kv.block_tokens = kvBlockTokens;
    return kv;
}

QString Settings::resolvedModelDir() const
{
    if (!modelDir.isEmpty()) return modelDir;
    if (QString env = qEnvironmentVariable("IRIS_MODEL"); !env.isEmpty()) return env;
    // Beside the build tree (build/bin/iris-desktop) or in an install (bin/ and share/).
    const QDir exe(QCoreApplication::applicationDirPath());
    const QStringList candidates = {exe.filePath("../../resources/models/iris-demo"),
                                    exe.filePath("../share/iris/models/iris-demo")};
    for (const QString& c : candidates)
        if (QFileInfo::exists(c + "/config.json")) return QDir(c).canonicalPath();
    throw Error(ErrorKind::not_found,
                "no model folder is set, IRIS_MODEL is not set and the demo model is not at "
                    + QDir::cleanPath(candidates[0]).toStdString() + " or "
                    + QDir::cleanPath(candidates[1]).toStdString());
}

QString Settings::resolvedMemoryDir() const
{
    if (!memoryDir.isEmpty()) return memoryDir;
    return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/memory";
}

} // namespace iris::ui
