// iris — the command line. Each subcommand is a thin wrapper over the modules' public headers.
#include "apps/args.h"
#include "apps/commands.h"
#include "core/core.h"
#include "model/arch.h"
#include "model/model.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if IRIS_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

// The optional modules built in (apps/CMakeLists.txt).
#ifndef IRIS_WITH_MEMORY
#define IRIS_WITH_MEMORY 0
#endif
#ifndef IRIS_WITH_PERCEPTION
#define IRIS_WITH_PERCEPTION 0
#endif
#ifndef IRIS_WITH_SERVER
#define IRIS_WITH_SERVER 0
#endif
#ifndef IRIS_HAVE_CUDA
#define IRIS_HAVE_CUDA 0
#endif

namespace iris::app {

int cmd_info(int argc, char** argv)
{
    Args args(argc, argv, {"--model", "--mmproj"}, {"-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris info [--model PATH [--mmproj FILE]]\n"
            "\n"
            "The version, build features and devices found; with --model, also the model's\n"
            "architecture (read from its configuration, not its weights).\n");
        return 0;
    }
    // The model is read first so that a wrong --model fails before anything is printed.
    std::string model_path;
    const model::LlmArchInfo* arch = nullptr;
    if (args.has("--model")) {
        const auto paths = model::ModelPaths::resolve(args.str("--model"), args.str("--mmproj"));
        arch = &model::llm_arch(model::ModelConfig::of(paths).llm.arch);
        model_path = paths.is_gguf() ? paths.gguf : paths.dir;
    }
    std::printf("iris %s\n", iris::version());
    std::printf("build:\n");
    std::printf("  compiler      %s\n", __VERSION__);
    std::printf("  modules       engine%s%s%s\n", IRIS_WITH_MEMORY ? ", memory" : "",
                IRIS_WITH_PERCEPTION ? ", perception" : "", IRIS_WITH_SERVER ? ", server" : "");
    std::printf("  backends      cpu%s\n", IRIS_HAVE_CUDA ? ", cuda" : "");
    // --device takes these; the network (vision tower, decoder, KV cache) runs where it says,
    // tokenizing, image decoding and sampling on the CPU.
    std::string devices;
    for (const std::string& d : iris::model::available_devices())
        devices += (devices.empty() ? "" : ", ") + d;
    std::printf("  --device      %s\n", devices.c_str());
    std::printf("devices:\n");
    std::printf("  cpu           %u hardware threads, %s kernels\n",
                std::thread::hardware_concurrency(), iris::model::cpu_kernels_name());
#if IRIS_HAVE_CUDA
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        std::printf("  cuda          none (%s)\n", cudaGetErrorString(err));
    } else {
        for (int i = 0; i < n; ++i) {
            cudaDeviceProp prop {};
            cudaGetDeviceProperties(&prop, i);
            std::printf("  cuda:%d        %s, %.1f GiB, sm_%d%d\n", i, prop.name,
                        double(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor);
        }
    }
#endif
    if (arch) {
        std::printf("model:\n");
        std::printf("  path          %s\n", model_path.c_str());
        std::printf("  llm           %s (%s)\n", arch->display, arch->hf_class);
    }
    return 0;
}

} // namespace iris::app

