// quant_dot_bench — matrix-vector products on quantized weights, one thread, one activation
// row (decoding): the int8 kernels of every set this CPU runs (model/cpu/quant-dot.h) against
// the fallback that dequantizes a row at a time and multiplies in f32 (what the types without
// a kernel get).
//
//   quant_dot_bench            7 repetitions of each measurement, medians
//   quant_dot_bench --reps N
//
// Shapes: Qwen2-0.5B's ffn_down (896 rows of 4864) and a 2048 × 2048 matrix. "hot" reads the
// same matrix again and again (it stays in L2/L3, so this is the kernel's own speed); "stream"
// cycles through copies totalling 512 MiB, so the weights come from DRAM as in decoding a
// real model. The "m=64" rows time a prompt of 64 rows on the hot matrix, still per weight
// row. GB/s counts weight bytes. Times are the thread's CPU time, so that other processes
// sharing the cores (a build) slow the figures down less than wall time would.
#include "model/cpu/ops.h"
#include "model/cpu/quant-dot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <time.h>

namespace cpu = iris::model::cpu;
using iris::model::WeightMatrix;

namespace {

double cpu_seconds()
{
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Seconds per call of f: the median over reps of the mean over enough calls to take ~20 ms.
double time_call(const std::function<void(int64_t)>& f, int reps)
{
    f(0);
    double t0 = cpu_seconds();
    int64_t calls = 0;
    while (cpu_seconds() - t0 < 0.005) f(calls++);
    const double once = (cpu_seconds() - t0) / double(calls);
    const int64_t per_rep = std::max<int64_t>(1, int64_t(0.02 / once));
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        t0 = cpu_seconds();
        for (int64_t c = 0; c < per_rep; ++c) f(c);
        t.push_back((cpu_seconds() - t0) / double(per_rep));
    }
    std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
    return t[size_t(reps / 2)];
}

constexpr int64_t kPrompt = 64;

struct AlignedFree
{
    void operator()(uint8_t* p) const { std::free(p); }
};

} // namespace

