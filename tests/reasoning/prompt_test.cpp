#include "model/model.h"
#include "reasoning/prompt.h"
#include "tests/golden.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using namespace iris::reasoning;

namespace {

const fs::path kGolden = iris::test::golden_dir();

nlohmann::json golden_index()
{
    std::ifstream in(kGolden / "index.json");
    return nlohmann::json::parse(in);
}

} // namespace

TEST(Prompt, InternVL25TemplateRendersTheOfficialSingleTurnLayout)
{
    const auto& t = chat_template("internvl2_5");
    std::string p = render_prompt(t, "", {}, "<image>\nWhat is it?");
    EXPECT_EQ(p,
              "<|im_start|>system\n" + t.system_message
                  + "<|im_end|>\n<|im_start|>user\n<image>\nWhat is "
                    "it?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(Prompt, HistoryTurnsComeBeforeTheNewQuestion)
{
    const auto& t = chat_template("internlm2-chat");
    std::string p = render_prompt(t, "Be brief.", {{"q1", "a1"}}, "q2");
    EXPECT_EQ(
        p,
        "<|im_start|>system\nBe brief.<|im_end|><|im_start|>user\nq1<|im_end|>"
        "<|im_start|>assistant\na1<|im_end|><|im_start|>user\nq2<|im_end|><|im_start|>assistant\n");
}

TEST(Prompt, UnknownTemplateIsUnsupported)
{
    EXPECT_THROW(chat_template("llama-3"), iris::Error);
}

TEST(Prompt, ImagePlaceholdersFollowTheOfficialMultiImageAndVideoForms)
{
    EXPECT_EQ(image_placeholders(1, ImageLayout::single), "<image>\n");
    EXPECT_EQ(image_placeholders(2, ImageLayout::numbered), "Image-1: <image>\nImage-2: <image>\n");
    EXPECT_EQ(image_placeholders(2, ImageLayout::frames), "Frame1: <image>\nFrame2: <image>\n");
}

TEST(Prompt, ExpandingPlaceholdersNeedsOneImagePerPlaceholder)
{
    EXPECT_EQ(expand_image_placeholders("a<image>b<image>", {1, 2}),
              "a<img><IMG_CONTEXT></img>b<img><IMG_CONTEXT><IMG_CONTEXT></img>");
    EXPECT_THROW(expand_image_placeholders("<image>", {}), iris::Error);
    EXPECT_THROW(expand_image_placeholders("<image>", {1, 1}), iris::Error);
}

// The prompt ids of the official chat() for both golden models, rebuilt from the template,
// the tokenizer and the number of tiles.
TEST(Prompt, TemplatedPromptIdsEqualTheOfficialChatInputIds)
{
    IRIS_REQUIRE_GOLDEN();
    auto index = golden_index();
    for (auto& [name, c] : index["cases"]["full"].items()) {
        SCOPED_TRACE(name);
        auto tok = iris::model::Tokenizer::load((kGolden / c["model"].get<std::string>()).string());
        auto cfg = iris::model::ModelConfig::load(
            (kGolden / c["model"].get<std::string>() / "config.json").string());
        const auto& tmpl = chat_template(c["template"].get<std::string>());
        std::string text = render_prompt(tmpl, cfg.system_message.value_or(""), {},
                                         "<image>\n" + c["question"].get<std::string>());
        text = expand_image_placeholders(text, {c["num_tiles"].get<int>() * cfg.num_image_token()});
        std::vector<int32_t> ids = tok->encode(text, /*add_bos=*/true);

        auto st = iris::model::SafeTensors::open((kGolden / c["file"].get<std::string>()).string());
        std::vector<int64_t> expect = st.get("input_ids").to_i64();
        ASSERT_EQ(ids.size(), expect.size());
        for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], expect[i]) << "position " << i;
    }
}
