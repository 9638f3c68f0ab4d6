# Shared compile settings and helpers for every Iris target.

add_library(iris_options INTERFACE)
target_compile_options(iris_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers>)
if(IRIS_FATAL_WARNINGS)
  target_compile_options(iris_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
# One binary for every x86-64 machine with AVX2, FMA and F16C (x86-64-v3): the compiler
# vectorises for that level, and the kernels that use AVX-512 are built separately and chosen
# at run time (model/cpu/quant-dot.h).
target_compile_options(iris_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=x86-64-v3>)
# GCC's -Wmaybe-uninitialized misfires on instrumented code (libstdc++'s <regex> under
# -fsanitize=address, GCC bug 105616), so sanitizer builds, which CI builds with -Werror, drop it.
if(IRIS_SANITIZE_ADDRESS OR IRIS_SANITIZE_THREAD)
  target_compile_options(iris_options INTERFACE $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
endif()
if(IRIS_SANITIZE_ADDRESS)
  target_compile_options(iris_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(iris_options INTERFACE -fsanitize=address,undefined)
endif()
# Fuzzing: every Iris library carries libFuzzer's coverage instrumentation; only the targets in
# tests/fuzz link libFuzzer itself (-fsanitize=fuzzer, which brings its own main).
if(IRIS_FUZZ)
  target_compile_options(iris_options INTERFACE -fsanitize=fuzzer-no-link)
endif()
if(IRIS_SANITIZE_THREAD)
  target_compile_options(iris_options INTERFACE -fsanitize=thread -fno-omit-frame-pointer)
  target_link_options(iris_options INTERFACE -fsanitize=thread)
  # TSan cannot see fences: Asio's handlers are handed over under the scheduler's mutex anyway.
  target_compile_definitions(iris_options INTERFACE BOOST_ASIO_DISABLE_FENCED_BLOCK)
endif()

# iris_add_test(<name> SOURCES <files...> LIBS <targets...> [LABELS <labels...>] [ENV <VAR=value...>])
# Builds tests/<module>/<name>.cpp into one executable and registers each TEST as its own ctest
# test, labelled "main" unless LABELS says otherwise.
function(iris_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS;ENV" ${ARGN})
  if(NOT T_LABELS)
    set(T_LABELS main)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest_main GTest::gmock iris_options)
  # A test's own code runs briefly and calls the libraries, which keep their flags: -O1 halves
  # what the tests cost a release build, and -O0 nearly halves it again under the sanitizers.
  # IRIS_SANITIZED: a test too slow under a sanitizer takes a smaller size there, never a skip.
  if(IRIS_SANITIZE_ADDRESS OR IRIS_SANITIZE_THREAD)
    set(sanitized 1)
    target_compile_options(${name} PRIVATE -O0)
  else()
    set(sanitized 0)
    target_compile_options(${name} PRIVATE $<$<CONFIG:Release>:-O1>)
  endif()
  target_compile_definitions(${name} PRIVATE IRIS_SANITIZED=${sanitized}
    IRIS_SOURCE_DIR="${PROJECT_SOURCE_DIR}" IRIS_GOLDEN_DIR="${PROJECT_SOURCE_DIR}/../shared/golden")
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${T_LABELS}" ENVIRONMENT "${T_ENV}")
endfunction()
