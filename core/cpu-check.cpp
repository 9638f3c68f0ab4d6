// Refuses to run on an x86-64 CPU below the build's baseline (x86-64-v3: AVX2, FMA, F16C;
// cmake/iris.cmake) with a message, where the first vector instruction would otherwise kill
// the program with SIGILL. This file alone is compiled for plain x86-64, its check runs before
// every other constructor of the program (priority 101, the first one not reserved), and the
// linker takes it into every program that links core (core/CMakeLists.txt).
#include "core/core.h"

#include <cpuid.h>
#include <cstdio>
#include <cstdlib>

bool iris::cpu_runs_x86_64_v3()
{
    __builtin_cpu_init();
    // F16C from CPUID itself (leaf 1, ECX): not every compiler's __builtin_cpu_supports knows it.
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

extern "C" __attribute__((constructor(101))) void iris_check_cpu()
{
    if (iris::cpu_runs_x86_64_v3()) return;
    std::fputs("this build of Iris needs an x86-64 CPU with AVX2, FMA and F16C (x86-64-v3)\n",
               stderr);
    std::_Exit(1);
}
