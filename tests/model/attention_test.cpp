// The decoding attention kernel (model/cpu/attention-decode.h), each instruction set this CPU
// runs, against attention in double over the rows the cache holds (dequantized): every KV type
// for keys and values, head dims 16..128, GQA groups of 1 to 9 query heads, depths on and off
// the block and tile boundaries, blocks of several sizes, and token ranges split into parts.
#include "kv-reference.h"
#include "model/cpu/attention-decode.h"
#include "model/network-impl.h"

#include <gtest/gtest.h>

namespace iris::test {
namespace {

using model::KvType;
namespace cpu = model::cpu;

std::vector<const cpu::DecodeAttention*> kernel_sets()
{
    std::vector<const cpu::DecodeAttention*> out;
    for (const char* isa : {"avx512", "avx2"})
        if (const cpu::DecodeAttention* k = cpu::decode_attention_named(isa)) out.push_back(k);
    return out;
}

// The rows `type` stores for x [n, width] (rows of d values), back in f32.
std::vector<float> through(KvType type, const std::vector<float>& x, int d)
{
    std::vector<float> out(x.size());
    std::vector<uint8_t> row(cpu::kv_row_bytes(type, d));
    for (size_t r = 0; r < x.size() / size_t(d); ++r) {
        cpu::kv_quantize_row(type, x.data() + r * size_t(d), d, row.data());
        cpu::kv_dequantize_rows(type, row.data(), 1, d, out.data() + r * size_t(d));
    }
    return out;
}

struct Shape
{
    int n_heads, n_kv;
};

void check_decode(KvType kt, KvType vt, int d, Shape shape, int block, float q_mul)
{
    const int n_total = 1100;
    const float scale = 1.f / std::sqrt(float(d));
    const int width = shape.n_kv * d;
    const auto k = random_rows(n_total, width, 11), v = random_rows(n_total, width, 12);
    auto q = random_rows(n_total, shape.n_heads * d, 13);
    for (float& x : q) x *= q_mul;
    model::KvCache::Impl cache(1, shape.n_kv, d, 32768, {kt, vt, block});
    cache.reserve(n_total);
    cache.store(0, 0, n_total, k.data(), v.data());
    const auto kd = through(kt, k, d), vd = through(vt, v, d);
    for (const cpu::DecodeAttention* set : kernel_sets()) {
        ASSERT_TRUE(set->supports(kt, vt, d));
        // 1 and 255 tokens: one part; 1100: two parts of whole tiles on two threads.
        for (int n_keys : {1, 15, 63, 64, 65, 100, 255, 513, 1100}) {
            SCOPED_TRACE(std::string(set->isa) + " keys " + std::to_string(n_keys));
            const int n_past = n_keys - 1;
            std::vector<float> out(size_t(shape.n_heads * d)), parts;
            const float* qn = q.data() + size_t(n_past) * size_t(shape.n_heads * d);
            ASSERT_TRUE(cpu::attention_decode(set, qn, shape.n_heads, shape.n_kv, d,
                                              cache.runs(0, n_keys), n_keys, scale, out.data(),
                                              parts));
            const std::vector<float> qs(qn, qn + out.size());
            // fp32 sums of up to 1100 products against the reference's double.
            EXPECT_LE(relative_error(out,
                                     reference_attention(qs, kd, vd, 1, n_past, shape.n_heads,
                                                         shape.n_kv, d, scale)),
                      1e-5);
        }
    }
}

TEST(DecodeAttention, ThisCpuHasAKernelSet)
{
    if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2";
    EXPECT_NE(cpu::decode_attention(), nullptr);
    EXPECT_FALSE(kernel_sets().empty());
}

TEST(DecodeAttention, EveryTypeMatchesDoubleAttentionOverTheStoredRows)
{
    const KvType types[] = {KvType::f32, KvType::f16, KvType::q8, KvType::q4};
    for (KvType t : types)
        for (int d : {16, 32, 64, 128})
            for (int block : {16, 64}) {
                SCOPED_TRACE(std::string(model::kv_type_name(t)) + " D " + std::to_string(d)
                             + " block " + std::to_string(block));
                check_decode(t, t, d, {14, 2}, block, 1.f);
            }
}

TEST(DecodeAttention, GroupsOfOneToNineQueryHeadsAndSplitTokens)
{
    // One KV head on two threads splits its tokens; 9 rows take two passes of 8.
    for (Shape s : {Shape {1, 1}, Shape {2, 1}, Shape {7, 1}, Shape {9, 1}, Shape {4, 2}})
        for (int d : {32, 64})
            for (float q_mul : {1.f, 0.05f}) {
                SCOPED_TRACE(std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv) + " D "
                             + std::to_string(d) + " q x" + std::to_string(q_mul));
                check_decode(KvType::q8, KvType::q8, d, s, 64, q_mul);
                check_decode(KvType::f16, KvType::f16, d, s, 48, q_mul);
            }
}

TEST(DecodeAttention, MixedKeyAndValueTypesAndOddBlocks)
{
    const std::pair<KvType, KvType> types[] = {{KvType::q8, KvType::f16},
                                               {KvType::f16, KvType::q4},
                                               {KvType::f32, KvType::q8},
                                               {KvType::q4, KvType::f32}};
    for (auto [kt, vt] : types)
        for (int block : {7, 100}) {
            SCOPED_TRACE(std::string(model::kv_type_name(kt)) + "/" + model::kv_type_name(vt)
                         + " block " + std::to_string(block));
            check_decode(kt, vt, 64, {14, 2}, block, 0.3f);
            check_decode(kt, vt, 128, {6, 2}, block, 0.3f);
        }
}

TEST(DecodeAttention, OtherHeadDimsAndSkvqAreLeftToTheGeneralPath)
{
    for (const cpu::DecodeAttention* set : kernel_sets()) {
        EXPECT_FALSE(set->supports(KvType::f16, KvType::f16, 80));
        EXPECT_FALSE(set->supports(KvType::skvq, KvType::skvq, 64));
    }
}

} // namespace
} // namespace iris::test
