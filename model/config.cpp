// ModelConfig: config.json of an `internvl_chat` checkpoint (docs/model.md §1).
//
// Only the fields the engine uses are read; each is type- and range-checked, and every error
// names the field's path. Fields that save_pretrained always writes are required, so a
// hand-made config gets a clear error instead of a silently different model.
#include "model/arch.h"
#include "model/model.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace iris::model {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxConfigSize = 16u << 20; // real ones are ~5 KiB
constexpr int kMaxJsonDepth = 64;

// Sanity caps: far above any real checkpoint, low enough that derived sizes cannot overflow.
constexpr int kMaxHidden = 1 << 16;
constexpr int kMaxIntermediate = 1 << 18;
constexpr int kMaxLayers = 512;
constexpr int kMaxHeads = 1024;
constexpr int kMaxVocab = 10'000'000;
constexpr int kMaxPositions = 1 << 24;
constexpr int kMaxImageSize = 1 << 14;
constexpr int kMaxPatches = 4096; // dynamic tiles per image

// Reads typed fields of one JSON object, naming errors "<origin>: <path>.<key> ...".
class Fields
{
public:
    Fields(const json& obj, std::string prefix, const std::string& origin)
        : obj_(obj)
        , prefix_(std::move(prefix))
        , origin_(origin)
    { }

    std::string path(const std::string& key) const { return prefix_ + key; }

    [[noreturn]] void fail(const std::string& key, const std::string& what,
                           ErrorKind kind = ErrorKind::invalid_input) const
    {
        throw Error(kind, origin_ + ": " + path(key) + " " + what);
    }

    // nullptr when the key is absent or null.
    const json* find(const std::string& key) const
    {
        auto it = obj_.find(key);
        if (it == obj_.end() || it->is_null()) return nullptr;
        return &*it;
    }

    const json& require(const std::string& key, const char* what) const
    {
        const json* v = find(key);
        if (!v) fail(key, std::string("is missing (it must be ") + what + ")");
        return *v;
    }

    Fields object(const std::string& key) const
    {
        const json& v = require(key, "an object");
        if (!v.is_object()) fail(key, "must be an object");
        return Fields(v, path(key) + ".", origin_);
    }

    int integer(const std::string& key, int lo, int hi) const
    {
        const char* what = lo > 0 ? "a positive integer" : "an integer";
        const json& v = require(key, what);
        return check_int(key, v, lo, hi, what);
    }

    int integer_or(const std::string& key, int lo, int hi, int fallback) const
    {
        const json* v = find(key);
        if (!v) return fallback;
        return check_int(key, *v, lo, hi, lo > 0 ? "a positive integer" : "an integer");
    }

    // A finite number in (lo, hi]; integers are accepted (e.g. "rope_theta": 1000000).
    double number(const std::string& key, double lo, double hi) const
    {
        const json& v = require(key, "a number");
        if (!v.is_number()) fail(key, "must be a number");
        double d = v.get<double>();
        if (!std::isfinite(d) || !(d > lo) || d > hi)
            fail(key, strfmt("must be in (%g, %g], not %g", lo, hi, d));
        return d;
    }

    bool boolean(const std::string& key) const
    {
        const json& v = require(key, "true or false");
        if (!v.is_boolean()) fail(key, "must be true or false");
        return v.get<bool>();
    }

    bool boolean_or(const std::string& key, bool fallback) const
    {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean()) fail(key, "must be true or false");
        return v->get<bool>();
    }

    std::string string(const std::string& key) const
    {
        const json& v = require(key, "a string");
        if (!v.is_string() || v.get_ref<const std::string&>().empty())
            fail(key, "must be a non-empty string");
        return v.get<std::string>();
    }

    // One of `allowed`; anything else is unsupported and named.
    std::string one_of(const std::string& key, std::initializer_list<const char*> allowed) const
    {
        std::string s = string(key);
        std::string list;
        for (const char* a : allowed) {
            if (s == a) return s;
            list += list.empty() ? "" : ", ";
            list += std::string("\"") + a + "\"";
        }
        fail(key, "is \"" + s + "\"; supported: " + list, ErrorKind::unsupported);
    }

private:
    int check_int(const std::string& key, const json& v, int lo, int hi, const char* what) const
    {
        if (!v.is_number_integer()) fail(key, std::string("must be ") + what);
        // Non-negative literals parse as unsigned and may not fit int64.
        if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
            fail(key, strfmt("must be at most %d", hi));
        int64_t i = v.get<int64_t>();
        if (i < lo) {
            if (lo == 1) fail(key, std::string("must be ") + what);
            fail(key, strfmt("must be at least %d", lo));
        }
        if (i > hi) fail(key, strfmt("must be at most %d", hi));
        return static_cast<int>(i);
    }

    const json& obj_;
    std::string prefix_;
    const std::string& origin_;
};

