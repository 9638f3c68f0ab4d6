// iris compose: an article with images chosen from a pool, or a self-contained web page.
#include "apps/commands.h"
#include "apps/common.h"
#include "assistant/assistant.h"
#include "memory/memory.h"
#include "reasoning/composer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace iris::app {
namespace {

const char* kUsage
    = "usage: iris compose article --instruction TEXT --out DIR [--source FILE]\n"
      "                            [--images DIR]... [--db DIR [--db-k N]]\n"
      "                            [--max-sections N] [--max-section-tokens N] [options]\n"
      "       iris compose webpage (--instruction TEXT | --screenshot FILE) --out FILE.html\n"
      "                            [--max-tokens N] [options]\n"
      "\n"
      "article: the model writes an outline, then each section, marking where an image would\n"
      "help; each mark gets the image of the pool (--images folders, and key frames of the\n"
      "memories in --db that match the instruction) that the model finds most likely to show\n"
      "it, each image used once, with a caption the model writes. Writes DIR/article.md\n"
      "(images beside it in DIR/images/) and DIR/article.html (one self-contained file).\n"
      "\n"
      "webpage: one self-contained HTML file (inline CSS and JS, a Content-Security-Policy\n"
      "that forbids network access), from an instruction or from a screenshot of a page.\n"
      "\n"
      "options: --model DIR, --threads N, --max-tiles N, sampling (greedy by default) and\n"
      "KV cache options as for `iris ask`.\n";

std::vector<reasoning::PoolImage> folder_pool(const std::string& dir)
{
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw Error(ErrorKind::not_found, "--images: '" + dir + "' is not a folder");
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && is_image_path(e.path().string())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<reasoning::PoolImage> pool;
    for (const auto& f : files)
        pool.push_back({f.filename().string(), reasoning::load_image(f.string())});
    return pool;
}

reasoning::ComposeOptions compose_options(const Args& args, ProgressBar& bar)
{
    reasoning::ComposeOptions o;
    o.sampling = sampling_from_args(args);
    o.max_tiles = int(args.integer("--max-tiles", 0, 0, 64));
    o.max_prompt_tokens = max_prompt_tokens_from_args(args);
    o.progress = [&bar](const std::string& stage, int done, int total) {
        bar.update(total > 0 ? float(done) / float(total) : 1.0f, stage.c_str());
        return true;
    };
    return o;
}

int compose_article(int argc, char** argv)
{
    std::vector<std::string> valued = common_valued_options();
    for (const char* o : {"--model", "--mmproj", "--instruction", "--source", "--images", "--db",
                          "--db-k", "--out", "--max-sections", "--max-section-tokens"})
        valued.push_back(o);
    Args args(argc, argv, valued, {"-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    reasoning::ArticleRequest req;
    req.instruction = args.required("--instruction");
    fs::path out = args.required("--out");
    if (args.has("--source")) req.source = read_text_file(args.str("--source"));
    req.max_sections = int(args.integer("--max-sections", 6, 1, 32));
    req.max_section_tokens = int(args.integer("--max-section-tokens", 400, 1, 8192));
    for (const auto& dir : args.all("--images")) {
        auto p = folder_pool(dir);
        req.pool.insert(req.pool.end(), p.begin(), p.end());
    }
    // The folders are made before minutes of generation, so that a bad --out fails at once.
    make_folder((out / "images").string());
    apply_threads(args);
    auto engine = load_engine(args);
    if (args.has("--db")) {
        memory::Store store = memory::Store::open(args.str("--db"), {.read_only = true});
        auto p = assistant::memory_pool(
            engine.get(), store, req.instruction,
            int(args.integer("--db-k", assistant::kMemoryPoolSize, 1, 1000)));
        req.pool.insert(req.pool.end(), p.begin(), p.end());
    }
    ProgressBar bar("compose");
    reasoning::Article a = reasoning::compose_article(*engine, req, compose_options(args, bar));
    bar.finish();

    for (size_t i = 0; i < a.images.size(); ++i) {
        std::string file = reasoning::article_image_file(a, i);
        if (file.empty()) continue;
        auto jpeg = reasoning::encode_jpeg(req.pool[size_t(a.images[i].pool_index)].image, 90);
        write_whole_file((out / file).string(),
                         std::string_view(reinterpret_cast<const char*>(jpeg.data()), jpeg.size()));
    }
    write_whole_file((out / "article.md").string(), a.markdown);
    write_whole_file((out / "article.html").string(), reasoning::article_html(a, req.pool));

    std::printf("%s\n", a.title.c_str());
    for (size_t s = 0; s < a.sections.size(); ++s)
        std::printf("  %zu. %s\n", s + 1, a.sections[s].c_str());
    std::printf("images (%zu marks, pool of %zu):\n", a.images.size(), req.pool.size());
    for (const auto& im : a.images) {
        if (im.pool_index < 0)
            std::printf("  \"%s\": no image left\n", im.description.c_str());
        else
            std::printf("  \"%s\": %s (score %.3f), caption \"%s\"\n", im.description.c_str(),
                        req.pool[size_t(im.pool_index)].name.c_str(), im.score, im.caption.c_str());
    }
    std::printf("wrote %s and %s (%d tokens generated)\n", (out / "article.md").c_str(),
                (out / "article.html").c_str(), a.stats.n_generated);
    return 0;
}

int compose_webpage(int argc, char** argv)
{
    std::vector<std::string> valued = common_valued_options();
    for (const char* o :
         {"--model", "--mmproj", "--instruction", "--screenshot", "--out", "--max-tokens"})
        valued.push_back(o);
    Args args(argc, argv, valued, {"-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    reasoning::WebpageRequest req;
    req.instruction = args.str("--instruction");
    if (args.has("--screenshot")) req.screenshot = reasoning::load_image(args.str("--screenshot"));
    if (!req.screenshot && req.instruction.empty())
        throw Error(ErrorKind::invalid_argument, "give --instruction TEXT or --screenshot FILE");
    fs::path out = args.required("--out");
    req.max_tokens = int(args.integer("--max-tokens", 2048, 1, 16384));
    if (out.has_parent_path()) make_folder(out.parent_path().string());
    apply_threads(args);
    auto engine = load_engine(args);
    ProgressBar bar("compose");
    reasoning::Webpage page = reasoning::compose_webpage(*engine, req, compose_options(args, bar));
    bar.finish();
    write_whole_file(out.string(), page.html);
    std::printf("wrote %s (%zu bytes, %d tokens generated)\n", out.c_str(), page.html.size(),
                page.stats.n_generated);
    return 0;
}

} // namespace

int cmd_compose(int argc, char** argv)
{
    std::string what = argc > 0 ? argv[0] : "";
    if (what == "article") return compose_article(argc - 1, argv + 1);
    if (what == "webpage") return compose_webpage(argc - 1, argv + 1);
    if (what == "-h" || what == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    std::fputs(kUsage, stderr);
    throw Error(ErrorKind::invalid_argument,
                what.empty() ? "iris compose needs 'article' or 'webpage'"
                             : "unknown compose target '" + what + "': use 'article' or 'webpage'");
}

} // namespace iris::app
