// Every operation of the backend seam (model/backend.h), on every backend this build has,
// against a plain double-precision reference written here (after llama.cpp's
// tests/test-backend-ops.cpp). Inputs go in through Buffers (alloc + upload, or wrap for
// weights as the loaders do) and results come back through download(), so a device backend
// is tested exactly as the CPU is. The references use only the format definitions of
// cpu/quant.h and cpu/ops.h (dequantize_row, kv_dequantize_rows, skvq_dequantize_rows and the
// quantizers whose bytes kv_store / skvq_store must reproduce), never the kernels under test.
//
// Results are compared with llama.cpp's NMSE, Σ(a - b)² / Σb², with thresholds a few times
// above the error each family truly carries (the [nmse] lines print the largest seen):
//   f32 arithmetic on exact operands (f32/bf16/f16 weights, norms, attention, rope with the
//     backend's tables, bicubic)                                      ~1e-14 .. 2e-12
//   rope tables at positions ≈ 1500 (torch's fp32 angles)             ~4e-10
//   activations rounded to bf16 (bf16_activations)                     ~2e-6
//   activations quantized per block of 32 to int8 (ggml block types)  ~2e-5
// (products: per type over all cases; each case against the terms' scale, see ProductError).
// Everything that moves values without arithmetic (get_rows, kv_store, skvq_store, im2col,
// pixel_shuffle, identity resize, argmax, buffers) must be exact.
#include "model/backend.h"
#include "model/cpu/ops.h"
#include "model/cpu/quant.h"
#include "model/model.h"
#include "tests/errors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace iris::test {
namespace {

using model::Backend;
using model::Buffer;
using model::KvRun;
using model::KvType;
using model::SkvqFormat;
using model::WeightMatrix;
namespace cpu = model::cpu;
using cpu::WeightType;

// ---------------------------------------------------------------------------------------------
// Helpers

template<typename... Args> std::string str(const Args&... args)
{
    std::ostringstream s;
    (s << ... << args);
    return s.str();
}

std::vector<float> normal_floats(size_t n, std::mt19937& rng, float sd = 1.f, float mean = 0.f)
{
    std::normal_distribution<float> d(mean, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

float uniform(std::mt19937& rng, float lo, float hi)
{
    return std::uniform_real_distribution<float>(lo, hi)(rng);
}

// A buffer on `be` holding `host` (alloc + upload).
template<typename T> Buffer to_backend(Backend& be, std::span<const T> host)
{
    Buffer b = be.alloc(std::max<size_t>(host.size_bytes(), 1));
    be.upload(b.data(), host.data(), host.size_bytes());
    return b;
}
template<typename T> Buffer to_backend(Backend& be, const std::vector<T>& host)
{
    return to_backend(be, std::span<const T>(host));
}

// n values of T from backend memory at src.
template<typename T> std::vector<T> download(Backend& be, const void* src, size_t n)
{
    std::vector<T> out(n);
    be.download(out.data(), src, n * sizeof(T));
    return out;
}
template<typename T> std::vector<T> download(Backend& be, const Buffer& b)
{
    return download<T>(be, b.data(), b.size() / sizeof(T));
}

// llama.cpp's normalized mean squared error Σ(a - b)² / Σb² of `got` against `want`.
double nmse(std::span<const float> got, std::span<const double> want)
{
    if (got.size() != want.size()) {
        ADD_FAILURE() << got.size() << " values against " << want.size();
        return INFINITY;
    }
    double err = 0, ref = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double d = double(got[i]) - want[i];
        err += d * d;
        ref += want[i] * want[i];
    }
    if (!std::isfinite(err)) return INFINITY;
    return ref == 0 ? err : err / ref;
}

// The largest NMSE each family saw, printed once per test (the numbers the thresholds rest on).
struct Worst
{
    std::string_view backend;
    std::map<std::string, std::pair<double, int>> seen;
    void add(const std::string& family, double e)
    {
        auto& [worst, n] = seen[family];
        worst = std::max(worst, e);
        ++n;
    }
    ~Worst()
    {
        for (const auto& [family, v] : seen)
            if (v.second == 1)
                std::printf("  [nmse] %.*s %-44s %.3g\n", int(backend.size()), backend.data(),
                            family.c_str(), v.first);
            else
                std::printf("  [nmse] %.*s %-44s max %.3g over %d cases\n", int(backend.size()),
                            backend.data(), family.c_str(), v.first, v.second);
    }
};

// Every backend this build has; the trace names it.
std::vector<Backend*> backends()
{
    auto all = model::available_backends();
    EXPECT_FALSE(all.empty());
    EXPECT_EQ(all.empty() ? nullptr : all.front(), &model::cpu_backend());
    return all;
}

// ---------------------------------------------------------------------------------------------
// Buffers

TEST(BackendBuffers, AllocUploadDownloadCopyRowsAndWrap)
{
    std::mt19937 rng(1);
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        for (size_t bytes : {size_t(1), size_t(13), size_t(4096), size_t(100003)}) {
            SCOPED_TRACE(str(bytes, " bytes"));
            std::vector<uint8_t> host(bytes);
            for (auto& b : host) b = uint8_t(rng());
            Buffer buf = be->alloc(bytes);
            ASSERT_TRUE(buf);
            EXPECT_EQ(buf.size(), bytes);
            EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % 64, 0u);
            be->upload(buf.data(), host.data(), bytes);
            EXPECT_EQ(download<uint8_t>(*be, buf), host);
            // Part of a buffer, at an offset.
            if (bytes > 10) {
                std::vector<uint8_t> part(bytes - 10, 0xA5);
                be->upload(buf.as<uint8_t>() + 3, part.data(), part.size());
                std::copy(part.begin(), part.end(), host.begin() + 3);
                EXPECT_EQ(download<uint8_t>(*be, buf), host);
            }
            // copy() of a whole buffer.
            Buffer other = be->alloc(bytes);
            be->copy(other.data(), buf.data(), bytes);
            EXPECT_EQ(download<uint8_t>(*be, other), host);
            // Moving keeps the memory; the source is empty.
            void* p = other.data();
            Buffer moved = std::move(other);
            EXPECT_EQ(moved.data(), p);
            EXPECT_FALSE(other); // NOLINT(bugprone-use-after-move)
            EXPECT_EQ(other.size(), 0u);
        }

        // copy_rows between strided layouts: only row_bytes of each row move.
        const size_t row = 37, src_ld = 53, dst_ld = 41;
        const int64_t n_rows = 7;
        std::vector<uint8_t> src(src_ld * n_rows), dst(dst_ld * n_rows);
        for (auto& b : src) b = uint8_t(rng());
        for (auto& b : dst) b = uint8_t(rng());
        Buffer s = to_backend(*be, src), d = to_backend(*be, dst);
        be->copy_rows(d.data(), dst_ld, s.data(), src_ld, row, n_rows);
        for (int64_t r = 0; r < n_rows; ++r)
            std::memcpy(&dst[size_t(r) * dst_ld], &src[size_t(r) * src_ld], row);
        EXPECT_EQ(download<uint8_t>(*be, d), dst);
        // Into a wider stride, from an offset inside a buffer.
        std::vector<uint8_t> wide(100 * n_rows, 0);
        Buffer w = to_backend(*be, wide);
        be->copy_rows(w.as<uint8_t>() + 5, 100, s.as<uint8_t>() + 2, src_ld, 20, n_rows);
        for (int64_t r = 0; r < n_rows; ++r)
            std::memcpy(&wide[size_t(r) * 100 + 5], &src[size_t(r) * src_ld + 2], 20);
        EXPECT_EQ(download<uint8_t>(*be, w), wide);

        // wrap(): host memory that operations read (a weight matrix and an addend).
        const std::vector<float> host_w = normal_floats(6 * 5, rng),
                                 host_y = normal_floats(12, rng);
        Buffer ww = be->wrap(host_w.data(), host_w.size() * sizeof(float));
        Buffer wy = be->wrap(host_y.data(), host_y.size() * sizeof(float));
        EXPECT_EQ(ww.size(), host_w.size() * sizeof(float));
        EXPECT_EQ(download<float>(*be, ww), host_w);
        const std::vector<float> x0 = normal_floats(2 * 5, rng);
        Buffer x = to_backend(*be, x0), y = be->alloc(2 * 6 * sizeof(float));
        be->linear(x.as<float>(), 2, WeightMatrix::f32(ww.as<float>(), 6, 5), nullptr,
                   y.as<float>());
        const auto got = download<float>(*be, y);
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 6; ++j) {
                double want = 0;
                for (int c = 0; c < 5; ++c)
                    want += double(x0[size_t(i * 5 + c)]) * host_w[size_t(j * 5 + c)];
                EXPECT_NEAR(got[size_t(i * 6 + j)], want, 1e-5);
            }
        be->add_rows(y.as<float>(), wy.as<float>(), nullptr, 2, 6);
        const auto sum = download<float>(*be, y);
        for (size_t i = 0; i < sum.size(); ++i) EXPECT_EQ(sum[i], got[i] + host_y[i]);

