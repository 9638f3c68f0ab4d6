// The paged KV cache and its storage types: the q8_0 / q4_0 / f16 row formats against
// hand-computed values, block allocation and freeing, attention reading quantized blocks, and
// greedy decoding of the golden prompts with each type.
#include "kv-reference.h"
#include "model/cpu/ops.h"
#include "model/network-impl.h"
#include "network-golden.h"
#include "reasoning/engine.h"

#include <cmath>
#include <cstring>
#include <random>

namespace iris::test {
namespace {

using model::KvCacheOptions;
using model::KvType;
namespace cpu = model::cpu;

std::vector<uint8_t> quantize(KvType type, const std::vector<float>& x)
{
    std::vector<uint8_t> row(cpu::kv_row_bytes(type, int(x.size())));
    cpu::kv_quantize_row(type, x.data(), int(x.size()), row.data());
    return row;
}

std::vector<float> dequantize(KvType type, const std::vector<uint8_t>& row, int head_dim)
{
    std::vector<float> x(static_cast<size_t>(head_dim));
    cpu::kv_dequantize_rows(type, row.data(), 1, head_dim, x.data());
    return x;
}

uint16_t u16_at(const std::vector<uint8_t>& row, size_t at)
{
    return uint16_t(row[at] | (row[at + 1] << 8));
}

TEST(KvFormats, GroupsAre32ChannelsWithinAHeadAndRowsHaveTheLlamaCppSizes)
{
    EXPECT_EQ(cpu::kv_group_size(64), 32);
    EXPECT_EQ(cpu::kv_group_size(128), 32);
    EXPECT_EQ(cpu::kv_group_size(16), 16); // the tiny golden models
    EXPECT_EQ(cpu::kv_group_size(80), 16);
    EXPECT_EQ(cpu::kv_row_bytes(KvType::f32, 64), 256u);
    EXPECT_EQ(cpu::kv_row_bytes(KvType::f16, 64), 128u);
    EXPECT_EQ(cpu::kv_row_bytes(KvType::q8, 64), 2u * 34u); // block_q8_0: 34 bytes per 32
    EXPECT_EQ(cpu::kv_row_bytes(KvType::q4, 64), 2u * 18u); // block_q4_0: 18 bytes per 32
    EXPECT_EQ(cpu::kv_row_bytes(KvType::q8, 16), 18u);
    EXPECT_EQ(cpu::kv_row_bytes(KvType::q4, 16), 10u);
}

TEST(KvFormats, Q8RoundsHalfAwayFromZeroWithTheScaleOfTheLargestMagnitude)
{
    // max |x| = 127 gives d = 1 exactly: the codes are roundf(x).
    std::vector<float> x(32, 0.f);
    x[0] = 127.f, x[1] = 2.5f, x[2] = -2.5f, x[3] = 0.5f, x[4] = -0.5f, x[5] = 0.49f;
    x[6] = 63.5f, x[7] = -127.f;
    auto row = quantize(KvType::q8, x);
    EXPECT_EQ(u16_at(row, 0), 0x3C00); // fp16 1.0
    const int8_t want[8] = {127, 3, -3, 1, -1, 0, 64, -127};
    for (int j = 0; j < 8; ++j) EXPECT_EQ(int8_t(row[size_t(2 + j)]), want[j]) << j;
    auto back = dequantize(KvType::q8, row, 32);
    for (int j = 0; j < 8; ++j) EXPECT_EQ(back[size_t(j)], float(want[j])) << j;

    // max |x| = 1: d = 1/127 is stored as fp16 0x2008 = 0.00787353515625, and the values come
    // back through the rounded scale: 0.5·127 = 63.5 -> 64 -> 64·d.
    std::fill(x.begin(), x.end(), 0.f);
    x[0] = 0.5f, x[1] = 1.f, x[2] = -0.25f, x[3] = 0.3f;
    row = quantize(KvType::q8, x);
    EXPECT_EQ(u16_at(row, 0), 0x2008);
    EXPECT_EQ(int8_t(row[2]), 64);
    EXPECT_EQ(int8_t(row[3]), 127);
    EXPECT_EQ(int8_t(row[4]), -32);
    EXPECT_EQ(int8_t(row[5]), 38);
    back = dequantize(KvType::q8, row, 32);
    EXPECT_EQ(back[0], 0.50390625f);
    EXPECT_EQ(back[1], 0.99993896484375f);
    EXPECT_EQ(back[2], -0.251953125f);
    EXPECT_EQ(back[3], 0.2991943359375f);
}

TEST(KvFormats, Q4MapsTheLargestMagnitudeToLevelZeroAndSaturatesItsOpposite)
{
    // The largest magnitude is -8: d = -8 / -8 = 1, codes trunc(x + 8.5) capped at 15.
    std::vector<float> x(32, 0.f);
    x[0] = 0.5f, x[1] = -0.5f, x[2] = 0.49f, x[3] = -8.f, x[4] = 8.f, x[5] = 3.7f;
    x[6] = -3.7f, x[16] = 2.f;
    auto row = quantize(KvType::q4, x);
    EXPECT_EQ(u16_at(row, 0), 0x3C00);
    auto code
        = [&](int j) { return j < 16 ? row[size_t(2 + j)] & 0x0F : row[size_t(2 + j - 16)] >> 4; };
    const int want[8] = {9, 8, 8, 0, 15, 12, 4, 8};
    for (int j = 0; j < 8; ++j) EXPECT_EQ(code(j), want[j]) << j;
    EXPECT_EQ(code(16), 10); // element 16 is the high nibble of byte 0
    EXPECT_EQ(row[2], 0xA9);
    auto back = dequantize(KvType::q4, row, 32);
    const float deq[8] = {1, 0, 0, -8, 7, 4, -4, 0};
    for (int j = 0; j < 8; ++j) EXPECT_EQ(back[size_t(j)], deq[j]) << j;
    EXPECT_EQ(back[16], 2.f);

    // A tie of magnitudes keeps the first: max = +4, d = -0.5.
    std::fill(x.begin(), x.end(), 0.f);
    x[2] = 4.f, x[7] = -4.f, x[9] = 1.f, x[10] = -1.f;
    row = quantize(KvType::q4, x);
    EXPECT_EQ(u16_at(row, 0), 0xB800); // fp16 -0.5
    back = dequantize(KvType::q4, row, 32);
    EXPECT_EQ(back[2], 4.f); // level 0: (0 - 8)·(-0.5)
    EXPECT_EQ(back[7], -3.5f); // 16 saturates to 15: (15 - 8)·(-0.5)
    EXPECT_EQ(back[9], 1.f);
    EXPECT_EQ(back[10], -1.f);
    EXPECT_EQ(back[0], 0.f);
}

TEST(KvFormats, AllZeroGroupsStoreAZeroScaleAndComeBackAsZeros)
{
    const std::vector<float> zeros(64, 0.f);
    for (KvType t : {KvType::f16, KvType::q8, KvType::q4}) {
        auto row = quantize(t, zeros);
        auto back = dequantize(t, row, 64);
        for (float v : back) EXPECT_EQ(v, 0.f) << model::kv_type_name(t);
        // q4_0's d = max / -8 is -0 here, as in ggml.
        EXPECT_EQ(u16_at(row, 0), t == KvType::q4 ? 0x8000 : 0) << model::kv_type_name(t);
        EXPECT_EQ(u16_at(row, row.size() / 2), t == KvType::q4 ? 0x8000 : 0); // second group
    }
}

TEST(KvFormats, F16RoundsToNearestEvenAndDequantizesExactly)
{
    std::vector<float> x = {1.f,
                            1.f + 0x1p-11f, // halfway: to the even 1.0
                            1.f + 3 * 0x1p-11f, // halfway: to the even 1 + 2^-9
                            65504.f,
                            -2.f,
                            1e-8f, // below half the smallest subnormal
                            3e-8f, // rounds up to the smallest subnormal
                            0.f};
    auto row = quantize(KvType::f16, x);
    const uint16_t want[8] = {0x3C00, 0x3C00, 0x3C02, 0x7BFF, 0xC000, 0x0000, 0x0001, 0x0000};
    for (size_t j = 0; j < x.size(); ++j) EXPECT_EQ(u16_at(row, 2 * j), want[j]) << j;
    auto back = dequantize(KvType::f16, row, 8);
    EXPECT_EQ(back[2], 1.f + 0x1p-9f);
    EXPECT_EQ(back[3], 65504.f);
    EXPECT_EQ(back[6], 0x1p-24f);
}

TEST(KvFormats, EachGroupOfAHeadRowHasItsOwnScale)
{
    std::vector<float> x(64);
    for (int j = 0; j < 32; ++j) x[size_t(j)] = 0.001f * float(j - 16); // small group
    for (int j = 32; j < 64; ++j) x[size_t(j)] = 100.f * float(j - 48); // large group
    for (KvType t : {KvType::q8, KvType::q4}) {
        auto back = dequantize(t, quantize(t, x), 64);
        const double step = t == KvType::q8 ? 1.0 / 127 : 1.0 / 8; // of the group's max |x|
        for (int j = 0; j < 64; ++j) {
            const double amax = j < 32 ? 0.016 : 1600.0;
            EXPECT_LE(std::fabs(back[size_t(j)] - x[size_t(j)]), step * amax * 1.01)
                << model::kv_type_name(t) << " " << j;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks

TEST(KvBlocks, GrowingNeverMovesOrRewritesEarlierBlocks)
{
    model::KvCache::Impl cache(2, 2, 64, 32768, {KvType::q8, KvType::q4, 16});
    auto k = random_rows(100, 128, 1), v = random_rows(100, 128, 2);
    cache.reserve(16);
    ASSERT_EQ(cache.blocks[0].size(), 1u);
    for (int l = 0; l < 2; ++l) cache.store(l, 0, 16, k.data(), v.data());
    const uint8_t* first = cache.blocks[1][0].as<uint8_t>();
    std::vector<uint8_t> saved(first, first + cache.block_bytes);
    for (int at = 16; at < 100; at += 12) {
        const int n = std::min(12, 100 - at);
        cache.reserve(at + n);
        for (int l = 0; l < 2; ++l)
            cache.store(l, at, n, k.data() + size_t(at) * 128, v.data() + size_t(at) * 128);
    }
    EXPECT_EQ(cache.blocks[1].size(), 7u); // ceil(100 / 16)
    EXPECT_EQ(cache.blocks[1][0].as<uint8_t>(), first);
    EXPECT_EQ(std::memcmp(first, saved.data(), saved.size()), 0);
}

TEST(KvBlocks, TruncateFreesTheBlocksPastTheNewEndAndBytesFollow)
{
    model::KvCache::Impl cache(2, 2, 64, 32768, {KvType::f16, KvType::f16, 16});
    cache.reserve(100);
    cache.n_tokens = 100;
    const size_t full = cache.bytes();
    EXPECT_GE(full, 2 * 7 * cache.block_bytes);
    cache.truncate(33); // tokens 32 and 33 keep block 2
    EXPECT_EQ(cache.blocks[0].size(), 3u);
    EXPECT_EQ(full - cache.bytes(), 2 * 4 * cache.block_bytes);
    cache.truncate(32);
    EXPECT_EQ(cache.blocks[0].size(), 2u);
    cache.truncate(0);
    EXPECT_TRUE(cache.blocks[0].empty() && cache.blocks[1].empty());
    EXPECT_EQ(full - cache.bytes(), 2 * 7 * cache.block_bytes);
}

TEST(KvBlocks, BytesPerTokenCountEveryLayerHeadAndScale)
{
    auto per_token = [](KvType k, KvType v) {
        return model::KvCache::Impl(2, 2, 64, 32768, {k, v, 64}).bytes_per_token();
    };
    EXPECT_EQ(per_token(KvType::f32, KvType::f32), 2u * 2 * (256 + 256));
    EXPECT_EQ(per_token(KvType::f16, KvType::f16), 2u * 2 * (128 + 128));
    EXPECT_EQ(per_token(KvType::q8, KvType::q8), 2u * 2 * (68 + 68));
    EXPECT_EQ(per_token(KvType::q4, KvType::q4), 2u * 2 * (36 + 36));
    EXPECT_EQ(per_token(KvType::q8, KvType::q4), 2u * 2 * (68 + 36));
}

TEST(KvBlocks, BadBlockSizesAndTypeNamesAreRejected)
{
    EXPECT_THROW(model::KvCache::Impl(1, 1, 64, 32768, {KvType::f32, KvType::f32, 0}), Error);
    EXPECT_THROW(model::KvCache::Impl(1, 1, 64, 32768, {KvType::f32, KvType::f32, 65537}), Error);
    for (KvType t : {KvType::f32, KvType::f16, KvType::q8, KvType::q4})
        EXPECT_EQ(model::kv_type_from_name(model::kv_type_name(t)), t);
    EXPECT_THROW(model::kv_type_from_name("q5"), Error);
    EXPECT_THROW(model::kv_type_from_name(""), Error);
}

// ---------------------------------------------------------------------------------------------
// Attention over the blocks

TEST(KvAttention, QuantizedBlocksGiveTheAttentionOfTheirDequantizedValues)
{
    const int n_heads = 6, n_kv = 2, d = 64, n_total = 70;
    const float scale = 0.125f;
    const auto k = random_rows(n_total, n_kv * d, 3), v = random_rows(n_total, n_kv * d, 4);
    const auto q = random_rows(n_total, n_heads * d, 5);
    const std::pair<KvType, KvType> types[]
        = {{KvType::f32, KvType::f32}, {KvType::f16, KvType::f16}, {KvType::q8, KvType::q8},
           {KvType::q4, KvType::q4},   {KvType::q8, KvType::q4},   {KvType::f32, KvType::q4}};
    for (auto [kt, vt] : types) {
        SCOPED_TRACE(std::string(model::kv_type_name(kt)) + "/" + model::kv_type_name(vt));
        // Blocks of 16 tokens: 70 tokens end in the middle of the fifth block.
        model::KvCache::Impl cache(1, n_kv, d, 32768, {kt, vt, 16});
        cache.reserve(n_total);
        cache.store(0, 0, n_total, k.data(), v.data());
        // The values attention should see: each row through its format and back.
        std::vector<float> kd(k.size()), vd(v.size());
        for (size_t r = 0; r < k.size() / size_t(d); ++r) {
            std::vector<uint8_t> row(cpu::kv_row_bytes(kt, d) + cpu::kv_row_bytes(vt, d));
            cpu::kv_quantize_row(kt, k.data() + r * d, d, row.data());
            cpu::kv_dequantize_rows(kt, row.data(), 1, d, kd.data() + r * d);
            cpu::kv_quantize_row(vt, v.data() + r * d, d, row.data());
            cpu::kv_dequantize_rows(vt, row.data(), 1, d, vd.data() + r * d);
        }
        // A prefill chunk crossing two block boundaries, and one decode step.
        for (auto [n_past, n_new] : {std::pair {29, 41}, std::pair {69, 1}}) {
            // fp32 rounding of outputs up to ~10 (the reference sums in double).
            EXPECT_LE(attention_error(q, kd, vd, cache.runs(0, n_past + n_new), n_past, n_new,
                                      n_heads, n_kv, d, scale),
                      1e-5)
                << n_past << "+" << n_new;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The golden prompts end to end

struct Decode
{
    std::vector<int32_t> tokens; // greedy
    std::vector<float> forced_logits; // [16, V] with the official greedy tokens fed back
};

Decode decode(const model::InternVL& net, const KvCacheOptions& kv, const std::vector<int32_t>& ids,
              const std::vector<float>& visual, int32_t img_ctx,
              const std::vector<int32_t>& official)
{
    Decode out;
    for (bool forced : {false, true}) {
        auto cache = net.new_cache(kv);
        auto logits = net.forward(*cache, ids, visual, img_ctx);
        for (size_t i = 0; i < official.size(); ++i) {
            const int32_t best = argmax(logits);
            if (forced)
                out.forced_logits.insert(out.forced_logits.end(), logits.begin(), logits.end());
            else
                out.tokens.push_back(best);
            int32_t next = forced ? official[i] : best;
            if (i + 1 < official.size()) logits = net.forward(*cache, {&next, 1}, {}, img_ctx);
        }
    }
    return out;
}

TEST(KvGolden, F16AndQ8DecodeTheOfficialGreedyTokensAndQ4StaysClose)
{
    IRIS_REQUIRE_GOLDEN();
    const auto& index = golden_index();
    const auto pre
        = read_json(golden_dir() + "/" + index["cases"]["preprocess"]["json"].get<std::string>());
    for (const auto& [name, cs] : index["cases"]["full"].items()) {
        SCOPED_TRACE(name);
        auto net = golden_model(cs["model"].get<std::string>());
        GoldenFile ref(cs["file"].get<std::string>());
        const int32_t img_ctx = cs["img_context_token_id"].get<int32_t>();
        const auto ids = ref.ids("input_ids");
        const auto official = ref.ids("greedy_tokens");
        const auto official_logits = ref.f32("greedy_step_logits");
        std::string image = std::filesystem::path(cs["image"].get<std::string>()).stem().string();
        auto tiles = tile_list(pre.at(image).at("tiles"));
        auto visual = net->encode_images(tile_pixel_values(tiles), int(tiles.size()));

        // f32 in small blocks is the reference path, still within the fp32 tolerance.
        Decode f32 = decode(*net, {KvType::f32, KvType::f32, 16}, ids, visual, img_ctx, official);
        EXPECT_EQ(f32.tokens, official);
        EXPECT_LE(max_abs_diff(f32.forced_logits, official_logits), kTolerance);

        // Measured, of the largest logit (tiny_qwen2 / tiny_internlm2): f16 8.3e-5 / 4.0e-5,
        // q8 1.8e-3 / 1.2e-3, q4 3.5e-2 / 1.3e-2; the bounds are about twice the larger. q4
        // moves the logits by more than the tiny models' top-1 margins (0.031 / 0.010), so its
        // greedy tokens may differ.
        const struct
        {
            KvType k, v;
            double bound;
            bool same_tokens;
        } cases[] = {{KvType::f16, KvType::f16, 2e-4, true},
                     {KvType::q8, KvType::q8, 4e-3, true},
                     {KvType::q4, KvType::q4, 7e-2, false}};
        for (const auto& c : cases) {
            const std::string type = model::kv_type_name(c.k);
            Decode got = decode(*net, {c.k, c.v, 64}, ids, visual, img_ctx, official);
            const double err = relative_error(got.forced_logits, official_logits);
            int agree = 0;
            for (size_t i = 0; i < official.size(); ++i) agree += got.tokens[i] == official[i];
            std::printf("[ golden   ] kv/%s %s: logits off by %.2g of the largest, %d of %zu "
                        "greedy tokens as the official\n",
                        name.c_str(), type.c_str(), err, agree, official.size());
            EXPECT_LE(err, c.bound) << type;
            if (c.same_tokens) {
                EXPECT_EQ(got.tokens, official) << type;
            }
        }
    }
}

TEST(KvGolden, SessionsTakeTheEngineDefaultOrTheirOwnCacheType)
{
    IRIS_REQUIRE_GOLDEN();
    reasoning::EngineOptions eo;
    eo.kv_cache = {KvType::q8, KvType::q4, 32};
    auto engine = reasoning::Engine::load(golden_dir() + "/models/tiny_qwen2", eo);
    reasoning::Session by_default(*engine);
    EXPECT_EQ(by_default.cache().options().k_type, KvType::q8);
    EXPECT_EQ(by_default.cache().options().v_type, KvType::q4);
    EXPECT_EQ(by_default.cache().options().block_tokens, 32);
    reasoning::Session own(*engine, "", KvCacheOptions {KvType::f16, KvType::f16, 64});
    reasoning::AskOptions opts;
    opts.sampling.max_new_tokens = 4;
    own.ask("Hello", std::vector<Image> {}, opts, {});
    EXPECT_EQ(own.cache().options().k_type, KvType::f16);
    EXPECT_EQ(own.cache().bytes_per_token(), 2u * 2 * (32 + 32)); // 2 layers, 2 heads, D 16
    EXPECT_GT(own.cache().n_tokens(), 0);
}

// A copy (KvCache::assign) goes on exactly as the original does, for every type, SKVQ with
// tokens past its window and a held prompt included; a cache of other settings is refused.
TEST(KvGolden, ACopyGoesOnBitForBitAsTheOriginal)
{
    IRIS_REQUIRE_GOLDEN();
    auto net = model::InternVL::load(golden_dir() + "/models/tiny_qwen2");
    KvCacheOptions skvq {KvType::skvq, KvType::skvq, 16};
    skvq.skvq.window = 8;
    skvq.skvq.sink = 2;
    const std::vector<int32_t> prompt
        = {5, 17, 3, 99, 42, 8, 7, 61, 2, 11, 23, 4, 90, 13, 6, 77, 31, 12, 9, 50, 1, 66, 14, 38};
    const std::vector<int32_t> more = {3, 44, 21, 8, 19, 2, 7, 70, 15, 5};
    const std::vector<KvCacheOptions> types
        = {{}, {KvType::f16, KvType::q8, 16}, {KvType::q4, KvType::q4, 8}, skvq};
    for (const KvCacheOptions& kv : types) {
        for (bool held : {false, true}) {
            SCOPED_TRACE(model::kv_cache_name(kv) + (held ? ", held" : ""));
            auto original = net->new_cache(kv), copy = net->new_cache(kv);
            if (held) original->hold_quantization();
            net->forward(*original, prompt, {}, -1);
            copy->assign(*original);
            EXPECT_EQ(copy->n_tokens(), original->n_tokens());
            for (size_t i = 0; i < more.size(); ++i) {
                const std::span<const int32_t> next(&more[i], 1);
                if (i == 4) {
                    original->release_quantization();
                    copy->release_quantization();
                }
                const auto a = net->forward(*original, next, {}, -1);
                const std::vector<float> want(a.begin(), a.end());
                const auto b = net->forward(*copy, next, {}, -1);
                ASSERT_EQ(std::memcmp(want.data(), b.data(), want.size() * sizeof(float)), 0)
                    << "token " << i;
            }
        }
        auto other = net->new_cache(kv.k_type == KvType::f32 ? types[1] : types[0]);
        auto source = net->new_cache(kv);
        EXPECT_THROW(other->assign(*source), Error);
    }
}

} // namespace
} // namespace iris::test
