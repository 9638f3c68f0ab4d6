// iris ask and iris chat: answers streamed to stdout.
#include "apps/commands.h"
#include "apps/common.h"

#include <csignal>
#include <cstdio>
#include <iostream>

namespace iris::app {
namespace {

bool print_piece(std::string_view piece)
{
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
}

void print_stats(const reasoning::Answer& a, const model::KvCache& cache)
{
    const auto& s = a.stats;
    const auto& kv = cache.options();
    std::fprintf(
        stderr,
        "[%d prompt tokens (%d reused), %d tiles in %.0f ms, prefill %.0f ms (%.1f tok/s), "
        "%d new tokens in %.0f ms (%.1f tok/s), %s; KV cache %s, %.2f MiB]\n",
        s.n_prompt_tokens, s.n_reused_tokens, s.n_tiles, s.vision_ms, s.prefill_ms,
        s.prefill_ms > 0 ? (s.n_prompt_tokens - s.n_reused_tokens) * 1000.0 / s.prefill_ms : 0.0,
        s.n_generated, s.decode_ms, s.decode_ms > 0 ? s.n_generated * 1000.0 / s.decode_ms : 0.0,
        a.finish_reason.c_str(), model::kv_cache_name(kv).c_str(),
        double(cache.bytes()) / double(1 << 20));
}

} // namespace

int cmd_ask(int argc, char** argv)
{
    auto valued = common_valued_options();
    valued.insert(valued.end(), {"--image", "--system"});
    Args args(argc, argv, valued, {"--stats", "--frames", "--image-markers", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris ask --model DIR [--image FILE]... [options] QUESTION\n"
            "\n"
            "Answers QUESTION about the images (PNG, JPEG, WebP, BMP), streaming to stdout.\n"
            "Several images are introduced as \"Image-1: <image>\", \"Image-2: <image>\", ...\n"
            "  --frames             the images are video frames: one tile each, \"Frame1: "
            "<image>\", ...\n"
            "  --image-markers      each \"<image>\" in QUESTION places an image there (else it\n"
            "                       is text and the images go in front)\n"
            "  --system TEXT        system message (default: the model's)\n"
            "  --stats              print timings to stderr\n"
            "%s",
            sampling_help());
        return 0;
    }
    if (args.positionals().size() != 1)
        throw Error(ErrorKind::invalid_argument, "give the question as one argument");
    reasoning::AskOptions opts;
    opts.sampling = sampling_from_args(args);
    opts.max_tiles = int(args.integer("--max-tiles", 0, 1, 64));
    opts.max_prompt_tokens = max_prompt_tokens_from_args(args);
    opts.image_markers = args.flag("--image-markers");
    std::vector<Image> images;
    for (const auto& path : args.all("--image")) images.push_back(reasoning::load_image(path));
    if (args.flag("--frames")) {
        // As the official load_video: one 448 tile per frame, no thumbnail.
        opts.layout = reasoning::ImageLayout::frames;
        opts.max_tiles = 1;
    } else if (images.size() > 1) {
        opts.layout = reasoning::ImageLayout::numbered;
    }
    auto engine = load_engine(args);
    reasoning::Session session(*engine, args.str("--system"));
    auto answer = session.ask(args.positionals()[0], images, opts, print_piece);
    std::printf("\n");
    if (args.flag("--stats")) print_stats(answer, session.cache());
    return 0;
}

int cmd_chat(int argc, char** argv)
{
    auto valued = common_valued_options();
    valued.push_back("--system");
    Args args(argc, argv, valued, {"--stats", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf("usage: iris chat --model DIR [options]\n"
                    "\n"
                    "An interactive multi-turn chat. Earlier turns stay in the KV cache.\n"
                    "  /image FILE   attach an image to the next question\n"
                    "  /reset        start a new conversation\n"
                    "  /quit         leave (or end of input)\n"
                    "  --system TEXT system message (default: the model's)\n"
                    "  --stats       print timings after each answer\n"
                    "%s",
                    sampling_help());
        return 0;
    }
    reasoning::AskOptions opts;
    opts.sampling = sampling_from_args(args);
    opts.max_tiles = int(args.integer("--max-tiles", 0, 1, 64));
    opts.max_prompt_tokens = max_prompt_tokens_from_args(args);
    auto engine = load_engine(args);
    reasoning::Session session(*engine, args.str("--system"));
    std::vector<Image> pending;
    std::string line;
    for (;;) {
        std::fprintf(stdout, "> ");
        std::fflush(stdout);
        if (!std::getline(std::cin, line) || line == "/quit" || line == "/exit") break;
        if (line.empty()) continue;
        try {
            if (line.rfind("/image ", 0) == 0) {
                pending.push_back(reasoning::load_image(line.substr(7)));
                std::printf("(image attached: %dx%d)\n", pending.back().width,
                            pending.back().height);
                continue;
            }
            if (line == "/reset") {
                session.reset();
                pending.clear();
                std::printf("(new conversation)\n");
                continue;
            }
            if (line[0] == '/') {
                std::printf("(unknown command; use /image FILE, /reset or /quit)\n");
                continue;
            }
            opts.layout = pending.size() > 1 ? reasoning::ImageLayout::numbered
                                             : reasoning::ImageLayout::single;
            auto answer = session.ask(line, pending, opts, print_piece);
            pending.clear();
            std::printf("\n");
            if (args.flag("--stats")) print_stats(answer, session.cache());
        } catch (const Error& e) {
            std::fprintf(stderr, "error: %s\n", e.what());
        }
    }
    return 0;
}

} // namespace iris::app
