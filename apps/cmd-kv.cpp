// iris calibrate-kv and iris kv-eval: the SKVQ calibration of a model and how each KV cache
// setting changes the model's outputs on long multimodal prompts (docs/skvq.md §6).
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/prompts.h"
#include "model/model.h"
#include "reasoning/eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace iris::app {
namespace {

// A decode of n_steps tokens after a prompt: per step the logits and each layer's attention.
struct Steps
{
    std::vector<int32_t> tokens; // fed after the prompt (the reference's greedy ones)
    std::vector<std::vector<float>> logits; // [step][V], the first after the prompt
    std::vector<std::vector<float>> attention; // [step][L·Nh·D]
};

Steps run_steps(const model::InternVL& net, const model::KvCacheOptions& kv, const Prompt& p,
                int32_t img_ctx, int n_steps, const std::vector<int32_t>* forced)
{
    Steps s;
    auto cache = net.new_cache(kv);
    auto logits = net.forward(*cache, p.ids, p.visual, img_ctx);
    for (int i = 0; i < n_steps; ++i) {
        s.logits.emplace_back(logits.begin(), logits.end());
        const int32_t next = forced
            ? (*forced)[size_t(i)]
            : int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        s.tokens.push_back(next);
        model::LlmTrace trace;
        logits = net.forward(*cache, {&next, 1}, {}, img_ctx, false, &trace);
        s.attention.push_back(std::move(trace.attention));
    }
    return s;
}

model::KvCacheOptions skvq(const char* bits, int window)
{
    model::KvCacheOptions kv {model::KvType::skvq, model::KvType::skvq, 64, {}};
    model::parse_kv_bits(bits, kv.skvq);
    kv.skvq.group = 32;
    kv.skvq.window = window;
    return kv;
}

} // namespace

int cmd_calibrate_kv(int argc, char** argv)
{
    Args args(
        argc, argv,
        {"--model", "--mmproj", "--data", "--out", "--max-tokens", "--threads", "--min-tokens"},
        {"-h", "--help"});
    if (args.flag("-h") || args.flag("--help") || !args.has("--data")) {
        std::printf(
            "usage: iris calibrate-kv [--model DIR] --data FILE... [--out FILE] [--max-tokens N]\n"
            "\n"
            "Computes the SKVQ calibration of the model's KV cache (docs/skvq.md §2): per layer,\n"
            "K/V and KV head, the channel order that groups channels of similar range, and the\n"
            "clipping factor of every group at every bit width. Each --data file is a prompt:\n"
            "a text file, or an image (PNG, JPEG, WebP, BMP) with filler text up to\n"
            "--min-tokens tokens (default 2048). At most --max-tokens tokens (default 4096,\n"
            "spread over the prompts) are kept per layer. The result goes to --out (default\n"
            "DIR/kv-calibration.safetensors, which the model then loads by itself).\n");
        return args.has("--data") ? 0 : 2;
    }
    const std::string dir = model_dir(args);
    const int max_tokens = int(args.integer("--max-tokens", 4096, 16, 1 << 20));
    const int min_tokens = int(args.integer("--min-tokens", 2048, 0, 1 << 20));
    const std::string out = args.str("--out", model::kv_calibration_path(dir));
    apply_threads(args);
    reasoning::EngineOptions eo;
    eo.load.mmproj = args.str("--mmproj");
    auto engine = reasoning::Engine::load(dir, eo);
    std::vector<std::vector<float>> embeddings;
    for (const Prompt& p : prompts_from_args(*engine, args, min_tokens, {2048, 4096, 8192}))
        embeddings.push_back(engine->network().embed(p.ids, p.visual, engine->img_context_id()));
    ProgressBar bar("calibrating");
    const auto calibration
        = model::calibrate_kv(engine->network(), embeddings, max_tokens,
                              [&](float f, const char* what) { bar.update(f, what); });
    bar.finish();
    calibration.save(out);
    size_t n_tokens = 0;
    for (const auto& e : embeddings)
        n_tokens += e.size() / size_t(engine->config().llm.hidden_size);
    std::printf("wrote %s: %d layers x %d KV heads x %d channels, group sizes", out.c_str(),
                calibration.n_layers, calibration.n_kv_heads, calibration.head_dim);
    for (const auto& [g, perm] : calibration.k_perm) std::printf(" %d", g);
    std::printf(", from %zu prompts (%zu tokens)\n", embeddings.size(), n_tokens);
    return 0;
}

