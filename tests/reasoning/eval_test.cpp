#include "reasoning/engine.h"
#include "reasoning/eval.h"
#include "tests/golden.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using namespace iris::reasoning;

namespace {

const fs::path kGolden = iris::test::golden_dir();

fs::path make_set(const std::string& name, const std::vector<std::string>& lines)
{
    fs::path dir
        = fs::temp_directory_path() / ("iris_eval_test_" + std::to_string(getpid())) / name;
    fs::create_directories(dir);
    std::ofstream out(dir / "data.jsonl");
    for (const auto& l : lines) out << l << "\n";
    return dir;
}

} // namespace

TEST(Eval, AnswersMatchIgnoringCaseSurroundingSpaceAndATrailingFullStop)
{
    EXPECT_TRUE(answers_match(" Red.\n", "red"));
    EXPECT_TRUE(answers_match("12.50", "12.50"));
    EXPECT_FALSE(answers_match("12.5", "12.50"));
    EXPECT_FALSE(answers_match("red square", "red"));
}

TEST(Eval, MalformedLinesAreReportedWithTheirLineNumber)
{
    fs::path dir = make_set(
        "bad", {R"({"id":"a","task":"t","question":"q","answer":"x"})", R"({"id":"b","task":3})"});
    try {
        load_eval_set(dir.string());
        FAIL() << "expected an error";
    } catch (const iris::Error& e) {
        EXPECT_NE(std::string(e.what()).find("data.jsonl:2"), std::string::npos) << e.what();
    }
    EXPECT_THROW(load_eval_set((dir / "missing").string()), iris::Error);
}

TEST(Eval, ASetNamedByItsFileReadsTheSameItemsWithImagesBesideIt)
{
    fs::path dir = make_set(
        "by_file", {R"({"id":"a","task":"t","images":["x.png"],"question":"q","answer":"x"})"});
    auto by_dir = load_eval_set(dir.string());
    auto by_file = load_eval_set((dir / "data.jsonl").string());
    ASSERT_EQ(by_file.size(), 1u);
    ASSERT_EQ(by_dir.size(), 1u);
    EXPECT_EQ(by_file[0].images, by_dir[0].images);
    EXPECT_EQ(fs::path(by_file[0].images.at(0)), dir / "x.png");
}

// An item whose expected answer is the official chat() response is scored correct; a wrong one
// is not.
TEST(Eval, ScoresTheEngineAnswersPerTaskAndOverall)
{
    IRIS_REQUIRE_GOLDEN();
    std::ifstream in(kGolden / "index.json");
    auto c = nlohmann::json::parse(in)["cases"]["full"]["tiny_qwen2"];
    nlohmann::json right = {{"id", "right"},
                            {"task", "caption"},
                            {"images", {(kGolden / c["image"].get<std::string>()).string()}},
                            {"question", c["question"]},
                            {"answer", c["official_chat_response_text"]}};
    nlohmann::json wrong = right;
    wrong["id"] = "wrong";
    wrong["task"] = "color";
    wrong["answer"] = "red";
    fs::path dir = make_set("ok", {right.dump(), wrong.dump()});
    auto items = load_eval_set(dir.string());
    ASSERT_EQ(items.size(), 2u);
    auto engine = Engine::load((kGolden / "models/tiny_qwen2").string());
    std::vector<EvalPrediction> seen;
    auto report
        = evaluate(*engine, items, 16, [&](size_t, const EvalPrediction& p) { seen.push_back(p); });
    ASSERT_EQ(report.tasks.size(), 2u);
    EXPECT_EQ(report.tasks[0].task, "caption");
    EXPECT_EQ(report.tasks[0].correct, 1);
    EXPECT_EQ(report.tasks[1].correct, 0);
    EXPECT_EQ(report.overall.n, 2);
    EXPECT_EQ(report.overall.correct, 1);
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_TRUE(seen[0].correct) << seen[0].predicted;
}
