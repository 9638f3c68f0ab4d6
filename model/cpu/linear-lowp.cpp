// Products with weight matrices kept in their stored type (see ops.h).
//
// Numerics: a bf16 value widened to f32 is exact (its bits shifted left by 16), and so is an
// f16 value, so the paths here and their AVX-512 versions (ops-avx512.h) compute exactly the
// products of the f32 path, only summed in another order. We deliberately do not use vdpbf16ps
// unless asked (bf16_activations): it rounds the activations to bf16 and changes the results
// well beyond fp32 reassociation noise. Quantized weights are already approximate: their
// matrix-vector products quantize the activations too (quant-dot.h), as llama.cpp does; their
// GEMMs dequantize exactly and multiply in f32.
#include "model/cpu/ops-avx512.h"
#include "model/cpu/ops.h"
#include "model/cpu/quant-dot.h"

#include "core/core.h"
#include "model/model.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <vector>

namespace iris::model::cpu {

namespace {

// AVX2 loops for BF16 and F16 weights where ops_avx512() has none: the scalar product of
// matvec_portable is one dependency chain that the compiler cannot vectorise without
// reassociating (1.7 tokens/s decoding a 1B model instead of 30), and bf16_to_f32 is out of line.
// The build requires x86-64-v3, so these need no CPU check; the widening is exact and serves
// every level, the product only the AVX2 one (IRIS_CPU=portable keeps the scalar reference).
// F32 weights take the same loops at every level (AVX2 is the baseline) for up to
// kMatvecMaxRows rows: unlike cblas_sgemv for one row and cblas_sgemm for more, they give each
// row the same bits whatever the number of rows (Backend::kExactRows), and decoding is bound by
// memory either way.

enum class Wide { bf16, f16, f32 };
template<Wide W> using WideT = std::conditional_t<W == Wide::f32, float, uint16_t>;

template<Wide W> inline float widen1(WideT<W> v)
{
    if constexpr (W == Wide::bf16)
        return bf16_to_f32(v);
    else if constexpr (W == Wide::f16)
        return f16_to_f32(v);
    else
        return v;
}

// 8 weights as f32: bf16 by a zero-extension and a 16-bit shift, f16 by vcvtph2ps.
template<Wide W> inline __m256 widen8(const WideT<W>* p)
{
    if constexpr (W == Wide::f32) {
        return _mm256_loadu_ps(p);
    } else {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        if constexpr (W == Wide::bf16)
            return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
        else
            return _mm256_cvtph_ps(v);
    }
}

template<Wide W> void widen_n(const uint16_t* src, int64_t n, float* dst)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, widen8<W>(src + i));
    for (; i < n; ++i) dst[i] = widen1<W>(src[i]);
}

inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// ops-avx512.cpp's dot_block in 8 lanes: R weight rows (w points at the first, row stride k)
// times M activation rows, R·M dot products in f32 accumulators, each weight vector loaded and
// widened once for all M rows. With R = 4 and M ≤ 2 that is 8 accumulators, 2 activation
// vectors and the weights in 16 ymm registers.
template<Wide W, int R, int M>
void dot_block_avx2(const float* x, int64_t ldx, const WideT<W>* w, int64_t k, float* y,
                    int64_t ldy)
{
    __m256 acc[R][M];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) acc[r][i] = _mm256_setzero_ps();
    auto step = [&](int64_t c) {
        __m256 xv[M];
        for (int i = 0; i < M; ++i) xv[i] = _mm256_loadu_ps(x + i * ldx + c);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = widen8<W>(w + r * k + c);
            for (int i = 0; i < M; ++i) acc[r][i] = _mm256_fmadd_ps(wv, xv[i], acc[r][i]);
        }
    };
    int64_t c = 0;
    for (; c + 32 <= k; c += 32) {
        // A cache line of each row per pass (two of f32), and the same columns two blocks of
        // rows ahead prefetched into L2, as ops-avx512.cpp does (the hardware prefetcher alone
        // leaves these interleaved row streams at ~12 GB/s there, this at ~31).
        for (int r = 0; r < R; ++r)
            for (size_t b = 0; b < 32 * sizeof(WideT<W>); b += 64)
                _mm_prefetch(reinterpret_cast<const char*>(w + (2 * R + r) * k + c) + b,
                             _MM_HINT_T1);
        for (int64_t s = 0; s < 32; s += 8) step(c + s);
    }
    for (; c + 8 <= k; c += 8) step(c);
    float tail[R][M] = {};
    for (; c < k; ++c)
        for (int r = 0; r < R; ++r)
            for (int i = 0; i < M; ++i) tail[r][i] += x[i * ldx + c] * widen1<W>(w[r * k + c]);
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) y[i * ldy + r] = hsum8(acc[r][i]) + tail[r][i];
}

