// The CPU backend is the oracle: every kernel of model/cpu against a straightforward reference.
// Here: products with BF16 / F16 and quantized weight matrices (model/cpu/linear-lowp.cpp,
// model/cpu/quant-dot.h).
#include "core/core.h"
#include "model/cpu/ops.h"
#include "model/cpu/quant-dot.h"
#include "model/model.h"
#include "network-golden.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

using namespace iris;
using model::WeightMatrix;
using model::cpu::WeightType;

namespace {

uint16_t f32_to_bf16_bits(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return uint16_t(u >> 16); // truncation: any bf16 value will do as a weight
}

// Random f16 bit patterns of normal numbers with magnitudes in about [2^-10, 2^5].
uint16_t random_f16_bits(std::mt19937& rng)
{
    uint32_t r = rng();
    uint16_t sign = uint16_t((r & 1u) << 15);
    uint16_t exp = uint16_t(5 + (r >> 1) % 16);
    uint16_t mant = uint16_t((r >> 8) & 0x3ff);
    return uint16_t(sign | (exp << 10) | mant);
}

struct LowpMatrix
{
    std::vector<uint16_t> bits;
    std::vector<float> widened; // the exact f32 values of `bits`
    WeightMatrix mat;
};

LowpMatrix random_matrix(WeightType type, int64_t rows, int64_t cols, std::mt19937& rng)
{
    LowpMatrix m;
    std::normal_distribution<float> normal(0.f, 1.f);
    m.bits.resize(size_t(rows * cols));
    m.widened.resize(m.bits.size());
    for (size_t i = 0; i < m.bits.size(); ++i) {
        m.bits[i] = type == WeightType::bf16 ? f32_to_bf16_bits(normal(rng)) : random_f16_bits(rng);
        m.widened[i] = type == WeightType::bf16 ? model::bf16_to_f32(m.bits[i])
                                                : model::f16_to_f32(m.bits[i]);
    }
    m.mat = {m.bits.data(), type, rows, cols};
    return m;
}

std::vector<float> random_vector(size_t n, std::mt19937& rng)
{
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> v(n);
    for (auto& x : v) x = normal(rng);
    return v;
}

// Double-precision y = x·wᵀ + b and the scale Σ|x·w| that bounds fp32 rounding error.
void reference(const std::vector<float>& x, int64_t m, int64_t ldx, const std::vector<float>& w,
               int64_t n, int64_t k, const float* bias, std::vector<double>& y,
               std::vector<double>& mag)
{
    y.assign(size_t(m * n), 0);
    mag.assign(size_t(m * n), 0);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double acc = bias ? double(bias[j]) : 0, a = bias ? std::fabs(double(bias[j])) : 0;
            for (int64_t c = 0; c < k; ++c) {
                double p = double(x[size_t(i * ldx + c)]) * double(w[size_t(j * k + c)]);
                acc += p;
                a += std::fabs(p);
            }
            y[size_t(i * n + j)] = acc;
            mag[size_t(i * n + j)] = a;
        }
}

// fp32 summation of k terms in any order: |error| <= ~k·eps·Σ|terms|; a blocked or lane-wise
// sum does far better, and 4 eps · sqrt(k) is loose enough for any sane order.
double tolerance(double mag, int64_t k)
{
    return 4.0 * 1.2e-7 * std::sqrt(double(k) + 1) * mag + 1e-30;
}

} // namespace