int main(int argc, char** argv)
{
    int reps = 7;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = std::max(1, std::atoi(argv[++i]));
        } else {
            std::fprintf(stderr, "usage: quant_dot_bench [--reps N]\n");
            return 2;
        }
    }
    std::vector<const cpu::QuantKernels*> sets;
    for (const char* isa : {"avx512-vnni", "avx2"})
        if (const cpu::QuantKernels* q = cpu::quant_kernels_named(isa)) sets.push_back(q);
    std::printf("median of %d; one thread, m = 1; ns per weight row, GB/s of weights\n", reps);
    std::printf("%-11s %-6s %-22s %10s %8s %s\n", "shape", "type", "path", "ns/row", "GB/s",
                "max |kernel - fallback| / max |y|");
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.f, 1.f);
    const cpu::WeightType types[]
        = {cpu::WeightType::q8_0, cpu::WeightType::q4_0, cpu::WeightType::q4_1,
           cpu::WeightType::q5_0, cpu::WeightType::q5_1, cpu::WeightType::iq4_nl,
           cpu::WeightType::q4_K, cpu::WeightType::q5_K, cpu::WeightType::q6_K};
    for (auto nk : {std::pair<int64_t, int64_t> {896, 4864}, {2048, 2048}}) {
        const int64_t n = nk.first, k = nk.second; // named, not bound: lambdas capture them
        std::vector<float> wf(static_cast<size_t>(n * k)), x(static_cast<size_t>(k));
        for (auto& v : wf) v = normal(rng);
        for (auto& v : x) v = normal(rng);
        const std::string shape = std::to_string(n) + "x" + std::to_string(k);
        for (cpu::WeightType type : types) {
            const size_t rb = cpu::weight_row_bytes(type, k), bytes = rb * size_t(n);
            // Copies of the matrix for the streamed runs, the first one also the hot one.
            const size_t copies = std::max<size_t>(2, (size_t(512) << 20) / bytes);
            std::unique_ptr<uint8_t, AlignedFree> pool(
                static_cast<uint8_t*>(std::aligned_alloc(64, (copies * bytes + 63) / 64 * 64)));
            for (int64_t r = 0; r < n; ++r)
                cpu::quantize_row(type, wf.data() + r * k, k, pool.get() + size_t(r) * rb);
            for (size_t c = 1; c < copies; ++c)
                std::memcpy(pool.get() + c * bytes, pool.get(), bytes);
            auto matrix = [&](size_t c) {
                return WeightMatrix {pool.get() + c * bytes, type, n, k};
            };
            std::vector<float> y_ref(static_cast<size_t>(n)), y(static_cast<size_t>(n));
            auto report = [&](const char* path, double s, const char* check) {
                std::printf("%-11s %-6s %-22s %10.1f %8.2f %s\n", shape.c_str(),
                            cpu::weight_type_name(type), path, s * 1e9 / double(n),
                            double(bytes) / s * 1e-9, check);
                std::fflush(stdout);
            };
            const WeightMatrix w0 = matrix(0);
            const double fallback = time_call(
                [&](int64_t) {
                    cpu::matvec_rows(x.data(), 1, k, w0, 0, n, y_ref.data(), n, /*portable=*/true);
                },
                reps);
            report("dequantize fallback", fallback, "");
            std::unique_ptr<uint8_t, AlignedFree> acts(
                static_cast<uint8_t*>(std::aligned_alloc(64, cpu::act_row_bytes(k))));
            for (const cpu::QuantKernels* q : sets) {
                if (!q->supports(type)) continue;
                auto run = [&](size_t c) {
                    q->prepare(type, x.data(), 1, k, k, acts.get());
                    q->matvec(type, acts.get(), 1, k, pool.get() + c * bytes, rb, 0, n, y.data(),
                              n);
                };
                run(0);
                double diff = 0, ymax = 0;
                for (int64_t j = 0; j < n; ++j) {
                    diff = std::max(diff, double(std::fabs(y[size_t(j)] - y_ref[size_t(j)])));
                    ymax = std::max(ymax, double(std::fabs(y_ref[size_t(j)])));
                }
                char check[32];
                std::snprintf(check, sizeof check, "%.2g", diff / ymax);
                const std::string hot = std::string(q->isa) + " hot";
                report(hot.c_str(), time_call([&](int64_t) { run(0); }, reps), check);
                const std::string stream = std::string(q->isa) + " stream";
                report(stream.c_str(), time_call([&](int64_t c) { run(size_t(c) % copies); }, reps),
                       "");
            }
            // A prompt of kPrompt rows on the hot matrix: without int8 kernels, linear()
            // dequantizes and calls SGEMM; with them it takes the set's GEMM, or its matvec.
            std::vector<float> xp(static_cast<size_t>(kPrompt * k)),
                yp(static_cast<size_t>(kPrompt * n)), wide(static_cast<size_t>(n * k));
            for (auto& v : xp) v = normal(rng);
            report("dequant+sgemm m=64",
                   time_call(
                       [&](int64_t) {
                           cpu::widen_rows(w0, 0, n, wide.data());
                           cpu::gemm_st(kPrompt, n, k, 1.f, xp.data(), k, wide.data(), k, true, 0.f,
                                        yp.data(), n);
                       },
                       reps),
                   "");
            for (const cpu::QuantKernels* q : sets) {
                if (!q->supports(type)) continue;
                const bool gemm = q->gemm != nullptr;
                std::unique_ptr<uint8_t, AlignedFree> pa(static_cast<uint8_t*>(std::aligned_alloc(
                    64, gemm ? q->gemm_act_bytes(kPrompt, k) : kPrompt * cpu::act_row_bytes(k))));
                std::unique_ptr<uint8_t, AlignedFree> tiles(static_cast<uint8_t*>(
                    std::aligned_alloc(64, gemm ? q->gemm_weight_bytes(64, k) : 64)));
                const std::string path
                    = std::string(q->isa) + (gemm ? " gemm" : " matvec") + " m=64";
                report(path.c_str(),
                       time_call(
                           [&](int64_t) {
                               if (gemm) {
                                   q->gemm_prepare(xp.data(), kPrompt, k, k, pa.get());
                                   for (int64_t j = 0; j < n; j += 64)
                                       q->gemm(type, pa.get(), kPrompt, k, w0.data, rb, j,
                                               std::min(n, j + 64), yp.data(), n, tiles.get());
                               } else {
                                   q->prepare(type, xp.data(), kPrompt, k, k, pa.get());
                                   q->matvec(type, pa.get(), kPrompt, k, w0.data, rb, 0, n,
                                             yp.data(), n);
                               }
                           },
                           reps),
                       "");
            }
        }
    }
    return 0;
}
