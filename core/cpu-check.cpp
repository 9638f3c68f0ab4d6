// Refuses to run on an x86-64 CPU below the build's baseline (x86-64-v3: AVX2, FMA, F16C;
// cmake/iris.cmake) with a message, where the first vector instruction would otherwise kill
// the program with SIGILL. This file alone is compiled for plain x86-64, its check runs before
// every other constructor of the program (priority 101, the first one not reserved), and the
// linker takes it into every program that links core (core/CMakeLists.txt).
#include <cstdio>
#include <cstdlib>

extern "C" __attribute__((constructor(101))) void iris_check_cpu()
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
        && __builtin_cpu_supports("f16c"))
        return;
    std::fputs("this build of Iris needs an x86-64 CPU with AVX2, FMA and F16C (x86-64-v3)\n",
               stderr);
    std::_Exit(1);
#endif
}