        // grow(): reuses a buffer big enough, replaces a small one.
        Buffer g;
        float* p1 = model::grow<float>(*be, g, 100);
        EXPECT_GE(g.size(), 100 * sizeof(float));
        EXPECT_EQ(model::grow<float>(*be, g, 50), p1);
        model::grow<float>(*be, g, 1000);
        EXPECT_GE(g.size(), 1000 * sizeof(float));
        be->synchronize();
        EXPECT_NE(be->workspace(), nullptr);
    }
}

// ---------------------------------------------------------------------------------------------
// Products

constexpr WeightType kAllTypes[] = {
    WeightType::f32,  WeightType::bf16, WeightType::f16,  WeightType::q8_0,   WeightType::q4_0,
    WeightType::q4_1, WeightType::q5_0, WeightType::q5_1, WeightType::iq4_nl, WeightType::q2_K,
    WeightType::q3_K, WeightType::q4_K, WeightType::q5_K, WeightType::q6_K,
};

// A random weight matrix of `type` on the host (the bytes a GGUF file would hold) and its
// dequantized values, the matrix the reference multiplies by.
struct HostWeights
{
    std::vector<uint8_t> bytes;
    std::vector<float> values; // [rows, cols]
};

HostWeights random_weights(WeightType type, int64_t rows, int64_t cols, std::mt19937& rng)
{
    HostWeights w;
    const size_t rb = cpu::weight_row_bytes(type, cols);
    w.bytes.resize(rb * size_t(rows));
    w.values.resize(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        // Rows of different magnitudes, as trained matrices have.
        const auto x = normal_floats(size_t(cols), rng, 0.02f * float(1 + r % 5));
        cpu::quantize_row(type, x.data(), cols, w.bytes.data() + size_t(r) * rb);
        cpu::dequantize_row(type, w.bytes.data() + size_t(r) * rb, cols,
                            w.values.data() + size_t(r * cols));
    }
    return w;
}

// The error of a product against its reference. One output of x·wᵀ is a sum of k terms that
// may cancel to near zero, and then Σb² of a case with a handful of outputs (m = n = 1) says
// nothing about the error the product truly carries: its ratio to the error is heavy-tailed.
// So each case is held to the error relative to the terms' scale, Σ(a - b)² / Σ_outputs
// (Σ_c (x_c·w_c)² + bias²), which is Σb²'s expectation for random data and never cancels, and
// every type's cases together to llama.cpp's NMSE, Σ(a - b)² / Σb², over all their outputs.
struct ProductError
{
    double err = 0, ref = 0, terms = 0;
    double nmse() const { return ref > 0 ? err / ref : err; }
    double vs_terms() const { return terms > 0 ? err / terms : err; }
    ProductError& operator+=(const ProductError& o)
    {
        err += o.err, ref += o.ref, terms += o.terms;
        return *this;
    }
};

// y = x·wᵀ + bias in double: x [m, k] (stride ldx), w [n, k] -> y [m, n] contiguous, and the
// terms' scale Σ_c (x_c·w_c)² + bias² of each output.
void reference_linear(const std::vector<float>& x, int64_t m, int64_t ldx,
                      const std::vector<float>& w, int64_t n, int64_t k, const float* bias,
                      std::vector<double>& y, std::vector<double>& terms)
{
    y.assign(size_t(m * n), 0);
    terms.assign(size_t(m * n), 0);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double s = bias ? bias[j] : 0.0, t = bias ? double(bias[j]) * bias[j] : 0.0;
            for (int64_t c = 0; c < k; ++c) {
                const double p = double(x[size_t(i * ldx + c)]) * w[size_t(j * k + c)];
                s += p;
                t += p * p;
            }
            y[size_t(i * n + j)] = s;
            terms[size_t(i * n + j)] = t;
        }
}

// The error each weight type's product carries, as llama.cpp's NMSE over many outputs (the
// per-case bound, relative to the terms' scale, allows for a case of a single output: its
// squared error is χ²₁-distributed around the mean).
enum class Precision { f32, bf16_acts, int8_acts };
struct LinearBounds
{
    double per_case, overall;
};
LinearBounds linear_bounds(Precision p)
{
    switch (p) {
    case Precision::f32:
        // f32 sums of ≤ 896 exact products: ≲ 1e-12 per case, 7e-14 overall seen.
        return {5e-12, 5e-13};
    case Precision::bf16_acts:
        // x rounded to bf16 (8 significant bits, error uniform in ± half an ulp):
        // 2^-16/3 / E[mantissa²] ≈ 2e-6 expected.
        return {2e-5, 5e-6};
    case Precision::int8_acts:
        // x in int8 per block of 32 with scale max|x|/127: (max|x|/127)²/12 / E[x²] ≈ 2e-5
        // expected for Gaussian activations.
        return {4e-4, 6e-5};
    }
    return {};
}

struct LinearCase
{
    int64_t m, n, k;
    bool bias, strided;
};

// One product on the backend, checked against the double reference.
ProductError check_linear(Backend& be, WeightType type, bool bf16_acts, const LinearCase& c,
                          std::mt19937& rng, const LinearBounds& bounds)
{
    SCOPED_TRACE(str(weight_type_name(type), bf16_acts ? " bf16-acts" : "", " m ", c.m, " n ", c.n,
                     " k ", c.k, c.bias ? " bias" : "", c.strided ? " strided" : ""));
    const HostWeights hw = random_weights(type, c.n, c.k, rng);
    const int64_t ldx = c.strided ? c.k + 5 : c.k, ldy = c.strided ? c.n + 3 : c.n;
    const std::vector<float> x = normal_floats(size_t(c.m * ldx), rng);
    const std::vector<float> bias = normal_floats(size_t(c.n), rng);
    const float sentinel = -12345.f;
    std::vector<float> y0(size_t(c.m * ldy), sentinel);

    // Weights are wrapped (the loaders' way); activations, bias and output are allocated.
    Buffer wb = be.wrap(hw.bytes.data(), hw.bytes.size());
    Buffer xb = to_backend(be, x), bb = to_backend(be, bias), yb = to_backend(be, y0);
    WeightMatrix w {wb.data(), type, c.n, c.k, bf16_acts};
    be.linear(xb.as<float>(), c.m, ldx, w, c.bias ? bb.as<float>() : nullptr, yb.as<float>(), ldy);
    const auto got = download<float>(be, yb);

    std::vector<double> want, terms;
    reference_linear(x, c.m, ldx, hw.values, c.n, c.k, c.bias ? bias.data() : nullptr, want, terms);
    ProductError e;
    for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < ldy; ++j) {
            const float a = got[size_t(i * ldy + j)];
            if (j >= c.n) {
                EXPECT_EQ(a, sentinel) << "row " << i << " padding " << j << " written";
                continue;
            }
            const double b = want[size_t(i * c.n + j)], d = double(a) - b;
            e.err += std::isfinite(d) ? d * d : INFINITY;
            e.ref += b * b;
            e.terms += terms[size_t(i * c.n + j)];
        }
    EXPECT_LE(e.vs_terms(), bounds.per_case) << "NMSE " << e.nmse();
    return e;
}

