#include "ui/assistant.h"

#include "ui/images.h"

#include <QDir>

namespace iris::ui {

Assistant::Assistant(Bus& bus, QObject* parent)
    : QObject(parent)
    , m_bus(bus)
    , m_questions(bus.topic<reasoning::Question>(reasoning::kTopicQuestions))
    , m_cancels(bus.topic<reasoning::CancelQuestion>(reasoning::kTopicCancels))
    , m_answers(bus.topic<reasoning::AnswerPiece>(reasoning::kTopicAnswers)
                    .subscribe({.capacity = 4096, .name = "ui.assistant"}),
                this, [this](reasoning::AnswerPiece p) { onAnswer(std::move(p)); })
{ }

Assistant::~Assistant()
{
    // The engine load checks for a stop in its progress callback.
    m_loader.request_stop();
    if (m_loader.joinable()) m_loader.join();
    m_responder.reset();
}

bool Assistant::load(const QString& modelDir, const model::KvCacheOptions& kvCache,
                     const reasoning::AskOptions& ask)
{
    if (m_loading) return false;
    m_loading = true;
    if (m_loader.joinable()) m_loader.join(); // the previous load has finished
    m_loader
        = std::jthread([this, dir = modelDir.toStdString(), kvCache, ask](std::stop_token stop) {
              std::shared_ptr<const reasoning::Engine> engine;
              QString error;
              try {
                  reasoning::EngineOptions options;
                  options.kv_cache = kvCache;
                  options.load.progress = [&](float fraction, const char* what) {
                      if (stop.stop_requested())
                          throw Error(ErrorKind::cancelled, "loading cancelled");
                      QMetaObject::invokeMethod(
                          this,
                          [this, fraction, w = QString::fromUtf8(what ? what : "")] {
                              emit loadProgress(fraction, w);
                          },
                          Qt::QueuedConnection);
                  };
                  engine = reasoning::Engine::load(dir, options);
              } catch (const std::exception& e) {
                  error = QString::fromUtf8(e.what());
              }
              QMetaObject::invokeMethod(
                  this,
                  [this, engine, error, dir, ask] {
                      m_loading = false;
                      if (!engine) {
                          emit loadFailed(error);
                          return;
                      }
                      // The old responder finishes (cancels) its answer before its engine goes.
                      m_responder.reset();
                      m_engine = engine;
                      // Two at once, decoded together: a spoken question during a typed
                      // one's answer is answered straight away.
                      m_responder = std::make_unique<reasoning::Responder>(
                          *m_engine, m_bus, m_recall,
                          reasoning::ResponderOptions {.ask = ask, .parallel = 2});
                      emit loaded(QDir(QString::fromStdString(dir)).dirName());
                  },
                  Qt::QueuedConnection);
          });
    return true;
}

quint64 Assistant::ask(const QString& text, const QList<QImage>& images, bool recall,
                       const std::vector<reasoning::PastTurn>& history)
{
    if (!m_responder) {
        // Reported like any failed answer, after the caller has seen the id.
        QMetaObject::invokeMethod(
            this,
            [this] {
                emit answerFinished(0,
                                    {.finishReason = "error",
                                     .error = m_loading ? tr("the model is still loading")
                                                        : tr("no model is loaded")});
            },
            Qt::QueuedConnection);
        return 0;
    }
    reasoning::Question q;
    q.id = m_nextId++;
    q.text = text.toStdString();
    q.recall = recall;
    if (!recall) q.history = history;
    for (const QImage& image : images) q.images.push_back(toImage(image));
    m_asked.insert(q.id);
    const quint64 id = q.id;
    if (!m_questions.try_publish(std::move(q)).ok()) {
        m_asked.remove(id);
        QMetaObject::invokeMethod(
            this,
            [this, id] {
                emit answerFinished(
                    id, {.finishReason = "error", .error = tr("the assistant is busy; try again")});
            },
            Qt::QueuedConnection);
    }
    return id;
}

void Assistant::cancel(quint64 id)
{
    if (m_asked.contains(id)) m_cancels.try_publish({.question_id = id});
}

void Assistant::onAnswer(reasoning::AnswerPiece piece)
{
    if (!m_asked.contains(piece.question_id)) return; // another client's question
    if (!piece.done) {
        emit answerPiece(piece.question_id, QString::fromStdString(piece.text));
        return;
    }
    m_asked.remove(piece.question_id);
    const auto& s = piece.stats;
    emit answerFinished(
        piece.question_id,
        {.text = QString::fromStdString(piece.answer),
         .finishReason = QString::fromStdString(piece.finish_reason),
         .error = QString::fromStdString(piece.error),
         .tokensPerSecond = s.decode_ms > 0 ? s.n_generated * 1000.0 / s.decode_ms : 0.0,
         .kvCacheBytes = qint64(piece.kv_cache_bytes),
         .memoriesUsed = int(piece.used.size())});
}

} // namespace iris::ui
