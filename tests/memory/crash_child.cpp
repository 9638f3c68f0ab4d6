// memory_crash_child DIR SEED — the process crash_test kills: adds entries to the store in DIR
// one transaction at a time, forever, and writes each acknowledged id to stdout as a line.
#include "memory/memory.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include <unistd.h>

int main(int argc, char** argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: memory_crash_child DIR SEED\n");
        return 2;
    }
    namespace mem = iris::memory;
    iris::log_set_level(iris::LogLevel::error); // rebuilds are expected; the parent checks them
    uint32_t seed = uint32_t(std::strtoul(argv[2], nullptr, 10));
    std::mt19937 rng(seed);
    // Small thresholds so that kills also land in index saves and in the IVF training.
    mem::Store store = mem::Store::open(
        argv[1], {.dim = 16, .index_save_min = 16, .ivf_threshold = 400, .ivf_nlist = 8});
    for (int64_t i = 0;; ++i) {
        mem::Entry e;
        e.t_start_us = int64_t(seed) * 1000000 + i;
        e.t_end_us = e.t_start_us + 1000;
        e.caption = "crash " + std::to_string(seed) + " " + std::to_string(i);
        e.embedding.resize(16);
        for (float& x : e.embedding) x = float(rng() % 1000) - 500.0f;
        for (int f = 0; f < 2; ++f) {
            std::vector<uint8_t> jpeg(2000 + rng() % 20000);
            for (uint8_t& b : jpeg) b = uint8_t(rng());
            jpeg[0] = 0xFF, jpeg[1] = 0xD8, jpeg[2] = 0xFF;
            e.key_frames.push_back({e.t_start_us, iris::Buffer::adopt(std::move(jpeg)), 0});
        }
        std::string line = std::to_string(store.add(e)) + "\n";
        // One write per id: a line in the pipe is an acknowledgement the parent can count on.
        if (::write(1, line.data(), line.size()) != ssize_t(line.size())) return 1;
    }
}
