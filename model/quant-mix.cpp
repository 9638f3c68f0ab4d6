// Which type each language-model matrix gets under a llama.cpp file type ("q4_K_M", ...): the
// rules of llama-quantize without an importance matrix, for dense (non-MoE) models, so that a
// checkpoint quantized here holds the same types per tensor as llama-quantize's output.
#include "model/network-impl.h"

#include <cctype>

namespace iris::model {

namespace {

using cpu::WeightType;

struct FileTypeSpec
{
    const char* name;
    WeightType base;
};

constexpr FileTypeSpec kFileTypes[] = {
    {"q8_0", WeightType::q8_0},   {"q4_0", WeightType::q4_0},   {"q4_1", WeightType::q4_1},
    {"q5_0", WeightType::q5_0},   {"q5_1", WeightType::q5_1},   {"iq4_nl", WeightType::iq4_nl},
    {"q4_K_S", WeightType::q4_K}, {"q4_K_M", WeightType::q4_K}, {"q5_K_S", WeightType::q5_K},
    {"q5_K_M", WeightType::q5_K}, {"q6_K", WeightType::q6_K},
};

bool same_name(std::string_view a, std::string_view b)
{
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i]))
            != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

// A few layers at both ends and every third one between get more bits (llama.cpp's
// use_more_bits).
bool more_bits(int layer, int n_layers)
{
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

// A row width the type cannot store falls back to a 32-block type, then to f16.
WeightType fallback(WeightType t, int64_t cols)
{
    if (cols % cpu::weight_type_info(t).block == 0) return t;
    switch (t) {
    case WeightType::q2_K:
    case WeightType::q3_K:
        t = WeightType::q4_0;
        break;
    case WeightType::q4_K:
        t = WeightType::q5_0;
        break;
    case WeightType::q5_K:
        t = WeightType::q5_1;
        break;
    case WeightType::q6_K:
        t = WeightType::q8_0;
        break;
    default:
        break;
    }
    return cols % cpu::weight_type_info(t).block == 0 ? t : WeightType::f16;
}

} // namespace

QuantMix QuantMix::parse(std::string_view name)
{
    for (const FileTypeSpec& f : kFileTypes)
        if (same_name(name, f.name)) return QuantMix {f.name, f.base};
    std::string names;
    for (const FileTypeSpec& f : kFileTypes)
        names += std::string(names.empty() ? "" : ", ") + f.name;
    throw Error(ErrorKind::invalid_argument,
                "unknown quantization type \"" + std::string(name) + "\"; use one of " + names);
}

WeightType QuantMix::type_for(const TensorRole& role, int64_t cols, int n_gqa) const
{
    const std::string_view n = name;
    const bool k_m = n == "q4_K_M" || n == "q5_K_M", k_s = n == "q4_K_S";
    WeightType t = base;
    switch (role.kind) {
    case TensorRole::output:
        // The output matrix (and a tied embedding, which is the same tensor) is kept wider.
        if (cols % cpu::weight_type_info(t).block != 0)
            t = WeightType::q8_0;
        else if (t != WeightType::q8_0)
            t = WeightType::q6_K;
        break;
    case TensorRole::attn_v:
        if (k_m && more_bits(role.layer, role.n_layers))
            t = WeightType::q6_K;
        else if (k_s && role.layer < 4)
            t = WeightType::q5_K;
        else if (n == "iq4_nl" && n_gqa >= 4)
            t = WeightType::q5_K;
        break;
    case TensorRole::ffn_down:
        if (k_m && more_bits(role.layer, role.n_layers))
            t = WeightType::q6_K;
        else if ((k_s || n == "iq4_nl") && role.layer < role.n_layers / 8)
            t = WeightType::q5_K;
        break;
    default:
        break;
    }
    return fallback(t, cols);
}

} // namespace iris::model
