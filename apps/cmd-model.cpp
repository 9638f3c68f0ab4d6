// Commands that expose the engine's stages, so Iris can be compared with another
// implementation on the same inputs: prompt, preprocess, forward, generate.
#include "apps/commands.h"
#include "apps/common.h"

#include <cstdio>

namespace iris::app {
namespace {

bool wants_help(const Args& args)
{
    return args.flag("-h") || args.flag("--help");
}

std::string one_positional(const Args& args, const char* what)
{
    if (args.positionals().size() != 1)
        throw Error(ErrorKind::invalid_argument, std::string("give ") + what + " as one argument");
    return args.positionals()[0];
}

} // namespace

int cmd_prompt(int argc, char** argv)
{
    Args args(argc, argv, {"--model", "--mmproj", "--image", "--max-tiles"},
              {"--json", "--image-markers", "-h", "--help"});
    if (wants_help(args)) {
        std::printf(
            "usage: iris prompt --model DIR|FILE.gguf [--mmproj FILE] [--image FILE]... "
            "[--max-tiles N]\n"
            "                   [--image-markers] [--json] QUESTION\n"
            "\n"
            "Prints the ids of the full templated prompt exactly as the engine feeds them: the\n"
            "model's chat template and system message, the images' <img><IMG_CONTEXT>...</img>\n"
            "blocks (tiles x 256 tokens each) and the question. Weights are not loaded.\n"
            "The question is text: special-token strings in it are not control tokens.\n"
            "  --image-markers  each \"<image>\" in QUESTION places an image there\n");
        return 0;
    }
    std::string question = one_positional(args, "the question");
    const auto paths = model::ModelPaths::resolve(model_dir(args), args.str("--mmproj"));
    auto config = model::ModelConfig::of(paths);
    auto tok = model::Tokenizer::load(paths.is_gguf() ? paths.gguf : paths.dir);
    auto tiling = reasoning::tiling_options(config);
    if (args.has("--max-tiles")) tiling.max_tiles = int(args.integer("--max-tiles", 12, 1, 64));
    tiling.min_tiles = std::min(tiling.min_tiles, tiling.max_tiles);
    std::vector<int> image_tokens;
    for (const auto& path : args.all("--image")) {
        auto img = reasoning::load_image(path);
        image_tokens.push_back(reasoning::choose_grid(img.width, img.height, tiling).n_tiles
                               * config.num_image_token());
    }
    const auto layout = image_tokens.size() > 1 ? reasoning::ImageLayout::numbered
                                                : reasoning::ImageLayout::single;
    const auto& tmpl = reasoning::chat_template(config.template_name);
    const int n_images = int(image_tokens.size());
    const reasoning::Prompt prompt = reasoning::render_prompt(
        tmpl, config.system_message.value_or(""), {},
        args.flag("--image-markers")
            ? reasoning::with_image_markers(question, n_images, layout)
            : reasoning::with_image_placeholders(question, n_images, layout));
    print_ids(reasoning::expand_image_placeholders(prompt, image_tokens).encode(*tok, true),
              args.flag("--json"));
    return 0;
}

int cmd_preprocess(int argc, char** argv)
{
    Args args(argc, argv, {"--image", "--max-tiles", "--out", "--image-size"}, {"-h", "--help"});
    if (wants_help(args)) {
        std::printf(
            "usage: iris preprocess --image FILE [--max-tiles N] [--image-size S] --out "
            "FILE.safetensors\n"
            "\n"
            "Decodes and tiles the image exactly as the official InternVL code does and writes\n"
            "pixel_values [tiles, 3, S, S] F32 (S = 448 by default) with the grid as the\n"
            "__metadata__ key grid = \"COLSxROWS\" (and tiles = the count incl. the thumbnail).\n");
        return 0;
    }
    reasoning::TilingOptions tiling;
    tiling.max_tiles = int(args.integer("--max-tiles", 12, 1, 64));
    tiling.image_size = int(args.integer("--image-size", 448, 14, 4480));
    auto img = reasoning::load_image(args.required("--image"));
    auto prepared = reasoning::preprocess_image(img, tiling);
    model::SafeTensorsWriter w;
    w.add_f32("pixel_values", {prepared.grid.n_tiles, 3, prepared.image_size, prepared.image_size},
              prepared.pixel_values);
    w.set_metadata("grid", strfmt("%dx%d", prepared.grid.cols, prepared.grid.rows));
    w.set_metadata("tiles", std::to_string(prepared.grid.n_tiles));
    w.write(args.required("--out"));
    std::fprintf(stderr, "%s: %dx%d -> grid %dx%d, %d tiles\n", args.str("--image").c_str(),
                 img.width, img.height, prepared.grid.cols, prepared.grid.rows,
                 prepared.grid.n_tiles);
    return 0;
}

namespace {

struct ForwardInput
{
    std::vector<int32_t> ids;
    std::vector<float> pixels;
    int n_tiles = 0;
};

ForwardInput read_forward_input(const std::string& path, const model::ModelConfig& config)
{
    auto st = model::SafeTensors::open(path);
    ForwardInput in;
    const auto& ids = st.get("input_ids");
    if (ids.shape.size() != 1 || ids.shape[0] < 1)
        throw Error(ErrorKind::invalid_input, path + ": input_ids must have shape [T] with T >= 1");
    for (int64_t v : ids.to_i64()) {
        if (v < 0 || v >= config.llm.vocab_size)
            throw Error(ErrorKind::invalid_input,
                        strfmt("%s: input_ids holds %lld, outside the vocabulary [0, %d)",
                               path.c_str(), (long long)v, config.llm.vocab_size));
        in.ids.push_back(int32_t(v));
    }
    if (const auto* pv = st.find("pixel_values")) {
        const int s = config.force_image_size;
        if (pv->shape.size() != 4 || pv->shape[1] != 3 || pv->shape[2] != s || pv->shape[3] != s
            || pv->shape[0] < 1)
            throw Error(
                ErrorKind::invalid_input,
                strfmt("%s: pixel_values must have shape [tiles, 3, %d, %d]", path.c_str(), s, s));
        in.pixels = pv->to_f32();
        in.n_tiles = int(pv->shape[0]);
    }
    return in;
}

struct PromptRun
{
    ForwardInput input;
    std::vector<float> visual;
    std::span<const float> logits; // valid until the cache's next forward
};

// Reads a forward input file, encodes its pixel values and feeds its ids into the cache.
PromptRun run_prompt(const reasoning::Engine& engine, model::KvCache& cache,
                     const std::string& path, bool all_logits)
{
    const auto& net = engine.network();
    PromptRun run;
    run.input = read_forward_input(path, net.config());
    // Without pixel values every id is a token, <IMG_CONTEXT> included, as the official
    // language_model forward embeds input_ids.
    int32_t img_context_id = -1;
    if (run.input.n_tiles > 0) {
        run.visual = net.encode_images(run.input.pixels, run.input.n_tiles);
        img_context_id = engine.img_context_id();
    }
    run.logits = net.forward(cache, run.input.ids, run.visual, img_context_id, all_logits);
    return run;
}

} // namespace

int cmd_forward(int argc, char** argv)
{
    Args args(argc, argv,
              {"--model", "--in", "--out", "--threads", "--quantize", "--precision", "--device"},
              {"-h", "--help"});
    if (wants_help(args)) {
        std::printf("usage: iris forward --model DIR --in FILE.safetensors --out FILE.safetensors "
                    "[--threads N]\n"
                    "\n"
                    "Reads input_ids (I64 or I32, [T]) and, if present, pixel_values [tiles, 3, S, "
                    "S] F32;\n"
                    "writes logits [T, vocab] F32 for every position and, with pixel values,\n"
                    "visual_tokens [tiles, 256, hidden] F32. <IMG_CONTEXT> positions take the "
                    "visual tokens;\n"
                    "without pixel values every id is embedded as a token.\n%s",
                    load_help());
        return 0;
    }
    auto engine = load_engine(args);
    const auto& net = engine->network();
    auto cache = net.new_cache();
    PromptRun run = run_prompt(*engine, *cache, args.required("--in"), /*all_logits=*/true);
    const auto& in = run.input;
    const auto& visual = run.visual;
    auto logits = run.logits;
    model::SafeTensorsWriter w;
    const int64_t vocab = net.config().llm.vocab_size;
    w.add_f32("logits", {int64_t(in.ids.size()), vocab}, logits);
    if (in.n_tiles > 0)
        w.add_f32("visual_tokens",
                  {in.n_tiles, net.num_image_token(), net.config().llm.hidden_size}, visual);
    w.write(args.required("--out"));
    return 0;
}

int cmd_generate(int argc, char** argv)
{
    Args args(argc, argv,
              {"--model", "--in", "--max-new-tokens", "--threads", "--quantize", "--precision",
               "--device"},
              {"--json", "--ignore-eos", "-h", "--help"});
    if (wants_help(args)) {
        std::printf(
            "usage: iris generate --model DIR --in FILE.safetensors --max-new-tokens N "
            "[--ignore-eos] [--json]\n"
            "\n"
            "Feeds input_ids (and pixel_values, if present) and prints the ids of the greedy\n"
            "continuation, decoded one token at a time through the KV cache. Stops after the\n"
            "template's end token (printed) unless --ignore-eos.\n%s",
            load_help());
        return 0;
    }
    int max_new = int(args.integer("--max-new-tokens", 0, 1, 1 << 20));
    if (!args.has("--max-new-tokens"))
        throw Error(ErrorKind::invalid_argument, "missing required option --max-new-tokens");
    auto engine = load_engine(args);
    const auto& net = engine->network();
    auto cache = net.new_cache();
    auto logits = run_prompt(*engine, *cache, args.required("--in"), /*all_logits=*/false).logits;
    std::vector<int32_t> out;
    reasoning::Sampler greedy({});
    std::vector<float> scratch;
    for (int n = 0; n < max_new; ++n) {
        scratch.assign(logits.begin(), logits.end());
        int32_t next = greedy.sample(scratch, {});
        out.push_back(next);
        if (next == engine->eos_id() && !args.flag("--ignore-eos")) break;
        if (n + 1 < max_new)
            logits = net.forward(*cache, std::span<const int32_t>(&next, 1), {},
                                 engine->img_context_id());
    }
    print_ids(out, args.flag("--json"));
    return 0;
}

} // namespace iris::app