template<Wide W, int M>
void matvec_avx2_m(const float* x, int64_t ldx, const WideT<W>* w, int64_t k, int64_t r0,
                   int64_t r1, float* y, int64_t ldy)
{
    int64_t j = r0;
    for (; j + 4 <= r1; j += 4) dot_block_avx2<W, 4, M>(x, ldx, w + j * k, k, y + j, ldy);
    for (; j < r1; ++j) dot_block_avx2<W, 1, M>(x, ldx, w + j * k, k, y + j, ldy);
}

// y[i, j] = Σ_c x[i, c] · w[j, c] for i < m, j in [r0, r1). Activation rows go in pairs; for
// m > 2 the weight rows go 16 at a time (16·k·2 bytes, 152 KiB at k = 4864, within even a
// 256 KiB L2) so that the later pairs read them from L2, not from memory.
template<Wide W>
void matvec_avx2(const float* x, int64_t m, int64_t ldx, const void* weights, int64_t k, int64_t r0,
                 int64_t r1, float* y, int64_t ldy)
{
    const auto* w = static_cast<const WideT<W>*>(weights);
    const int64_t rstep = m > 2 ? 16 : r1 - r0;
    for (int64_t j0 = r0; j0 < r1; j0 += rstep) {
        const int64_t j1 = std::min(r1, j0 + rstep);
        for (int64_t i = 0; i < m; i += 2)
            (m - i >= 2 ? matvec_avx2_m<W, 2> : matvec_avx2_m<W, 1>)(x + i * ldx, ldx, w, k, j0, j1,
                                                                     y + i * ldy, ldy);
    }
}

const uint16_t* row16(const WeightMatrix& w, int64_t r)
{
    return static_cast<const uint16_t*>(w.data) + r * w.cols;
}