json parse_json(std::string_view text, const std::string& origin)
{
    // The depth cap keeps hostile nesting from exhausting the stack or memory.
    auto cb = [&](int depth, json::parse_event_t, json&) {
        if (depth > kMaxJsonDepth)
            throw Error(ErrorKind::invalid_input, origin + ": JSON nested too deeply");
        return true;
    };
    try {
        return json::parse(text.begin(), text.end(), cb);
    } catch (const json::exception& e) {
        throw Error(ErrorKind::invalid_input, origin + ": invalid JSON: " + e.what());
    }
}

VisionConfig parse_vision(const Fields& f)
{
    VisionConfig v;
    v.hidden_size = f.integer("hidden_size", 1, kMaxHidden);
    v.num_hidden_layers = f.integer("num_hidden_layers", 1, kMaxLayers);
    v.num_attention_heads = f.integer("num_attention_heads", 1, kMaxHeads);
    v.intermediate_size = f.integer("intermediate_size", 1, kMaxIntermediate);
    v.patch_size = f.integer("patch_size", 1, kMaxImageSize);
    v.image_size = f.integer("image_size", 1, kMaxImageSize);
    v.num_channels = f.integer("num_channels", 1, 16);
    v.layer_norm_eps = static_cast<float>(f.number("layer_norm_eps", 0, 1));
    v.rms_norm = f.one_of("norm_type", {"layer_norm", "rms_norm"}) == "rms_norm";
    v.qkv_bias = f.boolean("qkv_bias");
    v.qk_normalization = f.boolean("qk_normalization");
    f.one_of("hidden_act", {"gelu"}); // InternViT's exact (erf) GELU is the only one implemented

    if (v.hidden_size % v.num_attention_heads != 0)
        f.fail("hidden_size",
               strfmt("(%d) must be a multiple of num_attention_heads (%d)", v.hidden_size,
                      v.num_attention_heads));
    if (v.image_size % v.patch_size != 0)
        f.fail("image_size",
               strfmt("(%d) must be a multiple of patch_size (%d)", v.image_size, v.patch_size));
    if (v.num_channels != 3)
        f.fail("num_channels", strfmt("is %d; only RGB (3) images are supported", v.num_channels),
               ErrorKind::unsupported);
    return v;
}

LlmConfig parse_llm(const Fields& f)
{
    LlmConfig l;
    const json& archs = f.require("architectures", "an array of class names");
    if (!archs.is_array() || archs.empty() || !archs[0].is_string())
        f.fail("architectures", "must be a non-empty array of class names");
    const std::string arch = archs[0].get<std::string>();
    const LlmArchInfo* info = llm_arch_by_class(arch);
    if (!info)
        f.fail("architectures[0]", "is \"" + arch + "\"; supported: " + llm_arch_list(false),
               ErrorKind::unsupported);
    l.arch = info->arch;

    l.hidden_size = f.integer("hidden_size", 1, kMaxHidden);
    l.intermediate_size = f.integer("intermediate_size", 1, kMaxIntermediate);
    l.num_hidden_layers = f.integer("num_hidden_layers", 1, kMaxLayers);
    l.num_attention_heads = f.integer("num_attention_heads", 1, kMaxHeads);
    l.num_key_value_heads = f.integer("num_key_value_heads", 1, kMaxHeads);
    l.vocab_size = f.integer("vocab_size", 1, kMaxVocab);
    l.max_position_embeddings = f.integer("max_position_embeddings", 1, kMaxPositions);
    l.rms_norm_eps = static_cast<float>(f.number("rms_norm_eps", 0, 1));
    l.rope_theta = static_cast<float>(f.number("rope_theta", 0, 1e12));
    if (f.find("hidden_act")) f.one_of("hidden_act", {"silu"});

    if (l.hidden_size % l.num_attention_heads != 0)
        f.fail("hidden_size",
               strfmt("(%d) must be a multiple of num_attention_heads (%d)", l.hidden_size,
                      l.num_attention_heads));
    if (l.num_attention_heads % l.num_key_value_heads != 0)
        f.fail("num_attention_heads",
               strfmt("(%d) must be a multiple of num_key_value_heads (%d)", l.num_attention_heads,
                      l.num_key_value_heads));
    l.head_dim = l.hidden_size / l.num_attention_heads;

    if (const json* rs = f.find("rope_scaling")) {
        if (!rs->is_object()) f.fail("rope_scaling", "must be null or an object");
        auto member = [&](const char* k) -> const json* {
            auto it = rs->find(k);
            return it == rs->end() || it->is_null() ? nullptr : &*it;
        };
        // transformers 4.37 writes "type"; newer versions write "rope_type".
        std::string key = member("rope_type") ? "rope_type" : "type";
        const json* t = member(key.c_str());
        if (!t || !t->is_string()) f.fail("rope_scaling.type", "must be a string");
        const std::string type = t->get<std::string>();
        if (type == "dynamic" || type == "linear") {
            const json* factor = member("factor");
            if (!factor || !factor->is_number() || !std::isfinite(factor->get<double>())
                || factor->get<double>() < 1.0 || factor->get<double>() > 1e6)
                f.fail("rope_scaling.factor", "must be a number of at least 1");
            l.rope_scaling_type = type;
            l.rope_scaling_factor = static_cast<float>(factor->get<double>());
        } else if (type != "default") { // "default" is plain RoPE
            f.fail("rope_scaling." + key, "is \"" + type + "\"; supported: \"dynamic\", \"linear\"",
                   ErrorKind::unsupported);
        }
    }

    // Qwen2 always has q/k/v biases; InternLM2 follows `bias` (its config class defaults to true).
    l.attention_bias = l.arch == LlmArch::qwen2 ? true : f.boolean_or("bias", true);
    // As written in the file. Note the reference InternVLChatConfig forces it to false and so
    // expects an untied lm_head tensor; the network decides by what the weights contain.
    l.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
    return l;
}

} // namespace

