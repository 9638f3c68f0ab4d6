// The decoding attention kernel of attention-decode.h, written once over a vector type and
// compiled per instruction set: attention-decode-avx512.cpp defines IRIS_AD_AVX512 1 (16 f32
// lanes), attention-decode-avx2.cpp 0 (8 lanes). Everything here has internal linkage, so
// each translation unit keeps its own copy.
#pragma once

#include "model/cpu/attention-decode.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

// GCC 12 reports the _mm512_undefined_*() inside its own intrinsics as "may be used
// uninitialized"; the values are fully defined (as in vec-math.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace iris::model::cpu {
namespace {

constexpr int kTile = 64; // tokens per tile: its scores stay in L1, its value rows too
constexpr int kRows = 8; // query rows per pass over the keys: one 8-lane vector per token

#if IRIS_AD_AVX512
constexpr int kW = 16;
using vf = __m512;
inline vf vzero()
{
    return _mm512_setzero_ps();
}
inline vf vset1(float x)
{
    return _mm512_set1_ps(x);
}
inline vf vload(const float* p)
{
    return _mm512_loadu_ps(p);
}
inline void vstore(float* p, vf x)
{
    _mm512_storeu_ps(p, x);
}
inline vf vfma(vf a, vf b, vf c)
{
    return _mm512_fmadd_ps(a, b, c);
}
inline vf vmul(vf a, vf b)
{
    return _mm512_mul_ps(a, b);
}
inline vf cvt_f16(const uint8_t* p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline vf cvt_i8(const uint8_t* p)
{
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
// 16 bytes of nibbles (or, with `both`, the low then the high nibbles of 8 bytes) as values.
inline vf cvt_u4(const uint8_t* p, bool high, bool both)
{
    __m128i x = both ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))
                     : _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i m = _mm_set1_epi8(15);
    if (both)
        x = _mm_unpacklo_epi64(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m));
    else
        x = high ? _mm_and_si128(_mm_srli_epi16(x, 4), m) : _mm_and_si128(x, m);
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x));
}
// [Σ a[0], ..., Σ a[7]]: pairs of rows folded to 256 bits, then 128-bit-lane horizontal adds.
inline __m256 hsum8(const vf* a)
{
    auto hadd = [](vf x, vf y) {
        return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x88), _mm512_shuffle_ps(x, y, 0xDD));
    };
    vf s[4];
    for (int i = 0; i < 4; ++i)
        s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[i], a[i + 4], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[i], a[i + 4], _MM_SHUFFLE(3, 2, 3, 2)));
    const vf h = hadd(hadd(s[0], s[1]), hadd(s[2], s[3]));
    const vf t = _mm512_add_ps(_mm512_shuffle_f32x4(h, h, _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(h, h, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_castps512_ps256(t);
}
#else
constexpr int kW = 8;
using vf = __m256;
inline vf vzero()
{
    return _mm256_setzero_ps();
}
inline vf vset1(float x)
{
    return _mm256_set1_ps(x);
}
inline vf vload(const float* p)
{
    return _mm256_loadu_ps(p);
}
inline void vstore(float* p, vf x)
{
    _mm256_storeu_ps(p, x);
}
inline vf vfma(vf a, vf b, vf c)
{
    return _mm256_fmadd_ps(a, b, c);
}
inline vf vmul(vf a, vf b)
{
    return _mm256_mul_ps(a, b);
}
inline vf cvt_f16(const uint8_t* p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline vf cvt_i8(const uint8_t* p)
{
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline vf cvt_u4(const uint8_t* p, bool high, bool)
{
    const __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_cvtepi32_ps(high ? _mm256_srli_epi32(x, 4)
                                   : _mm256_and_si256(x, _mm256_set1_epi32(15)));
}
inline __m256 hsum8(const vf* a)
{
    const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20),
                         _mm256_permute2f128_ps(h0, h1, 0x31));
}
#endif

inline float load_f16(const uint8_t* p)
{
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// ln2^i / i!
constexpr float kExp2[] = {1.f,           0.69314718f,   0.24022651f,   0.055504109f,
                           0.0096181291f, 0.0013333558f, 1.5403530e-4f, 1.5252734e-5f};

// 2^x for 8 lanes, x <= ~0 (softmax exponents): 2^round(x) into the exponent bits times a
// degree-7 Taylor polynomial of 2^f = e^(f·ln2), |f| <= 1/2 (truncation < 1e-8 relative). x is
// clamped at -126, so -inf gives 2^-126 (negligible beside the maximum's 1) and no NaN.
inline __m256 exp2_8(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(127.f)), _mm256_set1_ps(-126.f));
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(kExp2[7]);
    for (int i = 6; i >= 0; --i) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2[i]));
    const __m256i e
        = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#if IRIS_AD_AVX512
