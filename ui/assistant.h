// The model side of the app: loads the engine on a worker thread and answers questions through
// reasoning::Responder over the bus. Answers come back over the bus and are handed to the UI
// thread as signals; nothing here makes the UI thread wait on the model.
#pragma once

#include "core/bus.h"
#include "reasoning/responder.h"
#include "ui/bus-listener.h"

#include <QImage>
#include <QList>
#include <QObject>
#include <QSet>
#include <QString>

#include <memory>
#include <thread>

namespace iris::ui {

// The end of one answer.
struct AnswerResult
{
    QString text; // the whole answer
    QString finishReason; // "stop", "length", "cancelled" or "error"
    QString error; // why answering failed
    double tokensPerSecond = 0; // decoding speed
    qint64 kvCacheBytes = 0;
    int memoriesUsed = 0;
};

class Assistant : public QObject
{
    Q_OBJECT

public:
    explicit Assistant(Bus& bus, QObject* parent = nullptr);
    ~Assistant() override; // cancels a load and the answer in progress

    // Where the responder finds memories for a question (called on its thread). Takes effect
    // with the next load().
    void setRecall(reasoning::Responder::Recall recall) { m_recall = std::move(recall); }
    // Loads the model folder on a worker thread, then loaded() or loadFailed(); the model in use
    // until then keeps answering. A second call while loading is refused (returns false).
    bool load(const QString& modelDir, const model::KvCacheOptions& kvCache,
              const reasoning::AskOptions& ask);
    bool isReady() const { return m_engine != nullptr; }
    // Shared with the recorder and the memory search (memory embeddings).
    std::shared_ptr<const reasoning::Engine> engine() const { return m_engine; }

    // Publishes the question; its answer streams back through answerPiece and answerFinished.
    // With recall, memories are looked up and images are shown as video frames; without, the
    // question is asked as it is about the images (as `iris ask` does). Returns its id, or 0
    // when no model is loaded (answerFinished then says so).
    // `history` (questions asked without recall only) are the conversation's earlier turns.
    quint64 ask(const QString& text, const QList<QImage>& images, bool recall,
                const std::vector<reasoning::PastTurn>& history = {});
    void cancel(quint64 id);

signals:
    void loadProgress(double fraction, const QString& what);
    void loaded(const QString& modelName);
    void loadFailed(const QString& error);
    void answerPiece(quint64 id, const QString& text);
    void answerFinished(quint64 id, const iris::ui::AnswerResult& result);

private:
    void onAnswer(reasoning::AnswerPiece piece);

    Bus& m_bus;
    Topic<reasoning::Question> m_questions;
    Topic<reasoning::CancelQuestion> m_cancels;
    reasoning::Responder::Recall m_recall;
    std::shared_ptr<const reasoning::Engine> m_engine;
    std::unique_ptr<reasoning::Responder> m_responder;
    QSet<quint64> m_asked; // questions of this assistant whose answer is not finished
    quint64 m_nextId = 1;
    bool m_loading = false;
    std::jthread m_loader;
    BusListener<reasoning::AnswerPiece> m_answers; // last: stops first
};

} // namespace iris::ui
