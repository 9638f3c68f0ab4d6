// ModelConfig: the golden config.json files, and an error naming the field for each bad one.
#include "model/model.h"
#include "tests/golden.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using iris::Error;
using iris::ErrorKind;
using namespace iris::model;
using json = nlohmann::json;

namespace {

const fs::path kGoldenDir = iris::test::golden_dir();

// The fields the loader reads, shaped like InternVL2.5-1B (with the tiny model's sizes).
json base_config()
{
    return json::parse(R"({
      "model_type": "internvl_chat",
      "downsample_ratio": 0.5, "dynamic_image_size": true, "force_image_size": 448,
      "max_dynamic_patch": 12, "min_dynamic_patch": 1, "ps_version": "v2", "select_layer": -1,
      "template": "internvl2_5", "use_thumbnail": true,
      "llm_config": {
        "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", "hidden_size": 64,
        "intermediate_size": 176, "max_position_embeddings": 32768, "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "tie_word_embeddings": false, "vocab_size": 968
      },
      "vision_config": {
        "hidden_act": "gelu", "hidden_size": 64, "image_size": 448, "intermediate_size": 256,
        "layer_norm_eps": 1e-06, "norm_type": "layer_norm", "num_attention_heads": 4,
        "num_channels": 3, "num_hidden_layers": 2, "patch_size": 14, "qk_normalization": false,
        "qkv_bias": true
      }
    })");
}

ModelConfig parse(const json& j)
{
    return ModelConfig::parse(j.dump(), "config.json");
}

// Parses `j` and expects an Error of `kind` whose message holds every one of `parts`.
void expect_error(const json& j, ErrorKind kind, std::initializer_list<std::string> parts)
{
    try {
        parse(j);
        ADD_FAILURE() << "expected an error for " << j.dump();
    } catch (const Error& e) {
        std::string what = e.what();
        EXPECT_EQ(e.kind(), kind) << iris::error_kind_name(e.kind()) << ": " << what;
        EXPECT_EQ(what.rfind("config.json: ", 0), 0u) << what;
        for (const std::string& p : parts)
            EXPECT_NE(what.find(p), std::string::npos) << "message lacks \"" << p << "\": " << what;
    }
}

// base_config() with the value at `pointer` replaced (or removed when `value` is discarded).
json with(const std::string& pointer, const json& value)
{
    json j = base_config();
    j[json::json_pointer(pointer)] = value;
    return j;
}

json without(const std::string& pointer)
{
    json j = base_config();
    json::json_pointer p(pointer);
    j[p.parent_pointer()].erase(p.back());
    return j;
}

// "/llm_config/hidden_size" -> "llm_config.hidden_size"
std::string dotted(std::string pointer)
{
    pointer.erase(0, 1);
    for (char& c : pointer)
        if (c == '/') c = '.';
    return pointer;
}

} // namespace

// =============================================================================================
// Golden configs