int ModelConfig::num_image_token() const
{
    // As the reference: int((image_size // patch_size) ** 2 * downsample_ratio ** 2).
    int grid = force_image_size / vision.patch_size;
    double r = downsample_ratio;
    return static_cast<int>(static_cast<double>(grid) * grid * (r * r));
}

ModelConfig ModelConfig::parse(std::string_view json_text, const std::string& origin)
{
    json root = parse_json(json_text, origin);
    if (!root.is_object())
        throw Error(ErrorKind::invalid_input, origin + ": the config must be a JSON object");
    Fields top(root, "", origin);

    if (const json* mt = top.find("model_type")) {
        if (!mt->is_string() || mt->get_ref<const std::string&>() != "internvl_chat")
            top.fail("model_type",
                     "is " + mt->dump()
                         + "; only \"internvl_chat\" checkpoints "
                           "(original InternVL format) are supported",
                     ErrorKind::unsupported);
    }

    ModelConfig c;
    c.vision = parse_vision(top.object("vision_config"));
    c.llm = parse_llm(top.object("llm_config"));

    // The reference uses force_image_size when set, else vision_config.image_size.
    c.force_image_size = top.integer_or("force_image_size", 1, kMaxImageSize, c.vision.image_size);
    if (c.force_image_size % c.vision.patch_size != 0)
        top.fail("force_image_size",
                 strfmt("(%d) must be a multiple of vision_config.patch_size (%d)",
                        c.force_image_size, c.vision.patch_size));
    c.downsample_ratio = static_cast<float>(top.number("downsample_ratio", 0, 1));
    // Pixel shuffle folds scale x scale patches into one token: the scale must be a whole
    // number that divides the patch grid.
    const int grid = c.force_image_size / c.vision.patch_size;
    const double scale = 1.0 / c.downsample_ratio;
    const int iscale = static_cast<int>(std::lround(scale));
    if (std::fabs(scale - iscale) > 1e-6 || grid % iscale != 0)
        top.fail("downsample_ratio",
                 strfmt("(%g) must be 1/n for a whole n that divides the %d-patch grid",
                        c.downsample_ratio, grid));

    // hidden_states has num_hidden_layers + 1 entries, indexed Python-style.
    const int layers = c.vision.num_hidden_layers;
    c.select_layer = top.integer("select_layer", -(layers + 1), layers);
    c.ps_version = top.one_of("ps_version", {"v1", "v2"});
    c.template_name = top.string("template");
    if (const json* sm = top.find("system_message")) {
        if (!sm->is_string()) top.fail("system_message", "must be a string or null");
        // An empty message means "use the template's default" (docs/tokenizer.md §1).
        if (!sm->get_ref<const std::string&>().empty()) c.system_message = sm->get<std::string>();
    }
    c.min_dynamic_patch = top.integer("min_dynamic_patch", 1, kMaxPatches);
    c.max_dynamic_patch = top.integer("max_dynamic_patch", 1, kMaxPatches);
    if (c.min_dynamic_patch > c.max_dynamic_patch)
        top.fail("min_dynamic_patch",
                 strfmt("(%d) must not exceed max_dynamic_patch (%d)", c.min_dynamic_patch,
                        c.max_dynamic_patch));
    c.use_thumbnail = top.boolean("use_thumbnail");
    c.dynamic_image_size = top.boolean("dynamic_image_size");
    return c;
}

ModelConfig ModelConfig::load(const std::string& config_json_path)
{
    struct stat sb;
    if (::stat(config_json_path.c_str(), &sb) != 0) {
        int err = errno;
        throw Error(err == ENOENT ? ErrorKind::not_found : ErrorKind::io,
                    "cannot open " + config_json_path + ": " + std::strerror(err));
    }
    if (!S_ISREG(sb.st_mode))
        throw Error(ErrorKind::invalid_input, config_json_path + ": not a regular file");
    if (static_cast<uint64_t>(sb.st_size) > kMaxConfigSize)
        throw Error(ErrorKind::invalid_input,
                    config_json_path + ": file is too large for a config.json");
    std::ifstream in(config_json_path, std::ios::binary);
    if (!in) throw Error(ErrorKind::io, "cannot open " + config_json_path);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(ErrorKind::io, "cannot read " + config_json_path);
    return parse(ss.str(), config_json_path);
}

} // namespace iris::model
