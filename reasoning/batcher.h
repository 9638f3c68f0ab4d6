// reasoning/batcher — continuous batching: sessions answering on their own threads whose forward
// passes run together, one pass over the weights per step (model::InternVL::forward_batch).
//
//   Batcher batcher(engine.network());
//   AskOptions opts;
//   opts.batcher = &batcher;              // on each request's thread:
//   Session(engine).ask(question, images, opts, on_text);
//
// A session joins when its prompt starts and leaves when its answer ends, so requests join and
// leave the running batch as they come and go. Each of their forward passes (a prefill chunk or
// one decode step) waits for the next step; a step runs once every member has its next pass
// waiting, or kWait after the first arrived (a member busy elsewhere, e.g. writing to a slow
// client, holds the others back no longer). Prefill chunks and decode steps share steps, so a
// long prompt delays the others by a chunk at a time. A sequence's logits are bit for bit those
// it gets alone, so a request's answer does not depend on who else was served.
#pragma once

#include "model/model.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

namespace iris::reasoning {

class Batcher
{
public:
    static constexpr std::chrono::milliseconds kWait {5};

    explicit Batcher(const model::InternVL& network);
    ~Batcher(); // after every member has left
    Batcher(const Batcher&) = delete;
    Batcher& operator=(const Batcher&) = delete;

    // A sequence taking part while it lives: steps wait for its passes.
    class Member
    {
    public:
        explicit Member(Batcher& batcher);
        ~Member();
        Member(const Member&) = delete;
        Member& operator=(const Member&) = delete;
        // Appends the tokens to the cache in the next step, as InternVL::forward does alone, and
        // returns the logits of the last token (valid until this member's next forward). Throws
        // what forward() would throw for these tokens; the other members' passes go on.
        std::span<const float> forward(model::KvCache& cache, std::span<const int32_t> ids,
                                       std::span<const float> visual, int32_t img_context_id);

    private:
        Batcher& batcher_;
        std::vector<float> logits_;
    };

    struct Stats
    {
        int64_t steps = 0;
        int64_t passes = 0; // forward passes served, summed over the steps
        int last_batch = 0; // sequences in the last step
        int max_batch = 0;
    };
    Stats stats() const;

private:
    struct Pass
    {
        model::KvCache* cache;
        std::span<const int32_t> ids;
        std::span<const float> visual;
        int32_t img_context_id;
        std::vector<float>* logits;
        std::exception_ptr error;
        bool done = false;
    };
    void run();
    void step(std::vector<Pass*>& passes);

    const model::InternVL& network_;
    std::unique_ptr<model::Batch> batch_;
    mutable std::mutex mutex_;
    std::condition_variable arrived_, served_;
    std::vector<Pass*> waiting_;
    int members_ = 0;
    bool stopping_ = false;
    Stats stats_;
    std::thread thread_;
};

} // namespace iris::reasoning