TEST(BackendOps, LinearOfEveryWeightTypeIsTheProductOfItsDequantizedWeights)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        Worst worst {be->name(), {}};
        std::mt19937 rng(2);
        int index = 0;
        auto check_type = [&](WeightType type, bool bf16_acts,
                              const std::vector<LinearCase>& cases) {
            const Precision p = bf16_acts ? Precision::bf16_acts
                : cpu::is_quantized(type) ? Precision::int8_acts
                                          : Precision::f32;
            const LinearBounds bounds = linear_bounds(p);
            const std::string name = str(weight_type_name(type), bf16_acts ? " bf16-acts" : "");
            ProductError total;
            for (const LinearCase& c : cases) {
                const ProductError e = check_linear(*be, type, bf16_acts, c, rng, bounds);
                worst.add("linear per case (vs terms) " + name, e.vs_terms());
                total += e;
            }
            SCOPED_TRACE(name);
            EXPECT_LE(total.nmse(), bounds.overall) << "over all cases";
            worst.add("linear NMSE, all cases: " + name, total.nmse());
        };
        for (WeightType type : kAllTypes) {
            const int block = cpu::weight_type_info(type).block;
            // Widths: whole blocks, a non-multiple of 256 where the block allows, and an odd
            // width for the unblocked types.
            const std::vector<int64_t> widths = block == 256 ? std::vector<int64_t> {256, 768}
                : block == 32                                ? std::vector<int64_t> {32, 96, 896}
                                                             : std::vector<int64_t> {33, 96, 896};
            std::vector<LinearCase> cases;
            for (int64_t k : widths)
                for (int64_t m : {1, 2, 3, 5, 8, 17, 33, 70})
                    for (int64_t n : {1, 7, 67}) {
                        // Bias and strides take turns so that every shape meets each.
                        cases.push_back({m, n, k, index % 2 == 1, index % 3 != 0});
                        ++index;
                    }
            // Many output columns (split over threads; tails of the GEMM tiles).
            for (int64_t m : {1, 9, 40}) cases.push_back({m, 259, widths.back(), true, true});
            check_type(type, false, cases);
        }
        // BF16 weights meeting activations rounded to bf16 (any number of rows may).
        std::vector<LinearCase> cases;
        for (int64_t k : {32, 96, 896, 67})
            for (int64_t m : {1, 5, 9, 17, 33, 70})
                for (int64_t n : {1, 7, 67}) {
                    cases.push_back({m, n, k, index % 2 == 1, index % 3 != 0});
                    ++index;
                }
        check_type(WeightType::bf16, true, cases);
    }
}

// A batched decode step (InternVL::forward_batch) puts the rows of several sequences into one
// product; a sequence's tokens must not depend on its neighbours. Up to kExactRows rows, each row
// of a product has the bits it has alone, on every backend and for every weight type; and so up
// to exact_rows(w) where a backend promises more (checked to 70 rows: past the CPU's blocks of
// rows and its 60-row activation chunks).
TEST(BackendOps, LinearOfUpToExactRowsGivesEachRowTheBitsItHasAlone)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        std::mt19937 rng(5);
        auto check = [&](WeightType type, bool bf16_acts, int64_t k) {
            const int64_t n = 259;
            SCOPED_TRACE(str(weight_type_name(type), bf16_acts ? " bf16-acts" : "", " k ", k));
            const HostWeights hw = random_weights(type, n, k, rng);
            Buffer wb = be->wrap(hw.bytes.data(), hw.bytes.size());
            const WeightMatrix w {wb.data(), type, n, k, bf16_acts};
            ASSERT_GE(be->exact_rows(w), Backend::kExactRows);
            const int64_t m = std::min<int64_t>(be->exact_rows(w), 70);
            const std::vector<float> x = normal_floats(size_t(m * k), rng);
            const std::vector<float> bias = normal_floats(size_t(n), rng);
            Buffer xb = to_backend(*be, x), bb = to_backend(*be, bias);
            std::vector<std::vector<float>> alone;
            for (int64_t r = 0; r < m; ++r) {
                Buffer yb = be->alloc(size_t(n) * sizeof(float));
                be->linear(xb.as<float>() + r * k, 1, k, w, bb.as<float>(), yb.as<float>(), n);
                alone.push_back(download<float>(*be, yb));
            }
            for (int64_t rows = 2; rows <= m; ++rows) {
                Buffer yb = be->alloc(size_t(rows * n) * sizeof(float));
                be->linear(xb.as<float>(), rows, k, w, bb.as<float>(), yb.as<float>(), n);
                const auto together = download<float>(*be, yb);
                for (int64_t r = 0; r < rows; ++r)
                    ASSERT_EQ(0,
                              std::memcmp(together.data() + r * n, alone[size_t(r)].data(),
                                          size_t(n) * sizeof(float)))
                        << "row " << r << " of " << rows;
            }
        };
        for (WeightType type : kAllTypes) {
            const int block = cpu::weight_type_info(type).block;
            for (int64_t k : block == 256 ? std::vector<int64_t> {256, 768}
                                          : std::vector<int64_t> {32, 96, 896})
                check(type, false, k);
        }
        check(WeightType::bf16, true, 896);
    }
}