// Scratch for widened weight blocks, one per thread (pool workers and callers alike), kept
// across calls so that prefill and the ViT allocate it once.
float* widen_scratch(size_t n)
{
    thread_local std::vector<float> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

void matvec_portable(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0,
                     int64_t r1, float* y, int64_t ldy)
{
    const int64_t k = w.cols;
    thread_local std::vector<float> row;
    if (w.type != WeightType::f32 && row.size() < size_t(k)) row.resize(size_t(k));
    for (int64_t j = r0; j < r1; ++j) {
        const float* wj = static_cast<const float*>(w.row(j));
        if (w.type != WeightType::f32) {
            widen_rows(w, j, j + 1, row.data());
            wj = row.data();
        }
        for (int64_t i = 0; i < m; ++i) {
            const float* xi = x + i * ldx;
            float acc = 0;
            for (int64_t c = 0; c < k; ++c) acc += xi[c] * wj[c];
            y[i * ldy + j] = acc;
        }
    }
}

// A 64-byte aligned buffer that grows to the largest size asked of it and is kept.
struct AlignedBuffer
{
    struct Free
    {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    std::unique_ptr<uint8_t, Free> buf;
    size_t size = 0;

    uint8_t* get(size_t n)
    {
        if (size < n) {
            size = (n + 63) / 64 * 64;
            buf.reset(static_cast<uint8_t*>(std::aligned_alloc(64, size)));
            if (!buf) throw std::bad_alloc();
        }
        return buf.get();
    }
};

// Activations quantized for the int8 kernels (the caller's) and repacked weight tiles (each
// thread's), one buffer per thread.
uint8_t* act_scratch(size_t n)
{
    thread_local AlignedBuffer b;
    return b.get(n);
}
uint8_t* tile_scratch(size_t n)
{
    thread_local AlignedBuffer b;
    return b.get(n);
}

} // namespace

void widen_rows(const WeightMatrix& w, int64_t r0, int64_t r1, float* dst)
{
    const int64_t k = w.cols;
    if (w.type == WeightType::f32) {
        std::memcpy(dst, w.row(r0), size_t((r1 - r0) * k) * sizeof(float));
        return;
    }
    if (is_quantized(w.type)) {
        for (int64_t r = r0; r < r1; ++r) dequantize_row(w.type, w.row(r), k, dst + (r - r0) * k);
        return;
    }
    const uint16_t* src = row16(w, r0);
    const int64_t n = (r1 - r0) * k;
    const bool bf16 = w.type == WeightType::bf16;
    if (const OpsAvx512* simd = ops_avx512()) return simd->widen(bf16, src, n, dst);
    (bf16 ? widen_n<Wide::bf16> : widen_n<Wide::f16>)(src, n, dst);
}

void matvec_rows(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0,
                 int64_t r1, float* y, int64_t ldy, bool portable)
{
    if (m <= 0 || r1 <= r0) return;
    const bool bf16 = w.type == WeightType::bf16;
    const OpsAvx512* simd = portable ? nullptr : ops_avx512();
    if (simd && (bf16 || w.type == WeightType::f16)) {
        thread_local std::vector<float> xp;
        const size_t need
            = bf16 ? size_t(std::min(m, kMatvecChunk) * ((w.cols + 31) / 32 * 32)) : 0;
        if (xp.size() < need) xp.resize(need);
        return simd->matvec(bf16, x, m, ldx, row16(w, 0), w.cols, r0, r1, y, ldy, xp.data());
    }
    if (!portable && cpu_level() == CpuLevel::avx2 && (bf16 || w.type == WeightType::f16))
        return (bf16 ? matvec_avx2<Wide::bf16> : matvec_avx2<Wide::f16>)(x, m, ldx, w.data, w.cols,
                                                                         r0, r1, y, ldy);
    if (!portable && w.type == WeightType::f32)
        return matvec_avx2<Wide::f32>(x, m, ldx, w.data, w.cols, r0, r1, y, ldy);
    const QuantKernels* q = portable ? nullptr : quant_kernels();
    if (q && q->supports(w.type)) {
        uint8_t* acts = act_scratch(size_t(m) * act_row_bytes(w.cols));
        q->prepare(w.type, x, m, ldx, w.cols, acts);
        q->matvec(w.type, acts, m, w.cols, w.data, w.row_bytes(), r0, r1, y, ldy);
        return;
    }
    matvec_portable(x, m, ldx, w, r0, r1, y, ldy);
}

int64_t exact_rows(const WeightMatrix& w)
{
    if (ops_avx512()
        && (w.type == WeightType::f16 || (w.type == WeightType::bf16 && !w.bf16_activations)))
        return std::numeric_limits<int64_t>::max();
    return kMatvecMaxRows;
}

void linear(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, const float* bias,
            float* y, int64_t ldy)
{
    const int64_t n = w.rows, k = w.cols;
    if (w.type == WeightType::f32 && m > kMatvecMaxRows) {
        linear(x, m, k, ldx, static_cast<const float*>(w.data), n, bias, y, ldy);
        return;
    }
    if (m <= 0 || n <= 0) return;
    // BF16 (unless its activations may be rounded) and F16 weights of a prompt or the ViT take
    // the AVX-512 matrix-vector kernel too: widening blocks for SGEMM cost a third more time.
    const bool matvec = m <= kMatvecMaxRows
        || (ops_avx512()
            && (w.type == WeightType::f16 || (w.type == WeightType::bf16 && !w.bf16_activations)));
    // The int8 kernels' types run on them, as llama.cpp's products do: a prompt on the set's
    // GEMM where it has one, else q8_0 and q4_0 on the matrix-vector kernel whatever m is.
    // The other types' prompts then dequantize and call SGEMM, which their matrix-vector
    // kernels do not beat at m = 64 (bench/quant_dot_bench, AVX2: half as fast).
    const QuantKernels* q = quant_kernels();
    if (q && !q->supports(w.type)) q = nullptr;
    if (q && !matvec && !q->gemm && w.type != WeightType::q8_0 && w.type != WeightType::q4_0)
        q = nullptr;
    const int nth = n_threads();
    // Blocks of output columns (= weight rows) handed out dynamically, as in the f32 linear.
    // Matrix-vector: about 4 per thread (a slowed core does not hold the others back). GEMM:
    // 2 per thread like the f32 path, because every cblas_sgemm call packs all of x again
    // (with 256-row blocks that re-packing cost 7-15 % of the ViT's products); the widened
    // block is capped at kMaxWidened floats per thread (8 MiB: 4 MiB or so for the ViT and
    // LLM matrices, which stays in L3), so only the lm_head of an all-logits prefill is split
    // finer.
    constexpr int64_t kMaxWidened = int64_t(1) << 21;
    const int64_t target_blocks = int64_t(nth) * (matvec || q ? 4 : 2);
    int64_t block = std::max<int64_t>(64, (n + target_blocks - 1) / target_blocks);
    block = (block + 63) / 64 * 64;
    if (!matvec && !q) block = std::min(block, std::max<int64_t>(64, kMaxWidened / k / 64 * 64));
    // int8 and bf16 GEMMs: 64 weight rows at a time, whose repacked tiles stay in L2 while
    // every activation row passes them.
    const QuantKernels* kernels = quant_kernels();
    const bool gemm = q && q->gemm && !matvec;
    const bool bf16 = !matvec && w.type == WeightType::bf16 && w.bf16_activations && kernels
        && kernels->bf16_gemm;
    if (gemm || bf16) block = 64;
    const int64_t n_blocks = (n + block - 1) / block;
    // The int8 kernels' activations are quantized once, here, for every block of rows.
    const uint8_t* acts = nullptr;
    // Both GEMMs take their activations in groups of 8 rows, prepared in parallel.
    auto prepare_groups = [&](size_t (*bytes)(int64_t, int64_t),
                              void (*prepare)(const float*, int64_t, int64_t, int64_t, uint8_t*)) {
        uint8_t* a = act_scratch(bytes(m, k));
        const size_t per8 = bytes(8, k);
        parallel_range((m + 7) / 8, 4, [&](int64_t lo, int64_t hi) {
            prepare(x + lo * 8 * ldx, std::min(m, hi * 8) - lo * 8, ldx, k, a + size_t(lo) * per8);
        });
        return a;
    };
    if (bf16) {
        acts = prepare_groups(kernels->bf16_act_bytes, kernels->bf16_prepare);
    } else if (gemm) {
        acts = prepare_groups(q->gemm_act_bytes, q->gemm_prepare);
    } else if (q) {
        const size_t arb = act_row_bytes(k);
        uint8_t* a = act_scratch(size_t(m) * arb);
        parallel_range(m, 16, [&](int64_t lo, int64_t hi) {
            q->prepare(w.type, x + lo * ldx, hi - lo, ldx, k, a + size_t(lo) * arb);
        });
        acts = a;
    }

    auto run_block = [&](int64_t b) {
        const int64_t c0 = b * block, c1 = std::min(n, c0 + block);
        if (bf16) {
            uint8_t* tiles = tile_scratch(kernels->bf16_weight_bytes(c1 - c0, k));
            kernels->bf16_gemm(acts, m, k, w.data, c0, c1, y, ldy, tiles);
        } else if (gemm) {
            uint8_t* tiles = tile_scratch(q->gemm_weight_bytes(c1 - c0, k));
            q->gemm(w.type, acts, m, k, w.data, w.row_bytes(), c0, c1, y, ldy, tiles);
        } else if (q) {
            q->matvec(w.type, acts, m, k, w.data, w.row_bytes(), c0, c1, y, ldy);
        } else if (matvec) {
            matvec_rows(x, m, ldx, w, c0, c1, y, ldy);
        } else {
            float* wf = widen_scratch(size_t(block * k));
            widen_rows(w, c0, c1, wf);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(c1 - c0), int(k), 1.f,
                        x, int(ldx), wf, int(k), 0.f, y + c0, int(ldy));
        }
        if (bias)
            for (int64_t r = 0; r < m; ++r) {
                float* yr = y + r * ldy;
                for (int64_t c = c0; c < c1; ++c) yr[c] += bias[c];
            }
    };
    const double flops = 2.0 * double(m) * double(n) * double(k);
    if (nth == 1 || n_blocks == 1 || flops < 2e5) {
        for (int64_t b = 0; b < n_blocks; ++b) run_block(b);
        return;
    }
    std::atomic<int64_t> next {0};
    run_threads([&](int) {
        for (int64_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < n_blocks;)
            run_block(b);
    });
}

} // namespace iris::model::cpu