TEST(LowpOps, WideningIsExact)
{
    std::mt19937 rng(1);
    for (WeightType type : {WeightType::bf16, WeightType::f16}) {
        // Every 16-bit pattern, so infinities, NaNs and subnormals are covered too.
        std::vector<uint16_t> bits(65536);
        for (size_t i = 0; i < bits.size(); ++i) bits[i] = uint16_t(i);
        WeightMatrix w {bits.data(), type, 256, 256};
        std::vector<float> out(bits.size());
        // Rows 3..250 only: the start and the length are not multiples of 16.
        model::cpu::widen_rows(w, 3, 250, out.data());
        for (int64_t i = 3 * 256; i < 250 * 256; ++i) {
            float want = type == WeightType::bf16 ? model::bf16_to_f32(bits[size_t(i)])
                                                  : model::f16_to_f32(bits[size_t(i)]);
            float got = out[size_t(i - 3 * 256)];
            if (std::isnan(want)) {
                EXPECT_TRUE(std::isnan(got)) << i;
            } else {
                EXPECT_EQ(std::memcmp(&want, &got, 4), 0)
                    << (type == WeightType::bf16 ? "bf16 " : "f16 ") << std::hex << bits[size_t(i)];
            }
        }
    }
}

TEST(LowpOps, MatvecKernelMatchesTheScalarReference)
{
    std::mt19937 rng(2);
    for (WeightType type : {WeightType::bf16, WeightType::f16})
        for (int64_t k : {1, 7, 16, 17, 64, 588, 899})
            for (int64_t n : {1, 3, 4, 5, 9}) {
                LowpMatrix w = random_matrix(type, n, k, rng);
                for (int64_t m : {1, 2, 3, 4, 5, 8}) {
                    const int64_t ldx = k + 3;
                    auto x = random_vector(size_t(m * ldx), rng);
                    std::vector<double> ref, mag;
                    reference(x, m, ldx, w.widened, n, k, nullptr, ref, mag);
                    const int64_t ldy = n + 2;
                    std::vector<float> fast(size_t(m * ldy), NAN), slow(size_t(m * ldy), NAN);
                    model::cpu::matvec_rows(x.data(), m, ldx, w.mat, 0, n, fast.data(), ldy);
                    model::cpu::matvec_rows(x.data(), m, ldx, w.mat, 0, n, slow.data(), ldy, true);
                    for (int64_t i = 0; i < m; ++i)
                        for (int64_t j = 0; j < n; ++j) {
                            double want = ref[size_t(i * n + j)];
                            double tol = tolerance(mag[size_t(i * n + j)], k);
                            EXPECT_NEAR(fast[size_t(i * ldy + j)], want, tol)
                                << "k " << k << " n " << n << " m " << m;
                            EXPECT_NEAR(slow[size_t(i * ldy + j)], want, tol)
                                << "portable, k " << k << " n " << n << " m " << m;
                        }
                }
            }
}

// linear() on BF16/F16 weights — the matrix-vector path (m <= kMatvecMaxRows) and the
// widen-then-SGEMM path — against the double reference and against the f32 linear on the
// widened weights (same products, other summation order).
TEST(LowpOps, LinearMatchesTheF32PathOnWidenedWeights)
{
    std::mt19937 rng(3);
    set_default_threads(2);
    for (WeightType type : {WeightType::bf16, WeightType::f16})
        for (auto [n, k] :
             {std::pair<int64_t, int64_t> {5, 33}, {130, 96}, {700, 64}, {1000, 200}, {64, 588}})
            for (int64_t m : {int64_t(1), int64_t(2), int64_t(4), model::cpu::kMatvecMaxRows,
                              model::cpu::kMatvecMaxRows + 1, int64_t(37)}) {
                LowpMatrix w = random_matrix(type, n, k, rng);
                auto bias = random_vector(size_t(n), rng);
                const int64_t ldx = k + 5, ldy = n + 7;
                auto x = random_vector(size_t(m * ldx), rng);
                std::vector<double> ref, mag;
                reference(x, m, ldx, w.widened, n, k, bias.data(), ref, mag);
                std::vector<float> got(size_t(m * ldy), NAN), f32(size_t(m * ldy), NAN);
                model::cpu::linear(x.data(), m, ldx, w.mat, bias.data(), got.data(), ldy);
                model::cpu::linear(x.data(), m, k, ldx, w.widened.data(), n, bias.data(),
                                   f32.data(), ldy);
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = 0; j < n; ++j) {
                        double want = ref[size_t(i * n + j)];
                        double tol = tolerance(mag[size_t(i * n + j)], k);
                        ASSERT_NEAR(got[size_t(i * ldy + j)], want, tol)
                            << "n " << n << " k " << k << " m " << m;
                        ASSERT_NEAR(got[size_t(i * ldy + j)], f32[size_t(i * ldy + j)], 2 * tol)
                            << "n " << n << " k " << k << " m " << m;
                    }
                // Padding between rows of y is left alone.
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = n; j < ldy && i * ldy + j < int64_t(got.size()); ++j)
                        ASSERT_TRUE(std::isnan(got[size_t(i * ldy + j)]));
            }
}