TEST(ModelConfig, LoadsTheGoldenQwen2Config)
{
    IRIS_REQUIRE_GOLDEN();
    for (const char* name : {"tiny_qwen2", "tiny_qwen2_bf16"}) {
        ModelConfig c = ModelConfig::load((kGoldenDir / "models" / name / "config.json").string());
        EXPECT_EQ(c.llm.arch, LlmArch::qwen2);
        EXPECT_EQ(c.llm.hidden_size, 64);
        EXPECT_EQ(c.llm.intermediate_size, 176);
        EXPECT_EQ(c.llm.num_hidden_layers, 2);
        EXPECT_EQ(c.llm.num_attention_heads, 4);
        EXPECT_EQ(c.llm.num_key_value_heads, 2);
        EXPECT_EQ(c.llm.head_dim, 16);
        EXPECT_EQ(c.llm.vocab_size, 968);
        EXPECT_EQ(c.llm.max_position_embeddings, 32768);
        EXPECT_FLOAT_EQ(c.llm.rms_norm_eps, 1e-6f);
        EXPECT_FLOAT_EQ(c.llm.rope_theta, 1e6f);
        EXPECT_EQ(c.llm.rope_scaling_type, "");
        EXPECT_FLOAT_EQ(c.llm.rope_scaling_factor, 1.f);
        EXPECT_TRUE(c.llm.attention_bias);
        EXPECT_FALSE(c.llm.tie_word_embeddings);

        EXPECT_EQ(c.vision.hidden_size, 64);
        EXPECT_EQ(c.vision.num_hidden_layers, 2);
        EXPECT_EQ(c.vision.num_attention_heads, 4);
        EXPECT_EQ(c.vision.intermediate_size, 256);
        EXPECT_EQ(c.vision.patch_size, 14);
        EXPECT_EQ(c.vision.image_size, 448);
        EXPECT_EQ(c.vision.num_channels, 3);
        EXPECT_FLOAT_EQ(c.vision.layer_norm_eps, 1e-6f);
        EXPECT_FALSE(c.vision.rms_norm);
        EXPECT_TRUE(c.vision.qkv_bias);
        EXPECT_FALSE(c.vision.qk_normalization);

        EXPECT_EQ(c.force_image_size, 448);
        EXPECT_FLOAT_EQ(c.downsample_ratio, 0.5f);
        EXPECT_EQ(c.select_layer, -1);
        EXPECT_EQ(c.ps_version, "v2");
        EXPECT_EQ(c.template_name, "internvl2_5");
        EXPECT_FALSE(c.system_message.has_value());
        EXPECT_EQ(c.min_dynamic_patch, 1);
        EXPECT_EQ(c.max_dynamic_patch, 12);
        EXPECT_TRUE(c.use_thumbnail);
        EXPECT_TRUE(c.dynamic_image_size);
        EXPECT_EQ(c.num_image_token(), 256);
    }
}

TEST(ModelConfig, LoadsTheGoldenInternLM2Config)
{
    IRIS_REQUIRE_GOLDEN();
    ModelConfig c = ModelConfig::load((kGoldenDir / "models/tiny_internlm2/config.json").string());
    EXPECT_EQ(c.llm.arch, LlmArch::internlm2);
    EXPECT_EQ(c.llm.hidden_size, 96);
    EXPECT_EQ(c.llm.intermediate_size, 256);
    EXPECT_EQ(c.llm.num_hidden_layers, 2);
    EXPECT_EQ(c.llm.num_attention_heads, 6);
    EXPECT_EQ(c.llm.num_key_value_heads, 2);
    EXPECT_EQ(c.llm.head_dim, 16);
    EXPECT_EQ(c.llm.vocab_size, 809);
    EXPECT_EQ(c.llm.max_position_embeddings, 32768);
    EXPECT_FLOAT_EQ(c.llm.rms_norm_eps, 1e-5f);
    EXPECT_FLOAT_EQ(c.llm.rope_theta, 1e6f);
    EXPECT_EQ(c.llm.rope_scaling_type, "dynamic");
    EXPECT_FLOAT_EQ(c.llm.rope_scaling_factor, 2.f);
    EXPECT_FALSE(c.llm.attention_bias);
    EXPECT_FALSE(c.llm.tie_word_embeddings);
    EXPECT_EQ(c.vision.hidden_size, 64);
    EXPECT_EQ(c.template_name, "internlm2-chat");
    EXPECT_EQ(c.ps_version, "v2");
    EXPECT_EQ(c.select_layer, -1);
    EXPECT_FALSE(c.system_message.has_value());
    EXPECT_EQ(c.num_image_token(), 256);
}

TEST(ModelConfig, LoadOfAMissingFileIsNotFoundNamingIt)
{
    try {
        ModelConfig::load("/nonexistent/iris/config.json");
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::not_found);
        EXPECT_NE(std::string(e.what()).find("/nonexistent/iris/config.json"), std::string::npos);
    }
}

