// Answering from memory over the bus: questions in, answer pieces out, on a worker thread.
#include "reasoning/reasoning.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
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
        , questions(bus.topic<Question>(topic_questions))
        , answers(bus.topic<AnswerPiece>(topic_answers))
    { }

    const Engine& engine;
    Recall recall;
    ResponderOptions options;
    Topic<Question> questions;
    Topic<AnswerPiece> answers;
    Subscription<Question> inbox;
    std::atomic<bool> stopping {false};
    std::thread worker;

    void answer(const Question& q)
    {
        AnswerPiece last;
        last.question_id = q.id;
        last.done = true;
        try {
            last.used = recall ? recall(q.text, options.k) : std::vector<Remembered> {};
            Session session(engine);
            AskOptions opts = options.ask;
            opts.cancelled = [this] { return stopping.load(); };
            if (!q.images.empty()) {
                // Recent frames are shown as a video is: one tile each.
                opts.layout = ImageLayout::frames;
                opts.max_tiles = 1;
            }
            Answer a = session.ask(memory_prompt(last.used, q.text), q.images, opts,
                                   [&](std::string_view piece) {
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
    state_->inbox = state_->questions.subscribe({.name = "reasoning.responder"});
    // The inbox is polled so that stopping never has to unsubscribe under a waiting receive().
    state_->worker = std::thread([s = state_.get()] {
        while (!s->stopping && !s->inbox.closed())
            if (auto q = s->inbox.receive_for(std::chrono::milliseconds(50))) s->answer(*q);
    });
}

Responder::~Responder()
{
    state_->stopping = true;
    state_->worker.join();
}

} // namespace iris::reasoning