// F32 weight matrices: more than kMatvecMaxRows rows are the f32 linear (cblas_sgemm); fewer
// take the matrix-vector kernel, which gives each row the bits it has alone, the same product
// summed in another order.
TEST(LowpOps, F32WeightMatrixIsTheF32LinearOrTheMatvecKernel)
{
    std::mt19937 rng(4);
    const int64_t n = 300, k = 80;
    for (int64_t m : {1, 3, 8, 9, 20}) {
        SCOPED_TRACE(m);
        auto w = random_vector(size_t(n * k), rng);
        auto x = random_vector(size_t(m * k), rng);
        const WeightMatrix wm = WeightMatrix::f32(w.data(), n, k);
        std::vector<float> a(size_t(m * n)), b(size_t(m * n)), c(size_t(m * n));
        model::cpu::linear(x.data(), m, wm, nullptr, a.data());
        model::cpu::linear(x.data(), m, k, w.data(), n, nullptr, b.data());
        if (m > model::cpu::kMatvecMaxRows) {
            EXPECT_EQ(a, b);
            continue;
        }
        model::cpu::matvec_rows(x.data(), m, k, wm, 0, n, c.data(), n);
        EXPECT_EQ(a, c);
        for (size_t i = 0; i < a.size(); ++i)
            EXPECT_NEAR(a[i], b[i], 1e-5f * (1.f + std::fabs(b[i]))) << i;
    }
}

// The whole network on BF16 weights in place: tiny_qwen2_bf16 stores exactly the values of
// tiny_qwen2 (every one representable in bf16), so the ViT and mlp1 — whose products run on the
// bf16 matrices, both the matrix-vector and the widen-then-SGEMM paths — must give the f32
// twin's features up to fp32 reassociation noise. (llm_test checks the LLM's logits.)
TEST(LowpOps, Bf16CheckpointEncodesImagesLikeItsF32Twin)
{
    IRIS_REQUIRE_GOLDEN();
    const std::string bf16_dir = "models/tiny_qwen2_bf16";
    if (!std::filesystem::exists(test::golden_dir() + "/" + bf16_dir))
        GTEST_SKIP() << "no " << bf16_dir;
    auto f32 = test::golden_model("models/tiny_qwen2");
    auto bf16 = test::golden_model(bf16_dir);
    // Matrices stay mapped in bf16: less owned memory than the f32 twin's total.
    EXPECT_GT(bf16->weight_bytes_mapped(), bf16->weight_bytes_owned());
    const auto& c = f32->config();
    const int64_t s = c.force_image_size;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    const int n_tiles = 2;
    std::vector<float> pixels(size_t(n_tiles * c.vision.num_channels * s * s));
    for (auto& p : pixels) p = u(rng);
    auto want = f32->encode_images(pixels, n_tiles);
    auto got = bf16->encode_images(pixels, n_tiles);
    ASSERT_EQ(got.size(), want.size());
    double max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(double(want[i])));
        max_diff = std::max(max_diff, std::fabs(double(got[i]) - double(want[i])));
    }
    EXPECT_LE(max_diff, 1e-4 * std::max(1.0, max_ref)) << "max |ref| " << max_ref;
    std::printf("ViT+mlp1 bf16 vs f32: max |diff| %.3g, max |ref| %.3g\n", max_diff, max_ref);
}

// ---------------------------------------------------------------------------------------------
// Quantized weights

