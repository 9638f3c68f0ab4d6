#include "core/core.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace iris {

// Workers sleep on a condition variable, but first poll for a short while after each task:
// the engine issues many short parallel_for calls back to back, and waking a sleeping thread
// costs tens of microseconds.
struct ThreadPool::State
{
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    std::atomic<int64_t> pending{0};
    bool stopping = false;
    std::vector<std::thread> workers;

    bool try_pop(std::function<void()>& task)
    {
        std::lock_guard lock(mutex);
        if (tasks.empty()) return false;
        task = std::move(tasks.front());
        tasks.pop_front();
        pending.fetch_sub(1, std::memory_order_relaxed);
        return true;
    }

    void run(std::function<void()>& task)
    {
        try {
            task();
        } catch (const std::exception& e) {
            IRIS_LOG_ERROR("thread pool task failed: %s", e.what());
        } catch (...) {
            IRIS_LOG_ERROR("thread pool task failed with a non-standard exception");
        }
        task = nullptr;
    }

    void worker_loop()
    {
        std::function<void()> task;
        for (;;) {
            auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
            while (pending.load(std::memory_order_acquire) == 0
                   && std::chrono::steady_clock::now() < spin_until) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
            }
            if (try_pop(task)) {
                run(task);
                continue;
            }
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return stopping || !tasks.empty(); });
            if (tasks.empty()) return; // stopping and drained
            task = std::move(tasks.front());
            tasks.pop_front();
            pending.fetch_sub(1, std::memory_order_relaxed);
            lock.unlock();
            run(task);
        }
    }
};

ThreadPool::ThreadPool(int n_threads)
    : state_(std::make_unique<State>())
{
    if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    // The caller of parallel_for works too, so n threads of parallelism need n-1 workers.
    for (int i = 0; i < n_threads - 1; ++i)
        state_->workers.emplace_back([s = state_.get()] { s->worker_loop(); });
}

ThreadPool::~ThreadPool()
{
    {
        std::lock_guard lock(state_->mutex);
        state_->stopping = true;
    }
    state_->cv.notify_all();
    for (auto& t : state_->workers) t.join();
}

int ThreadPool::size() const { return int(state_->workers.size()) + 1; }

void ThreadPool::submit(std::function<void()> task)
{
    if (state_->workers.empty()) {
        state_->run(task);
        return;
    }
    {
        std::lock_guard lock(state_->mutex);
        state_->tasks.push_back(std::move(task));
        state_->pending.fetch_add(1, std::memory_order_release);
    }
    state_->cv.notify_one();
}

void ThreadPool::parallel_for(int64_t begin, int64_t end, const std::function<void(int64_t)>& fn)
{
    parallel_for_chunks(begin, end, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) fn(i);
    });
}

void ThreadPool::parallel_for_chunks(int64_t begin, int64_t end,
                                     const std::function<void(int64_t, int64_t)>& fn)
{
    int64_t n = end - begin;
    if (n <= 0) return;
    int64_t n_chunks = std::min<int64_t>(n, size());
    if (n_chunks == 1) {
        fn(begin, end);
        return;
    }
    struct Job
    {
        std::atomic<int64_t> next{0};
        std::atomic<int64_t> done{0};
        std::mutex mutex;
        std::condition_variable cv;
        std::exception_ptr error;
    };
    auto job = std::make_shared<Job>();
    auto work = [job, n_chunks, begin, n, &fn] {
        for (;;) {
            int64_t c = job->next.fetch_add(1, std::memory_order_relaxed);
            if (c >= n_chunks) return;
            int64_t lo = begin + n * c / n_chunks, hi = begin + n * (c + 1) / n_chunks;
            try {
                fn(lo, hi);
            } catch (...) {
                std::lock_guard lock(job->mutex);
                if (!job->error) job->error = std::current_exception();
            }
            if (job->done.fetch_add(1, std::memory_order_acq_rel) + 1 == n_chunks) {
                std::lock_guard lock(job->mutex);
                job->cv.notify_all();
            }
        }
    };
    {
        std::lock_guard lock(state_->mutex);
        for (int64_t i = 0; i < n_chunks - 1; ++i) state_->tasks.push_back(work);
        state_->pending.fetch_add(n_chunks - 1, std::memory_order_release);
    }
    state_->cv.notify_all();
    work();
    // Chunks claimed by workers may still be running: fn must outlive them.
    auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    while (job->done.load(std::memory_order_acquire) < n_chunks
           && std::chrono::steady_clock::now() < spin_until) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    if (job->done.load(std::memory_order_acquire) < n_chunks) {
        std::unique_lock lock(job->mutex);
        job->cv.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == n_chunks; });
    }
    if (job->error) std::rethrow_exception(job->error);
}

namespace {
std::mutex g_default_pool_mutex;
std::unique_ptr<ThreadPool> g_default_pool;

int threads_from_env()
{
    const char* env = std::getenv("IRIS_THREADS");
    return env ? std::atoi(env) : 0;
}
} // namespace

ThreadPool& default_thread_pool()
{
    std::lock_guard lock(g_default_pool_mutex);
    if (!g_default_pool) g_default_pool = std::make_unique<ThreadPool>(threads_from_env());
    return *g_default_pool;
}

void set_default_threads(int n_threads)
{
    std::lock_guard lock(g_default_pool_mutex);
    if (g_default_pool && g_default_pool->size() == (n_threads > 0 ? n_threads : g_default_pool->size()))
        return;
    g_default_pool = std::make_unique<ThreadPool>(n_threads);
}

int64_t now_us()
{
    using namespace std::chrono;
    return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

} // namespace iris
