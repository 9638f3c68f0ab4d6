// Answering from memory over the bus: questions in, answer pieces out, on a worker thread.
#include "reasoning/responder.h"

#include "reasoning/batcher.h"
#include "reasoning/prefix-cache.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <thread>

namespace iris::reasoning {

std::string memory_prompt(std::vector<Remembered> memories, const std::string& question)
{
    std::sort(memories.begin(), memories.end(),
              [](const Remembered& a, const Remembered& b) { return a.t_start_us < b.t_start_us; });
    std::string text = "Memory:\n";
    for (const auto& m : memories) {
        std::time_t t = std::time_t(m.t_start_us / 1'000'000);
        std::tm tm {};
        localtime_r(&t, &tm);
        char when[8];
        std::strftime(when, sizeof when, "%H:%M", &tm);
        if (!m.caption.empty()) text += std::string("[") + when + "] caption: " + m.caption + "\n";
        if (!m.transcript.empty())
            text += std::string("[") + when + "] transcript: " + m.transcript + "\n";
    }
    return text + "Question: " + question;
}

struct Responder::State
{
    State(const Engine& e, Recall r, ResponderOptions o, Bus& bus)
        : engine(e)
        , recall(std::move(r))
        , options(std::move(o))
        , questions(bus.topic<Question>(kTopicQuestions))
        , answers(bus.topic<AnswerPiece>(kTopicAnswers))
        , cancels(bus.topic<CancelQuestion>(kTopicCancels))
    { }

    const Engine& engine;
    Recall recall;
    ResponderOptions options;
    Topic<Question> questions;
    Topic<AnswerPiece> answers;
    Topic<CancelQuestion> cancels;
    Subscription<Question> inbox;
    Subscription<CancelQuestion> cancel_inbox;
    std::mutex cancel_mutex;
    std::vector<uint64_t> cancelled_ids; // under cancel_mutex
    std::atomic<bool> stopping {false};
    std::unique_ptr<Batcher> batcher; // with parallel > 1; outlives the workers
    std::unique_ptr<PrefixCache> prompt_cache; // with prompt_cache_bytes > 0
    std::vector<std::thread> workers;

    // Takes in the cancels that arrived; true when question `id` is among them.
    bool is_cancelled(uint64_t id)
    {
        std::lock_guard lock(cancel_mutex);
        while (auto c = cancel_inbox.try_receive()) {
            cancelled_ids.push_back(c->question_id);
            // A cancel that arrives after its answer ended is never matched: keep the newest.
            if (cancelled_ids.size() > 64) cancelled_ids.erase(cancelled_ids.begin());
        }
        return std::find(cancelled_ids.begin(), cancelled_ids.end(), id) != cancelled_ids.end();
    }

    void answer(const Question& q)
    {
        AnswerPiece last;
        last.question_id = q.id;
        last.done = true;
        if (is_cancelled(q.id)) {
            last.finish_reason = "cancelled";
            answers.try_publish(std::move(last));
            return;
        }
        try {
            Session session(engine, "", std::nullopt, prompt_cache.get());
            AskOptions opts = options.ask;
            opts.cancelled = [this, &q] { return stopping.load() || is_cancelled(q.id); };
            opts.batcher = batcher.get();
            std::string prompt = q.text;
            if (q.recall) {
                last.used = recall ? recall(q.text, options.k) : std::vector<Remembered> {};
                prompt = memory_prompt(last.used, q.text);
                if (!q.images.empty()) {
                    // Recent frames are shown as a video is: one tile each.
                    opts.layout = ImageLayout::frames;
                    opts.max_tiles = 1;
                }
            } else {
                TilingOptions tiling = engine.tiling(opts.max_tiles);
                for (const PastTurn& turn : q.history) {
                    std::vector<PreparedImage> shown;
                    for (const Image& img : turn.images)
                        shown.push_back(preprocess_image(img, tiling));
                    session.add_turn(turn.question, shown, turn.answer,
                                     shown.size() > 1 ? ImageLayout::numbered
                                                      : ImageLayout::single);
                }
                if (q.images.size() > 1) opts.layout = ImageLayout::numbered;
            }
            Answer a = session.ask(prompt, q.images, opts, [&](std::string_view piece) {
                AnswerPiece p;
                p.question_id = q.id;
                p.text = std::string(piece);
                // A slow or departed listener loses pieces (the bus counts
                // them); the answer goes on.
                answers.try_publish(std::move(p));
                return true;
            });
            last.finish_reason = a.finish_reason;
            last.answer = a.text;
            last.stats = a.stats;
            last.kv_cache_bytes = session.cache().bytes();
        } catch (const std::exception& e) {
            last.finish_reason = "error";
            last.error = e.what();
        }
        answers.try_publish(std::move(last));
    }
};

Responder::Responder(const Engine& engine, Bus& bus, Recall recall, ResponderOptions options)
    : state_(std::make_unique<State>(engine, std::move(recall), std::move(options), bus))
{
    State& s = *state_;
    if (s.options.parallel < 1)
        throw Error(ErrorKind::invalid_argument, "ResponderOptions::parallel must be at least 1");
    s.inbox = s.questions.subscribe({.name = "reasoning.responder"});
    s.cancel_inbox = s.cancels.subscribe({.name = "reasoning.responder"});
    if (s.options.parallel > 1) s.batcher = std::make_unique<Batcher>(engine.network());
    if (s.options.prompt_cache_bytes > 0)
        s.prompt_cache = std::make_unique<PrefixCache>(s.options.prompt_cache_bytes);
    // The inbox is polled so that stopping never has to unsubscribe under a waiting receive();
    // each question goes to one of the workers.
    for (int i = 0; i < s.options.parallel; ++i)
        s.workers.emplace_back([&s] {
            while (!s.stopping && !s.inbox.closed())
                if (auto q = s.inbox.receive_for(std::chrono::milliseconds(50))) s.answer(*q);
        });
}

Responder::~Responder()
{
    state_->stopping = true;
    for (auto& w : state_->workers) w.join();
}

} // namespace iris::reasoning
