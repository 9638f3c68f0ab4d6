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
//
// parallel_for allocates nothing: its Job lives on the caller's stack and the queue entries
// that share it are plain pointers. That is safe because the caller, once it has run out of
// chunks, withdraws the entries no worker has taken yet and waits only for the ones that were
// taken (a decode step makes ~200 of these calls, so a heap Job and a std::function per
// worker each time were a measurable fixed cost per token).
struct ThreadPool::State
{
    // One parallel_for_chunks call, owned by its caller.
    struct Job
    {
        const std::function<void(int64_t, int64_t)>* fn = nullptr;
        int64_t begin = 0, n = 0, n_chunks = 0;
        std::atomic<int64_t> next {0};
        int started = 0; // queue entries taken by workers (guarded by State::mutex)
        std::atomic<int> finished {0}; // of those, the ones done (written under State::mutex)
        std::exception_ptr error; // the first exception (guarded by State::mutex)
    };
    // A queue entry: a submitted task, or a share in a Job.
    struct Task
    {
        std::function<void()> fn;
        Job* job = nullptr;
    };

    std::mutex mutex;
    std::condition_variable cv; // workers: a task was queued, or the pool is stopping
    std::condition_variable job_cv; // parallel_for callers: a worker finished a share of a Job
    std::deque<Task> tasks;
    std::atomic<int64_t> pending {0};
    bool stopping = false;
    std::vector<std::thread> workers;

    // Takes the front task; the caller holds the mutex and tasks is not empty.
    Task pop_locked()
    {
        Task task = std::move(tasks.front());
        tasks.pop_front();
        pending.fetch_sub(1, std::memory_order_relaxed);
        if (task.job) ++task.job->started;
        return task;
    }

    bool try_pop(Task& task)
    {
        std::lock_guard lock(mutex);
        if (tasks.empty()) return false;
        task = pop_locked();
        return true;
    }

    // Claims and runs chunks of the job until none is left.
    void run_chunks(Job& job)
    {
        for (;;) {
            int64_t c = job.next.fetch_add(1, std::memory_order_relaxed);
            if (c >= job.n_chunks) return;
            int64_t lo = job.begin + job.n * c / job.n_chunks;
            int64_t hi = job.begin + job.n * (c + 1) / job.n_chunks;
            try {
                (*job.fn)(lo, hi);
            } catch (...) {
                std::lock_guard lock(mutex);
                if (!job.error) job.error = std::current_exception();
            }
        }
    }

    void run(Task& task)
    {
        if (Job* job = task.job) {
            run_chunks(*job);
            {
                // Under the mutex, so that a caller checking the count before it waits cannot
                // miss the notification. The job may be gone right after the unlock: only the
                // pool's own condition variable is touched afterwards.
                std::lock_guard lock(mutex);
                job->finished.fetch_add(1, std::memory_order_release);
            }
            job_cv.notify_all();
            task.job = nullptr;
            return;
        }
        try {
            task.fn();
        } catch (const std::exception& e) {
            IRIS_LOG_ERROR("thread pool task failed: %s", e.what());
        } catch (...) {
            IRIS_LOG_ERROR("thread pool task failed with a non-standard exception");
        }
        task.fn = nullptr;
    }

    void worker_loop()
    {
        Task task;
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
            task = pop_locked();
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

int ThreadPool::size() const
{
    return int(state_->workers.size()) + 1;
}

void ThreadPool::submit(std::function<void()> task)
{
    if (state_->workers.empty()) {
        State::Task t {std::move(task), nullptr};
        state_->run(t);
        return;
    }
    {
        std::lock_guard lock(state_->mutex);
        state_->tasks.push_back({std::move(task), nullptr});
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
    State& st = *state_;
    State::Job job;
    job.fn = &fn;
    job.begin = begin;
    job.n = n;
    job.n_chunks = n_chunks;
    {
        std::lock_guard lock(st.mutex);
        for (int64_t i = 0; i < n_chunks - 1; ++i) st.tasks.push_back({{}, &job});
        st.pending.fetch_add(n_chunks - 1, std::memory_order_release);
    }
    st.cv.notify_all();
    st.run_chunks(job);
    // Every chunk is claimed. Withdraw the entries no worker has taken (a busy or descheduled
    // worker must not hold us up), then wait for the ones that were taken: they may still be
    // running a chunk, and they reference the job.
    int started;
    {
        std::lock_guard lock(st.mutex);
        int64_t removed = 0;
        for (auto it = st.tasks.begin(); it != st.tasks.end();) {
            if (it->job == &job) {
                it = st.tasks.erase(it);
                ++removed;
            } else {
                ++it;
            }
        }
        st.pending.fetch_sub(removed, std::memory_order_relaxed);
        started = job.started;
    }
    auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    while (job.finished.load(std::memory_order_acquire) < started
           && std::chrono::steady_clock::now() < spin_until) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    if (job.finished.load(std::memory_order_acquire) < started) {
        std::unique_lock lock(st.mutex);
        st.job_cv.wait(lock,
                       [&] { return job.finished.load(std::memory_order_acquire) == started; });
    }
    // Taken entries are done with the job; read the error under the mutex they wrote it with.
    std::exception_ptr error;
    {
        std::lock_guard lock(st.mutex);
        error = job.error;
    }
    if (error) std::rethrow_exception(error);
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
    if (g_default_pool
        && g_default_pool->size() == (n_threads > 0 ? n_threads : g_default_pool->size()))
        return;
    g_default_pool = std::make_unique<ThreadPool>(n_threads);
}

int64_t now_us()
{
    using namespace std::chrono;
    return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

int64_t wall_us()
{
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace iris