namespace {

struct QuantMatrix
{
    std::vector<uint8_t> bytes;
    std::vector<float> values; // the dequantized weights: what every product must use
    WeightMatrix mat;
};

QuantMatrix random_quant_matrix(WeightType type, int64_t rows, int64_t cols, std::mt19937& rng)
{
    QuantMatrix q;
    const size_t rb = model::cpu::weight_row_bytes(type, cols);
    q.bytes.resize(size_t(rows) * rb);
    q.values.resize(size_t(rows * cols));
    auto w = random_vector(size_t(rows * cols), rng);
    for (int64_t r = 0; r < rows; ++r) {
        model::cpu::quantize_row(type, w.data() + r * cols, cols, q.bytes.data() + size_t(r) * rb);
        model::cpu::dequantize_row(type, q.bytes.data() + size_t(r) * rb, cols,
                                   q.values.data() + r * cols);
    }
    q.mat = {q.bytes.data(), type, rows, cols};
    return q;
}

// The m activation rows of x (stride ldx) as the int8 kernels see them, packed into rows of k:
// per block of 32, d = max|x| / 127 and q = round-half-even(x · (127 / max|x|)), both in f32
// (quant-dot-impl.h).
std::vector<float> int8_activations(const std::vector<float>& x, int64_t m, int64_t ldx, int64_t k)
{
    std::vector<float> out(static_cast<size_t>(m * k));
    for (int64_t i = 0; i < m; ++i)
        for (int64_t b = 0; b < k; b += 32) {
            const float* xb = x.data() + i * ldx + b;
            float amax = 0;
            for (int c = 0; c < 32; ++c) amax = std::max(amax, std::fabs(xb[c]));
            const float d = amax < 1e-30f ? 0.f : amax / 127.f;
            const float id = d == 0.f ? 0.f : 127.f / amax;
            for (int c = 0; c < 32; ++c)
                out[size_t(i * k + b + c)] = d * std::nearbyint(xb[c] * id);
        }
    return out;
}

// One matvec of kernel set q (named isa) on random n × k weights of `type` and m activation
// rows, against a double-precision product of the dequantized weights with the activations
// quantized as the kernels quantize them: only the f32 summation may differ. Rows before r0
// are left alone.
void check_int8_matvec(const model::cpu::QuantKernels* q, const char* isa, WeightType type,
                       int64_t n, int64_t k, int64_t m, std::mt19937& rng)
{
    QuantMatrix w = random_quant_matrix(type, n, k, rng);
    const int64_t ldx = k + 3, ldy = n + 2;
    auto x = random_vector(size_t(m * ldx), rng);
    std::vector<uint8_t> acts_buf(size_t(m) * model::cpu::act_row_bytes(k) + 64);
    auto* acts
        = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(acts_buf.data()) + 63) / 64 * 64);
    q->prepare(type, x.data(), m, ldx, k, acts);
    std::vector<float> y(size_t(m * ldy), NAN);
    const int64_t r0 = n > 4 ? 2 : 0, r1 = n;
    q->matvec(type, acts, m, k, w.bytes.data(), w.mat.row_bytes(), r0, r1, y.data(), ldy);
    std::vector<double> want, mag;
    reference(int8_activations(x, m, ldx, k), m, k, w.values, n, k, nullptr, want, mag);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const float got = y[size_t(i * ldy + j)];
            if (j < r0) {
                ASSERT_TRUE(std::isnan(got));
                continue;
            }
            ASSERT_NEAR(got, want[size_t(i * n + j)], tolerance(mag[size_t(i * n + j)], k))
                << isa << " " << model::cpu::weight_type_name(type) << " n " << n << " k " << k
                << " m " << m << " row " << j;
        }
}

} // namespace

