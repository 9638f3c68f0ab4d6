// Batched steps (InternVL::forward_batch): several sequences, each with its own cache, position
// and KV type, starting and ending at different steps, get bit for bit the logits they get
// decoded alone; and bad batches are refused before any cache changes.
#include "model/model.h"
#include "tests/golden.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace iris::test {
namespace {

using model::BatchItem;
using model::InternVL;
using model::KvCache;
using model::KvCacheOptions;
using model::KvType;

// A request as a scheduler sees it: a prompt that joins the batch at step `start`, then greedy
// tokens until `n_gen` are made.
struct Stream
{
    std::vector<int32_t> prompt;
    KvCacheOptions kv;
    int start = 0;
    int n_gen = 0;
};

// Every logit row a stream produced: the prompt's last, then one per generated token.
using Logits = std::vector<std::vector<float>>;

int32_t argmax(std::span<const float> v)
{
    return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

Logits alone(const InternVL& net, const Stream& s)
{
    auto cache = net.new_cache(s.kv);
    Logits out;
    auto logits = net.forward(*cache, s.prompt, {}, -1);
    out.emplace_back(logits.begin(), logits.end());
    for (int i = 1; i < s.n_gen; ++i) {
        const int32_t next = argmax(logits);
        logits = net.forward(*cache, std::span(&next, 1), {}, -1);
        out.emplace_back(logits.begin(), logits.end());
    }
    return out;
}

std::vector<Logits> batched(const InternVL& net, const std::vector<Stream>& streams)
{
    auto batch = net.new_batch();
    const size_t vocab = size_t(net.config().llm.vocab_size);
    std::vector<std::unique_ptr<KvCache>> caches;
    for (const Stream& s : streams) caches.push_back(net.new_cache(s.kv));
    std::vector<Logits> out(streams.size());
    std::vector<int32_t> next(streams.size());
    for (int step = 0;; ++step) {
        std::vector<BatchItem> items;
        std::vector<size_t> who;
        for (size_t i = 0; i < streams.size(); ++i) {
            const Stream& s = streams[i];
            if (step < s.start || int(out[i].size()) >= s.n_gen) continue;
            items.push_back({caches[i].get(),
                             step == s.start ? std::span<const int32_t>(s.prompt)
                                             : std::span<const int32_t>(&next[i], 1)});
            who.push_back(i);
        }
        if (items.empty()) {
            bool waiting = false;
            for (const Stream& s : streams) waiting |= step < s.start;
            if (!waiting) break;
            continue;
        }
        const auto logits = net.forward_batch(*batch, items);
        EXPECT_EQ(logits.size(), items.size() * vocab);
        for (size_t j = 0; j < who.size(); ++j) {
            const auto row = logits.subspan(j * vocab, vocab);
            out[who[j]].emplace_back(row.begin(), row.end());
            next[who[j]] = argmax(row);
        }
    }
    return out;
}

std::vector<int32_t> ids(int n, int32_t first, int32_t vocab)
{
    std::vector<int32_t> out(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) out[size_t(i)] = (first + 37 * i) % vocab;
    return out;
}

// Six streams over every cache type, prompts of 1 to 20 tokens (beside, within and past
// Backend::kExactRows rows), joining at steps 0 to 4 and leaving at different steps, so that
// batches of 1 to 6 sequences mix prompts with decoding.
void expect_batches_match_alone(const InternVL& net)
{
    const int32_t v = net.config().llm.vocab_size;
    KvCacheOptions skvq {KvType::skvq, KvType::skvq, 16};
    skvq.skvq.window = 8;
    skvq.skvq.sink = 2;
    const std::vector<Stream> streams = {
        {ids(5, 11, v), {}, 0, 9},
        {ids(20, 3, v), {KvType::f16, KvType::f16, 16}, 0, 6},
        {ids(1, 7, v), {KvType::q8, KvType::q4, 16}, 1, 12},
        {ids(9, 29, v), {KvType::q4, KvType::q4, 64}, 2, 4},
        {ids(3, 5, v), skvq, 2, 14},
        {ids(12, 17, v), {}, 4, 3},
    };
    const std::vector<Logits> together = batched(net, streams);
    for (size_t i = 0; i < streams.size(); ++i) {
        SCOPED_TRACE("stream " + std::to_string(i));
        const Logits want = alone(net, streams[i]);
        ASSERT_EQ(together[i].size(), want.size());
        for (size_t t = 0; t < want.size(); ++t)
            ASSERT_EQ(
                0,
                std::memcmp(together[i][t].data(), want[t].data(), want[t].size() * sizeof(float)))
                << "logits of step " << t << " differ";
    }
}

class BatchGolden : public testing::TestWithParam<std::string>
{
};

TEST_P(BatchGolden, EverySequenceGetsTheLogitsItGetsAlone)
{
    IRIS_REQUIRE_GOLDEN();
    // "name" or "name:quantize": the golden tiny models as stored (f32) and quantized at load.
    const std::string param = GetParam();
    const size_t colon = param.find(':');
    model::LoadOptions options;
    if (colon != std::string::npos) options.quantize = param.substr(colon + 1);
    const auto net = InternVL::load(golden_dir() + "/models/" + param.substr(0, colon), options);
    expect_batches_match_alone(*net);
}

INSTANTIATE_TEST_SUITE_P(Models, BatchGolden,
                         testing::Values("tiny_qwen2", "tiny_internlm2", "tiny_qwen2:q8_0",
                                         "tiny_internlm2:q4_K_M", "tiny_qwen2_bf16"),
                         [](const testing::TestParamInfo<std::string>& param) {
                             std::string name = param.param;
                             std::replace(name.begin(), name.end(), ':', '_');
                             return name;
                         });

TEST(Batch, TheDemoModelsSequencesGetTheLogitsTheyGetAlone)
{
    const auto net = InternVL::load(std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo");
    expect_batches_match_alone(*net);
}

TEST(Batch, BadBatchesAreRefusedBeforeAnyCacheChanges)
{
    IRIS_REQUIRE_GOLDEN();
    const auto net = InternVL::load(golden_dir() + "/models/tiny_qwen2");
    auto batch = net->new_batch();
    auto a = net->new_cache(), b = net->new_cache();
    const std::vector<int32_t> good = {1, 2, 3}, bad = {1, net->config().llm.vocab_size};
    auto refused = [&](std::vector<BatchItem> items, const char* says) {
        try {
            net->forward_batch(*batch, items);
            ADD_FAILURE() << "accepted; expected " << says;
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
        }
        EXPECT_EQ(a->n_tokens(), 0);
        EXPECT_EQ(b->n_tokens(), 0);
    };
    refused({}, "no items");
    refused({{a.get(), good}, {b.get(), {}}}, "item 1 has no tokens");
    refused({{a.get(), good}, {nullptr, good}}, "item 1 has no cache");
    refused({{a.get(), good}, {a.get(), good}}, "items 0 and 1 share a cache");
    refused({{a.get(), good}, {b.get(), bad}}, "outside the vocabulary");
    // Images are checked too: one <IMG_CONTEXT> id and no visual rows.
    refused({{a.get(), good}, {b.get(), good, {}, 2}}, "visual tokens");

    const auto logits = net->forward_batch(*batch, {{{a.get(), good}, {b.get(), good}}});
    EXPECT_EQ(logits.size(), 2 * size_t(net->config().llm.vocab_size));
    EXPECT_EQ(a->n_tokens(), 3);
    EXPECT_EQ(b->n_tokens(), 3);
    EXPECT_GT(batch->bytes(), 0u);
}

} // namespace
} // namespace iris::test
