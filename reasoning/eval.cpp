#include "reasoning/eval.h"
#include "reasoning/engine.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

namespace iris::reasoning {

std::vector<EvalItem> load_eval_set(const std::string& where)
{
    namespace fs = std::filesystem;
    fs::path path = fs::is_directory(where) ? fs::path(where) / "data.jsonl" : fs::path(where);
    fs::path dir = path.parent_path();
    std::ifstream in(path);
    if (!in) throw Error(ErrorKind::not_found, "cannot open '" + path.string() + "'");
    std::vector<EvalItem> items;
    std::string line;
    for (size_t line_no = 1; std::getline(in, line); ++line_no) {
        if (trim(line).empty()) continue;
        auto fail = [&](const std::string& why) {
            throw Error(ErrorKind::invalid_input,
                        strfmt("%s:%zu: %s", path.c_str(), line_no, why.c_str()));
        };
        nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object()) fail("not a JSON object");
        EvalItem item;
        for (const char* key : {"id", "task", "question", "answer"})
            if (!j.contains(key) || !j[key].is_string())
                fail(std::string("\"") + key + "\" must be a string");
        item.id = j["id"];
        item.task = j["task"];
        item.question = j["question"];
        item.answer = j["answer"];
        if (j.contains("images")) {
            if (!j["images"].is_array()) fail("\"images\" must be an array of paths");
            for (const auto& p : j["images"]) {
                if (!p.is_string()) fail("\"images\" must be an array of paths");
                item.images.push_back((fs::path(dir) / p.get<std::string>()).string());
            }
        }
        std::string layout = j.value("layout", "single");
        if (layout == "frames")
            item.layout = ImageLayout::frames;
        else if (layout == "numbered")
            item.layout = ImageLayout::numbered;
        else if (layout != "single")
            fail("\"layout\" must be single, numbered or frames");
        items.push_back(std::move(item));
    }
    return items;
}

bool answers_match(std::string_view predicted, std::string_view expected)
{
    auto norm = [](std::string_view s) {
        std::string out(trim(s));
        if (!out.empty() && out.back() == '.') out.pop_back();
        for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
        return out;
    };
    return norm(predicted) == norm(expected);
}

EvalReport evaluate(const Engine& engine, const std::vector<EvalItem>& items, int max_new_tokens,
                    const std::function<void(size_t, const EvalPrediction&)>& on_item,
                    int max_prompt_tokens)
{
    std::map<std::string, EvalTaskScore> by_task;
    EvalReport report;
    AskOptions opts;
    opts.sampling.max_new_tokens = max_new_tokens;
    opts.max_prompt_tokens = max_prompt_tokens;
    for (size_t i = 0; i < items.size(); ++i) {
        const auto& item = items[i];
        std::vector<Image> images;
        for (const auto& p : item.images) images.push_back(load_image(p));
        opts.layout = item.layout;
        if (item.layout == ImageLayout::frames)
            opts.max_tiles = 1; // one tile per frame, as load_video
        else
            opts.max_tiles = 0;
        Session session(engine);
        Answer a = session.ask(item.question, images, opts, {});
        EvalPrediction pred {item.id, a.text, answers_match(a.text, item.answer)};
        auto& score = by_task[item.task];
        score.task = item.task;
        score.n++;
        report.overall.n++;
        if (pred.correct) {
            score.correct++;
            report.overall.correct++;
        }
        if (on_item) on_item(i, pred);
    }
    for (auto& [name, score] : by_task) report.tasks.push_back(score);
    return report;
}

} // namespace iris::reasoning