// =============================================================================================
// Values and defaults

TEST(ModelConfig, ParsesTheBaseConfigAndComputesDerivedValues)
{
    ModelConfig c = parse(base_config());
    EXPECT_EQ(c.llm.head_dim, 16);
    EXPECT_EQ(c.num_image_token(), 256);
    EXPECT_TRUE(c.llm.attention_bias); // Qwen2 always has q/k/v biases
    c.downsample_ratio = 0.25f;
    EXPECT_EQ(c.num_image_token(), 64);
}

TEST(ModelConfig, SystemMessageAbsentNullOrEmptyMeansTheTemplateDefault)
{
    EXPECT_FALSE(parse(base_config()).system_message.has_value());
    EXPECT_FALSE(parse(with("/system_message", nullptr)).system_message.has_value());
    EXPECT_FALSE(parse(with("/system_message", "")).system_message.has_value());
    EXPECT_EQ(parse(with("/system_message", "Be brief.")).system_message, "Be brief.");
    expect_error(with("/system_message", 3), ErrorKind::invalid_input, {"system_message"});
}

TEST(ModelConfig, RopeScalingMayBeAbsentNullOrAnObjectWithTypeOrRopeType)
{
    LlmConfig l = parse(with("/llm_config/rope_scaling", nullptr)).llm;
    EXPECT_EQ(l.rope_scaling_type, "");
    EXPECT_FLOAT_EQ(l.rope_scaling_factor, 1.f);
    l = parse(with("/llm_config/rope_scaling", {{"type", "linear"}, {"factor", 4}})).llm;
    EXPECT_EQ(l.rope_scaling_type, "linear");
    EXPECT_FLOAT_EQ(l.rope_scaling_factor, 4.f);
    l = parse(with("/llm_config/rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}})).llm;
    EXPECT_EQ(l.rope_scaling_type, "dynamic");
    EXPECT_FLOAT_EQ(l.rope_scaling_factor, 2.f);
    l = parse(with("/llm_config/rope_scaling", {{"rope_type", "default"}})).llm;
    EXPECT_EQ(l.rope_scaling_type, "");

    expect_error(with("/llm_config/rope_scaling", {{"type", "yarn"}, {"factor", 2.0}}),
                 ErrorKind::unsupported, {"llm_config.rope_scaling.type", "yarn"});
    expect_error(with("/llm_config/rope_scaling", {{"type", "dynamic"}, {"factor", 0.5}}),
                 ErrorKind::invalid_input, {"llm_config.rope_scaling.factor"});
    expect_error(with("/llm_config/rope_scaling", {{"type", "dynamic"}}), ErrorKind::invalid_input,
                 {"llm_config.rope_scaling.factor"});
    expect_error(with("/llm_config/rope_scaling", {{"factor", 2.0}}), ErrorKind::invalid_input,
                 {"llm_config.rope_scaling.type"});
    expect_error(with("/llm_config/rope_scaling", "dynamic"), ErrorKind::invalid_input,
                 {"llm_config.rope_scaling"});
}

TEST(ModelConfig, InternLM2ReadsItsBiasField)
{
    json j = with("/llm_config/architectures", {"InternLM2ForCausalLM"});
    j["llm_config"]["bias"] = false;
    EXPECT_FALSE(parse(j).llm.attention_bias);
    j["llm_config"]["bias"] = true;
    EXPECT_TRUE(parse(j).llm.attention_bias);
    j["llm_config"].erase("bias"); // InternLM2Config's default
    EXPECT_TRUE(parse(j).llm.attention_bias);
    j["llm_config"]["bias"] = "no";
    expect_error(j, ErrorKind::invalid_input, {"llm_config.bias"});
    // Qwen2 ignores it.
    EXPECT_TRUE(parse(with("/llm_config/bias", false)).llm.attention_bias);
}

TEST(ModelConfig, ForceImageSizeNullFallsBackToTheVisionImageSize)
{
    json j = with("/force_image_size", nullptr);
    j["vision_config"]["image_size"] = 224;
    ModelConfig c = parse(j);
    EXPECT_EQ(c.force_image_size, 224);
    EXPECT_EQ(c.num_image_token(), 64);
}

TEST(ModelConfig, AcceptsRmsNormVisionAndV1PixelShuffle)
{
    json j = with("/vision_config/norm_type", "rms_norm");
    j["ps_version"] = "v1";
    j["vision_config"]["qk_normalization"] = true;
    ModelConfig c = parse(j);
    EXPECT_TRUE(c.vision.rms_norm);
    EXPECT_TRUE(c.vision.qk_normalization);
    EXPECT_EQ(c.ps_version, "v1");
}

// =============================================================================================
// Errors naming the field

TEST(ModelConfig, EveryMissingRequiredFieldIsNamed)
{
    for (const char* p : {"/llm_config",
                          "/vision_config",
                          "/downsample_ratio",
                          "/select_layer",
                          "/ps_version",
                          "/template",
                          "/min_dynamic_patch",
                          "/max_dynamic_patch",
                          "/use_thumbnail",
                          "/dynamic_image_size",
                          "/llm_config/architectures",
                          "/llm_config/hidden_size",
                          "/llm_config/intermediate_size",
                          "/llm_config/num_hidden_layers",
                          "/llm_config/num_attention_heads",
                          "/llm_config/num_key_value_heads",
                          "/llm_config/vocab_size",
                          "/llm_config/max_position_embeddings",
                          "/llm_config/rms_norm_eps",
                          "/llm_config/rope_theta",
                          "/vision_config/hidden_size",
                          "/vision_config/num_hidden_layers",
                          "/vision_config/num_attention_heads",
                          "/vision_config/intermediate_size",
                          "/vision_config/patch_size",
                          "/vision_config/image_size",
                          "/vision_config/num_channels",
                          "/vision_config/layer_norm_eps",
                          "/vision_config/norm_type",
                          "/vision_config/qkv_bias",
                          "/vision_config/qk_normalization",
                          "/vision_config/hidden_act"}) {
        SCOPED_TRACE(p);
        expect_error(without(p), ErrorKind::invalid_input, {dotted(p), "missing"});
        // null counts as missing.
        expect_error(with(p, nullptr), ErrorKind::invalid_input, {dotted(p), "missing"});
    }
}

TEST(ModelConfig, EveryFieldOfTheWrongTypeIsNamed)
{
    struct Case
    {
        const char* pointer;
        json value;
    };
    const Case cases[] = {
        {"/llm_config", 3},
        {"/vision_config", "x"},
        {"/llm_config/hidden_size", "64"},
        {"/llm_config/hidden_size", 64.5},
        {"/llm_config/num_key_value_heads", true},
        {"/llm_config/num_key_value_heads", 2.0},
        {"/llm_config/vocab_size", json::array({968})},
        {"/llm_config/rms_norm_eps", "1e-6"},
        {"/llm_config/rope_theta", json::object()},
        {"/llm_config/tie_word_embeddings", 0},
        {"/llm_config/architectures", "Qwen2ForCausalLM"},
        {"/llm_config/architectures", json::array()},
        {"/llm_config/architectures", json::array({1})},
        {"/vision_config/qkv_bias", 1},
        {"/vision_config/qk_normalization", "false"},
        {"/vision_config/layer_norm_eps", false},
        {"/vision_config/norm_type", 1},
        {"/downsample_ratio", "0.5"},
        {"/select_layer", -1.0},
        {"/ps_version", 2},
        {"/template", ""},
        {"/template", 1},
        {"/use_thumbnail", "true"},
        {"/dynamic_image_size", 1},
        {"/force_image_size", "448"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.pointer) + " = " + c.value.dump());
        expect_error(with(c.pointer, c.value), ErrorKind::invalid_input, {dotted(c.pointer)});
    }
}

TEST(ModelConfig, NumbersOutOfRangeAreNamed)
{
    struct Case
    {
        const char* pointer;
        json value;
    };
    const Case cases[] = {
        {"/llm_config/hidden_size", 0},
        {"/llm_config/hidden_size", -64},
        {"/llm_config/num_hidden_layers", 513},
        {"/llm_config/num_key_value_heads", 0},
        {"/llm_config/vocab_size", 10'000'001},
        {"/llm_config/vocab_size", 18446744073709551615ull},
        {"/llm_config/intermediate_size", -1},
        {"/llm_config/max_position_embeddings", 0},
        {"/llm_config/rms_norm_eps", 0},
        {"/llm_config/rms_norm_eps", -1e-6},
        {"/llm_config/rope_theta", 0},
        {"/vision_config/num_hidden_layers", 0},
        {"/vision_config/patch_size", 0},
        {"/vision_config/image_size", 450},
        {"/vision_config/layer_norm_eps", 2.0},
        {"/downsample_ratio", 0},
        {"/downsample_ratio", 1.5},
        {"/downsample_ratio", 0.3},
        {"/select_layer", 3},
        {"/select_layer", -4},
        {"/min_dynamic_patch", 0},
        {"/min_dynamic_patch", 13},
        {"/max_dynamic_patch", 0},
        {"/force_image_size", 450},
        {"/force_image_size", 0},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.pointer) + " = " + c.value.dump());
        expect_error(with(c.pointer, c.value), ErrorKind::invalid_input, {dotted(c.pointer)});
    }
}

