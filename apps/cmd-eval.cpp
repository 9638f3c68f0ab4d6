// iris eval: scores a generated question set with the engine (greedy, exact match).
#include "apps/commands.h"
#include "apps/common.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

namespace iris::app {

int cmd_eval(int argc, char** argv)
{
    Args args(argc, argv,
              {"--model", "--data", "--limit", "--max-new-tokens", "--threads", "--predictions"},
              {"--json", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris eval [--model DIR] --data DIR|FILE.jsonl [--limit N]\n"
            "                 [--max-new-tokens N] [--json] [--predictions FILE.jsonl]\n"
            "\n"
            "Answers every item of DIR/data.jsonl (or of FILE.jsonl) greedily, each in a fresh\n"
            "session, and prints the exact-match accuracy per task and overall (trimmed,\n"
            "case-insensitive, a trailing full stop ignored). --predictions writes\n"
            "{id, predicted, correct} per item. Sets come from tools/demo/generate.py.\n");
        return 0;
    }
    auto items = reasoning::load_eval_set(args.required("--data"));
    size_t limit = size_t(args.integer("--limit", int64_t(items.size()), 1, INT32_MAX));
    if (items.size() > limit) items.resize(limit);
    int max_new = int(args.integer("--max-new-tokens", 64, 1, 4096));
    auto engine = load_engine(args);
    std::ofstream predictions;
    if (args.has("--predictions")) {
        predictions.open(args.str("--predictions"));
        if (!predictions)
            throw Error(ErrorKind::io, "cannot write '" + args.str("--predictions") + "'");
    }
    ProgressBar bar("eval");
    auto report = reasoning::evaluate(
        *engine, items, max_new, [&](size_t i, const reasoning::EvalPrediction& p) {
            bar.update(float(i + 1) / float(items.size()), p.id.c_str());
            if (predictions.is_open())
                predictions << nlohmann::json {{"id", p.id},
                                               {"predicted", p.predicted},
                                               {"correct", p.correct}}
                                   .dump()
                            << "\n";
        });
    bar.finish();
    if (args.flag("--json")) {
        nlohmann::json j;
        for (const auto& t : report.tasks)
            j["tasks"][t.task] = {{"n", t.n}, {"correct", t.correct}, {"accuracy", t.accuracy()}};
        j["overall"] = {{"n", report.overall.n},
                        {"correct", report.overall.correct},
                        {"accuracy", report.overall.accuracy()}};
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("| task | items | correct | accuracy |\n| --- | ---: | ---: | ---: |\n");
    for (const auto& t : report.tasks)
        std::printf("| %s | %d | %d | %.1f%% |\n", t.task.c_str(), t.n, t.correct,
                    100 * t.accuracy());
    std::printf("| **overall** | %d | %d | %.1f%% |\n", report.overall.n, report.overall.correct,
                100 * report.overall.accuracy());
    return 0;
}

} // namespace iris::app