int cmd_kv_eval(int argc, char** argv)
{
    Args args(argc, argv,
              {"--model", "--mmproj", "--data", "--eval-data", "--steps", "--threads", "--limit",
               "--min-tokens"},
              {"-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris kv-eval [--model DIR] [--data FILE...] [--steps 128] [--eval-data DIR]\n"
            "                    [--limit N]\n"
            "\n"
            "Compares KV cache settings with an f16 cache on long prompts: each --data file\n"
            "(text, or an image with filler text up to --min-tokens, default 2048), or without\n"
            "any, prompts of about 2k, 4k and 8k tokens of sample images and filler text. After\n"
            "each prompt the f16 cache decodes --steps greedy tokens, and every setting is fed\n"
            "the same tokens. Per setting: the attention output's relative error per layer\n"
            "(|a - a_f16| / |a_f16| over the steps), the mean KL divergence of the next-token\n"
            "distribution from f16's, and how often its greedy token is f16's. With --eval-data\n"
            "it also scores that question set (see iris eval) with each setting.\n");
        return 0;
    }
    const std::string dir = model_dir(args);
    const int n_steps = int(args.integer("--steps", 128, 1, 4096));
    const int min_tokens = int(args.integer("--min-tokens", 2048, 0, 1 << 20));
    apply_threads(args);
    reasoning::EngineOptions eo;
    eo.load.mmproj = args.str("--mmproj");
    auto engine = reasoning::Engine::load(dir, eo);
    const model::InternVL& net = engine->network();
    const int32_t img_ctx = engine->img_context_id();
    const auto prompts = prompts_from_args(*engine, args, min_tokens, {2048, 4096, 8192});

    const model::KvCacheOptions f16 {model::KvType::f16, model::KvType::f16, 64, {}};
    std::vector<model::KvCacheOptions> settings = {
        {model::KvType::q8, model::KvType::q8, 64, {}},
        {model::KvType::q4, model::KvType::q4, 64, {}},
        skvq("K8V8", 128),
        skvq("K4V4", 128),
        skvq("K4V4", 0),
        skvq("K2V2", 128),
        skvq("K2V1.5", 128),
        skvq("K2V1.5", 0),
    };
    const int n_layers = net.config().llm.num_hidden_layers;
    std::printf("model %s, %s; %d decode steps after each prompt; skvq %s\n", dir.c_str(),
                net.kv_calibration() ? "calibrated (kv-calibration.safetensors)"
                                     : "not calibrated (identity order, no clipping)",
                n_steps, "group 32, sink 5");
    std::printf("(attention error per layer: |a - a_f16| / |a_f16| over the decode steps)\n");
    for (const Prompt& p : prompts) {
        std::printf("\nprompt %s: %zu tokens (%zu image tokens)\n", p.name.c_str(), p.ids.size(),
                    p.visual.size() / size_t(net.config().llm.hidden_size));
        ProgressBar bar("kv-eval");
        const Steps ref = run_steps(net, f16, p, img_ctx, n_steps, nullptr);
        std::printf(
            "| setting | bytes/token | KL | greedy agreement | attention error per layer |\n"
            "| --- | ---: | ---: | ---: | --- |\n");
        for (size_t si = 0; si < settings.size(); ++si) {
            bar.update(float(si) / float(settings.size()),
                       model::kv_cache_name(settings[si]).c_str());
            const Steps got = run_steps(net, settings[si], p, img_ctx, n_steps, &ref.tokens);
            double kl = 0;
            int agree = 0;
            for (int i = 0; i < n_steps; ++i) {
                kl += kl_divergence(ref.logits[size_t(i)], got.logits[size_t(i)]);
                const auto& g = got.logits[size_t(i)];
                agree += int32_t(std::max_element(g.begin(), g.end()) - g.begin())
                    == ref.tokens[size_t(i)];
            }
            std::string layers;
            const size_t per_layer = ref.attention[0].size() / size_t(n_layers);
            for (int l = 0; l < n_layers; ++l) {
                double num = 0, den = 0;
                for (int i = 0; i < n_steps; ++i)
                    for (size_t j = 0; j < per_layer; ++j) {
                        const double a = ref.attention[size_t(i)][size_t(l) * per_layer + j];
                        const double b = got.attention[size_t(i)][size_t(l) * per_layer + j];
                        num += (a - b) * (a - b);
                        den += a * a;
                    }
                layers += strfmt("%s%.2g", l ? " " : "", std::sqrt(num / std::max(den, 1e-30)));
            }
            std::printf("| %s | %zu | %.3g | %.1f%% | %s |\n",
                        model::kv_cache_name(settings[si]).c_str(),
                        net.new_cache(settings[si])->bytes_per_token(), kl / n_steps,
                        100.0 * agree / n_steps, layers.c_str());
            std::fflush(stdout);
        }
        bar.finish();
    }

    if (args.has("--eval-data")) {
        auto items = reasoning::load_eval_set(args.str("--eval-data"));
        const size_t limit = size_t(args.integer("--limit", int64_t(items.size()), 1, INT32_MAX));
        if (items.size() > limit) items.resize(limit);
        std::printf("\n%s: %zu items\n| setting | accuracy |\n| --- | ---: |\n",
                    args.str("--eval-data").c_str(), items.size());
        std::vector<model::KvCacheOptions> all = {f16};
        all.insert(all.end(), settings.begin(), settings.end());
        for (const auto& kv : all) {
            reasoning::EngineOptions each = eo;
            each.kv_cache = kv;
            auto e = reasoning::Engine::load(dir, each);
            ProgressBar bar("eval " + model::kv_cache_name(kv));
            const auto report = reasoning::evaluate(
                *e, items, 64, [&](size_t i, const reasoning::EvalPrediction&) {
                    bar.update(float(i + 1) / float(items.size()));
                });
            bar.finish();
            std::printf("| %s | %.1f%% |\n", model::kv_cache_name(kv).c_str(),
                        100 * report.overall.accuracy());
            std::fflush(stdout);
        }
    }
    return 0;
}

} // namespace iris::app