TEST(ModelConfig, HeadCountsMustDivideEvenly)
{
    expect_error(with("/llm_config/num_attention_heads", 5), ErrorKind::invalid_input,
                 {"llm_config.hidden_size", "num_attention_heads"});
    expect_error(with("/llm_config/num_key_value_heads", 3), ErrorKind::invalid_input,
                 {"llm_config.num_attention_heads", "num_key_value_heads"});
    expect_error(with("/vision_config/num_attention_heads", 3), ErrorKind::invalid_input,
                 {"vision_config.hidden_size", "num_attention_heads"});
}

TEST(ModelConfig, UnsupportedChoicesNameTheFieldAndValue)
{
    expect_error(with("/llm_config/architectures", {"LlamaForCausalLM"}), ErrorKind::unsupported,
                 {"llm_config.architectures[0]", "LlamaForCausalLM"});
    expect_error(with("/vision_config/hidden_act", "relu"), ErrorKind::unsupported,
                 {"vision_config.hidden_act", "relu"});
    expect_error(with("/vision_config/norm_type", "batch_norm"), ErrorKind::unsupported,
                 {"vision_config.norm_type", "batch_norm"});
    expect_error(with("/ps_version", "v3"), ErrorKind::unsupported, {"ps_version", "v3"});
    expect_error(with("/llm_config/hidden_act", "gelu"), ErrorKind::unsupported,
                 {"llm_config.hidden_act", "gelu"});
    expect_error(with("/vision_config/num_channels", 4), ErrorKind::unsupported,
                 {"vision_config.num_channels"});
    expect_error(with("/model_type", "internvl"), ErrorKind::unsupported,
                 {"model_type", "internvl"});
}

TEST(ModelConfig, RejectsTextThatIsNotAJsonObject)
{
    for (const char* text : {"", "{", "[]", "42", "{\"a\":1} x"}) {
        try {
            ModelConfig::parse(text, "config.json");
            ADD_FAILURE() << "accepted: " << text;
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::invalid_input) << e.what();
            EXPECT_EQ(std::string(e.what()).rfind("config.json: ", 0), 0u) << e.what();
        }
    }
    std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
    EXPECT_THROW(ModelConfig::parse(R"({"x":)" + deep + "}", "config.json"), Error);
}