// exp2_8 for 16 lanes, 2^n applied with vscalefps.
inline __m512 exp2_16(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(127.f)), _mm512_set1_ps(-126.f));
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(kExp2[7]);
    for (int i = 6; i >= 0; --i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2[i]));
    return _mm512_scalef_ps(p, n);
}
#endif

// One row of a cached type: kW channels from channel c (a multiple of kW) as f32.
template<KvType T, int D> struct Row
{
    static constexpr int kG = D % 32 == 0 ? 32 : 16; // kv_group_size for the D we take
    static constexpr size_t kBytes = T == KvType::f32 ? 4 * D
        : T == KvType::f16                            ? 2 * D
        : T == KvType::q8                             ? D / kG * (2 + kG)
                                                      : D / kG * (2 + kG / 2);
    static vf load(const uint8_t* row, int c)
    {
        if constexpr (T == KvType::f32) {
            return vload(reinterpret_cast<const float*>(row) + c);
        } else if constexpr (T == KvType::f16) {
            return cvt_f16(row + 2 * c);
        } else if constexpr (T == KvType::q8) {
            const uint8_t* blk = row + c / kG * (2 + kG);
            return vmul(cvt_i8(blk + 2 + c % kG), vset1(load_f16(blk)));
        } else {
            // Byte j of a group holds codes j (low nibble) and j + kG/2 (high).
            const uint8_t* blk = row + c / kG * (2 + kG / 2);
            const int cb = c % kG;
            const float d = load_f16(blk);
            const vf x = cvt_u4(blk + 2 + cb % (kG / 2), cb >= kG / 2, kW > kG / 2);
            return vfma(x, vset1(d), vset1(-8.f * d));
        }
    }
};

// The hardware prefetchers restart at every 4 KiB page and block; the next tile's rows are
// asked for a tile ahead (~1 µs of work, several times the memory latency).
template<KvType T, int D> inline void prefetch_row(const uint8_t* row)
{
    for (size_t b = 0; b < Row<T, D>::kBytes; b += 64)
        _mm_prefetch(reinterpret_cast<const char*>(row + b), _MM_HINT_T0);
    if constexpr (Row<T, D>::kBytes % 64 != 0)
        _mm_prefetch(reinterpret_cast<const char*>(row + Row<T, D>::kBytes - 1), _MM_HINT_T0);
}

// sc[j·8 + r] = q[r]·k_j for r < R, j < n: each key row converted once, its kW-channel chunks
// multiplied into every row's accumulator, the R sums reduced together (rows past R give 0).
// Meanwhile the next tile's key rows (pk, null if none) are prefetched, a row a key.
template<KvType T, int D, int R>
void tile_scores(const float* q, const uint8_t* k, int n, const uint8_t* pk, float* sc)
{
    constexpr int NV = D / kW, KC = std::min(NV, IRIS_AD_AVX512 ? 4 : 2);
    for (int j = 0; j < n; ++j) {
        const uint8_t* kr = k + size_t(j) * Row<T, D>::kBytes;
        if (pk) prefetch_row<T, D>(pk + size_t(j) * Row<T, D>::kBytes);
        vf acc[kRows];
        for (int r = 0; r < kRows; ++r) acc[r] = vzero();
#pragma GCC unroll 16
        for (int c0 = 0; c0 < NV; c0 += KC) {
            vf kv[KC];
#pragma GCC unroll 16
            for (int i = 0; i < KC; ++i) kv[i] = Row<T, D>::load(kr, (c0 + i) * kW);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
                for (int i = 0; i < KC; ++i)
                    acc[r] = vfma(vload(q + r * D + (c0 + i) * kW), kv[i], acc[r]);
        }
        if constexpr (R == 1) {
#if IRIS_AD_AVX512
            sc[j * kRows] = _mm512_reduce_add_ps(acc[0]);
#else
            const __m128 s
                = _mm_add_ps(_mm256_castps256_ps128(acc[0]), _mm256_extractf128_ps(acc[0], 1));
            const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
            sc[j * kRows] = _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
#endif
        } else {
            _mm256_storeu_ps(sc + j * kRows, hsum8(acc));
        }
    }
}

