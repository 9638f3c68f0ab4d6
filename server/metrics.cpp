// Counters for /metrics, in the Prometheus text format.
#include "server/internal.h"

#include <type_traits>

namespace iris::server {

void Metrics::begin_generation()
{
    std::lock_guard lock(mu_);
    if (running_++ == 0) busy_since_us_ = now_us();
}

void Metrics::end_generation(size_t kv_bytes)
{
    kv_bytes_ -= kv_bytes;
    std::lock_guard lock(mu_);
    if (--running_ == 0) busy_s_ += double(now_us() - busy_since_us_) / 1e6;
}

void Metrics::request(const std::string& route, int status)
{
    std::lock_guard lock(mu_);
    ++requests_[{route, status}];
}

void Metrics::generation(const reasoning::Answer& a)
{
    std::lock_guard lock(mu_);
    ++generations_;
    prompt_tokens_ += a.stats.n_prompt_tokens;
    reused_tokens_ += a.stats.n_reused_tokens;
    generated_tokens_ += a.stats.n_generated;
    vision_s_ += a.stats.vision_ms / 1000;
    prefill_s_ += a.stats.prefill_ms / 1000;
    decode_s_ += a.stats.decode_ms / 1000;
    if (a.finish_reason == "cancelled") ++cancelled_;
}

void Metrics::rejected()
{
    std::lock_guard lock(mu_);
    ++rejected_;
}

Metrics::Running::Running(Metrics& metrics)
    : metrics_(metrics)
{
    metrics_.begin_generation();
}

Metrics::Running::~Running()
{
    metrics_.end_generation(kv_bytes_);
}

void Metrics::Running::hold_kv(size_t bytes)
{
    if (kv_bytes_ > 0) return;
    kv_bytes_ = bytes;
    metrics_.kv_bytes_ += bytes;
}

std::string Metrics::text(const EngineQueue& queue, const reasoning::Batcher* batcher,
                          const reasoning::PrefixCache* prompt_cache) const
{
    const auto [turns, waited_s] = queue.waited();
    const int queue_depth = queue.depth();
    std::lock_guard lock(mu_);
    std::string out;
    auto header = [&](const char* name, const char* type, const char* help) {
        out += strfmt("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    };
    // A metric of one sample: counts as integers, seconds and rates with decimals.
    auto put = [&](const char* name, const char* type, const char* help, auto value) {
        header(name, type, help);
        if constexpr (std::is_floating_point_v<decltype(value)>)
            out += strfmt("%s %.6f\n", name, double(value));
        else
            out += strfmt("%s %lld\n", name, (long long)value);
    };
    header("iris_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (const auto& [key, n] : requests_)
        out += strfmt("iris_requests_total{route=\"%s\",status=\"%d\"} %lld\n", key.first.c_str(),
                      key.second, (long long)n);
    put("iris_generations_total", "counter", "Answers generated.", generations_);
    put("iris_generations_cancelled_total", "counter",
        "Generations cut short because the client went away or the server stopped.", cancelled_);
    put("iris_queue_rejected_total", "counter", "Requests answered 503 because the queue was full.",
        rejected_);
    put("iris_prompt_tokens_total", "counter", "Prompt tokens, cached ones included.",
        prompt_tokens_);
    put("iris_generated_tokens_total", "counter", "Tokens generated.", generated_tokens_);
    put("iris_vision_seconds_total", "counter", "Time spent encoding images.", vision_s_);
    put("iris_prefill_seconds_total", "counter", "Time spent processing prompts.", prefill_s_);
    put("iris_decode_seconds_total", "counter", "Time spent generating tokens.", decode_s_);
    put("iris_prompt_tokens_per_second", "gauge",
        "Prompt tokens processed per second of prefill, since start.",
        prefill_s_ > 0 ? double(prompt_tokens_ - reused_tokens_) / prefill_s_ : 0.0);
    put("iris_decode_tokens_per_second", "gauge",
        "Tokens a request generates per second of its decoding, since start.",
        decode_s_ > 0 ? double(generated_tokens_) / decode_s_ : 0.0);
    const double busy_s = busy_s_ + (running_ > 0 ? double(now_us() - busy_since_us_) / 1e6 : 0.0);
    put("iris_generated_tokens_per_second", "gauge",
        "Tokens generated per second while any generation ran, all requests together.",
        busy_s > 0 ? double(generated_tokens_) / busy_s : 0.0);
    put("iris_queue_depth", "gauge", "Requests waiting for or holding the engine.", queue_depth);
    put("iris_queue_wait_seconds_total", "counter",
        "Time requests waited in the queue for their turn.", waited_s);
    put("iris_queue_turns_total", "counter", "Requests that got their turn.", turns);
    put("iris_generations_running", "gauge", "Generations running now.", running_);
    if (batcher) {
        const reasoning::Batcher::Stats b = batcher->stats();
        put("iris_batch_steps_total", "counter", "Batched forward steps (--parallel).", b.steps);
        put("iris_batch_sequences_total", "counter",
            "Sequences advanced by those steps, summed: over the steps, the mean batch size.",
            b.passes);
        put("iris_batch_size", "gauge", "Sequences in the last step.", b.last_batch);
    }
    if (prompt_cache) {
        const reasoning::PrefixCache::Stats p = prompt_cache->stats();
        put("iris_prompt_cache_hits_total", "counter",
            "Prompts that resumed from a prefix an earlier request computed.", p.prefix_hits);
        put("iris_prompt_cache_misses_total", "counter", "Prompts that found no such prefix.",
            p.prefix_misses);
        put("iris_prompt_cache_reused_tokens_total", "counter",
            "Prompt tokens taken from the prompt cache instead of computed.", p.reused_tokens);
        put("iris_prompt_cache_image_hits_total", "counter",
            "Images whose visual tokens came from the prompt cache.", p.image_hits);
        put("iris_prompt_cache_evictions_total", "counter",
            "Entries dropped, least recently used first, to stay within the cache's bytes.",
            p.evictions);
        put("iris_prompt_cache_bytes", "gauge", "Bytes the prompt cache holds.", p.bytes);
        put("iris_prompt_cache_entries", "gauge", "Prefixes and images the prompt cache holds.",
            p.entries);
    }
    put("iris_kv_cache_bytes", "gauge", "Bytes held by the KV caches of running generations.",
        kv_bytes_.load());
    return out;
}

} // namespace iris::server