TEST(BackendOps, GetRowsOfEveryWeightTypeIsTheDequantizedRow)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        std::mt19937 rng(3);
        for (WeightType type : kAllTypes) {
            const int64_t cols = cpu::weight_type_info(type).block == 256 ? 512 : 96;
            const int64_t rows = 37;
            SCOPED_TRACE(str(weight_type_name(type), " [", rows, ", ", cols, "]"));
            const HostWeights hw = random_weights(type, rows, cols, rng);
            Buffer wb = be->wrap(hw.bytes.data(), hw.bytes.size());
            const WeightMatrix table {wb.data(), type, rows, cols};
            // Repeats, the first and the last row, in any order.
            for (std::vector<int32_t> ids : {std::vector<int32_t> {0}, std::vector<int32_t> {36},
                                             std::vector<int32_t> {5, 0, 36, 5, 17, 2, 35}}) {
                Buffer out = be->alloc(ids.size() * size_t(cols) * sizeof(float));
                be->get_rows(table, ids, out.as<float>());
                const auto got = download<float>(*be, out);
                for (size_t i = 0; i < ids.size(); ++i)
                    for (int64_t c = 0; c < cols; ++c)
                        ASSERT_EQ(got[i * size_t(cols) + size_t(c)],
                                  hw.values[size_t(ids[i] * cols + c)])
                            << "id " << ids[i] << " col " << c;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation and element-wise ops

TEST(BackendOps, NormsAndElementWiseOps)
{
    // f32 sums over at most a few thousand values against double: ≲ 3e-14 seen; one or two
    // roundings per value (add_rows, silu_mul, gelu_erf): ≲ 2e-14.
    const double norms = 3e-13, elementwise = 1e-13;
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        Worst worst {be->name(), {}};
        std::mt19937 rng(4);
        for (int64_t rows : {1, 3, 8})
            for (int64_t cols : {1, 7, 33, 255, 1025, 4099}) {
                SCOPED_TRACE(str("[", rows, ", ", cols, "]"));
                const size_t n = size_t(rows * cols);
                // Rows with a large common offset, as residual streams have.
                std::vector<float> x = normal_floats(n, rng, 2.f);
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < cols; ++c) x[size_t(r * cols + c)] += float(r * 3 - 4);
                const auto gamma = normal_floats(size_t(cols), rng, 0.5f, 1.f);
                const auto beta = normal_floats(size_t(cols), rng);
                const float eps = 1e-6f;
                Buffer xb = to_backend(*be, x), gb = to_backend(*be, gamma),
                       bb = to_backend(*be, beta), yb = be->alloc(n * sizeof(float));

                for (bool with_beta : {false, true})
                    for (bool in_place : {false, true}) {
                        SCOPED_TRACE(str("layer_norm", with_beta ? " beta" : "",
                                         in_place ? " in place" : ""));
                        std::vector<double> want(n);
                        for (int64_t r = 0; r < rows; ++r) {
                            const float* row = &x[size_t(r * cols)];
                            double mean = 0, var = 0;
                            for (int64_t c = 0; c < cols; ++c) mean += row[c];
                            mean /= double(cols);
                            for (int64_t c = 0; c < cols; ++c)
                                var += (row[c] - mean) * (row[c] - mean);
                            var /= double(cols);
                            for (int64_t c = 0; c < cols; ++c)
                                want[size_t(r * cols + c)]
                                    = (row[c] - mean) / std::sqrt(var + eps) * gamma[size_t(c)]
                                    + (with_beta ? beta[size_t(c)] : 0.0);
                        }
                        Buffer xi = to_backend(*be, x);
                        float* out = in_place ? xi.as<float>() : yb.as<float>();
                        be->layer_norm(xi.as<float>(), rows, cols, gb.as<float>(),
                                       with_beta ? bb.as<float>() : nullptr, eps, out);
                        const double e = nmse(download<float>(*be, out, n), want);
                        EXPECT_LE(e, norms);
                        worst.add("layer_norm", e);
                    }

                for (bool in_place : {false, true}) {
                    SCOPED_TRACE(str("rms_norm", in_place ? " in place" : ""));
                    std::vector<double> want(n);
                    for (int64_t r = 0; r < rows; ++r) {
                        const float* row = &x[size_t(r * cols)];
                        double ss = 0;
                        for (int64_t c = 0; c < cols; ++c) ss += double(row[c]) * row[c];
                        const double inv = 1.0 / std::sqrt(ss / double(cols) + eps);
                        for (int64_t c = 0; c < cols; ++c)
                            want[size_t(r * cols + c)] = row[c] * inv * gamma[size_t(c)];
                    }
                    Buffer xi = to_backend(*be, x);
                    float* out = in_place ? xi.as<float>() : yb.as<float>();
                    be->rms_norm(xi.as<float>(), rows, cols, gb.as<float>(), eps, out);
                    const double e = nmse(download<float>(*be, out, n), want);
                    EXPECT_LE(e, norms);
                    worst.add("rms_norm", e);
                }

                {
                    SCOPED_TRACE("add_rows");
                    const auto y = normal_floats(n, rng);
                    Buffer yi = to_backend(*be, y);
                    for (bool scaled : {false, true}) {
                        std::vector<double> want(n);
                        for (size_t i = 0; i < n; ++i)
                            want[i] = double(x[i])
                                + (scaled ? double(gamma[i % size_t(cols)]) : 1.0) * y[i];
                        Buffer xi = to_backend(*be, x);
                        be->add_rows(xi.as<float>(), yi.as<float>(),
                                     scaled ? gb.as<float>() : nullptr, rows, cols);
                        // One f32 rounding (of the product and of the sum).
                        const double e = nmse(download<float>(*be, xi), want);
                        EXPECT_LE(e, elementwise) << (scaled ? "scaled" : "");
                        worst.add("add_rows", e);
                    }
                }
            }

        for (int64_t n : {1, 7, 33, 1001, 65537}) {
            SCOPED_TRACE(str("n ", n));
            // gelu: values out to ±12, both tails included.
            auto x = normal_floats(size_t(n), rng, 3.f);
            if (n > 4) x[0] = 12.f, x[1] = -12.f, x[2] = 0.f, x[3] = -3.5f;
            std::vector<double> want(static_cast<size_t>(n));
            for (size_t i = 0; i < want.size(); ++i)
                want[i] = 0.5 * x[i] * (1.0 + std::erf(double(x[i]) / std::sqrt(2.0)));
            Buffer xb = to_backend(*be, x);
            be->gelu_erf(xb.as<float>(), n);
            const auto got = download<float>(*be, xb);
            const double e = nmse(got, want);
            // erf in f32 (a vectorised approximation): ≈ 2e-14 seen.
            EXPECT_LE(e, elementwise) << "gelu_erf";
            worst.add("gelu_erf", e);
            for (size_t i = 0; i < got.size(); ++i)
                ASSERT_NEAR(got[i], want[i], 1e-6 * (1 + std::fabs(want[i]))) << "gelu x " << x[i];

            // silu_mul into a third buffer, onto gate and onto up.
            auto gate = normal_floats(size_t(n), rng, 4.f);
            if (n > 2) gate[0] = 30.f, gate[1] = -30.f;
            const auto up = normal_floats(size_t(n), rng);
            for (size_t i = 0; i < want.size(); ++i)
                want[i] = double(gate[i]) / (1.0 + std::exp(-double(gate[i]))) * up[i];
            for (int alias : {0, 1, 2}) {
                SCOPED_TRACE(alias == 0       ? "silu_mul"
                                 : alias == 1 ? "silu_mul out = gate"
                                              : "silu_mul out = up");
                Buffer gb = to_backend(*be, gate), ub = to_backend(*be, up),
                       ob = be->alloc(size_t(n) * sizeof(float));
                float* out = alias == 0 ? ob.as<float>()
                    : alias == 1        ? gb.as<float>()
                                        : ub.as<float>();
                be->silu_mul(gb.as<float>(), ub.as<float>(), out, n);
                const double es = nmse(download<float>(*be, out, size_t(n)), want);
                EXPECT_LE(es, elementwise);
                worst.add("silu_mul", es);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rotary position embedding

struct RopeCase
{
    double base;
    int d;
    int64_t pos0, n_tok;
    float pos_scale;
};

// Rotates x [n_tok, n_heads, D] (stride ld) in double with tables cos_t / sin_t [n_tok, D/2]:
// channel i pairs with i + D/2, stored at i and i + D/2 (halves) or 2i and 2i + 1 (pairs).
template<typename Table>
std::vector<double> reference_rope(const std::vector<float>& x, int64_t n_tok, int n_heads, int d,
                                   int64_t ld, const Table& cos_t, const Table& sin_t, bool pairs)
{
    const int half = d / 2;
    auto slot
        = [&](int i, bool upper) { return pairs ? 2 * i + int(upper) : i + (upper ? half : 0); };
    std::vector<double> y(x.begin(), x.end());
    for (int64_t t = 0; t < n_tok; ++t)
        for (int h = 0; h < n_heads; ++h)
            for (int i = 0; i < half; ++i) {
                const size_t row = size_t(t * ld + h * d), lo = row + size_t(slot(i, false)),
                             hi = row + size_t(slot(i, true)), ti = size_t(t * half + i);
                const double c = cos_t[ti], s = sin_t[ti];
                y[lo] = x[lo] * c - x[hi] * s;
                y[hi] = x[hi] * c + x[lo] * s;
            }
    return y;
}

void check_rope(Backend& be, const RopeCase& rc, std::mt19937& rng, Worst& worst)
{
    SCOPED_TRACE(str("base ", rc.base, " D ", rc.d, " pos0 ", rc.pos0, " scale ", rc.pos_scale,
                     " tokens ", rc.n_tok));
    const int half = rc.d / 2;
    const size_t nt = size_t(rc.n_tok) * size_t(half);
    Buffer cb = be.alloc(nt * sizeof(float)), sb = be.alloc(nt * sizeof(float));
    be.rope_tables(rc.pos0, rc.n_tok, rc.base, rc.d, rc.pos_scale, cb.as<float>(), sb.as<float>());
    const auto cos_t = download<float>(be, cb), sin_t = download<float>(be, sb);
    std::vector<double> want_cos(nt), want_sin(nt);
    for (int64_t t = 0; t < rc.n_tok; ++t)
        for (int i = 0; i < half; ++i) {
            const double inv_freq = 1.0 / std::pow(rc.base, 2.0 * i / rc.d);
            const double angle = double(rc.pos0 + t) / rc.pos_scale * inv_freq;
            want_cos[size_t(t * half + i)] = std::cos(angle);
            want_sin[size_t(t * half + i)] = std::sin(angle);
        }
    // torch's fp32 angles: the phase carries up to |angle|·2^-24 (here ≈ 1512·6e-8 ≈ 1e-4 rad
    // on the first channels: ≲ 4e-10 seen); small positions are tight (≲ 5e-14 seen).
    const bool far = rc.pos0 + rc.n_tok > 100;
    const double table_thr = far ? 2e-9 : 3e-13;
    const double ec = nmse(cos_t, want_cos);
    EXPECT_LE(ec, table_thr) << "cos";
    worst.add(far ? "rope_tables (pos >= 1500)" : "rope_tables (pos < 20)", ec);
    if (rc.pos0 + rc.n_tok > 1) { // sin(0) alone is 0
        const double es = nmse(sin_t, want_sin);
        EXPECT_LE(es, table_thr) << "sin";
        worst.add(far ? "rope_tables (pos >= 1500)" : "rope_tables (pos < 20)", es);
    }

    for (int n_heads : {1, 3})
        for (bool pairs : {false, true}) {
            SCOPED_TRACE(str(n_heads, " heads", pairs ? " pairs" : " halves"));
            const int64_t ld = int64_t(n_heads) * rc.d + 7; // padding that must stay
            const auto x = normal_floats(size_t(rc.n_tok * ld), rng);
            Buffer xb = to_backend(be, x);
            be.rope(xb.as<float>(), rc.n_tok, n_heads, rc.d, ld, cb.as<float>(), sb.as<float>(),
                    pairs);
            const auto got = download<float>(be, xb);
            // The rotation alone (the backend's tables) and the whole formula, over the rows
            // without their padding.
            const int64_t width = int64_t(n_heads) * rc.d;
            auto unpadded = [&]<typename T>(const std::vector<T>& v) {
                std::vector<T> out;
                for (int64_t t = 0; t < rc.n_tok; ++t)
                    out.insert(out.end(), v.begin() + t * ld, v.begin() + t * ld + width);
                return out;
            };
            const auto got_rows = unpadded(got);
            const double et = nmse(
                got_rows,
                unpadded(reference_rope(x, rc.n_tok, n_heads, rc.d, ld, cos_t, sin_t, pairs)));
            const double ef = nmse(got_rows,
                                   unpadded(reference_rope(x, rc.n_tok, n_heads, rc.d, ld, want_cos,
                                                           want_sin, pairs)));
            EXPECT_LE(et, 1e-13) << "against the backend's tables";
            EXPECT_LE(ef, table_thr) << "against the formula";
            worst.add("rope (its tables)", et);
            worst.add(far ? "rope (formula, pos >= 1500)" : "rope (formula, pos < 20)", ef);
            for (int64_t t = 0; t < rc.n_tok; ++t)
                for (int64_t j = width; j < ld; ++j)
                    ASSERT_EQ(got[size_t(t * ld + j)], x[size_t(t * ld + j)]) << "padding written";
        }
}

TEST(BackendOps, RopeTablesAndRotationInBothChannelOrders)
{
    // 1e4 and 1e6 (Qwen2, InternLM2), and a dynamic-NTK base: 1e6·(2·4096/2048 - 1)^(D/(D-2)).
    const double bases[] = {1e4, 1e6, 1e6 * std::pow(3.0, 128.0 / 126.0)};
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        Worst worst {be->name(), {}};
        std::mt19937 rng(5);
        for (double base : bases)
            for (int d : {2, 16, 64, 80, 128})
                for (int64_t pos0 : {0, 5, 1500})
                    for (float pos_scale : {1.f, 2.5f})
                        for (int64_t n_tok : {1, 7, 13})
                            check_rope(*be, {base, d, pos0, n_tok, pos_scale}, rng, worst);
    }
}

// ---------------------------------------------------------------------------------------------
// Attention

// softmax(scale·q·kᵀ)·v in double for query rows q [n_q, D] over keys/values k, v [n_k, D],
// query i seeing keys [0, visible(i)).
template<typename Visible>
void reference_attend(const float* q, size_t q_stride, const double* k, const double* v,
                      size_t kv_stride, int n_q, int d, double scale, Visible visible, double* out,
                      size_t out_stride)
{
    for (int i = 0; i < n_q; ++i) {
        const int nk = visible(i);
        std::vector<double> p(static_cast<size_t>(nk));
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < nk; ++j) {
            double s = 0;
            for (int c = 0; c < d; ++c)
                s += double(q[size_t(i) * q_stride + size_t(c)])
                    * k[size_t(j) * kv_stride + size_t(c)];
            p[size_t(j)] = s * scale;
            mx = std::max(mx, p[size_t(j)]);
        }
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (int c = 0; c < d; ++c) {
            double o = 0;
            for (int j = 0; j < nk; ++j) o += p[size_t(j)] * v[size_t(j) * kv_stride + size_t(c)];
            out[size_t(i) * out_stride + size_t(c)] = o / sum;
        }
    }
}

// f32 dot products and softmax against double: ≲ 5e-13 seen.
constexpr double kAttentionThreshold = 3e-12;

TEST(BackendOps, AttentionFull)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        Worst worst {be->name(), {}};
        std::mt19937 rng(6);
        for (int64_t n_seq : {1, 3})
            for (int64_t n_tok : {1, 5, 17, 65})
                for (int n_heads : {1, 3})
                    for (int d : {8, 40, 64}) {
                        SCOPED_TRACE(
                            str(n_seq, " x ", n_tok, " tokens, ", n_heads, " heads, D ", d));
                        const int width = n_heads * d;
                        const size_t rows = size_t(n_seq * n_tok);
                        const auto qkv = normal_floats(rows * size_t(3 * width), rng);
                        const float scale = 1.f / std::sqrt(float(d));
                        Buffer qb = to_backend(*be, qkv),
                               ob = be->alloc(rows * size_t(width) * sizeof(float));
                        be->attention_full(qb.as<float>(), n_seq, n_tok, n_heads, d, scale,
                                           ob.as<float>());
                        std::vector<double> want(rows * size_t(width));
                        std::vector<double> k(size_t(n_tok * d)), v(k.size());
                        for (int64_t s = 0; s < n_seq; ++s)
                            for (int h = 0; h < n_heads; ++h) {
                                const size_t r0 = size_t(s * n_tok);
                                for (int64_t t = 0; t < n_tok; ++t)
                                    for (int c = 0; c < d; ++c) {
                                        const size_t row = (r0 + size_t(t)) * size_t(3 * width);
                                        k[size_t(t * d + c)] = qkv[row + size_t(width + h * d + c)];
                                        v[size_t(t * d + c)]
                                            = qkv[row + size_t(2 * width + h * d + c)];
                                    }
                                reference_attend(
                                    &qkv[r0 * size_t(3 * width) + size_t(h * d)], size_t(3 * width),
                                    k.data(), v.data(), size_t(d), int(n_tok), d, scale,
                                    [&](int) { return int(n_tok); },
                                    &want[r0 * size_t(width) + size_t(h * d)], size_t(width));
                            }
                        const double e = nmse(download<float>(*be, ob), want);
                        EXPECT_LE(e, kAttentionThreshold);
                        worst.add("attention_full", e);
                    }
    }
}

