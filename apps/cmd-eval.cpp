// iris eval: scores a generated question set with the engine (greedy, exact match).
#include "apps/commands.h"
#include "apps/common.h"
#include "reasoning/eval.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

namespace iris::app {

int cmd_eval(int argc, char** argv)
{
    Args args(argc, argv,
              {"--model", "--mmproj", "--data", "--limit", "--max-new-tokens", "--threads",
               "--predictions", "--min-overall", "--min-task", "--quantize", "--precision",
               "--device", "--max-prompt-tokens"},
              {"--json", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris eval [--model DIR] --data DIR|FILE.jsonl [--limit N]\n"
            "                 [--max-new-tokens N] [--json] [--predictions FILE.jsonl]\n"
            "                 [--min-overall PERCENT] [--min-task PERCENT]\n"
            "                 [--max-prompt-tokens N]\n"
            "\n"
            "Answers every item of DIR/data.jsonl (or of FILE.jsonl) greedily, each in a fresh\n"
            "session, and prints the exact-match accuracy per task and overall (trimmed,\n"
            "case-insensitive, a trailing full stop ignored). --predictions writes\n"
            "{id, predicted, correct} per item. Sets come from tools/demo/generate.py.\n"
            "With --min-overall or --min-task the exit status is 1 when the overall accuracy\n"
            "or that of any task is below the given percentage (each one is named on stderr).\n"
            "An item whose prompt is longer than --max-prompt-tokens (default 8192) is an error.\n"
            "%s",
            load_help());
        return 0;
    }
    auto items = reasoning::load_eval_set(args.required("--data"));
    size_t limit = size_t(args.integer("--limit", int64_t(items.size()), 1, INT32_MAX));
    if (items.size() > limit) items.resize(limit);
    int max_new = int(args.integer("--max-new-tokens", 64, 1, 4096));
    double min_overall = args.number("--min-overall", 0, 0, 100);
    double min_task = args.number("--min-task", 0, 0, 100);
    auto engine = load_engine(args);
    std::ofstream predictions;
    if (args.has("--predictions")) {
        predictions.open(args.str("--predictions"));
        if (!predictions)
            throw Error(ErrorKind::io, "cannot write '" + args.str("--predictions") + "'");
    }
    ProgressBar bar("eval");
    auto report = reasoning::evaluate(
        *engine, items, max_new,
        [&](size_t i, const reasoning::EvalPrediction& p) {
            bar.update(float(i + 1) / float(items.size()), p.id.c_str());
            if (predictions.is_open())
                predictions << nlohmann::json {{"id", p.id},
                                               {"predicted", p.predicted},
                                               {"correct", p.correct}}
                                   .dump()
                            << "\n";
        },
        max_prompt_tokens_from_args(args));
    bar.finish();
    if (args.flag("--json")) {
        nlohmann::json j;
        for (const auto& t : report.tasks)
            j["tasks"][t.task] = {{"n", t.n}, {"correct", t.correct}, {"accuracy", t.accuracy()}};
        j["overall"] = {{"n", report.overall.n},
                        {"correct", report.overall.correct},
                        {"accuracy", report.overall.accuracy()}};
        std::printf("%s\n", j.dump(2).c_str());
    } else {
        std::printf("| task | items | correct | accuracy |\n| --- | ---: | ---: | ---: |\n");
        for (const auto& t : report.tasks)
            std::printf("| %s | %d | %d | %.1f%% |\n", t.task.c_str(), t.n, t.correct,
                        100 * t.accuracy());
        std::printf("| **overall** | %d | %d | %.1f%% |\n", report.overall.n,
                    report.overall.correct, 100 * report.overall.accuracy());
    }
    std::fflush(stdout);
    // Compared in whole items, so that 75% of 20 items passes with exactly 15 right.
    auto below = [](const reasoning::EvalTaskScore& s, double percent) {
        return 100.0 * s.correct < percent * s.n;
    };
    int status = 0;
    if (below(report.overall, min_overall)) {
        std::fprintf(stderr, "eval: overall %.1f%% is below --min-overall %g%%\n",
                     100 * report.overall.accuracy(), min_overall);
        status = 1;
    }
    for (const auto& t : report.tasks)
        if (below(t, min_task)) {
            std::fprintf(stderr, "eval: %s %.1f%% is below --min-task %g%%\n", t.task.c_str(),
                         100 * t.accuracy(), min_task);
            status = 1;
        }
    return status;
}

} // namespace iris::app
