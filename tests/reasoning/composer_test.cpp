// The composer with the demo model: it picks the right image out of a pool of generated scenes
// from their descriptions, and an article comes out in the shape the pipeline promises.
#include "reasoning/reasoning.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <unistd.h>

using namespace iris::reasoning;
namespace fs = std::filesystem;

namespace {

const fs::path kSource = IRIS_SOURCE_DIR;

const Engine& demo()
{
    static std::unique_ptr<Engine> engine
        = Engine::load((kSource / "resources/models/iris-demo").string());
    return *engine;
}

struct Scene
{
    std::string description;
    Image image;
};

// Scenes of one shape each, with distinct descriptions ("a red circle"), made now by the
// project's generator with a seed it is not trained on.
std::vector<Scene> generated_scenes(int seed, int count)
{
    fs::path dir = fs::temp_directory_path() / ("iris_composer_test_" + std::to_string(getpid()));
    std::string cmd = std::string(IRIS_PYTHON3) + " '"
        + (kSource / "tools/demo/generate.py").string() + "' --tasks caption --seed "
        + std::to_string(seed) + " --count " + std::to_string(count) + " --out '" + dir.string()
        + "' >&2";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::vector<Scene> scenes;
    std::set<std::string> seen;
    std::ifstream in(dir / "data.jsonl");
    std::regex one_shape(R"(an? \w+ (circle|square|triangle|star|diamond|hexagon))");
    for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line);
        std::string d = j["answer"];
        if (!std::regex_match(d, one_shape) || !seen.insert(d).second) continue;
        scenes.push_back({d, load_image((dir / j["images"][0].get<std::string>()).string())});
    }
    fs::remove_all(dir);
    return scenes;
}

} // namespace

TEST(ImageMatch, PicksTheRightSceneOutOfAPoolByItsDescription)
{
    std::vector<Scene> scenes = generated_scenes(7070, 240);
    ASSERT_GE(scenes.size(), 36u);
    const size_t pool_size = 6;
    int n = 0, assigned_right = 0, best_right = 0;
    for (size_t start = 0; start + pool_size <= scenes.size(); start += pool_size) {
        std::vector<Image> pool;
        std::vector<std::string> wanted;
        for (size_t i = start; i < start + pool_size; ++i) {
            pool.push_back(scenes[i].image);
            wanted.push_back(scenes[i].description);
        }
        auto scores = image_match_scores(demo(), pool, wanted);
        std::vector<int> chosen = assign_images(scores);
        for (size_t d = 0; d < wanted.size(); ++d) {
            ++n;
            assigned_right += chosen[d] == int(d);
            best_right += std::max_element(scores[d].begin(), scores[d].end()) - scores[d].begin()
                == std::ptrdiff_t(d);
            for (double s : scores[d]) ASSERT_TRUE(s >= 0 && s <= 1) << s;
        }
    }
    double accuracy = double(assigned_right) / n;
    std::printf("image selection: %d/%d right (%.1f%%) in pools of %zu; best-score choice alone "
                "%d/%d (%.1f%%)\n",
                assigned_right, n, 100 * accuracy, pool_size, best_right, n,
                100.0 * best_right / n);
    ::testing::Test::RecordProperty("selection_accuracy", std::to_string(accuracy));
    EXPECT_GE(accuracy, 0.90);
}

TEST(ComposeArticle, ComesOutAsATitledMarkdownArticleWithEveryMarkAccountedFor)
{
    std::vector<Scene> scenes = generated_scenes(7071, 60);
    ASSERT_GE(scenes.size(), 4u);
    ArticleRequest req;
    req.instruction = "Write a short article about " + scenes[0].description + " and "
        + scenes[1].description + ".";
    for (size_t i = 0; i < 4; ++i) req.pool.push_back({scenes[i].description, scenes[i].image});
    std::vector<std::string> stages;
    ComposeOptions opts;
    opts.progress = [&](const std::string& stage, int, int) {
        stages.push_back(stage);
        return true;
    };
    Article a = compose_article(demo(), req, opts);
    EXPECT_FALSE(a.title.empty());
    ASSERT_FALSE(a.sections.empty());
    EXPECT_LE(a.sections.size(), size_t(req.max_sections));
    EXPECT_EQ(a.markdown.rfind("# " + a.title + "\n", 0), 0u) << a.markdown;
    EXPECT_EQ(a.markdown.find("[[image:"), std::string::npos) << "every mark is replaced";
    std::set<int> used;
    for (size_t i = 0; i < a.images.size(); ++i) {
        if (a.images[i].pool_index < 0) continue;
        EXPECT_TRUE(used.insert(a.images[i].pool_index).second) << "an image is used once";
        std::string link = "("; // built piece by piece: "(" + f + ")" trips GCC 12's -Wrestrict
        link += article_image_file(a, i);
        link += ')';
        EXPECT_NE(a.markdown.find(link), std::string::npos);
    }
    EXPECT_EQ(stages.front(), "outline");
    EXPECT_EQ(stages.back(), "done");
    EXPECT_GT(a.stats.n_generated, 0);

    // A progress callback that says stop ends composing with a cancelled error.
    opts.progress = [](const std::string& stage, int, int) { return stage == "outline"; };
    try {
        compose_article(demo(), req, opts);
        ADD_FAILURE() << "compose_article did not stop";
    } catch (const iris::Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::cancelled);
    }
}

TEST(ComposeWebpage, AlwaysReturnsOneSelfContainedPage)
{
    Webpage w
        = compose_webpage(demo(), {.instruction = "A page titled Fruit listing apple and pear."});
    EXPECT_EQ(w.html.rfind("<!DOCTYPE html>\n", 0), 0u);
    EXPECT_NE(w.html.find("Content-Security-Policy"), std::string::npos);
    EXPECT_THROW(compose_webpage(demo(), {}), iris::Error);
}