// How one side (keys or values) of a range of cached tokens is stored.
struct KvKind
{
    KvType type = KvType::f32;
    SkvqFormat fmt {}; // skvq only
};

std::string kind_name(const KvKind& k)
{
    if (k.type != KvType::skvq) return model::kv_type_name(k.type);
    return str("skvq", k.fmt.levels == 3 ? 1.5 : double(k.fmt.bits), "g", k.fmt.group);
}

size_t row_bytes(const KvKind& k, int d)
{
    return k.type == KvType::skvq ? cpu::skvq_row_bytes(k.fmt, d) : cpu::kv_row_bytes(k.type, d);
}

KvKind skvq_kind(float bits, int d)
{
    return {KvType::skvq, cpu::skvq_format(bits, 32, d)};
}

// Tokens [previous end, end) stored as k / v.
struct Segment
{
    int end;
    KvKind k, v;
};

// A paged cache as model/kv-cache.cpp lays one layer out: blocks of T tokens, each with every
// KV head's T key rows and then (64-byte aligned) its T value rows; a block holds each kind of
// the plan in its own buffer (like SKVQ's f32 blocks beside the quantized ones). runs() cuts the
// tokens into runs at block and segment boundaries, as KvCache::Impl::runs does.
class TestCache
{
public:
    TestCache(Backend& be, int n_kv, int d, int block, std::vector<Segment> plan, std::mt19937& rng)
        : be_(be)
        , n_kv_(n_kv)
        , d_(d)
        , block_(block)
        , plan_(std::move(plan))
    {
        // Random channel orders and clipping factors per KV head, as a calibration gives.
        for (auto* perm : {&k_perm_, &v_perm_}) {
            perm->resize(size_t(n_kv * d));
            for (int h = 0; h < n_kv; ++h) {
                auto first = perm->begin() + h * d;
                std::iota(first, first + d, 0);
                std::shuffle(first, first + d, rng);
            }
        }
        for (auto* clip : {&k_clip_, &v_clip_}) {
            clip->resize(size_t(n_kv * d)); // ≥ n_kv · groups for any group size
            for (float& c : *clip) c = rng() % 4 == 0 ? 1.f : uniform(rng, 0.5f, 1.f);
        }
        k_perm_b_ = to_backend(be, k_perm_);
        v_perm_b_ = to_backend(be, v_perm_);
        k_clip_b_ = to_backend(be, k_clip_);
        v_clip_b_ = to_backend(be, v_clip_);
    }

    // Stores tokens [0, n) of k, v [n, n_kv·D] (host) through the backend, a token at a time.
    void store(const std::vector<float>& k, const std::vector<float>& v, int n)
    {
        const int64_t width = int64_t(n_kv_) * d_;
        Buffer kb = to_backend(be_, k), vb = to_backend(be_, v);
        for (int t = 0; t < n; ++t) {
            const int s = segment(t);
            const Segment& seg = plan_[size_t(s)];
            uint8_t* block = storage(t / block_, s);
            const size_t slot = size_t(t % block_);
            const size_t krb = row_bytes(seg.k, d_), vrb = row_bytes(seg.v, d_);
            store_side(seg.k, kb.as<float>() + t * width, block + slot * krb, size_t(block_) * krb,
                       k_perm_b_, k_clip_b_);
            store_side(seg.v, vb.as<float>() + t * width, block + v_offset(s) + slot * vrb,
                       size_t(block_) * vrb, v_perm_b_, v_clip_b_);
        }
    }