// o[r] = o[r]·corr[r] + Σ_j p[j·8 + r]·v_j for r < R, j < n: the accumulators of R rows over a
// few W-channel chunks at a time (what the registers hold), the tile's value rows read once a
// chunk (from L1 after the first).
template<KvType T, int D, int R>
void tile_values(const float* p, const uint8_t* v, int n, const uint8_t* pv, const float* corr,
                 float* o)
{
    constexpr int NV = D / kW;
#if IRIS_AD_AVX512
    constexpr int VC0 = R <= 3 ? 4 : R <= 7 ? 2 : 1;
#else
    constexpr int VC0 = R <= 2 ? 4 : R <= 5 ? 2 : 1;
#endif
    constexpr int VC = std::min(NV, VC0);
    for (int c0 = 0; c0 < NV; c0 += VC) {
        vf acc[R][VC];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
            for (int i = 0; i < VC; ++i)
                acc[r][i] = vmul(vload(o + r * D + (c0 + i) * kW), vset1(corr[r]));
        for (int j = 0; j < n; ++j) {
            const uint8_t* vr = v + size_t(j) * Row<T, D>::kBytes;
            if (pv && c0 == 0) prefetch_row<T, D>(pv + size_t(j) * Row<T, D>::kBytes);
            vf vv[VC];
#pragma GCC unroll 16
            for (int i = 0; i < VC; ++i) vv[i] = Row<T, D>::load(vr, (c0 + i) * kW);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                const vf pr = vset1(p[j * kRows + r]);
#pragma GCC unroll 16
                for (int i = 0; i < VC; ++i) acc[r][i] = vfma(pr, vv[i], acc[r][i]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
            for (int i = 0; i < VC; ++i) vstore(o + r * D + (c0 + i) * kW, acc[r][i]);
    }
}

// The online softmax of one tile, rows as the 8 lanes: the new maximum, corr = 2^(old - new),
// the scores replaced by their 2^(s - max), l = l·corr + Σ.
// AVX-512 takes two tokens a vector.
inline void tile_softmax(float* sc, int n, float* m, float* l, float* corr)
{
    const __m256 m0 = _mm256_loadu_ps(m);
    __m256 mx = m0;
    int j = 0;
#if IRIS_AD_AVX512
    __m512 mx2 = _mm512_castps256_ps512(m0);
    mx2 = _mm512_insertf32x8(mx2, m0, 1);
    for (; j + 2 <= n; j += 2) mx2 = _mm512_max_ps(mx2, _mm512_loadu_ps(sc + j * kRows));
    mx = _mm256_max_ps(_mm512_castps512_ps256(mx2), _mm512_extractf32x8_ps(mx2, 1));
#endif
    for (; j < n; ++j) mx = _mm256_max_ps(mx, _mm256_loadu_ps(sc + j * kRows));
    const __m256 c = exp2_8(_mm256_sub_ps(m0, mx));
    __m256 sum = _mm256_setzero_ps();
    j = 0;
#if IRIS_AD_AVX512
    const __m512 mxx = _mm512_insertf32x8(_mm512_castps256_ps512(mx), mx, 1);
    __m512 sum2 = _mm512_setzero_ps();
    for (; j + 2 <= n; j += 2) {
        const __m512 e = exp2_16(_mm512_sub_ps(_mm512_loadu_ps(sc + j * kRows), mxx));
        _mm512_storeu_ps(sc + j * kRows, e);
        sum2 = _mm512_add_ps(sum2, e);
    }
    sum = _mm256_add_ps(_mm512_castps512_ps256(sum2), _mm512_extractf32x8_ps(sum2, 1));
#endif
    for (; j < n; ++j) {
        const __m256 e = exp2_8(_mm256_sub_ps(_mm256_loadu_ps(sc + j * kRows), mx));
        _mm256_storeu_ps(sc + j * kRows, e);
        sum = _mm256_add_ps(sum, e);
    }
    _mm256_storeu_ps(l, _mm256_fmadd_ps(_mm256_loadu_ps(l), c, sum));
    _mm256_storeu_ps(m, mx);
    _mm256_storeu_ps(corr, c);
}

using ScoresFn = void (*)(const float*, const uint8_t*, int, const uint8_t*, float*);
using ValuesFn = void (*)(const float*, const uint8_t*, int, const uint8_t*, const float*, float*);

template<int D> struct Tables
{
    template<KvType T, size_t... R>
    static constexpr std::array<ScoresFn, kRows> scores_of(std::index_sequence<R...>)
    {
        return {tile_scores<T, D, int(R) + 1>...};
    }
    template<KvType T, size_t... R>
    static constexpr std::array<ValuesFn, kRows> values_of(std::index_sequence<R...>)
    {
        return {tile_values<T, D, int(R) + 1>...};
    }
    // [type: f32, f16, q8, q4][rows - 1]
    static constexpr std::array<std::array<ScoresFn, kRows>, 4> kScores {
        scores_of<KvType::f32>(std::make_index_sequence<kRows>()),
        scores_of<KvType::f16>(std::make_index_sequence<kRows>()),
        scores_of<KvType::q8>(std::make_index_sequence<kRows>()),
        scores_of<KvType::q4>(std::make_index_sequence<kRows>())};
    static constexpr std::array<std::array<ValuesFn, kRows>, 4> kValues {
        values_of<KvType::f32>(std::make_index_sequence<kRows>()),
        values_of<KvType::f16>(std::make_index_sequence<kRows>()),
        values_of<KvType::q8>(std::make_index_sequence<kRows>()),
        values_of<KvType::q4>(std::make_index_sequence<kRows>())};
};

int type_index(KvType t)
{
    switch (t) {
    case KvType::f32:
        return 0;
    case KvType::f16:
        return 1;
    case KvType::q8:
        return 2;
    case KvType::q4:
        return 3;
    case KvType::skvq:
        break;
    }
    return -1;
}

bool supports(KvType k_type, KvType v_type, int head_dim)
{
    return type_index(k_type) >= 0 && type_index(v_type) >= 0
        && (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128);
}

template<int D>
void attend_d(const float* q, int rows, float scale, const KvRun* runs, size_t n_runs, int g,
              int64_t t0, int64_t t1, float* o, float* m, float* l)
{
    // Pre-scaled so that the scores come out in base 2.
    const float qscale = scale * 1.44269504088896341f;
    for (int r0 = 0; r0 < rows; r0 += kRows) {
        const int nr = std::min(kRows, rows - r0);
        alignas(64) float qs[kRows * D], ob[kRows * D];
        alignas(64) float sc[kTile * kRows] = {};
        // Lanes past nr: score 0 (or the zeros above) over m = -inf, never read back.
        float m8[kRows], l8[kRows], corr[kRows];
        std::fill(m8, m8 + kRows, -INFINITY);
        std::fill(l8, l8 + kRows, 0.f);
        for (int i = 0; i < nr * D; ++i) qs[i] = q[r0 * D + i] * qscale;
        std::memcpy(ob, o + r0 * D, sizeof(float) * size_t(nr * D));
        std::memcpy(m8, m + r0, sizeof(float) * size_t(nr));
        std::memcpy(l8, l + r0, sizeof(float) * size_t(nr));
        int64_t pos = 0;
        for (size_t i = 0; i < n_runs && pos < t1; pos += runs[i].n_tokens, ++i) {
            const KvRun& run = runs[i];
            const int64_t a = std::max(t0, pos) - pos, b = std::min(t1, pos + run.n_tokens) - pos;
            if (a >= b) continue;
            const ScoresFn sf = Tables<D>::kScores[size_t(type_index(run.k_type))][size_t(nr - 1)];
            const ValuesFn vfn = Tables<D>::kValues[size_t(type_index(run.v_type))][size_t(nr - 1)];
            const size_t kb = kv_row_bytes(run.k_type, D), vb = kv_row_bytes(run.v_type, D);
            const uint8_t* k = run.k + size_t(g) * run.k_head_stride;
            const uint8_t* v = run.v + size_t(g) * run.v_head_stride;
            // The rows after this run's: the next run's first tile, if it is of the same types.
            const uint8_t *k_after = nullptr, *v_after = nullptr;
            if (i + 1 < n_runs && b == run.n_tokens && pos + b < t1
                && runs[i + 1].k_type == run.k_type && runs[i + 1].v_type == run.v_type) {
                k_after = runs[i + 1].k + size_t(g) * runs[i + 1].k_head_stride;
                v_after = runs[i + 1].v + size_t(g) * runs[i + 1].v_head_stride;
            }
            for (int64_t j0 = a; j0 < b; j0 += kTile) {
                const int n = int(std::min<int64_t>(kTile, b - j0));
                const bool last = j0 + kTile >= b;
                const uint8_t* pk = last ? k_after : k + size_t(j0 + kTile) * kb;
                const uint8_t* pv = last ? v_after : v + size_t(j0 + kTile) * vb;
                sf(qs, k + size_t(j0) * kb, n, pk, sc);
                tile_softmax(sc, n, m8, l8, corr);
                vfn(sc, v + size_t(j0) * vb, n, pv, corr, ob);
            }
        }
        std::memcpy(o + r0 * D, ob, sizeof(float) * size_t(nr * D));
        std::memcpy(m + r0, m8, sizeof(float) * size_t(nr));
        std::memcpy(l + r0, l8, sizeof(float) * size_t(nr));
    }
}

void attend(const float* q, int rows, int head_dim, float scale, const KvRun* runs, size_t n_runs,
            int g, int64_t t0, int64_t t1, float* o, float* m, float* l)
{
    switch (head_dim) {
    case 16:
        return attend_d<16>(q, rows, scale, runs, n_runs, g, t0, t1, o, m, l);
    case 32:
        return attend_d<32>(q, rows, scale, runs, n_runs, g, t0, t1, o, m, l);
    case 64:
        return attend_d<64>(q, rows, scale, runs, n_runs, g, t0, t1, o, m, l);
    default:
        return attend_d<128>(q, rows, scale, runs, n_runs, g, t0, t1, o, m, l);
    }
}

} // namespace
} // namespace iris::model::cpu
