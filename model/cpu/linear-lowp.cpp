// Products with weight matrices kept in their stored type (see ops.h).
//
// Numerics: a bf16 value widened to f32 is exact (its bits shifted left by 16), and so is an
// f16 value, so both paths below compute exactly the products of the f32 path, only summed in
// another order. We deliberately do not use vdpbf16ps: it would round the activations to bf16
// and change the results well beyond fp32 reassociation noise. Quantized weights are already
// approximate: their matrix-vector products quantize the activations too (quant-dot.h), as
// llama.cpp does; their GEMMs dequantize exactly and multiply in f32.
#include "model/cpu/ops.h"
#include "model/cpu/quant-dot.h"

#include "core/core.h"
#include "model/model.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define IRIS_LOWP_AVX512 1
#endif

// GCC 12 reports the _mm512_undefined_*() inside its own intrinsics (cvtph, ...) as "may be
// used uninitialized"; the values are fully defined (as in vec-math.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace iris::model::cpu {

namespace {

inline float widen(uint16_t bits, WeightType type)
{
    return type == WeightType::bf16 ? bf16_to_f32(bits) : f16_to_f32(bits);
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

#if IRIS_LOWP_AVX512

// 16 weights widened to f32. The bf16 → f32 widening is a zero-extension and a 16-bit shift.
template<WeightType T> inline __m512 load16(const uint16_t* p)
{
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (T == WeightType::bf16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    else
        return _mm512_cvtph_ps(v);
}
template<WeightType T> inline __m512 load16(const uint16_t* p, __mmask16 mask)
{
    __m256i v = _mm256_maskz_loadu_epi16(mask, p);
    if constexpr (T == WeightType::bf16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    else
        return _mm512_cvtph_ps(v);
}

// F16 (and the generic form of the kernel): R weight rows (w points at the first, row stride
// k) times M activation rows, R·M dot products with 16-lane f32 accumulators, the weights
// widened by vcvtph2ps. Each weight vector is loaded and widened once and used for all
// M activation rows, which stay in L1.
template<WeightType T, int R, int M>
void dot_block(const float* x, int64_t ldx, const uint16_t* w, int64_t k, float* y, int64_t ldy)
{
    __m512 acc[R][M];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= k; c += 16) {
        __m512 xv[M];
        for (int i = 0; i < M; ++i) xv[i] = _mm512_loadu_ps(x + i * ldx + c);
        for (int r = 0; r < R; ++r) {
            if (c % 32 == 0) // one prefetch per cache line, as in dot_block_bf16
                _mm_prefetch(reinterpret_cast<const char*>(w + (2 * R + r) * k + c), _MM_HINT_T1);
            __m512 wv = load16<T>(w + r * k + c);
            for (int i = 0; i < M; ++i) acc[r][i] = _mm512_fmadd_ps(wv, xv[i], acc[r][i]);
        }
    }
    if (c < k) {
        const __mmask16 mask = __mmask16((1u << (k - c)) - 1);
        __m512 xv[M];
        for (int i = 0; i < M; ++i) xv[i] = _mm512_maskz_loadu_ps(mask, x + i * ldx + c);
        for (int r = 0; r < R; ++r) {
            __m512 wv = load16<T>(w + r * k + c, mask);
            for (int i = 0; i < M; ++i) acc[r][i] = _mm512_fmadd_ps(wv, xv[i], acc[r][i]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[r][i]);
}

template<WeightType T, int M>
void matvec_m(const float* x, int64_t ldx, const WeightMatrix& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy)
{
    const int64_t k = w.cols;
    int64_t j = r0;
    for (; j + 4 <= r1; j += 4) dot_block<T, 4, M>(x, ldx, row16(w, j), k, y + j, ldy);
    for (; j < r1; ++j) dot_block<T, 1, M>(x, ldx, row16(w, j), k, y + j, ldy);
}

// BF16 without shuffles: 32 weights are one 512-bit load; the even-indexed values become f32
// by a shift left of 16 and the odd-indexed ones by masking off the low half (a bf16 value is
// the top half of its f32). The activations were de-interleaved to match (xp: per 32 columns,
// the 16 even then the 16 odd ones, zero-padded to kp columns), so each weight costs 1/16 of a
// cheap integer op instead of a lane-crossing widen: the kernel then keeps up with DRAM.
template<int R, int M>
void dot_block_bf16(const float* xp, int64_t kp, const uint16_t* w, int64_t k, float* y,
                    int64_t ldy)
{
    const __m512i hi_mask = _mm512_set1_epi32(int32_t(0xFFFF0000u));
    __m512 acc[R][M];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
    auto step = [&](const __m512i* v, int64_t c) {
        __m512 xe[M], xo[M];
        for (int i = 0; i < M; ++i) {
            xe[i] = _mm512_loadu_ps(xp + i * kp + c);
            xo[i] = _mm512_loadu_ps(xp + i * kp + c + 16);
        }
        for (int r = 0; r < R; ++r) {
            __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v[r], 16));
            __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(v[r], hi_mask));
            for (int i = 0; i < M; ++i) {
                acc[r][i] = _mm512_fmadd_ps(we, xe[i], acc[r][i]);
                acc[r][i] = _mm512_fmadd_ps(wo, xo[i], acc[r][i]);
            }
        }
    };
    int64_t c = 0;
    for (; c + 32 <= k; c += 32) {
        __m512i v[R];
        for (int r = 0; r < R; ++r) {
            // The same columns two blocks of rows ahead, into L2: the hardware prefetcher
            // alone leaves these short, interleaved row streams at ~12 GB/s, this at ~31 (a
            // plain sequential read: 33; _MM_HINT_T0 does not help, measured on Zen 4).
            // Prefetches past the matrix are harmless (they never fault).
            _mm_prefetch(reinterpret_cast<const char*>(w + (2 * R + r) * k + c), _MM_HINT_T1);
            v[r] = _mm512_loadu_si512(w + r * k + c);
        }
        step(v, c);
    }
    if (c < k) {
        const __mmask32 mask = __mmask32((uint64_t(1) << (k - c)) - 1);
        __m512i v[R];
        for (int r = 0; r < R; ++r) v[r] = _mm512_maskz_loadu_epi16(mask, w + r * k + c);
        step(v, c);
    }
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[r][i]);
}

template<int M>
void matvec_bf16_m(const float* xp, int64_t kp, const WeightMatrix& w, int64_t r0, int64_t r1,
                   float* y, int64_t ldy)
{
    const int64_t k = w.cols;
    int64_t j = r0;
    for (; j + 4 <= r1; j += 4) dot_block_bf16<4, M>(xp, kp, row16(w, j), k, y + j, ldy);
    for (; j < r1; ++j) dot_block_bf16<1, M>(xp, kp, row16(w, j), k, y + j, ldy);
}

void matvec_bf16(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0,
                 int64_t r1, float* y, int64_t ldy)
{
    const int64_t k = w.cols, kp = (k + 31) / 32 * 32;
    thread_local std::vector<float> xbuf;
    if (xbuf.size() < size_t(m * kp)) xbuf.resize(size_t(m * kp));
    float* xp = xbuf.data();
    for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * ldx;
        float* dst = xp + i * kp;
        for (int64_t base = 0; base < kp; base += 32)
            for (int64_t lane = 0; lane < 16; ++lane) {
                const int64_t e = base + 2 * lane, o = e + 1;
                dst[base + lane] = e < k ? xi[e] : 0.f;
                dst[base + 16 + lane] = o < k ? xi[o] : 0.f;
            }
    }
    const int64_t rstep = m > 4 ? 32 : r1 - r0;
    for (int64_t j0 = r0; j0 < r1; j0 += rstep) {
        const int64_t j1 = std::min(r1, j0 + rstep);
        for (int64_t i = 0; i < m; i += 4) {
            const float* xi = xp + i * kp;
            float* yi = y + i * ldy;
            switch (std::min<int64_t>(4, m - i)) {
            case 1:
                matvec_bf16_m<1>(xi, kp, w, j0, j1, yi, ldy);
                break;
            case 2:
                matvec_bf16_m<2>(xi, kp, w, j0, j1, yi, ldy);
                break;
            case 3:
                matvec_bf16_m<3>(xi, kp, w, j0, j1, yi, ldy);
                break;
            default:
                matvec_bf16_m<4>(xi, kp, w, j0, j1, yi, ldy);
                break;
            }
        }
    }
}