    std::vector<KvRun> runs(int n) const
    {
        std::vector<KvRun> out;
        for (int b = 0; b * block_ < n; ++b) {
            const int b1 = std::min(n, (b + 1) * block_);
            for (int p = b * block_; p < b1;) {
                const int s = segment(p);
                const Segment& seg = plan_[size_t(s)];
                const int next = std::min(b1, seg.end);
                const size_t slot = size_t(p - b * block_);
                const size_t krb = row_bytes(seg.k, d_), vrb = row_bytes(seg.v, d_);
                const uint8_t* block = blocks_.at(key(b, s)).as<uint8_t>();
                KvRun r;
                r.k = block + slot * krb;
                r.v = block + v_offset(s) + slot * vrb;
                r.k_head_stride = size_t(block_) * krb;
                r.v_head_stride = size_t(block_) * vrb;
                r.n_tokens = next - p;
                r.k_type = seg.k.type;
                r.v_type = seg.v.type;
                r.k_perm = seg.k.type == KvType::skvq ? k_perm_b_.as<int32_t>() : nullptr;
                r.v_perm = seg.v.type == KvType::skvq ? v_perm_b_.as<int32_t>() : nullptr;
                r.k_fmt = seg.k.fmt;
                r.v_fmt = seg.v.fmt;
                out.push_back(r);
                p = next;
            }
        }
        return out;
    }

    // The keys and values the first n tokens' runs hold, downloaded and dequantized by the
    // formats' definitions, back in channel order: [n, n_kv·D] each.
    void held(int n, std::vector<double>& k, std::vector<double>& v) const
    {
        const size_t width = size_t(n_kv_ * d_);
        k.assign(size_t(n) * width, 0);
        v.assign(size_t(n) * width, 0);
        int t0 = 0;
        for (const KvRun& r : runs(n)) {
            for (int h = 0; h < n_kv_; ++h) {
                read(r.k + size_t(h) * r.k_head_stride, {r.k_type, r.k_fmt}, int(r.n_tokens),
                     k_perm_.data() + h * d_, &k[size_t(t0) * width + size_t(h * d_)], width);
                read(r.v + size_t(h) * r.v_head_stride, {r.v_type, r.v_fmt}, int(r.n_tokens),
                     v_perm_.data() + h * d_, &v[size_t(t0) * width + size_t(h * d_)], width);
            }
            t0 += int(r.n_tokens);
        }
    }

private:
    int segment(int t) const
    {
        for (size_t s = 0; s < plan_.size(); ++s)
            if (t < plan_[s].end) return int(s);
        ADD_FAILURE() << "token " << t << " past the plan";
        return int(plan_.size()) - 1;
    }
    size_t v_offset(int s) const
    {
        return (size_t(n_kv_) * size_t(block_) * row_bytes(plan_[size_t(s)].k, d_) + 63) / 64 * 64;
    }
    int key(int b, int s) const { return b * 1000 + s; }
    uint8_t* storage(int b, int s)
    {
        Buffer& buf = blocks_[key(b, s)];
        if (!buf) {
            const size_t bytes
                = v_offset(s) + size_t(n_kv_) * size_t(block_) * row_bytes(plan_[size_t(s)].v, d_);
            // Garbage in the unused slots must not matter: fill with NaN-ish bytes.
            std::vector<uint8_t> junk(bytes, 0xFF);
            buf = to_backend(be_, junk);
        }
        return buf.as<uint8_t>();
    }
    void store_side(const KvKind& kind, const float* src, uint8_t* dst, size_t dst_ld,
                    const Buffer& perm, const Buffer& clip)
    {
        if (kind.type == KvType::skvq) {
            // The clip table is [n_kv, D]-sized; each head reads its first D / group.
            be_.skvq_store(kind.fmt, src, n_kv_, d_, d_, perm.as<int32_t>(), d_, clip.as<float>(),
                           d_, dst, dst_ld);
        } else {
            be_.kv_store(kind.type, src, n_kv_, d_, d_, dst, dst_ld);
        }
    }
    void read(const uint8_t* src, const KvKind& kind, int n, const int32_t* perm, double* dst,
              size_t dst_stride) const
    {
        const auto bytes = download<uint8_t>(be_, src, size_t(n) * row_bytes(kind, d_));
        std::vector<float> rows(size_t(n * d_));
        if (kind.type == KvType::skvq)
            cpu::skvq_dequantize_rows(kind.fmt, bytes.data(), n, d_, rows.data());
        else
            cpu::kv_dequantize_rows(kind.type, bytes.data(), n, d_, rows.data());
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < d_; ++j) {
                // SKVQ rows are in stored order: position j holds channel perm[j].
                const int c = kind.type == KvType::skvq ? perm[j] : j;
                dst[size_t(i) * dst_stride + size_t(c)] = rows[size_t(i * d_ + j)];
            }
    }

    Backend& be_;
    int n_kv_, d_, block_;
    std::vector<Segment> plan_;
    std::vector<int32_t> k_perm_, v_perm_;
    std::vector<float> k_clip_, v_clip_;
    Buffer k_perm_b_, v_perm_b_, k_clip_b_, v_clip_b_;
    std::map<int, Buffer> blocks_;
};

struct CausalCase
{
    int n_heads, n_kv, d;
    int block;
    int n_past, n_new;
    std::vector<Segment> plan; // must reach n_past + n_new + extra
    int extra = 0; // tokens in runs past the attended ones (ignored)
};

double check_causal(Backend& be, model::Workspace& ws, const CausalCase& c, std::mt19937& rng)
{
    std::string plan;
    for (const Segment& s : c.plan)
        plan += str(" ", kind_name(s.k), "/", kind_name(s.v), "<", s.end);
    SCOPED_TRACE(str(c.n_heads, "/", c.n_kv, " heads D ", c.d, " block ", c.block, " past ",
                     c.n_past, " new ", c.n_new, " extra ", c.extra, " plan", plan));
    const int n_total = c.n_past + c.n_new, n_stored = n_total + c.extra;
    const int width = c.n_kv * c.d, q_width = c.n_heads * c.d;
    TestCache cache(be, c.n_kv, c.d, c.block, c.plan, rng);
    // Keys with per-channel offsets and scales (like Qwen2's k_proj bias), values plain.
    std::vector<float> k = normal_floats(size_t(n_stored * width), rng);
    for (size_t i = 0; i < k.size(); ++i) {
        const size_t ch = i % size_t(c.d);
        k[i] = k[i] * (0.5f + float(ch % 7)) + float(int(ch % 5) - 2);
    }
    const std::vector<float> v = normal_floats(size_t(n_stored * width), rng);
    cache.store(k, v, n_stored);
    const auto runs = cache.runs(n_stored);

    const int64_t ldq = c.n_new % 2 ? q_width + 5 : q_width;
    const std::vector<float> q = normal_floats(size_t(c.n_new * ldq), rng, 0.3f);
    const float scale = 1.f / std::sqrt(float(c.d));
    Buffer qb = to_backend(be, q), ob = be.alloc(size_t(c.n_new * q_width) * sizeof(float));
    be.attention_causal(qb.as<float>(), ldq, c.n_new, c.n_past, c.n_heads, c.n_kv, c.d, runs, scale,
                        ob.as<float>(), ws);

    std::vector<double> kd, vd, want(size_t(c.n_new * q_width));
    cache.held(n_total, kd, vd);
    const int group = c.n_heads / c.n_kv;
    for (int h = 0; h < c.n_heads; ++h) {
        const int g = h / group;
        reference_attend(
            &q[size_t(h * c.d)], size_t(ldq), &kd[size_t(g * c.d)], &vd[size_t(g * c.d)],
            size_t(width), c.n_new, c.d, scale, [&](int i) { return c.n_past + i + 1; },
            &want[size_t(h * c.d)], size_t(q_width));
    }
    const double e = nmse(download<float>(be, ob), want);
    EXPECT_LE(e, kAttentionThreshold);
    return e;
}

