// Weight storage types (quant.h): ggml's block formats, written and read exactly as ggml's
// reference C code does, so the bytes match a file llama-quantize writes from the same values.
//
// Exactness rests on three things:
//   - this file is compiled with -ffp-contract=off (model/CMakeLists.txt). ggml's reference
//     code is plain ISO C built without fused multiply-add; with x86-64-v3's FMA the compiler
//     would otherwise fuse a·b + c (and nearest_int's x·s + 1.5·2^23) into one rounding;
//   - every expression keeps ggml's operand order and types (w·x·l is (w·x)·l, an int level
//     meets a float scale as a float), since float arithmetic is not associative;
//   - a stored fp16 scale is read back (rounded) before the later steps that use it, as ggml
//     reads y->d after writing it.
// The search loops mirror ggml's helpers (make_qx_quants, make_q3_quants, make_qkx2_quants,
// the iq4_nl search) under the same names, so the two can be compared side by side.
#include "model/cpu/quant.h"

#include "core/core.h"
#include "model/model.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

namespace iris::model::cpu {

namespace {

constexpr int QK = 32; // values per block of the 32-value formats
constexpr int QK_K = 256; // values per super-block of the k-quants
constexpr float kGroupMaxEps = 1e-15f; // below this max |x| a group counts as all zero

// fp16 as ggml converts it. Finite values round to nearest even, exactly like the project's
// f32_to_f16 / f16_to_f32 (checked over all 2^32 floats); NaNs differ: ggml writes the
// canonical quiet NaN (sign kept, payload dropped) and reads a signalling NaN back quiet.
uint16_t half_bits(float v)
{
    const uint16_t h = f32_to_f16(v);
    return std::isnan(v) ? uint16_t((h & 0x8000u) | 0x7E00u) : h;
}

float half_value(uint16_t h)
{
    const float f = f16_to_f32(h);
    if ((h & 0x7C00u) == 0x7C00u && (h & 0x03FFu) != 0)
        return std::bit_cast<float>(std::bit_cast<uint32_t>(f) | 0x00400000u);
    return f;
}

// An fp16 field inside a block: two little-endian bytes, so blocks have alignment 1 and a row
// may start at any address.
struct Half
{
    uint8_t b[2];