template<WeightType T>
void matvec_avx512(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0,
                   int64_t r1, float* y, int64_t ldy)
{
    // Activation rows in groups of up to 4 (R·M = 16 accumulators). For m > 4 the weight rows
    // are taken 32 at a time (at most 32·k·2 bytes, L2-resident) so that the later groups
    // read them from L2, not from memory.
    const int64_t rstep = m > 4 ? 32 : r1 - r0;
    for (int64_t j0 = r0; j0 < r1; j0 += rstep) {
        const int64_t j1 = std::min(r1, j0 + rstep);
        for (int64_t i = 0; i < m; i += 4) {
            const float* xi = x + i * ldx;
            float* yi = y + i * ldy;
            switch (std::min<int64_t>(4, m - i)) {
            case 1:
                matvec_m<T, 1>(xi, ldx, w, j0, j1, yi, ldy);
                break;
            case 2:
                matvec_m<T, 2>(xi, ldx, w, j0, j1, yi, ldy);
                break;
            case 3:
                matvec_m<T, 3>(xi, ldx, w, j0, j1, yi, ldy);
                break;
            default:
                matvec_m<T, 4>(xi, ldx, w, j0, j1, yi, ldy);
                break;
            }
        }
    }
}

#endif // IRIS_LOWP_AVX512

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
    int64_t i = 0;
#if IRIS_LOWP_AVX512
    if (w.type == WeightType::bf16) {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16<WeightType::bf16>(src + i));
    } else {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16<WeightType::f16>(src + i));
    }
#endif
    for (; i < n; ++i) dst[i] = widen(src[i], w.type);
}

void matvec_rows(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, int64_t r0,
                 int64_t r1, float* y, int64_t ldy, bool portable)
{
    if (m <= 0 || r1 <= r0) return;
#if IRIS_LOWP_AVX512
    if (!portable && w.type == WeightType::bf16) return matvec_bf16(x, m, ldx, w, r0, r1, y, ldy);
    if (!portable && w.type == WeightType::f16)
        return matvec_avx512<WeightType::f16>(x, m, ldx, w, r0, r1, y, ldy);
#endif
    const QuantKernels* q = portable ? nullptr : quant_kernels();
    if (q && q->supports(w.type)) {
        uint8_t* acts = act_scratch(size_t(m) * act_row_bytes(w.cols));
        q->prepare(w.type, x, m, ldx, w.cols, acts);
        q->matvec(w.type, acts, m, w.cols, w.data, w.row_bytes(), r0, r1, y, ldy);
        return;
    }
    matvec_portable(x, m, ldx, w, r0, r1, y, ldy);
}

void linear(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, const float* bias,
            float* y, int64_t ldy)
{
    const int64_t n = w.rows, k = w.cols;
    if (w.type == WeightType::f32) {
        linear(x, m, k, ldx, static_cast<const float*>(w.data), n, bias, y, ldy);
        return;
    }
    if (m <= 0 || n <= 0) return;
    const bool matvec = m <= kMatvecMaxRows;
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