namespace {

// Every kernel set this CPU runs, on the same inputs (check_int8_matvec), for each of `types`
// at each [n, k] and several activation rows.
void check_int8_kernels(std::initializer_list<WeightType> types,
                        std::initializer_list<std::pair<int64_t, int64_t>> shapes, uint32_t seed)
{
    std::mt19937 rng(seed);
    int sets = 0;
    for (const char* isa : {"avx512-vnni", "avx2"}) {
        const model::cpu::QuantKernels* q = model::cpu::quant_kernels_named(isa);
        if (!q) {
            std::printf("%s: not on this CPU\n", isa);
            continue;
        }
        ++sets;
        for (WeightType type : types) {
            ASSERT_TRUE(q->supports(type));
            for (auto [n, k] : shapes)
                for (int64_t m : {1, 2, 3, 4, 5, 8})
                    ASSERT_NO_FATAL_FAILURE(check_int8_matvec(q, isa, type, n, k, m, rng));
        }
    }
    EXPECT_GT(sets, 0) << "no int8 kernel set runs on this CPU";
}

} // namespace

// The 32-value block types: odd block counts, several activation rows, row subranges.
TEST(QuantOps, Int8KernelsComputeTheProductOfTheQuantizedActivations)
{
    check_int8_kernels({WeightType::q8_0, WeightType::q4_0, WeightType::q4_1, WeightType::q5_0,
                        WeightType::q5_1, WeightType::iq4_nl},
                       {{3, 32}, {17, 96}, {70, 896}, {9, 4864}}, 11);
}

// The k-quants (q4_K, q5_K: 32-value sub-blocks with scales and mins; q6_K: 16-value
// sub-blocks) the same way, over one and several super-blocks of 256: their rows are whole
// super-blocks (a width such as 896 has no q4_K row; llama-quantize stores those tensors in
// another type, and weight_row_bytes rejects it).
TEST(QuantOps, Int8KernelsComputeTheProductOfTheQuantizedActivationsForKQuants)
{
    for (WeightType type : {WeightType::q4_K, WeightType::q5_K, WeightType::q6_K})
        EXPECT_THROW(model::cpu::weight_row_bytes(type, 896), Error);
    check_int8_kernels({WeightType::q4_K, WeightType::q5_K, WeightType::q6_K},
                       {{3, 256}, {17, 512}, {9, 2304}, {7, 4864}}, 16);
}

// The prompt-sized product (gemm: tiles of 4 weight rows against groups of 4 activation rows)
// of every kernel set that has one, for every type it takes, against the same double-precision
// reference: row counts that fill no whole group or tile, several blocks of weight rows, an odd
// number of blocks (of super-blocks for the k-quants).
TEST(QuantOps, Int8GemmComputesTheProductOfTheQuantizedActivations)
{
    std::mt19937 rng(14);
    int sets = 0;
    for (const char* isa : {"avx512-vnni", "avx2"}) {
        const model::cpu::QuantKernels* q = model::cpu::quant_kernels_named(isa);
        if (!q || !q->gemm) continue;
        ++sets;
        for (int t = 0; t < model::cpu::kWeightTypeCount; ++t) {
            const auto type = WeightType(t);
            if (!q->supports(type)) continue;
            using Shape = std::pair<int64_t, int64_t>;
            const bool k_quant = model::cpu::weight_type_info(type).block == 256;
            for (auto [n, k] : k_quant ? std::vector<Shape> {{5, 256}, {37, 512}, {150, 2304}}
                                       : std::vector<Shape> {{5, 32}, {37, 96}, {150, 896}})
                for (int64_t m : {9, 16, 21, 67}) {
                    QuantMatrix w = random_quant_matrix(type, n, k, rng);
                    const int64_t ldx = k + 3, ldy = n + 2;
                    auto x = random_vector(size_t(m * ldx), rng);
                    std::vector<uint8_t> acts_buf(q->gemm_act_bytes(m, k) + 64);
                    auto* acts = reinterpret_cast<uint8_t*>(
                        (reinterpret_cast<uintptr_t>(acts_buf.data()) + 63) / 64 * 64);
                    q->gemm_prepare(x.data(), m, ldx, k, acts);
                    std::vector<float> y(size_t(m * ldy), NAN);
                    std::vector<uint8_t> tiles(q->gemm_weight_bytes(n, k));
                    // Two calls over row ranges, as linear() hands out blocks of 64 rows.
                    const int64_t split = n > 64 ? 64 : n;
                    q->gemm(type, acts, m, k, w.bytes.data(), w.mat.row_bytes(), 0, split, y.data(),
                            ldy, tiles.data());
                    if (split < n)
                        q->gemm(type, acts, m, k, w.bytes.data(), w.mat.row_bytes(), split, n,
                                y.data(), ldy, tiles.data());
                    std::vector<double> want, mag;
                    reference(int8_activations(x, m, ldx, k), m, k, w.values, n, k, nullptr, want,
                              mag);
                    for (int64_t i = 0; i < m; ++i)
                        for (int64_t j = 0; j < ldy; ++j) {
                            const float got = y[size_t(i * ldy + j)];
                            if (j >= n) {
                                ASSERT_TRUE(std::isnan(got)) << "row padding was written";
                                continue;
                            }
                            ASSERT_NEAR(got, want[size_t(i * n + j)],
                                        tolerance(mag[size_t(i * n + j)], k))
                                << isa << " " << model::cpu::weight_type_name(type) << " n " << n
                                << " k " << k << " m " << m << " row " << i << " col " << j;
                        }
                }
        }
    }
    if (sets == 0) GTEST_SKIP() << "no kernel set with a gemm runs on this CPU";
}

