// reasoning/eval — evaluation on generated question sets.
//
//   std::vector<EvalItem> items = load_eval_set("eval/counting"); // or a .jsonl file
//   EvalReport report = evaluate(*engine, items, /*max_new_tokens=*/16);
//   printf("%.3f\n", report.overall.accuracy());
//
// A set is a folder with data.jsonl, one item per line: {"id", "task", "images": [paths
// relative to the folder], "layout": "single"|"frames", "question", "answer"}.
//
// Thread safety: free functions are reentrant.
#pragma once

#include "reasoning/prompt.h"

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace iris::reasoning {

class Engine; // reasoning/engine.h

struct EvalItem
{
    std::string id;
    std::string task;
    std::vector<std::string> images; // absolute paths
    ImageLayout layout = ImageLayout::single;
    std::string question;
    std::string answer;
};

// Reads DIR/data.jsonl, or a .jsonl file given by name (image paths are relative to its folder);
// throws Error naming the line of a malformed item.
std::vector<EvalItem> load_eval_set(const std::string& where);
// Exact match after trimming whitespace, ignoring case and a trailing full stop.
bool answers_match(std::string_view predicted, std::string_view expected);

struct EvalTaskScore
{
    std::string task;
    int n = 0;
    int correct = 0;
    double accuracy() const { return n ? double(correct) / n : 0.0; }
};

struct EvalReport
{
    std::vector<EvalTaskScore> tasks; // sorted by task name
    EvalTaskScore overall {"overall"};
};

struct EvalPrediction
{
    std::string id;
    std::string predicted;
    bool correct = false;
};

// Answers every item greedily in a fresh session and scores it. on_item (optional) sees each
// prediction as it is made, e.g. for progress. An item whose prompt is longer than
// max_prompt_tokens (AskOptions::max_prompt_tokens) ends the evaluation with its Error.
EvalReport evaluate(const Engine& engine, const std::vector<EvalItem>& items, int max_new_tokens,
                    const std::function<void(size_t index, const EvalPrediction&)>& on_item = {},
                    int max_prompt_tokens = 0);

} // namespace iris::reasoning
