// iris quant-eval: how quantizing the weights (llama.cpp's types, at load) changes the model's
// next-token distributions and answers, against the weights as stored; iris quantize: the
// checkpoint as llama.cpp's GGUF files (language model and mmproj) in those types.
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/prompts.h"
#include "model/model.h"
#include "reasoning/eval.h"

#include <algorithm>
#include <cstdio>

namespace iris::app {
namespace {

// Logits of every position of the prompt and of n_steps decode steps fed `tokens` (the
// reference's greedy continuation when given, else its own).
struct Run
{
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits; // one per predicted position
};

Run run(const reasoning::Engine& engine, const Prompt& p, int n_steps,
        const std::vector<int32_t>* forced)
{
    const model::InternVL& net = engine.network();
    const size_t vocab = size_t(net.config().llm.vocab_size);
    Run r;
    auto cache = net.new_cache();
    auto logits = net.forward(*cache, p.ids, p.visual, engine.img_context_id(), true);
    for (size_t i = 0; i + 1 < p.ids.size(); ++i) // positions that predict a prompt token
        r.logits.emplace_back(logits.begin() + long(i * vocab),
                              logits.begin() + long((i + 1) * vocab));
    std::vector<float> last(logits.end() - long(vocab), logits.end());
    for (int i = 0; i < n_steps; ++i) {
        r.logits.push_back(last);
        const int32_t next = forced
            ? (*forced)[size_t(i)]
            : int32_t(std::max_element(last.begin(), last.end()) - last.begin());
        r.tokens.push_back(next);
        auto step = net.forward(*cache, {&next, 1}, {}, -1);
        last.assign(step.begin(), step.end());
    }
    return r;
}

// A Jinja string literal.
std::string jinja_string(std::string_view s)
{
    std::string out = "'";
    for (char ch : s) {
        if (ch == '\n') {
            out += "\\n";
            continue;
        }
        if (ch == '\'' || ch == '\\') out += '\\';
        out += ch;
    }
    return out + "'";
}

// The checkpoint's InternVL conversation template as a Jinja chat template for llama.cpp, for
// checkpoints whose tokenizer has none: the system turn (the model's system message unless the
// conversation starts with one), each turn as its role, message and separator, then the
// assistant role. It renders what reasoning::render_prompt builds.
std::string jinja_chat_template(const model::ModelConfig& config)
{
    const reasoning::ChatTemplate& t = reasoning::chat_template(config.template_name);
    const std::string_view placeholder = "{system_message}";
    const size_t at = t.system_template.find(placeholder);
    const std::string before = t.system_template.substr(0, at);
    const std::string after
        = at == std::string::npos ? "" : t.system_template.substr(at + placeholder.size());
    const std::string sep = jinja_string(t.sep), user = jinja_string(t.user_role),
                      assistant = jinja_string(t.assistant_role);
    std::string j = "{%- if messages[0]['role'] == 'system' -%}";
    j += "{%- set system = messages[0]['content'] -%}{%- else -%}{%- set system = ";
    j += jinja_string(config.system_message.value_or(t.system_message)) + " -%}{%- endif -%}";
    j += "{{- " + jinja_string(before) + " + system + " + jinja_string(after) + " + " + sep;
    j += " -}}{%- for message in messages -%}";
    j += "{%- if message['role'] == 'user' -%}{{- " + user + " + message['content'] + " + sep;
    j += " -}}{%- elif message['role'] == 'assistant' -%}{{- " + assistant;
    j += " + message['content'] + " + sep + " -}}{%- endif -%}{%- endfor -%}";
    j += "{%- if add_generation_prompt -%}{{- " + assistant + " -}}{%- endif -%}";
    return j;
}

} // namespace

int cmd_quant_eval(int argc, char** argv)
{
    Args args(argc, argv,
              {"--model", "--mmproj", "--data", "--types", "--steps", "--threads", "--min-tokens",
               "--eval-data", "--limit"},
              {"-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris quant-eval [--model DIR] [--types q8_0,q4_K_M,...] [--data FILE...]\n"
            "                       [--steps 64] [--eval-data DIR] [--limit N]\n"
            "\n"
            "Compares the model quantized at load (each type of --types: q8_0, q6_K, q5_K_M,\n"
            "q5_K_S, q5_1, q5_0, q4_K_M, q4_K_S, q4_1, q4_0, iq4_nl; default all) with its\n"
            "weights as stored: on each --data prompt (text, or an image with filler text up to\n"
            "--min-tokens, default 512), or without any, one of sample images and filler text of\n"
            "about 1k tokens, followed by --steps greedy tokens of the stored model. Per type:\n"
            "bytes of the language model's weights, the mean KL divergence of the next-token\n"
            "distribution from the stored model's over every position, and how often its top\n"
            "token is the stored model's. With --eval-data it also scores that question set\n"
            "(see iris eval) with each type.\n");
        return 0;
    }
    const std::string dir = model_dir(args);
    const int n_steps = int(args.integer("--steps", 64, 0, 4096));
    const int min_tokens = int(args.integer("--min-tokens", 512, 0, 1 << 20));
    const std::vector<std::string> all = {"q8_0",   "q6_K",   "q5_K_M", "q5_K_S", "q5_1",  "q5_0",
                                          "q4_K_M", "q4_K_S", "q4_1",   "q4_0",   "iq4_nl"};
    std::vector<std::string> types = all;
    if (args.has("--types")) {
        types.clear();
        const std::string list = args.str("--types");
        for (size_t at = 0; at <= list.size();) {
            const size_t comma = std::min(list.find(',', at), list.size());
            types.push_back(list.substr(at, comma - at));
            if (std::find(all.begin(), all.end(), types.back()) == all.end())
                throw Error(ErrorKind::invalid_argument,
                            "--types: unknown type '" + types.back()
                                + "'; see iris quant-eval --help");
            at = comma + 1;
        }
    }
    apply_threads(args);
    auto load = [&](const std::string& type) {
        reasoning::EngineOptions eo;
        eo.load.quantize = type;
        eo.load.mmproj = args.str("--mmproj");
        return reasoning::Engine::load(dir, eo);
    };
    auto ref = load("");
    const auto prompts = prompts_from_args(*ref, args, min_tokens, {1024});
    std::vector<Run> want;
    size_t positions = 0;
    for (const Prompt& p : prompts) {
        want.push_back(run(*ref, p, n_steps, nullptr));
        positions += want.back().logits.size();
    }
    std::vector<reasoning::EvalItem> items;
    if (args.has("--eval-data")) {
        items = reasoning::load_eval_set(args.str("--eval-data"));
        const size_t limit = size_t(args.integer("--limit", int64_t(items.size()), 1, INT32_MAX));
        if (items.size() > limit) items.resize(limit);
    }
    auto accuracy = [&](const reasoning::Engine& e, const std::string& name) {
        ProgressBar bar("eval " + name);
        const auto report = reasoning::evaluate(e, items, 64, [&](size_t i, const auto&) {
            bar.update(float(i + 1) / float(items.size()));
        });
        bar.finish();
        return strfmt(" %.1f%% |", 100 * report.overall.accuracy());
    };
    std::printf("model %s: %zu prompts, %zu positions (prompt tokens and %d decode steps each)\n\n",
                dir.c_str(), prompts.size(), positions, n_steps);
    std::printf(
        "| weights | LLM + vision MiB | KL | top-1 agreement |%s\n| --- | ---: | ---: | ---: |%s\n",
        items.empty() ? "" : " accuracy |", items.empty() ? "" : " ---: |");
    auto mib = [](const reasoning::Engine& e) {
        const auto& n = e.network();
        return double(n.weight_bytes_owned() + n.weight_bytes_mapped()) / double(1 << 20);
    };
    std::printf("| as stored | %.1f | 0 | 100%% |%s\n", mib(*ref),
                items.empty() ? "" : accuracy(*ref, "stored").c_str());
    std::fflush(stdout);
    for (const auto& type : types) {
        auto e = load(type);
        double kl = 0;
        size_t agree = 0;
        for (size_t pi = 0; pi < prompts.size(); ++pi) {
            const Run got = run(*e, prompts[pi], n_steps, &want[pi].tokens);
            for (size_t i = 0; i < got.logits.size(); ++i) {
                const auto& a = want[pi].logits[i];
                const auto& b = got.logits[i];
                kl += kl_divergence(a, b);
                agree += std::max_element(a.begin(), a.end()) - a.begin()
                    == std::max_element(b.begin(), b.end()) - b.begin();
            }
        }
        std::printf("| %s | %.1f | %.4g | %.1f%% |%s\n", type.c_str(), mib(*e),
                    kl / double(positions), 100.0 * double(agree) / double(positions),
                    items.empty() ? "" : accuracy(*e, type).c_str());
        std::fflush(stdout);
    }
    return 0;
}

int cmd_quantize(int argc, char** argv)
{
    Args args(argc, argv, {"--model", "--type", "--mmproj-type", "--out", "--threads"},
              {"--force", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris quantize --model DIR --type TYPE --out DIR [--mmproj-type f16|f32|q8_0]\n"
            "                     [--threads N] [--force]\n"
            "\n"
            "Writes an InternVL checkpoint (Qwen2 or InternLM2 language model) as llama.cpp\n"
            "runs it, NAME being the model folder's name:\n"
            "  OUT/NAME-TYPE.gguf         the language model and its tokenizer (llama-cli,\n"
            "                             llama-bench, llama-server -m)\n"
            "  OUT/mmproj-NAME-TYPE.gguf  the vision tower and projector (llama-mtmd-cli\n"
            "                             --mmproj)\n"
            "with llama.cpp's converter's tensor names, metadata and tokenizer, and each\n"
            "quantized tensor byte for byte as llama-quantize writes it. A checkpoint whose\n"
            "tokenizer files have no chat template gets its InternVL conversation template\n"
            "(config.json \"template\"), which llama-mtmd-cli needs.\n"
            "\n"
            "  --type TYPE         q8_0, q6_K, q5_K_M, q5_K_S, q5_1, q5_0, q4_K_M, q4_K_S, q4_1,\n"
            "                      q4_0, iq4_nl (llama-quantize's mixes: each matrix gets the\n"
            "                      type llama-quantize gives it), or f16, bf16, f32 (every\n"
            "                      matrix); norms and biases stay f32\n"
            "  --mmproj-type T     f16 (default, as the converter writes it), f32 or q8_0\n"
            "  --out DIR           the output folder (created if missing)\n"
            "  --force             replace existing output files\n"
            "  --threads N         quantizing threads (default: all cores)\n");
        return 0;
    }
    model::QuantizeOptions o;
    o.type = args.required("--type");
    o.mmproj_type = args.str("--mmproj-type", "f16");
    o.out_dir = args.required("--out");
    o.force = args.flag("--force");
    const std::string dir = model_dir(args);
    try {
        o.chat_template = jinja_chat_template(model::ModelConfig::load(dir + "/config.json"));
    } catch (const Error& e) {
        // quantize_checkpoint reports a bad config; an unknown template only loses the fallback.
        if (e.kind() != ErrorKind::unsupported) throw;
    }
    apply_threads(args);
    ProgressBar bar("quantizing");
    o.progress = [&](float f, const char* what) { bar.update(f, what); };
    const int64_t t0 = now_us();
    const model::QuantizeResult r = model::quantize_checkpoint(dir, o);
    bar.finish();
    std::printf("%s: %zu tensors, %.1f MiB\n%s: %zu tensors, %.1f MiB\n(%.1f s)\n",
                r.llm_path.c_str(), r.llm_tensors, double(r.llm_bytes) / double(1 << 20),
                r.mmproj_path.c_str(), r.mmproj_tensors, double(r.mmproj_bytes) / double(1 << 20),
                double(now_us() - t0) / 1e6);
    return 0;
}

} // namespace iris::app