// The bf16 product (--precision bf16) of every kernel set that has one: BF16 weights against
// the activations rounded to bf16 (nearest even), summed in f32. Widths that are no multiple
// of 16, row counts that fill no group or tile.
TEST(QuantOps, Bf16GemmComputesTheProductOfBf16RoundedActivations)
{
    std::mt19937 rng(15);
    const model::cpu::QuantKernels* q = model::cpu::quant_kernels_named("avx512-vnni");
    if (!q || !q->bf16_gemm) GTEST_SKIP() << "this CPU has no AVX512_BF16";
    for (auto [n, k] : {std::pair<int64_t, int64_t> {5, 16}, {37, 100}, {150, 1024}})
        for (int64_t m : {9, 16, 21, 67}) {
            LowpMatrix w = random_matrix(WeightType::bf16, n, k, rng);
            const int64_t ldx = k + 3, ldy = n + 2;
            auto x = random_vector(size_t(m * ldx), rng);
            std::vector<uint8_t> acts_buf(q->bf16_act_bytes(m, k) + 64);
            auto* acts = reinterpret_cast<uint8_t*>(
                (reinterpret_cast<uintptr_t>(acts_buf.data()) + 63) / 64 * 64);
            q->bf16_prepare(x.data(), m, ldx, k, acts);
            std::vector<float> y(size_t(m * ldy), NAN);
            std::vector<uint8_t> tiles(q->bf16_weight_bytes(n, k));
            const int64_t split = n > 64 ? 64 : n;
            q->bf16_gemm(acts, m, k, w.bits.data(), 0, split, y.data(), ldy, tiles.data());
            if (split < n)
                q->bf16_gemm(acts, m, k, w.bits.data(), split, n, y.data(), ldy, tiles.data());
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = 0; j < ldy; ++j) {
                    const float got = y[size_t(i * ldy + j)];
                    if (j >= n) {
                        ASSERT_TRUE(std::isnan(got)) << "row padding was written";
                        continue;
                    }
                    double want = 0, mag = 0;
                    for (int64_t c = 0; c < k; ++c) {
                        const double xb
                            = model::bf16_to_f32(model::f32_to_bf16(x[size_t(i * ldx + c)]));
                        const double p = xb * double(w.widened[size_t(j * k + c)]);
                        want += p;
                        mag += std::fabs(p);
                    }
                    ASSERT_NEAR(got, want, tolerance(mag, k))
                        << "n " << n << " k " << k << " m " << m << " row " << i << " col " << j;
                }
        }
}

