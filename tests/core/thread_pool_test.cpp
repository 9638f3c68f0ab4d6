#include "core/core.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

TEST(ThreadPool, ParallelForVisitsEveryIndexExactlyOnce)
{
    iris::ThreadPool pool(4);
    std::vector<std::atomic<int>> hits(10007);
    pool.parallel_for(0, int64_t(hits.size()), [&](int64_t i) { hits[size_t(i)]++; });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
}

TEST(ThreadPool, ParallelForRethrowsTheFirstException)
{
    iris::ThreadPool pool(3);
    EXPECT_THROW(pool.parallel_for(0, 100,
                                   [](int64_t i) {
                                       if (i == 57)
                                           throw iris::Error(iris::ErrorKind::internal, "boom");
                                   }),
                 iris::Error);
    // The pool still works afterwards.
    std::atomic<int64_t> sum {0};
    pool.parallel_for(0, 100, [&](int64_t i) { sum += i; });
    EXPECT_EQ(sum.load(), 4950);
}

TEST(ThreadPool, NestedParallelForCompletes)
{
    iris::ThreadPool pool(2);
    std::atomic<int> total {0};
    pool.parallel_for(0, 8, [&](int64_t) { pool.parallel_for(0, 8, [&](int64_t) { total++; }); });
    EXPECT_EQ(total.load(), 64);
}

TEST(ThreadPool, DestructorRunsEverySubmittedTask)
{
    std::atomic<int> ran {0};
    {
        iris::ThreadPool pool(3);
        for (int i = 0; i < 1000; ++i) pool.submit([&] { ran++; });
    }
    EXPECT_EQ(ran.load(), 1000);
}
