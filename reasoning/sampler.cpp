#include "model/model.h"
#include "reasoning/prompt.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace iris::reasoning {
namespace {

double next_unit(uint64_t& state)
{
    return double(splitmix64(state) >> 11) * 0x1.0p-53;
}

} // namespace

void SamplingParams::validate() const
{
    auto bad = [](const char* field, const std::string& why) {
        throw Error(ErrorKind::invalid_argument, std::string(field) + " " + why);
    };
    if (!(temperature >= 0.f) || temperature > 100.f) bad("temperature", "must be in [0, 100]");
    if (top_k < 0) bad("top_k", "must be >= 0");
    if (!(top_p > 0.f && top_p <= 1.f)) bad("top_p", "must be in (0, 1]");
    if (!(repetition_penalty > 0.f) || repetition_penalty > 100.f)
        bad("repetition_penalty", "must be in (0, 100]");
    if (max_new_tokens < 1) bad("max_new_tokens", "must be >= 1");
    for (const auto& s : stop)
        if (s.empty()) bad("stop", "strings must not be empty");
}

Sampler::Sampler(const SamplingParams& params)
    : params_(params)
    , state_(params.seed)
{
    params_.validate();
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> context)
{
    const int32_t vocab = int32_t(logits.size());
    if (vocab == 0) throw Error(ErrorKind::internal, "sampling from empty logits");
    if (params_.repetition_penalty != 1.f) {
        // Each distinct earlier token once, as torch.gather/scatter does.
        std::unordered_set<int32_t> seen(context.begin(), context.end());
        for (int32_t id : seen) {
            if (id < 0 || id >= vocab) continue;
            float& l = logits[size_t(id)];
            l = l < 0 ? l * params_.repetition_penalty : l / params_.repetition_penalty;
        }
    }
    if (params_.temperature == 0.f)
        return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());

    scratch_.clear();
    scratch_.reserve(size_t(vocab));
    for (int32_t i = 0; i < vocab; ++i)
        scratch_.emplace_back(logits[size_t(i)] / params_.temperature, i);
    auto by_logit = [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    size_t keep = scratch_.size();
    if (params_.top_k > 0 && size_t(params_.top_k) < keep) {
        keep = size_t(params_.top_k);
        std::partial_sort(scratch_.begin(), scratch_.begin() + keep, scratch_.end(), by_logit);
    } else {
        std::sort(scratch_.begin(), scratch_.end(), by_logit);
    }
    scratch_.resize(keep);
    // Softmax over the survivors.
    float max_l = scratch_.front().first;
    double sum = 0;
    for (auto& [l, id] : scratch_) sum += (l = std::exp(l - max_l));
    for (auto& [p, id] : scratch_) p = float(p / sum);
    if (params_.top_p < 1.f) {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        double cum = 0;
        size_t n = 0;
        while (n < scratch_.size()) {
            cum += scratch_[n].first;
            ++n;
            if (cum >= params_.top_p) break;
        }
        scratch_.resize(n);
        double renorm = 0;
        for (auto& [p, id] : scratch_) renorm += p;
        for (auto& [p, id] : scratch_) p = float(p / renorm);
    }
    double r = next_unit(state_), cum = 0;
    for (const auto& [p, id] : scratch_) {
        cum += p;
        if (r < cum) return id;
    }
    return scratch_.back().second;
}

TextStream::TextStream(const model::Tokenizer& tokenizer, std::vector<std::string> stop)
    : tokenizer_(tokenizer)
    , stop_(std::move(stop))
{ }

std::string TextStream::push(int32_t id)
{
    if (stopped_) return {};
    ids_.push_back(id);
    std::string full = tokenizer_.decode(ids_, /*skip_special=*/true);
    // A trailing U+FFFD is most likely a character whose remaining bytes are still to come.
    static const std::string replacement = "\xEF\xBF\xBD";
    size_t final_len = full.size();
    while (final_len >= 3 && full.compare(final_len - 3, 3, replacement) == 0) final_len -= 3;
    size_t stop_at = std::string::npos;
    for (const auto& s : stop_) {
        size_t hit = full.find(s);
        if (hit != std::string::npos && hit < stop_at) stop_at = hit;
    }
    if (stop_at != std::string::npos) {
        stopped_ = true;
        final_len = stop_at;
    } else {
        // Hold back the longest suffix that is the start of a stop string.
        size_t base = final_len, hold = 0;
        for (const auto& s : stop_)
            for (size_t k = std::min(s.size() - 1, base); k > hold; --k)
                if (full.compare(base - k, k, s, 0, k) == 0) {
                    hold = k;
                    break;
                }
        final_len = base - hold;
    }
    if (final_len <= emitted_.size() || full.compare(0, emitted_.size(), emitted_) != 0) return {};
    std::string piece = full.substr(emitted_.size(), final_len - emitted_.size());
    emitted_ += piece;
    return piece;
}

std::string TextStream::flush()
{
    if (stopped_) return {};
    std::string full = tokenizer_.decode(ids_, /*skip_special=*/true);
    if (full.size() <= emitted_.size() || full.compare(0, emitted_.size(), emitted_) != 0)
        return {};
    std::string piece = full.substr(emitted_.size());
    emitted_ += piece;
    return piece;
}

} // namespace iris::reasoning