TEST(BackendOps, AttentionCausalOverEveryKvType)
{
    const KvType plain[] = {KvType::f32, KvType::f16, KvType::q8, KvType::q4};
    struct Gqa
    {
        int n_heads, n_kv;
    };
    const Gqa gqas[] = {{2, 2}, {4, 2}, {7, 1}};
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        Worst worst {be->name(), {}};
        std::mt19937 rng(7);
        auto ws = be->workspace();
        // One KV type throughout: decoding (the special kernel's head dims and others) and
        // prompts after a history, over runs of 16, 64 and 100 tokens with a partial last one.
        for (KvType t : plain)
            for (int d : {16, 32, 64, 128, 24, 80})
                for (Gqa g : gqas) {
                    const KvKind kind {t};
                    const int block = d == 16 ? 16 : d == 64 ? 100 : 64;
                    for (auto [past, n_new] :
                         {std::pair {0, 1}, std::pair {36, 1}, std::pair {300, 1}, std::pair {0, 5},
                          std::pair {70, 9}}) {
                        CausalCase c {
                            g.n_heads, g.n_kv, d, block, past, n_new, {{past + n_new, kind, kind}}};
                        worst.add(str("attention_causal ", kind_name(kind),
                                      n_new == 1 ? " decode" : " prompt"),
                                  check_causal(*be, *ws, c, rng));
                    }
                }
        // Keys and values of different types; a long decode split between threads.
        const std::pair<KvType, KvType> mixed[] = {{KvType::q8, KvType::f16},
                                                   {KvType::f16, KvType::q4},
                                                   {KvType::f32, KvType::q8},
                                                   {KvType::q4, KvType::f32}};
        for (auto [kt, vt] : mixed)
            for (int d : {64, 128, 40})
                for (auto [past, n_new] : {std::pair {1200, 1}, std::pair {45, 6}}) {
                    CausalCase c {14, 2, d, 64, past, n_new, {{past + n_new, {kt}, {vt}}}};
                    worst.add("attention_causal mixed k/v", check_causal(*be, *ws, c, rng));
                }
        // Runs past the attended tokens are ignored.
        for (KvType t : plain) {
            CausalCase c {4, 2, 64, 32, 40, 1, {{100, {t}, {t}}}, 30};
            worst.add("attention_causal extra runs", check_causal(*be, *ws, c, rng));
            CausalCase p {4, 2, 48, 32, 40, 3, {{100, {t}, {t}}}, 30};
            worst.add("attention_causal extra runs", check_causal(*be, *ws, p, rng));
        }
        // SKVQ: an f32 sink, quantized tokens, an f32 window (the cache's runs), K and V of
        // their own bit widths, random channel orders and clipping per head.
        const std::pair<float, float> bits[]
            = {{2.f, 1.5f}, {4.f, 2.f}, {8.f, 4.f}, {2.f, 8.f}, {4.f, 1.5f}};
        for (auto [kb, vb] : bits)
            for (int d : {32, 64, 128, 48})
                for (Gqa g : gqas)
                    for (auto [past, n_new] : {std::pair {200, 1}, std::pair {90, 7}}) {
                        const KvKind f32 {KvType::f32}, kq = skvq_kind(kb, d),
                                                        vq = skvq_kind(vb, d);
                        const int n_total = past + n_new, sink = 5,
                                  q_end = std::max(sink, n_total - 40);
                        const std::vector<Segment> windowed
                            = {{sink, f32, f32}, {q_end, kq, vq}, {n_total, f32, f32}};
                        CausalCase c {g.n_heads, g.n_kv, d, 64, past, n_new, windowed};
                        worst.add(str("attention_causal skvq K", kb, "V", vb),
                                  check_causal(*be, *ws, c, rng));
                        // Quantized throughout.
                        CausalCase all {g.n_heads, g.n_kv, d, 48, past, n_new, {{n_total, kq, vq}}};
                        worst.add(str("attention_causal skvq K", kb, "V", vb),
                                  check_causal(*be, *ws, all, rng));
                    }
    }
}

// ---------------------------------------------------------------------------------------------
// KV rows

TEST(BackendOps, KvStoreWritesTheFormatsBytes)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        std::mt19937 rng(8);
        const int64_t n_rows = 7;
        for (int d : {16, 24, 40, 64, 128})
            for (KvType t : {KvType::f32, KvType::f16, KvType::q8, KvType::q4}) {
                SCOPED_TRACE(str(model::kv_type_name(t), " D ", d));
                const size_t rb = cpu::kv_row_bytes(t, d), dst_ld = rb + 13;
                const int64_t src_ld = d + 3;
                auto src = normal_floats(size_t(n_rows * src_ld), rng, 2.f);
                src[0] = 0.f; // an all-equal group start
                if (d >= 32)
                    std::fill(src.begin() + src_ld, src.begin() + src_ld + 32, 0.f); // d = 0
                std::vector<uint8_t> dst(dst_ld * size_t(n_rows));
                for (auto& b : dst) b = uint8_t(rng());
                Buffer sb = to_backend(*be, src), db = to_backend(*be, dst);
                be->kv_store(t, sb.as<float>(), n_rows, src_ld, d, db.as<uint8_t>(), dst_ld);
                for (int64_t r = 0; r < n_rows; ++r)
                    cpu::kv_quantize_row(t, &src[size_t(r * src_ld)], d, &dst[size_t(r) * dst_ld]);
                EXPECT_EQ(download<uint8_t>(*be, db), dst);
            }
        for (int d : {24, 64, 128})
            for (float bits : {1.5f, 2.f, 4.f, 8.f})
                for (int group : {32, 128})
                    for (bool with_perm : {false, true})
                        for (bool with_clip : {false, true}) {
                            const SkvqFormat f = cpu::skvq_format(bits, group, d);
                            SCOPED_TRACE(str("skvq ", bits, " group ", group, " D ", d,
                                             with_perm ? " perm" : "", with_clip ? " clip" : ""));
                            const size_t rb = cpu::skvq_row_bytes(f, d), dst_ld = rb + 5;
                            const int64_t src_ld = d + 1, perm_ld = d + 2, n_groups = d / f.group,
                                          clip_ld = n_groups + 1;
                            const auto src = normal_floats(size_t(n_rows * src_ld), rng, 2.f, 0.5f);
                            std::vector<int32_t> perm(size_t(n_rows * perm_ld), -1);
                            for (int64_t r = 0; r < n_rows; ++r) {
                                std::iota(perm.begin() + r * perm_ld,
                                          perm.begin() + r * perm_ld + d, 0);
                                std::shuffle(perm.begin() + r * perm_ld,
                                             perm.begin() + r * perm_ld + d, rng);
                            }
                            std::vector<float> clip(size_t(n_rows * clip_ld));
                            for (float& c : clip) c = uniform(rng, 0.5f, 1.f);
                            std::vector<uint8_t> dst(dst_ld * size_t(n_rows));
                            for (auto& b : dst) b = uint8_t(rng());
                            Buffer sb = to_backend(*be, src), pb = to_backend(*be, perm),
                                   cb = to_backend(*be, clip), db = to_backend(*be, dst);
                            be->skvq_store(f, sb.as<float>(), n_rows, src_ld, d,
                                           with_perm ? pb.as<int32_t>() : nullptr, perm_ld,
                                           with_clip ? cb.as<float>() : nullptr, clip_ld,
                                           db.as<uint8_t>(), dst_ld);
                            for (int64_t r = 0; r < n_rows; ++r)
                                cpu::skvq_quantize_row(
                                    f, &src[size_t(r * src_ld)], d,
                                    with_perm ? &perm[size_t(r * perm_ld)] : nullptr,
                                    with_clip ? &clip[size_t(r * clip_ld)] : nullptr,
                                    &dst[size_t(r) * dst_ld]);
                            EXPECT_EQ(download<uint8_t>(*be, db), dst);
                        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vision

TEST(BackendOps, Im2colPatches)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        std::mt19937 rng(9);
        struct Shape
        {
            int64_t n;
            int c, s, p;
        };
        for (Shape sh :
             {Shape {1, 3, 14, 7}, Shape {2, 3, 12, 4}, Shape {3, 1, 5, 5}, Shape {1, 5, 9, 3}}) {
            SCOPED_TRACE(str("n ", sh.n, " c ", sh.c, " s ", sh.s, " p ", sh.p));
            const auto px = normal_floats(size_t(sh.n * sh.c * sh.s * sh.s), rng);
            const int g = sh.s / sh.p;
            const size_t cols = size_t(sh.c * sh.p * sh.p), n_out = size_t(sh.n * g * g) * cols;
            Buffer pb = to_backend(*be, px), ob = be->alloc(n_out * sizeof(float));
            be->im2col_patches(pb.as<float>(), sh.n, sh.c, sh.s, sh.p, ob.as<float>());
            const auto got = download<float>(*be, ob);
            for (int64_t i = 0; i < sh.n; ++i)
                for (int gy = 0; gy < g; ++gy)
                    for (int gx = 0; gx < g; ++gx)
                        for (int ch = 0; ch < sh.c; ++ch)
                            for (int ky = 0; ky < sh.p; ++ky)
                                for (int kx = 0; kx < sh.p; ++kx) {
                                    const size_t row = size_t((i * g + gy) * g + gx);
                                    const size_t col = size_t((ch * sh.p + ky) * sh.p + kx);
                                    const size_t src
                                        = size_t(((i * sh.c + ch) * sh.s + gy * sh.p + ky) * sh.s
                                                 + gx * sh.p + kx);
                                    ASSERT_EQ(got[row * cols + col], px[src]);
                                }
        }
    }
}

