// Prompts for the comparison commands (prompts.h).
#include "apps/prompts.h"

#include "apps/common.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace iris::app {

namespace {

namespace fs = std::filesystem;

// Deterministic filler text about shapes and colours (the demo model's world), sentence i of a
// fixed sequence.
std::string sentence(uint64_t i)
{
    static const char* colors[] = {"red", "green", "blue", "yellow", "purple", "orange", "pink"};
    static const char* shapes[] = {"circle", "square", "triangle", "diamond", "star", "cross"};
    static const char* places[] = {"left of", "right of", "above", "below", "next to"};
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 12345;
    auto pick = [&](uint64_t n) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 32;
        return x % n;
    };
    return strfmt("The %s %s is %s the %s %s. ", colors[pick(7)], shapes[pick(6)], places[pick(5)],
                  colors[pick(7)], shapes[pick(6)]);
}

// The sample images beside the build tree or the install (resources/samples).
std::vector<std::string> sample_images()
{
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec).parent_path();
    for (const fs::path& dir : {exe / "../../resources/samples", exe / "../share/iris/samples"}) {
        if (!fs::is_directory(dir, ec)) continue;
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(dir, ec))
            if (is_image_path(e.path().string())) out.push_back(e.path().string());
        std::sort(out.begin(), out.end());
        return out;
    }
    return {};
}

} // namespace

Prompt make_prompt(const reasoning::Engine& engine, const std::string& name,
                   const std::vector<Image>& images, std::string text, int min_tokens)
{
    Prompt p;
    p.name = name;
    std::vector<int> per_image;
    for (const auto& img : images) {
        const auto enc = engine.encode(reasoning::preprocess_image(img, engine.tiling(0)));
        per_image.push_back(enc.n_tiles * engine.network().num_image_token());
        p.visual.insert(p.visual.end(), enc.visual.begin(), enc.visual.end());
    }
    uint64_t next_sentence = 0;
    for (;;) {
        const reasoning::Prompt question = reasoning::with_image_placeholders(
            text + "\nWhich shape is mentioned last?", int(images.size()),
            images.size() > 1 ? reasoning::ImageLayout::numbered : reasoning::ImageLayout::single);
        p.ids = reasoning::expand_image_placeholders(
                    reasoning::render_prompt(engine.chat_template(), "", {}, question), per_image)
                    .encode(engine.tokenizer(), true);
        if (int(p.ids.size()) >= min_tokens) break;
        // About 12 tokens a sentence: add most of what is missing at once.
        const int add = std::max(16, (min_tokens - int(p.ids.size())) / 12);
        for (int j = 0; j < add; ++j) text += sentence(next_sentence++);
    }
    return p;
}

std::vector<Prompt> prompts_from_args(const reasoning::Engine& engine, const Args& args,
                                      int min_tokens, const std::vector<int>& targets)
{
    std::vector<Prompt> out;
    ProgressBar bar("prompts");
    auto files = args.all("--data"); // --data A B C: the files after the first are positionals
    files.insert(files.end(), args.positionals().begin(), args.positionals().end());
    for (size_t i = 0; i < files.size(); ++i) {
        const std::string& f = files[i];
        bar.update(float(i) / float(files.size()), f.c_str());
        if (is_image_path(f))
            out.push_back(make_prompt(engine, f, {reasoning::load_image(f)}, "", min_tokens));
        else
            out.push_back(make_prompt(engine, f, {}, read_text_file(f), 0));
    }
    if (files.empty()) {
        const auto samples = sample_images();
        int at = 0;
        for (int target : targets) {
            std::vector<Image> images;
            for (int j = 0; j < 4 && !samples.empty(); ++j, ++at)
                images.push_back(reasoning::load_image(samples[size_t(at) % samples.size()]));
            out.push_back(
                make_prompt(engine, strfmt("generated %gk", target / 1024.0), images, "", target));
            bar.update(float(out.size()) / float(targets.size()));
        }
    }
    bar.finish();
    return out;
}

double kl_divergence(const std::vector<float>& p_logits, const std::vector<float>& q_logits)
{
    auto log_softmax = [](const std::vector<float>& x) {
        const double m = *std::max_element(x.begin(), x.end());
        double sum = 0;
        for (float v : x) sum += std::exp(double(v) - m);
        std::vector<double> out(x.size());
        for (size_t i = 0; i < x.size(); ++i) out[i] = double(x[i]) - m - std::log(sum);
        return out;
    };
    const auto lp = log_softmax(p_logits), lq = log_softmax(q_logits);
    double kl = 0;
    for (size_t i = 0; i < lp.size(); ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
    return std::max(kl, 0.0);
}

} // namespace iris::app
