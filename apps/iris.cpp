// iris — the command line. Each subcommand is a thin wrapper over the modules' public headers.
#include "core/core.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#if IRIS_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

int cmd_info()
{
    std::printf("iris %s\n", iris::version());
    std::printf("build:\n");
    std::printf("  compiler      %s\n", __VERSION__);
#if IRIS_HAVE_CUDA
    std::printf("  cuda backend  built\n");
#else
    std::printf("  cuda backend  not built (no nvcc at configure time, or IRIS_CUDA=OFF)\n");
#endif
    std::printf("devices:\n");
    std::printf("  cpu           %u hardware threads\n", std::thread::hardware_concurrency());
#if IRIS_HAVE_CUDA
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        std::printf("  cuda          none (%s)\n", cudaGetErrorString(err));
    } else {
        for (int i = 0; i < n; ++i) {
            cudaDeviceProp prop{};
            cudaGetDeviceProperties(&prop, i);
            std::printf("  cuda:%d        %s, %.1f GiB, sm_%d%d\n", i, prop.name,
                        double(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor);
        }
    }
#endif
    return 0;
}

void usage(FILE* out)
{
    std::fprintf(out,
                 "usage: iris <command> [options]\n"
                 "\n"
                 "commands:\n"
                 "  info        print the version, build features and the devices found\n"
                 "\n"
                 "Run 'iris <command> --help' for a command's options.\n");
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
        if (cmd == "info") return cmd_info();
        if (cmd == "-h" || cmd == "--help" || cmd == "help") {
            usage(stdout);
            return 0;
        }
        if (cmd == "--version") {
            std::printf("iris %s\n", iris::version());
            return 0;
        }
        std::fprintf(stderr, "iris: unknown command '%s'\n\n", cmd.c_str());
        usage(stderr);
        return 2;
    } catch (const iris::Error& e) {
        std::fprintf(stderr, "iris %s: %s\n", cmd.c_str(), e.what());
        return 1;
    }
}