namespace {

struct Command
{
    const char* name;
    int (*run)(int argc, char** argv);
    const char* help;
};

const Command kCommands[] = {
    {"info", iris::app::cmd_info, "print the version, build features and the devices found"},
    {"ask", iris::app::cmd_ask, "answer a question about images, streaming the answer"},
    {"chat", iris::app::cmd_chat, "interactive multi-turn chat"},
#if IRIS_WITH_PERCEPTION
    {"watch", iris::app::cmd_watch,
     "watch a video (and listen) and remember it in a memory folder"},
    {"live", iris::app::cmd_live, "watch the camera, listen, remember, and answer from memory"},
    {"recall", iris::app::cmd_recall, "answer a question from memory, with the times it used"},
    {"memory", iris::app::cmd_memory, "list, show, delete or export remembered entries"},
#endif
#if IRIS_WITH_SERVER
    {"serve", iris::app::cmd_serve, "serve the OpenAI chat API, document QA and memory search"},
#endif
#if IRIS_WITH_MEMORY
    {"compose", iris::app::cmd_compose,
     "write an article with images from a pool, or a self-contained web page"},
#endif
    {"eval", iris::app::cmd_eval, "score a generated question set (exact match per task)"},
    {"tokenize", iris::app::cmd_tokenize, "print the token ids of a text"},
    {"prompt", iris::app::cmd_prompt, "print the ids of the full templated prompt"},
    {"preprocess", iris::app::cmd_preprocess, "tile an image and write its pixel values"},
    {"forward", iris::app::cmd_forward, "write the logits (and visual tokens) for given inputs"},
    {"generate", iris::app::cmd_generate, "print the greedy continuation of given inputs"},
    {"make-random", iris::app::cmd_make_random, "write a random-weight checkpoint of a real shape"},
    {"bench", iris::app::cmd_bench, "measure prompt, decode and vision speed"},
    {"calibrate-kv", iris::app::cmd_calibrate_kv,
     "compute the SKVQ KV cache calibration of a model (channel order, clipping)"},
    {"kv-eval", iris::app::cmd_kv_eval, "compare KV cache settings with f16 on long prompts"},
    {"quant-eval", iris::app::cmd_quant_eval,
     "compare quantized weights with the stored ones (KL, top-1, accuracy)"},
    {"quantize", iris::app::cmd_quantize,
     "write the model as llama.cpp GGUF files (language model and mmproj)"},
};

void usage(FILE* out)
{
    std::fprintf(out,
                 "usage: iris <command> [options]\n"
                 "\n"
                 "commands:\n");
    for (const auto& c : kCommands) std::fprintf(out, "  %-12s %s\n", c.name, c.help);
    std::fprintf(out, "\nRun 'iris <command> --help' for a command's options.\n");
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    std::string cmd = argv[1];
    try {
        for (const auto& c : kCommands)
            if (cmd == c.name) return c.run(argc - 2, argv + 2);
        if (cmd == "-h" || cmd == "--help" || cmd == "help") {
            usage(stdout);
            return 0;
        }
        if (cmd == "--version") {
            std::printf("iris %s\n", iris::version());
            return 0;
        }
        // The commands of modules this build left out say which options bring them.
        const char* memory = IRIS_WITH_MEMORY ? nullptr : "IRIS_BUILD_MEMORY=ON";
        const char* watching
            = IRIS_WITH_PERCEPTION ? nullptr : "IRIS_BUILD_MEMORY=ON and IRIS_BUILD_PERCEPTION=ON";
        const char* server = IRIS_WITH_SERVER ? nullptr : "IRIS_BUILD_SERVER=ON";
        const std::pair<const char*, const char*> left_out[] = {
            {"watch", watching},  {"live", watching}, {"recall", watching},
            {"memory", watching}, {"serve", server},  {"compose", memory},
        };
        for (const auto& [name, options] : left_out)
            if (options && cmd == name) {
                std::fprintf(stderr, "iris: '%s' is not in this build (configure with %s)\n", name,
                             options);
                return 2;
            }
        std::fprintf(stderr, "iris: unknown command '%s'\n\n", cmd.c_str());
        usage(stderr);
        return 2;
    } catch (const iris::Error& e) {
        std::fprintf(stderr, "iris %s: %s\n", cmd.c_str(), e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "iris %s: out of memory\n", cmd.c_str());
        return 1;
    } catch (const std::exception& e) {
        // What the commands did not turn into an Error (a filesystem_error names its paths) is
        // still a message and exit status 1, never an abort.
        std::fprintf(stderr, "iris %s: %s\n", cmd.c_str(), e.what());
        return 1;
    } catch (...) {
        std::fprintf(stderr, "iris %s: failed with an unknown exception\n", cmd.c_str());
        return 1;
    }
}
