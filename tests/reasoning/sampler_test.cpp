#include "core/core.h"
#include "reasoning/prompt.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using iris::reasoning::Sampler;
using iris::reasoning::SamplingParams;

TEST(Sampler, GreedyTakesTheArgmaxAndTheLowestIdOnTies)
{
    Sampler s({});
    std::vector<float> logits = {0.1f, 2.f, -1.f, 2.f};
    EXPECT_EQ(s.sample(logits, {}), 1);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits)
{
    SamplingParams p;
    p.repetition_penalty = 2.f;
    Sampler s(p);
    std::vector<float> logits = {3.f, 2.5f, -1.f};
    std::vector<int32_t> context = {0, 0, 2};
    EXPECT_EQ(s.sample(logits, context), 1); // 3 -> 1.5 loses to 2.5
    EXPECT_FLOAT_EQ(logits[0], 1.5f); // penalised once although seen twice
    EXPECT_FLOAT_EQ(logits[2], -2.f);
}

TEST(Sampler, SameSeedGivesTheSameDrawsAndOtherSeedsDiffer)
{
    SamplingParams p;
    p.temperature = 1.f;
    std::vector<float> base(50);
    for (size_t i = 0; i < base.size(); ++i) base[i] = float(i % 7) * 0.3f;
    auto draw = [&](uint64_t seed) {
        p.seed = seed;
        Sampler s(p);
        std::vector<int32_t> out;
        for (int i = 0; i < 64; ++i) {
            auto l = base;
            out.push_back(s.sample(l, {}));
        }
        return out;
    };
    EXPECT_EQ(draw(7), draw(7));
    EXPECT_NE(draw(7), draw(8));
}

TEST(Sampler, DrawsFollowTheSoftmaxOfTheScaledLogits)
{
    SamplingParams p;
    p.temperature = 0.5f;
    p.seed = 42;
    Sampler s(p);
    const std::vector<float> logits = {0.f, 0.5f, 1.f};
    double z = 0, expect[3];
    for (int i = 0; i < 3; ++i) z += (expect[i] = std::exp(logits[size_t(i)] / 0.5));
    int counts[3] = {};
    const int n = 40000;
    for (int i = 0; i < n; ++i) {
        auto l = logits;
        counts[s.sample(l, {})]++;
    }
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(double(counts[i]) / n, expect[i] / z, 0.01) << i;
}

TEST(Sampler, TopKAndTopPKeepOnlyTheMostLikelyTokens)
{
    SamplingParams p;
    p.temperature = 1.f;
    p.top_k = 2;
    Sampler k2(p);
    std::vector<float> logits = {5.f, 4.9f, 0.f, 4.8f};
    for (int i = 0; i < 200; ++i) {
        auto l = logits;
        int32_t t = k2.sample(l, {});
        EXPECT_TRUE(t == 0 || t == 1) << t;
    }
    p.top_k = 0;
    p.top_p = 0.05f; // the first token alone has more mass than this
    Sampler tp(p);
    for (int i = 0; i < 50; ++i) {
        auto l = logits;
        EXPECT_EQ(tp.sample(l, {}), 0);
    }
}

TEST(Sampler, RejectsOutOfRangeParameters)
{
    SamplingParams p;
    p.top_p = 0.f;
    EXPECT_THROW(Sampler {p}, iris::Error);
    p = {};
    p.temperature = -1.f;
    EXPECT_THROW(Sampler {p}, iris::Error);
    p = {};
    p.max_new_tokens = 0;
    EXPECT_THROW(Sampler {p}, iris::Error);
    p = {};
    p.stop = {""};
    EXPECT_THROW(Sampler {p}, iris::Error);
}