// linear() on every weight type: the int8 kernels' types (for any number of rows with a set
// that has a GEMM, else q8_0 and q4_0 for any and the others up to kMatvecMaxRows) give the
// product of the dequantized weights with activations that are off by at most half a
// quantization step of their block of 32; the rest is exact up to f32 summation, row by row
// dequantized for up to kMatvecMaxRows rows, through SGEMM beyond.
TEST(QuantOps, LinearOfEveryTypeIsTheProductOfItsDequantizedWeights)
{
    std::mt19937 rng(12);
    set_default_threads(2);
    const model::cpu::QuantKernels* kernels = model::cpu::quant_kernels();
    for (int t = 0; t < model::cpu::kWeightTypeCount; ++t) {
        const auto type = WeightType(t);
        if (!model::cpu::is_quantized(type)) continue;
        const bool int8 = kernels && kernels->supports(type);
        for (auto [n, k] : {std::pair<int64_t, int64_t> {5, 256}, {300, 512}, {130, 768}})
            for (int64_t m : {int64_t(1), int64_t(3), model::cpu::kMatvecMaxRows, int64_t(21)}) {
                QuantMatrix w = random_quant_matrix(type, n, k, rng);
                auto bias = random_vector(size_t(n), rng);
                const int64_t ldx = k + 1, ldy = n + 3;
                auto x = random_vector(size_t(m * ldx), rng);
                std::vector<double> ref, mag;
                reference(x, m, ldx, w.values, n, k, bias.data(), ref, mag);
                std::vector<float> got(size_t(m * ldy), NAN);
                model::cpu::linear(x.data(), m, ldx, w.mat, bias.data(), got.data(), ldy);
                const bool approx = int8
                    && (m <= model::cpu::kMatvecMaxRows || kernels->gemm || type == WeightType::q8_0
                        || type == WeightType::q4_0);
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = 0; j < n; ++j) {
                        double tol = tolerance(mag[size_t(i * n + j)], k);
                        if (approx) { // Σ_c |w_c| · d_x(c) / 2 over the blocks of 32
                            double bound = 0;
                            for (int64_t b = 0; b < k; b += 32) {
                                float amax = 0;
                                double wsum = 0;
                                for (int c = 0; c < 32; ++c) {
                                    amax = std::max(amax, std::fabs(x[size_t(i * ldx + b + c)]));
                                    wsum += std::fabs(w.values[size_t(j * k + b + c)]);
                                }
                                bound += wsum * amax / 127.0 / 2.0;
                            }
                            tol += bound * (1 + 1e-5);
                        }
                        ASSERT_NEAR(got[size_t(i * ldy + j)], ref[size_t(i * n + j)], tol)
                            << model::cpu::weight_type_name(type) << " n " << n << " k " << k
                            << " m " << m;
                    }
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = n; j < ldy && i * ldy + j < int64_t(got.size()); ++j)
                        ASSERT_TRUE(std::isnan(got[size_t(i * ldy + j)]));
            }
    }
}

// The portable matrix-vector loop on quantized weights is the exact f32 product of the
// dequantized weights (no activation quantization).
TEST(QuantOps, PortableMatvecUsesTheDequantizedWeightsExactly)
{
    std::mt19937 rng(13);
    for (WeightType type :
         {WeightType::q8_0, WeightType::q4_0, WeightType::q4_K, WeightType::q6_K}) {
        const int64_t n = 9, k = 512, m = 2;
        QuantMatrix w = random_quant_matrix(type, n, k, rng);
        auto x = random_vector(size_t(m * k), rng);
        std::vector<double> ref, mag;
        reference(x, m, k, w.values, n, k, nullptr, ref, mag);
        std::vector<float> got(size_t(m * n));
        model::cpu::matvec_rows(x.data(), m, k, w.mat, 0, n, got.data(), n, /*portable=*/true);
        for (size_t i = 0; i < got.size(); ++i)
            ASSERT_NEAR(got[i], ref[i], tolerance(mag[i], k)) << model::cpu::weight_type_name(type);
    }
}
