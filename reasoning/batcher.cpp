#include "reasoning/batcher.h"

#include "core/core.h"

namespace iris::reasoning {

Batcher::Batcher(const model::InternVL& network)
    : network_(network)
    , batch_(network.new_batch())
    , thread_([this] { run(); })
{ }

Batcher::~Batcher()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    arrived_.notify_all();
    thread_.join();
}

Batcher::Stats Batcher::stats() const
{
    std::lock_guard lock(mutex_);
    return stats_;
}

Batcher::Member::Member(Batcher& batcher)
    : batcher_(batcher)
{
    std::lock_guard lock(batcher_.mutex_);
    ++batcher_.members_;
}

Batcher::Member::~Member()
{
    {
        std::lock_guard lock(batcher_.mutex_);
        --batcher_.members_;
    }
    // The others may be waiting for this member's pass.
    batcher_.arrived_.notify_all();
}

std::span<const float> Batcher::Member::forward(model::KvCache& cache, std::span<const int32_t> ids,
                                                std::span<const float> visual,
                                                int32_t img_context_id)
{
    Pass pass {&cache, ids, visual, img_context_id, &logits_, nullptr};
    std::unique_lock lock(batcher_.mutex_);
    batcher_.waiting_.push_back(&pass);
    batcher_.arrived_.notify_all();
    batcher_.served_.wait(lock, [&] { return pass.done; });
    if (pass.error) std::rethrow_exception(pass.error);
    return logits_;
}

void Batcher::run()
{
    std::vector<Pass*> passes;
    std::unique_lock lock(mutex_);
    for (;;) {
        arrived_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
        if (waiting_.empty()) return; // stopping, and nobody is waiting
        // Every member's pass, or as many as arrive within kWait of the first.
        const auto deadline = std::chrono::steady_clock::now() + kWait;
        arrived_.wait_until(lock, deadline,
                            [&] { return stopping_ || int(waiting_.size()) >= members_; });
        passes.swap(waiting_);
        lock.unlock();
        step(passes);
        lock.lock();
        ++stats_.steps;
        stats_.passes += int64_t(passes.size());
        stats_.last_batch = int(passes.size());
        stats_.max_batch = std::max(stats_.max_batch, stats_.last_batch);
        for (Pass* p : passes) p->done = true;
        passes.clear();
        served_.notify_all();
    }
}

void Batcher::step(std::vector<Pass*>& passes)
{
    const size_t vocab = size_t(network_.config().llm.vocab_size);
    try {
        std::vector<model::BatchItem> items;
        for (const Pass* p : passes)
            items.push_back({p->cache, p->ids, p->visual, p->img_context_id});
        const std::span<const float> logits = network_.forward_batch(*batch_, items);
        for (size_t i = 0; i < passes.size(); ++i) {
            const auto row = logits.subspan(i * vocab, vocab);
            passes[i]->logits->assign(row.begin(), row.end());
        }
        return;
    } catch (const Error& e) {
        // A bad pass fails the whole step before any cache changes (invalid_argument): run each
        // alone, so that only its own request sees the error. Other errors may come after some
        // caches changed, and reach every pass.
        if (e.kind() != ErrorKind::invalid_argument) {
            for (Pass* p : passes) p->error = std::current_exception();
            return;
        }
    } catch (...) { // out of memory, say: every member hears of it, the stepper goes on
        for (Pass* p : passes) p->error = std::current_exception();
        return;
    }
    for (Pass* p : passes) {
        try {
            const auto logits = network_.forward(*p->cache, p->ids, p->visual, p->img_context_id);
            p->logits->assign(logits.begin(), logits.end());
        } catch (...) {
            p->error = std::current_exception();
        }
    }
}

} // namespace iris::reasoning