// torch.nn.functional.interpolate(mode='bicubic', align_corners=False) in double: source
// coordinate scale·(dst + 0.5) - 0.5 (not clamped), taps floor - 1 .. floor + 2 clamped to the
// border, Keys' cubic with A = -0.75.
std::vector<double> reference_bicubic(const std::vector<float>& src, int64_t c, int ih, int iw,
                                      int oh, int ow)
{
    const double A = -0.75;
    auto cc1 = [&](double x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
    auto cc2 = [&](double x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
    auto taps = [&](int in, int out, int o, int idx[4], double w[4]) {
        const double real = double(in) / out * (o + 0.5) - 0.5;
        const int i0 = int(std::floor(real));
        const double t = real - i0;
        w[0] = cc2(t + 1);
        w[1] = cc1(t);
        w[2] = cc1(1 - t);
        w[3] = cc2(2 - t);
        for (int j = 0; j < 4; ++j) idx[j] = std::clamp(i0 - 1 + j, 0, in - 1);
    };
    std::vector<double> dst(size_t(c * oh * ow));
    for (int64_t ch = 0; ch < c; ++ch)
        for (int y = 0; y < oh; ++y) {
            int yi[4];
            double yw[4];
            taps(ih, oh, y, yi, yw);
            for (int x = 0; x < ow; ++x) {
                int xi[4];
                double xw[4];
                taps(iw, ow, x, xi, xw);
                double acc = 0;
                for (int j = 0; j < 4; ++j)
                    for (int i = 0; i < 4; ++i)
                        acc += yw[j] * xw[i] * src[size_t((ch * ih + yi[j]) * iw + xi[i])];
                dst[size_t((ch * oh + y) * ow + x)] = acc;
            }
        }
    return dst;
}

TEST(BackendOps, BicubicResize)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        Worst worst {be->name(), {}};
        std::mt19937 rng(10);
        struct Shape
        {
            int64_t c;
            int ih, iw, oh, ow;
        };
        // Identity, up, down, mixed, one pixel, InternViT's 32² position grid to 24² and 40².
        for (Shape s : {Shape {3, 5, 7, 5, 7}, Shape {3, 7, 5, 11, 13}, Shape {2, 16, 16, 9, 6},
                        Shape {1, 6, 9, 13, 4}, Shape {2, 1, 1, 3, 2}, Shape {5, 32, 32, 24, 24},
                        Shape {4, 32, 32, 40, 40}}) {
            SCOPED_TRACE(str("c ", s.c, " ", s.ih, "x", s.iw, " -> ", s.oh, "x", s.ow));
            const auto src = normal_floats(size_t(s.c * s.ih * s.iw), rng);
            Buffer sb = to_backend(*be, src),
                   db = be->alloc(size_t(s.c * s.oh * s.ow) * sizeof(float));
            be->bicubic_resize(sb.as<float>(), s.c, s.ih, s.iw, s.oh, s.ow, db.as<float>());
            const auto got = download<float>(*be, db);
            if (s.ih == s.oh && s.iw == s.ow) {
                EXPECT_EQ(got, src) << "identity";
                continue;
            }
            // 16 f32 taps and torch's f32 source coordinates: ≲ 2e-12 seen.
            const double e = nmse(got, reference_bicubic(src, s.c, s.ih, s.iw, s.oh, s.ow));
            EXPECT_LE(e, 1e-11);
            worst.add("bicubic_resize", e);
        }
    }
}

TEST(BackendOps, PixelShuffleV1AndV2)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        std::mt19937 rng(11);
        struct Shape
        {
            int64_t n;
            int h, w, c, r;
        };
        for (Shape s : {Shape {1, 4, 4, 3, 2}, Shape {2, 4, 6, 5, 2}, Shape {1, 6, 3, 2, 3},
                        Shape {3, 2, 2, 7, 1}})
            for (bool v2 : {false, true}) {
                SCOPED_TRACE(str("n ", s.n, " h ", s.h, " w ", s.w, " c ", s.c, " r ", s.r,
                                 v2 ? " v2" : " v1"));
                const auto x = normal_floats(size_t(s.n * s.h * s.w * s.c), rng);
                Buffer xb = to_backend(*be, x), ob = be->alloc(x.size() * sizeof(float));
                be->pixel_shuffle(xb.as<float>(), s.n, s.h, s.w, s.c, s.r, v2, ob.as<float>());
                const auto got = download<float>(*be, ob);
                const int oh = s.h / s.r, ow = s.w / s.r;
                const int64_t out_c = int64_t(s.r) * s.r * s.c;
                for (int64_t i = 0; i < s.n; ++i)
                    for (int a = 0; a < oh; ++a)
                        for (int b = 0; b < ow; ++b) {
                            const int64_t t = v2 ? int64_t(a) * ow + b : int64_t(b) * oh + a;
                            for (int j = 0; j < s.r; ++j)
                                for (int k = 0; k < s.r; ++k)
                                    for (int ch = 0; ch < s.c; ++ch)
                                        ASSERT_EQ(
                                            got[size_t((i * oh * ow + t) * out_c
                                                       + (j * s.r + k) * s.c + ch)],
                                            x[size_t(((i * s.h + s.r * a + j) * s.w + s.r * b + k)
                                                         * s.c
                                                     + ch)])
                                            << "a " << a << " b " << b << " j " << j << " k " << k;
                        }
            }
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling

TEST(BackendOps, ArgmaxTakesTheFirstOfTies)
{
    for (Backend* be : backends()) {
        SCOPED_TRACE(str("backend ", be->name()));
        std::mt19937 rng(12);
        for (int64_t n : {1, 2, 7, 1000, 151655}) {
            SCOPED_TRACE(str("n ", n));
            auto x = normal_floats(size_t(n), rng, 3.f, -20.f); // all negative mostly
            const int64_t first = int64_t(rng() % uint64_t(n)),
                          second = int64_t(rng() % uint64_t(n));
            const int64_t lo = std::min(first, second);
            x[size_t(first)] = x[size_t(second)] = 7.25f;
            Buffer xb = to_backend(*be, x);
            EXPECT_EQ(be->argmax(xb.as<float>(), n), lo);
            // All equal: index 0.
            std::vector<float> same(size_t(n), -1.5f);
            Buffer sb = to_backend(*be, same);
            EXPECT_EQ(be->argmax(sb.as<float>(), n), 0);
            // The last one strictly largest.
            x[size_t(n - 1)] = 100.f;
            Buffer lb = to_backend(*be, x);
            EXPECT_EQ(be->argmax(lb.as<float>(), n), n - 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Devices (LoadOptions::device)

TEST(Devices, NamesTheirBackendAndSayWhichThereAre)
{
    EXPECT_EQ(&model::device_backend("cpu"), &model::cpu_backend());
    const char* env = std::getenv("IRIS_DEVICE"); // the default of an empty name
    EXPECT_EQ(&model::device_backend(""), &model::device_backend(env && *env ? env : "cpu"));
    const std::vector<std::string> devices = model::available_devices();
    ASSERT_FALSE(devices.empty());
    EXPECT_EQ(devices.front(), "cpu");
    for (const std::string& d : devices) EXPECT_EQ(model::device_backend(d).name(), d);
    for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:0x", "CPU"})
        expect_error([&] { model::device_backend(bad); }, ErrorKind::invalid_argument,
                     {"unknown device", "cpu"});
#if IRIS_HAVE_CUDA
    expect_error([] { model::device_backend("cuda:99"); }, ErrorKind::not_found,
                 {"'cuda:99' not found", "this machine has cpu"});
#else
    expect_error([] { model::device_backend("cuda"); }, ErrorKind::unsupported,
                 {"no CUDA backend"});
#endif
}

#if IRIS_HAVE_CUDA
// Every test above runs the CUDA backend where a GPU is; without one, say that it was not run.
TEST(Devices, CudaBackendIsListedWhereAGpuIs)
{
    const auto all = model::available_backends();
    if (all.size() < 2) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
    EXPECT_EQ(all[1]->name().substr(0, 5), "cuda:");
}
#endif

} // namespace
} // namespace iris::test