    void set(float v)
    {
        const uint16_t h = half_bits(v);
        b[0] = uint8_t(h);
        b[1] = uint8_t(h >> 8);
    }
    float get() const { return half_value(uint16_t(b[0] | (b[1] << 8))); }
};

// ggml's block layouts. Quants of a 32-block: value j in the low nibble of qs[j],
// value j + 16 in the high nibble; fifth bits (q5_*) in qh as a little-endian uint32, bit j.
struct BlockQ8_0
{
    Half d;
    int8_t qs[QK];
};
struct BlockQ4_0
{
    Half d;
    uint8_t qs[QK / 2];
};
struct BlockQ4_1
{
    Half d, m;
    uint8_t qs[QK / 2];
};
struct BlockQ5_0
{
    Half d;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
};
struct BlockQ5_1
{
    Half d, m;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
};
struct BlockIq4nl
{
    Half d;
    uint8_t qs[QK / 2];
};
// 16 sub-blocks of 16: a 4-bit scale (low nibble) and min (high nibble) each; 2-bit quants,
// byte l of each 32-byte half holds values l, l+32, l+64, l+96 of that 128-value half.
struct BlockQ2_K
{
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    Half d, dmin;
};
// 16 sub-blocks of 16 with 6-bit signed scales (+32): low nibbles in scales[0..7], high
// 2-bit pairs in scales[8..11]; the third bit of value j is bit j/32 of hmask[j%32].
struct BlockQ3_K
{
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    Half d;
};
// 8 sub-blocks of 32 with 6-bit scales and mins packed into 12 bytes (get_scale_min_k4);
// byte l of each 32-byte chunk holds value l (low nibble) and l+32 (high) of its 64 values.
struct BlockQ4_K
{
    Half d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
};
// As q4_K, plus the fifth bit of value 64c + l (+32) in bit 2c (2c+1) of qh[l].
struct BlockQ5_K
{
    Half d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
// 16 sub-blocks of 16 with int8 scales; per 128-value half, ql[l] holds the low nibbles of
// values l (low) and l+64 (high), ql[l+32] those of l+32 and l+96, qh[l] their 2-bit tops.
struct BlockQ6_K
{
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    Half d;
};

// name, GGML_TYPE_* id, values per block, bytes per block (in WeightType order).
constexpr WeightTypeInfo kTypeTable[kWeightTypeCount] = {
    {"f32", 0, 1, 4},
    {"bf16", 30, 1, 2},
    {"f16", 1, 1, 2},
    {"q8_0", 8, QK, sizeof(BlockQ8_0)},
    {"q4_0", 2, QK, sizeof(BlockQ4_0)},
    {"q4_1", 3, QK, sizeof(BlockQ4_1)},
    {"q5_0", 6, QK, sizeof(BlockQ5_0)},
    {"q5_1", 7, QK, sizeof(BlockQ5_1)},
    {"iq4_nl", 20, QK, sizeof(BlockIq4nl)},
    {"q2_K", 10, QK_K, sizeof(BlockQ2_K)},
    {"q3_K", 11, QK_K, sizeof(BlockQ3_K)},
    {"q4_K", 12, QK_K, sizeof(BlockQ4_K)},
    {"q5_K", 13, QK_K, sizeof(BlockQ5_K)},
    {"q6_K", 14, QK_K, sizeof(BlockQ6_K)},
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20
              && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 && sizeof(BlockIq4nl) == 18);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144
              && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// The 16 levels of iq4_nl (int8 in ggml), in ascending order.
constexpr float kIq4nlValues[16]
    = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// ---------------------------------------------------------------------------------------------
// Helpers of the searches

// Rounds to nearest, ties to even, for |v| < 2^22: adding 1.5·2^23 leaves the rounded integer
// (offset by 2^22) in the mantissa. ggml relies on this bit pattern, also outside that range
// where it returns garbage that later gets clamped, so it is kept rather than nearbyint.
inline int nearest_int(float v)
{
    const float biased = v + 12582912.f;
    const int32_t bits = std::bit_cast<int32_t>(biased);
    return (bits & 0x007FFFFF) - 0x00400000;
}

// Indices of the iq4_nl levels nearest to id·x[j] for a block, as ggml's binary search finds
// them: 0 at or below the first level, 15 at or above the last, else of the two levels around
// the value the lower one only if it is strictly closer (a tie goes up). The bracket is found
// by counting the inner levels at or below the value, which gives the same index without
// branches, so the 32 lookups of a block vectorize (the search is most of iq4_nl's time).
inline void best_index_iq4nl(float id, const float* x, uint8_t* L)
{
    const float* val = kIq4nlValues;
    for (int j = 0; j < QK; ++j) {
        const float a = id * x[j];
        int lo = 0;
        for (int k = 1; k < 15; ++k) lo += a >= val[k] ? 1 : 0;
        int l = a - val[lo] < val[lo + 1] - a ? lo : lo + 1;
        if (a <= val[0]) l = 0;
        if (a >= val[15] || a != a) l = 15; // where ggml's search ends for a NaN
        L[j] = uint8_t(l);
    }
}

inline int clamp_int(int v, int lo, int hi)
{
    return std::max(lo, std::min(hi, v));
}

// The first value of largest magnitude, sign kept: the max that ggml's searches track beside
// amax (which is its fabs, exactly), for values and for sub-block scales alike.
inline float signed_absmax(const float* x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j)
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

// Signed levels in [-nmax, nmax) for n values with a scale fitted by weighted least squares
// (weights x², ggml's rmse_type 1 without importance): tries the plain scale -nmax/max and 18
// nudged ones, keeps the best fit. L gets level + nmax. Returns the scale.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L)
{
    const float max = signed_absmax(x, n);
    if (std::fabs(max) < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = float(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = int8_t(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * float(l);
        suml2 += w * float(l) * float(l);
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(float(nmax) + 0.1f * float(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * float(l);
            suml2 += w * float(l) * float(l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = int8_t(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// q3_K's signed levels in [-nmax, nmax): starts from -nmax/max, then up to 5 rounds of moving
// single values to the level that improves the x²-weighted fit. L gets level + nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L)
{
    const float max = signed_absmax(x, n);
    if (std::fabs(max) < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    const float iscale = float(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = int8_t(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * float(l);
        suml2 += w * float(l) * float(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * float(L[i]);
            if (slx > 0) {
                float sl2 = suml2 - w * float(L[i]) * float(L[i]);
                const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * float(new_l);
                    sl2 += w * float(new_l) * float(new_l);
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = int8_t(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Unsigned levels in [0, nmax] with a scale and a min ≤ 0 (x ≈ scale·l + min), fitted by
// weighted least squares over nstep + 1 trial scales (rmin + rdelta·is + nmax)/(max - min);
// use_mad weighs absolute instead of squared errors. *the_min gets -min.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = float(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = uint8_t(clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax));
        float diff = scale * float(L[i]) + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = uint8_t(l);
            const float w = weights[i];
            sum_l += w * float(l);
            sum_l2 += w * float(l) * float(l);
            sum_xl += w * float(l) * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * float(Laux[i]) + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                std::memcpy(L, Laux, size_t(n));
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Scale and min of sub-block j (0..7) of q4_K / q5_K: j < 4 sit in the low 6 bits of bytes j
// and j+4; j ≥ 4 take their low nibbles from byte j+4 and their top 2 bits from the spare
// high bits of bytes j-4 (scale) and j (min).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m)
{
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = uint8_t((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

// Sub-block j's scale d·sc and min dmin·m, for the super-scales d and dmin of the block.
inline void scale_min_k4(const uint8_t* q, int j, float d, float dmin, float& dl, float& ml)
{
    uint8_t sc, m;
    get_scale_min_k4(j, q, sc, m);
    dl = d * float(sc);
    ml = dmin * float(m);
}

// Inverse of get_scale_min_k4 for 6-bit ls, lm (scales must start zeroed for j ≥ 4's ORs).
inline void put_scale_min_k4(int j, uint8_t* q, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= uint8_t((ls >> 4) << 6);
        q[j - 0] |= uint8_t((lm >> 4) << 6);
    }
}

// The signed 6-bit scale of q3_K sub-block j (0..15), -32..31.
inline int q3_K_scale(const uint8_t* s, int j)
{
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return int8_t(lo | (hi << 4)) - 32;
}

// Packs 2-bit levels of 256 values as q2_K and q3_K store them.
inline void pack_2bit(const uint8_t* L, uint8_t* qs)
{
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4)
                                    | (L[j + l + 96] << 6));
}

// ---------------------------------------------------------------------------------------------
// The 32-value formats (ggml's quantize_row_*_ref and dequantize_row_*)

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; ++j) {
            const float a = std::fabs(x[j]);
            amax = amax > a ? amax : a; // ggml's MAX, operand order kept (it matters for NaN)
        }
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d.set(d);
        for (int j = 0; j < QK; ++j) y[i].qs[j] = int8_t(std::round(x[j] * id));
    }
}

void dequantize_q8_0(const BlockQ8_0* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, y += QK) {
        const float d = x[i].d.get();
        for (int j = 0; j < QK; ++j) y[j] = float(x[i].qs[j]) * d;
    }
}

void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK) {
        // The extreme value maps to level -8 exactly; the other side clamps at +7.
        const float d = signed_absmax(x, QK) / -8;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d.set(d);
        for (int j = 0; j < QK / 2; ++j) {
            // Truncating x·id + 8.5 rounds half up; the cast goes through int8 as ggml's does.
            const int q0 = std::min(15, int(int8_t(x[j] * id + 8.5f)));
            const int q1 = std::min(15, int(int8_t(x[j + QK / 2] * id + 8.5f)));
            y[i].qs[j] = uint8_t(q0 | (q1 << 4));
        }
    }
}

void dequantize_q4_0(const BlockQ4_0* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, y += QK) {
        const float d = x[i].d.get();
        for (int j = 0; j < QK / 2; ++j) {
            y[j] = float((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK / 2] = float((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

inline void minmax(const float* x, int n, float& min, float& max)
{
    min = FLT_MAX;
    max = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
}

void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK) {
        float min, max;
        minmax(x, QK, min, max);
        const float d = (max - min) / 15;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d.set(d);
        y[i].m.set(min);
        for (int j = 0; j < QK / 2; ++j) {
            const int q0 = std::min(15, int(int8_t((x[j] - min) * id + 0.5f)));
            const int q1 = std::min(15, int(int8_t((x[j + QK / 2] - min) * id + 0.5f)));
            y[i].qs[j] = uint8_t(q0 | (q1 << 4));
        }
    }
}

void dequantize_q4_1(const BlockQ4_1* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, y += QK) {
        const float d = x[i].d.get(), m = x[i].m.get();
        for (int j = 0; j < QK / 2; ++j) {
            y[j] = float(x[i].qs[j] & 0x0F) * d + m;
            y[j + QK / 2] = float(x[i].qs[j] >> 4) * d + m;
        }
    }
}

inline void put_u32(uint8_t* p, uint32_t v)
{
    for (int k = 0; k < 4; ++k) p[k] = uint8_t(v >> (8 * k));
}

inline uint32_t get_u32(const uint8_t* p)
{
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// q5_0 / q5_1: the low nibbles as q4_*, fifth bits of values j and j + 16 at bits j, j + 16.
inline void pack_q5(const uint8_t* q, uint8_t* qs, uint8_t* qh_bytes)
{
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
        const uint8_t q0 = q[j], q1 = q[j + QK / 2];
        qs[j] = uint8_t((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= uint32_t((q0 & 0x10u) >> 4) << j;
        qh |= uint32_t((q1 & 0x10u) >> 4) << (j + QK / 2);
    }
    put_u32(qh_bytes, qh);
}

inline void unpack_q5(const uint8_t* qs, const uint8_t* qh_bytes, int* q)
{
    const uint32_t qh = get_u32(qh_bytes);
    for (int j = 0; j < QK / 2; ++j) {
        q[j] = (qs[j] & 0x0F) | int(((qh >> j) << 4) & 0x10);
        q[j + QK / 2] = (qs[j] >> 4) | int((qh >> (j + 12)) & 0x10);
    }
}

void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK) {
        const float d = signed_absmax(x, QK) / -16;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d.set(d);
        uint8_t q[QK];
        for (int j = 0; j < QK; ++j) q[j] = uint8_t(std::min(31, int(int8_t(x[j] * id + 16.5f))));
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

void dequantize_q5_0(const BlockQ5_0* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, y += QK) {
        const float d = x[i].d.get();
        int q[QK];
        unpack_q5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK; ++j) y[j] = float(q[j] - 16) * d;
    }
}

void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK) {
        float min, max;
        minmax(x, QK, min, max);
        const float d = (max - min) / 31;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d.set(d);
        y[i].m.set(min);
        uint8_t q[QK];
        // No clamp here in ggml: (max - min)·id + 0.5 stays below 32.
        for (int j = 0; j < QK; ++j) q[j] = uint8_t((x[j] - min) * id + 0.5f);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

void dequantize_q5_1(const BlockQ5_1* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, y += QK) {
        const float d = x[i].d.get(), m = x[i].m.get();
        int q[QK];
        unpack_q5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK; ++j) y[j] = float(q[j]) * d + m;
    }
}

// ggml's quantize_iq4_nl without an importance matrix: per block, the x²-weighted least-squares
// scale over the start -max/-127 and 15 trial scales (itry - 127)/max, itry in [-7, 7]; then
// every value goes to its nearest level under the chosen (unrounded) scale.
void quantize_iq4_nl(const float* x, BlockIq4nl* y, int64_t nb)
{
    constexpr int ntry = 7;
    const float* values = kIq4nlValues;
    for (int64_t i = 0; i < nb; ++i, x += QK) {
        float weight[QK];
        for (int j = 0; j < QK; ++j) weight[j] = x[j] * x[j];
        const float max = signed_absmax(x, QK), amax = std::fabs(max);
        uint8_t L[QK];
        // The weighted sums of a trial scale's levels, accumulated in order as ggml does.
        auto fit = [&](float id, float& sumqx, float& sumq2) {
            best_index_iq4nl(id, x, L);
            sumqx = sumq2 = 0;
            for (int j = 0; j < QK; ++j) {
                const float q = values[L[j]];
                sumqx += weight[j] * q * x[j];
                sumq2 += weight[j] * q * q;
            }
        };
        float d = 0;
        if (amax >= kGroupMaxEps) {
            d = -max / values[0];
            float sumqx, sumq2;
            fit(1 / d, sumqx, sumq2);
            d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
            float best = d * sumqx;
            for (int itry = -ntry; itry <= ntry; ++itry) {
                fit((float(itry) + values[0]) / max, sumqx, sumq2);
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        y[i].d.set(d);
        // An all-zero block gets id 0, so every value lands on level 8 (the value 1).
        best_index_iq4nl(d != 0 ? 1 / d : 0, x, L);
        for (int j = 0; j < QK / 2; ++j) y[i].qs[j] = uint8_t(L[j] | (L[j + QK / 2] << 4));
    }
}

void dequantize_iq4_nl(const BlockIq4nl* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, y += QK) {
        const float d = x[i].d.get();
        for (int j = 0; j < QK / 2; ++j) {
            y[j] = d * kIq4nlValues[x[i].qs[j] & 0xF];
            y[j + QK / 2] = d * kIq4nlValues[x[i].qs[j] >> 4];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// k-quants (ggml's quantize_row_q*_K_ref and dequantize_row_q*_K). Each fits per-sub-block
// scales (and mins), quantizes those against the largest into 4, 6 or 8 bits under an fp16
// super-scale, and then requantizes every value against its scale as stored.

void quantize_q2_K(const float* x, BlockQ2_K* y, int64_t nb)
{
    constexpr float q4scale = 15.f;
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        uint8_t L[QK_K], Laux[16];
        float weights[16], mins[QK_K / 16], scales[QK_K / 16];
        float max_scale = 0, max_min = 0; // mins are subtracted, so scales are ≥ 0
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        BlockQ2_K& b = y[i];
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j)
                b.scales[j] = uint8_t(nearest_int(iscale * scales[j]));
            b.d.set(max_scale / q4scale);
        } else {
            for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = 0;
            b.d.set(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j)
                b.scales[j] |= uint8_t(unsigned(nearest_int(iscale * mins[j])) << 4);
            b.dmin.set(max_min / q4scale);
        } else {
            b.dmin.set(0.f);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = b.d.get() * float(b.scales[j] & 0xF);
            if (d == 0) continue; // keeps the levels of the search
            const float dm = b.dmin.get() * float(b.scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = uint8_t(clamp_int(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
        }
        pack_2bit(L, b.qs);
    }
}

void dequantize_q2_K(const BlockQ2_K* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i) {
        const float d = x[i].d.get(), min = x[i].dmin.get();
        for (int n = 0; n < QK_K; n += 128) {
            const uint8_t* q = x[i].qs + n / 4;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; ++half, y += 16) {
                    const uint8_t sc = x[i].scales[(n + 16 * shift + 16 * half) / 16];
                    const float dl = d * float(sc & 0xF), ml = min * float(sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        y[l] = dl * float((q[16 * half + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void quantize_q3_K(const float* x, BlockQ3_K* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        for (int j = 0; j < QK_K / 16; ++j)
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        const float max_scale = signed_absmax(scales, QK_K / 16);
        BlockQ3_K& b = y[i];
        std::memset(b.scales, 0, sizeof b.scales);
        if (max_scale != 0) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) {
                // ggml narrows to int8 before clamping; the range never needs it, kept anyway.
                const int8_t l0 = int8_t(nearest_int(iscale * scales[j]));
                const int l = clamp_int(l0, -32, 31) + 32;
                if (j < 8)
                    b.scales[j] = uint8_t(l & 0xF);
                else
                    b.scales[j - 8] |= uint8_t((l & 0xF) << 4);
                b.scales[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
            }
            b.d.set(1 / iscale);
        } else {
            b.d.set(0.f);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = b.d.get() * float(q3_K_scale(b.scales, j));
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = int8_t(clamp_int(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
        }
        // Levels 0..7: the third bit goes to hmask, the low two to qs.
        std::memset(b.hmask, 0, sizeof b.hmask);
        uint8_t low[QK_K];
        for (int j = 0; j < QK_K; ++j) {
            int l = L[j];
            if (l > 3) {
                b.hmask[j % 32] |= uint8_t(1u << (j / 32));
                l -= 4;
            }
            low[j] = uint8_t(l);
        }
        pack_2bit(low, b.qs);
    }
}

void dequantize_q3_K(const BlockQ3_K* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i) {
        const float d_all = x[i].d.get();
        for (int n = 0; n < QK_K; n += 128) {
            const uint8_t* q = x[i].qs + n / 4;
            for (int j = 0; j < 4; ++j) {
                const int shift = 2 * j;
                const uint8_t m = uint8_t(1u << (j + n / 32));
                for (int half = 0; half < 2; ++half, y += 16) {
                    const float dl
                        = d_all * float(q3_K_scale(x[i].scales, (n + 32 * j) / 16 + half));
                    const uint8_t* qh = q + 16 * half;
                    const uint8_t* hm = x[i].hmask + 16 * half;
                    for (int l = 0; l < 16; ++l)
                        y[l] = dl * float(((qh[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                }
            }
        }
    }
}

// q4_K and q5_K share the scale search; nmax 15 or 31 with their trial ranges.
template<int nmax> void fit_scales_k(const float* x, float* scales, float* mins, uint8_t* L)
{
    constexpr float rmin = nmax == 15 ? -1.f : -0.5f;
    constexpr int nstep = nmax == 15 ? 20 : 15;
    uint8_t Laux[32];
    float weights[32];
    for (int j = 0; j < QK_K / 32; ++j) {
        // Weights |x| + rms of the sub-block favour the large values without ignoring the rest.
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, false);
    }
}

// Quantizes the 8 sub-block scales and mins of q4_K / q5_K to 6 bits against their maxima and
// requantizes the values against them as stored.
template<int nmax, typename Block>
void pack_scales_k(const float* x, const float* scales, const float* mins, uint8_t* L, Block& b)
{
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    std::memset(b.scales, 0, sizeof b.scales); // sub-blocks 4..7 OR their top bits in
    for (int j = 0; j < QK_K / 32; ++j) {
        const uint8_t ls = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
        const uint8_t lm = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
        put_scale_min_k4(j, b.scales, ls, lm);
    }
    b.d.set(max_scale / 63.f);
    b.dmin.set(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; ++j) {
        float d, dm;
        scale_min_k4(b.scales, j, b.d.get(), b.dmin.get(), d, dm);
        if (d == 0) continue;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = uint8_t(clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
    }
}

void quantize_q4_K(const float* x, BlockQ4_K* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        uint8_t L[QK_K];
        float scales[QK_K / 32], mins[QK_K / 32];
        fit_scales_k<15>(x, scales, mins, L);
        pack_scales_k<15>(x, scales, mins, L, y[i]);
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 2 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
    }
}

void dequantize_q4_K(const BlockQ4_K* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i) {
        const float d = x[i].d.get(), min = x[i].dmin.get();
        const uint8_t* q = x[i].qs;
        for (int is = 0; is < QK_K / 32; is += 2, q += 32, y += 64) {
            float d1, m1, d2, m2;
            scale_min_k4(x[i].scales, is, d, min, d1, m1);
            scale_min_k4(x[i].scales, is + 1, d, min, d2, m2);
            for (int l = 0; l < 32; ++l) y[l] = d1 * float(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) y[l + 32] = d2 * float(q[l] >> 4) - m2;
        }
    }
}

void quantize_q5_K(const float* x, BlockQ5_K* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        uint8_t L[QK_K];
        float scales[QK_K / 32], mins[QK_K / 32];
        fit_scales_k<31>(x, scales, mins, L);
        BlockQ5_K& b = y[i];
        pack_scales_k<31>(x, scales, mins, L, b);
        std::memset(b.qh, 0, sizeof b.qh);
        for (int n = 0, c = 0; n < QK_K; n += 64, ++c) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    b.qh[j] |= uint8_t(1u << (2 * c));
                }
                if (l2 > 15) {
                    l2 -= 16;
                    b.qh[j] |= uint8_t(2u << (2 * c));
                }
                b.qs[n / 2 + j] = uint8_t(l1 | (l2 << 4));
            }
        }
    }
}

void dequantize_q5_K(const BlockQ5_K* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i) {
        const float d = x[i].d.get(), min = x[i].dmin.get();
        const uint8_t* ql = x[i].qs;
        const uint8_t* qh = x[i].qh;
        for (int is = 0; is < QK_K / 32; is += 2, ql += 32, y += 64) {
            float d1, m1, d2, m2;
            scale_min_k4(x[i].scales, is, d, min, d1, m1);
            scale_min_k4(x[i].scales, is + 1, d, min, d2, m2);
            const uint8_t u1 = uint8_t(1u << is), u2 = uint8_t(2u << is);
            for (int l = 0; l < 32; ++l)
                y[l] = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                y[l + 32] = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

void quantize_q6_K(const float* x, BlockQ6_K* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        for (int ib = 0; ib < QK_K / 16; ++ib)
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
        const float max_scale = signed_absmax(scales, QK_K / 16);
        BlockQ6_K& b = y[i];
        if (std::fabs(max_scale) < kGroupMaxEps) {
            std::memset(&b, 0, sizeof b); // all zero, d = +0 included
            continue;
        }
        const float iscale = -128.f / max_scale;
        b.d.set(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ++ib)
            b.scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = b.d.get() * float(b.scales[j]);
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = int8_t(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
        }
        uint8_t* ql = b.ql;
        uint8_t* qh = b.qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = uint8_t((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = uint8_t((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

void dequantize_q6_K(const BlockQ6_K* x, float* y, int64_t nb)
{
    for (int64_t i = 0; i < nb; ++i) {
        const float d = x[i].d.get();
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                // (d·scale)·q, rounded twice, in ggml's order.
                y[l] = d * float(sc[is]) * float(q1);
                y[l + 32] = d * float(sc[is + 2]) * float(q2);
                y[l + 64] = d * float(sc[is + 4]) * float(q3);
                y[l + 96] = d * float(sc[is + 6]) * float(q4);
            }
        }
    }
}

char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
}

} // namespace

// =============================================================================================

const WeightTypeInfo& weight_type_info(WeightType type)
{
    const auto i = size_t(type);
    if (i >= size_t(kWeightTypeCount))
        throw Error(ErrorKind::invalid_argument,
                    strfmt("weight_type_info: unknown weight type %zu", i));
    return kTypeTable[i];
}

std::optional<WeightType> weight_type_from_ggml(uint32_t ggml_type)
{
    for (int i = 0; i < kWeightTypeCount; ++i)
        if (kTypeTable[i].ggml_type == ggml_type) return WeightType(i);
    return std::nullopt;
}

std::optional<WeightType> weight_type_from_name(std::string_view name)
{
    for (int i = 0; i < kWeightTypeCount; ++i) {
        const std::string_view n = kTypeTable[i].name;
        if (n.size() == name.size()
            && std::equal(n.begin(), n.end(), name.begin(),
                          [](char a, char b) { return ascii_lower(a) == ascii_lower(b); }))
            return WeightType(i);
    }
    return std::nullopt;
}

size_t weight_row_bytes(WeightType type, int64_t n)
{
    const WeightTypeInfo& info = weight_type_info(type);
    if (n < 0)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("%s: row length %lld is negative", info.name, static_cast<long long>(n)));
    if (n % info.block != 0)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("%s: a row of %lld values is not a multiple of its %d-value block",
                           info.name, static_cast<long long>(n), info.block));
    const auto blocks = static_cast<uint64_t>(n / info.block);
    if (blocks > std::numeric_limits<size_t>::max() / info.block_bytes)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("%s: a row of %lld values is too large", info.name, static_cast<long long>(n)));
    return static_cast<size_t>(blocks) * info.block_bytes;
}

void quantize_row(WeightType type, const float* x, int64_t n, void* dst)
{
    weight_row_bytes(type, n); // validates n
    const int64_t nb = n / weight_type_info(type).block;
    switch (type) {
    case WeightType::f32:
        if (n) std::memcpy(dst, x, size_t(n) * sizeof(float));
        return;
    case WeightType::bf16: {
        // The project's converter is ggml's: round to nearest even, NaN kept quiet.
        auto* out = static_cast<uint8_t*>(dst);
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = f32_to_bf16(x[i]);
            out[2 * i] = uint8_t(h);
            out[2 * i + 1] = uint8_t(h >> 8);
        }
        return;
    }
    case WeightType::f16: {
        auto* out = static_cast<Half*>(dst);
        for (int64_t i = 0; i < n; ++i) out[i].set(x[i]);
        return;
    }
    case WeightType::q8_0:
        return quantize_q8_0(x, static_cast<BlockQ8_0*>(dst), nb);
    case WeightType::q4_0:
        return quantize_q4_0(x, static_cast<BlockQ4_0*>(dst), nb);
    case WeightType::q4_1:
        return quantize_q4_1(x, static_cast<BlockQ4_1*>(dst), nb);
    case WeightType::q5_0:
        return quantize_q5_0(x, static_cast<BlockQ5_0*>(dst), nb);
    case WeightType::q5_1:
        return quantize_q5_1(x, static_cast<BlockQ5_1*>(dst), nb);
    case WeightType::iq4_nl:
        return quantize_iq4_nl(x, static_cast<BlockIq4nl*>(dst), nb);
    case WeightType::q2_K:
        return quantize_q2_K(x, static_cast<BlockQ2_K*>(dst), nb);
    case WeightType::q3_K:
        return quantize_q3_K(x, static_cast<BlockQ3_K*>(dst), nb);
    case WeightType::q4_K:
        return quantize_q4_K(x, static_cast<BlockQ4_K*>(dst), nb);
    case WeightType::q5_K:
        return quantize_q5_K(x, static_cast<BlockQ5_K*>(dst), nb);
    case WeightType::q6_K:
        return quantize_q6_K(x, static_cast<BlockQ6_K*>(dst), nb);
    }
}

void dequantize_row(WeightType type, const void* src, int64_t n, float* dst)
{
    weight_row_bytes(type, n); // validates n
    const int64_t nb = n / weight_type_info(type).block;
    switch (type) {
    case WeightType::f32:
        if (n) std::memcpy(dst, src, size_t(n) * sizeof(float));
        return;
    case WeightType::bf16: {
        // bf16_to_f32 inlined (the top half of an f32), so the loop vectorizes.
        const auto* in = static_cast<const uint8_t*>(src);
        for (int64_t i = 0; i < n; ++i)
            dst[i]
                = std::bit_cast<float>(uint32_t(in[2 * i]) << 16 | uint32_t(in[2 * i + 1]) << 24);
        return;
    }
    case WeightType::f16: {
        const auto* in = static_cast<const Half*>(src);
        for (int64_t i = 0; i < n; ++i) dst[i] = in[i].get();
        return;
    }
    case WeightType::q8_0:
        return dequantize_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
    case WeightType::q4_0:
        return dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
    case WeightType::q4_1:
        return dequantize_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
    case WeightType::q5_0:
        return dequantize_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
    case WeightType::q5_1:
        return dequantize_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb);
    case WeightType::iq4_nl:
        return dequantize_iq4_nl(static_cast<const BlockIq4nl*>(src), dst, nb);
    case WeightType::q2_K:
        return dequantize_q2_K(static_cast<const BlockQ2_K*>(src), dst, nb);
    case WeightType::q3_K:
        return dequantize_q3_K(static_cast<const BlockQ3_K*>(src), dst, nb);
    case WeightType::q4_K:
        return dequantize_q4_K(static_cast<const BlockQ4_K*>(src), dst, nb);
    case WeightType::q5_K:
        return dequantize_q5_K(static_cast<const BlockQ5_K*>(src), dst, nb);
    case WeightType::q6_K:
        return dequantize_q6_K(static_cast<const BlockQ6_K*>(src), dst, nb);
    }
}

} // namespace iris::model::cpu
