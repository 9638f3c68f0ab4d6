// bus_bench — iris::Bus against moodycamel's queues, side by side.
//
//   bus_bench                  full run (about 20 s)
//   bus_bench --quick          a few seconds, for a smoke test
//   bus_bench --capacity N     iris queue depth for the throughput runs (default 16384)
//
// Throughput: producers send as fast as they can; messages/s is counted at the consumers (for
// fan-out, messages published per second: each is delivered 4 times).
// Latency: each producer sends one message every few microseconds (yielding between them);
// the consumer waits in its blocking call (iris receive(), moodycamel wait_dequeue), and the
// hop is the time from just before publish to just after the receive returns. The "asleep"
// rows space messages 2 ms apart, so every consumer has gone to sleep in the kernel.
//
// Debian 12's libconcurrentqueue-dev ships concurrentqueue.h and blockingconcurrentqueue.h but
// not readerwriterqueue, so ConcurrentQueue (with tokens) stands in for the SPSC case as well.
#include "core/bus.h"

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

using namespace std::chrono_literals;

namespace {

int64_t now_ns()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void pause()
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

// ---------------------------------------------------------------------------------------------
// Payloads. Each carries a stamp: a sequence number for throughput, a send time for latency.

struct Msg64
{
    uint64_t stamp = 0;
    uint64_t pad[7] = {};
};

struct Frame
{
    uint64_t stamp = 0;
    iris::Buffer pixels; // shared, never copied
};

// 1 MiB frames in a ring of 64, so refcounts are not all on one cache line.
const std::vector<iris::Buffer>& frame_pool()
{
    static const std::vector<iris::Buffer> pool = [] {
        std::vector<iris::Buffer> p;
        for (int i = 0; i < 64; ++i)
            p.push_back(iris::Buffer::allocate(
                1 << 20, [i](uint8_t* d, size_t n) { std::memset(d, i, n); }));
        return p;
    }();
    return pool;
}

template<class M> M make_msg(uint64_t stamp);
template<> uint64_t make_msg<uint64_t>(uint64_t stamp)
{
    return stamp;
}
template<> Msg64 make_msg<Msg64>(uint64_t stamp)
{
    Msg64 m;
    m.stamp = stamp;
    return m;
}
template<> Frame make_msg<Frame>(uint64_t stamp)
{
    return Frame {stamp, frame_pool()[stamp & 63]};
}
uint64_t stamp_of(uint64_t m)
{
    return m;
}
uint64_t stamp_of(const Msg64& m)
{
    return m.stamp;
}
uint64_t stamp_of(const Frame& m)
{
    return m.stamp;
}

// ---------------------------------------------------------------------------------------------
// The queues, behind one shape: n_producers senders, n_consumers receivers; with several
// consumers each gets every message (fan-out: one queue per consumer for moodycamel).

template<class M> struct IrisQueue
{
    iris::Bus bus;
    iris::Topic<M> topic = bus.topic<M>("bench");
    std::vector<iris::Subscription<M>> subs;
    IrisQueue(int /*n_producers*/, int n_consumers, size_t capacity)
    {
        for (int c = 0; c < n_consumers; ++c)
            subs.push_back(topic.subscribe({.capacity = capacity, .name = iris::strfmt("c%d", c)}));
    }
    void send(int /*producer*/, M&& m) { topic.publish(std::move(m), 60s); }
    bool receive(int consumer, M& out)
    {
        std::optional<M> m = subs[size_t(consumer)].receive();
        if (!m) return false;
        out = std::move(*m);
        return true;
    }
};

template<class M, class Q, bool blocking> struct MoodyQueue
{
    std::vector<std::unique_ptr<Q>> queues; // one per consumer
    std::vector<std::vector<std::unique_ptr<moodycamel::ProducerToken>>> ptok; // [producer][queue]
    std::vector<std::unique_ptr<moodycamel::ConsumerToken>> ctok;
    MoodyQueue(int n_producers, int n_consumers, size_t capacity)
    {
        for (int c = 0; c < n_consumers; ++c) {
            queues.push_back(std::make_unique<Q>(capacity * size_t(n_producers)));
            ctok.push_back(std::make_unique<moodycamel::ConsumerToken>(*queues.back()));
        }
        ptok.resize(size_t(n_producers));
        for (int p = 0; p < n_producers; ++p)
            for (auto& q : queues)
                ptok[size_t(p)].push_back(std::make_unique<moodycamel::ProducerToken>(*q));
    }
    void send(int producer, M&& m)
    {
        const size_t n = queues.size();
        for (size_t q = 0; q + 1 < n; ++q) queues[q]->enqueue(*ptok[size_t(producer)][q], M(m));
        queues[n - 1]->enqueue(*ptok[size_t(producer)][n - 1], std::move(m));
    }
    bool receive(int consumer, M& out)
    {
        if constexpr (blocking) {
            queues[size_t(consumer)]->wait_dequeue(*ctok[size_t(consumer)], out);
        } else {
            while (!queues[size_t(consumer)]->try_dequeue(*ctok[size_t(consumer)], out)) pause();
        }
        return true;
    }
};

template<class M> using CQ = MoodyQueue<M, moodycamel::ConcurrentQueue<M>, false>;
template<class M> using BCQ = MoodyQueue<M, moodycamel::BlockingConcurrentQueue<M>, true>;

// ---------------------------------------------------------------------------------------------
// Runs

struct Shape
{
    const char* name;
    int n_producers;
    int n_consumers;
};

// Messages per second (published), best of `repeats`.
template<class Q, class M>
double throughput(const Shape& shape, uint64_t n_messages, int repeats, size_t capacity)
{
    double best = 0;
    for (int r = 0; r < repeats; ++r) {
        Q q(shape.n_producers, shape.n_consumers, capacity);
        const uint64_t per_producer = n_messages / uint64_t(shape.n_producers);
        const uint64_t per_consumer = per_producer * uint64_t(shape.n_producers);
        std::atomic<int> ready {0};
        std::atomic<bool> go {false};
        std::atomic<int64_t> end {0};
        std::atomic<uint64_t> checksum {0};
        const int n_threads = shape.n_producers + shape.n_consumers;
        std::vector<std::thread> threads;
        for (int c = 0; c < shape.n_consumers; ++c)
            threads.emplace_back([&, c] {
                ++ready;
                while (!go.load()) pause();
                M m {};
                uint64_t sum = 0;
                for (uint64_t i = 0; i < per_consumer; ++i) {
                    q.receive(c, m);
                    sum += stamp_of(m);
                }
                const int64_t t = now_ns();
                int64_t prev = end.load();
                while (t > prev && !end.compare_exchange_weak(prev, t)) { }
                checksum += sum;
            });
        for (int p = 0; p < shape.n_producers; ++p)
            threads.emplace_back([&, p] {
                ++ready;
                while (!go.load()) pause();
                for (uint64_t i = 0; i < per_producer; ++i) q.send(p, make_msg<M>(i));
            });
        while (ready.load() != n_threads) std::this_thread::yield();
        const int64_t start = now_ns();
        go = true;
        for (auto& t : threads) t.join();
        const double seconds = double(end.load() - start) * 1e-9;
        best = std::max(best, double(per_producer * uint64_t(shape.n_producers)) / seconds);
        if (checksum.load() == 42) std::printf(" "); // keep the sums alive
    }
    return best;
}

struct Percentiles
{
    double p50_us = 0, p99_us = 0;
};

// Hop latency with paced producers and consumers waiting in their blocking receive.
template<class Q, class M>
Percentiles latency(const Shape& shape, int n_per_producer, std::chrono::nanoseconds gap)
{
    Q q(shape.n_producers, shape.n_consumers, 1024);
    const int per_consumer = n_per_producer * shape.n_producers;
    std::vector<std::vector<int64_t>> hops(size_t(shape.n_consumers));
    std::atomic<int> ready {0};
    const int n_threads = shape.n_producers + shape.n_consumers;
    std::vector<std::thread> threads;
    for (int c = 0; c < shape.n_consumers; ++c)
        threads.emplace_back([&, c] {
            auto& out = hops[size_t(c)];
            out.reserve(size_t(per_consumer));
            ++ready;
            M m {};
            for (int i = 0; i < per_consumer; ++i) {
                q.receive(c, m);
                out.push_back(now_ns() - int64_t(stamp_of(m)));
            }
        });
    for (int p = 0; p < shape.n_producers; ++p)
        threads.emplace_back([&, p] {
            ++ready;
            while (ready.load() != n_threads) std::this_thread::yield();
            std::this_thread::sleep_for(1ms); // consumers are waiting by now
            for (int i = 0; i < n_per_producer; ++i) {
                q.send(p, make_msg<M>(uint64_t(now_ns())));
                if (gap >= 1ms) {
                    std::this_thread::sleep_for(gap);
                } else {
                    const int64_t until = now_ns() + gap.count();
                    while (now_ns() < until) std::this_thread::yield();
                }
            }
        });
    for (auto& t : threads) t.join();
    std::vector<int64_t> all;
    for (auto& h : hops) all.insert(all.end(), h.begin(), h.end());
    auto at = [&](double f) {
        auto it = all.begin() + std::ptrdiff_t(f * double(all.size() - 1));
        std::nth_element(all.begin(), it, all.end());
        return double(*it) * 1e-3;
    };
    return Percentiles {at(0.50), at(0.99)};
}

struct Options
{
    size_t capacity = 16384; // iris queue depth; moodycamel's queues grow without bound
    uint64_t n_messages = 1'000'000; // per throughput run, 8-byte payloads (fewer for larger)
    int repeats = 3; // throughput: best run; latency: the run with median p99
    int n_latency = 5'000;
    int n_asleep = 200;
};

// Latency runs are short, so one burst of other work on the machine can ruin one; report the
// run whose p99 is the median of `repeats`.
template<class Q, class M>
Percentiles median_latency(const Shape& shape, int n_per_producer, std::chrono::nanoseconds gap,
                           int repeats)
{
    std::vector<Percentiles> runs;
    for (int r = 0; r < repeats; ++r) runs.push_back(latency<Q, M>(shape, n_per_producer, gap));
    std::sort(runs.begin(), runs.end(),
              [](const Percentiles& a, const Percentiles& b) { return a.p99_us < b.p99_us; });
    return runs[runs.size() / 2];
}

std::string rate(double per_second)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f M", per_second * 1e-6);
    return buf;
}

std::string micros(double us)
{
    char buf[32];
    if (us < 10)
        std::snprintf(buf, sizeof buf, "%.2f", us);
    else
        std::snprintf(buf, sizeof buf, "%.0f", us);
    return buf;
}

template<class M> void row(const Shape& shape, const char* payload, const Options& o)
{
    // Larger payloads and fan-out (4 deliveries each) are slower: fewer messages keep the run
    // short.
    const uint64_t n = o.n_messages / (sizeof(M) > 8 ? 2 : 1) / uint64_t(shape.n_consumers);
    const double iris_t = throughput<IrisQueue<M>, M>(shape, n, o.repeats, o.capacity);
    const double cq_t = throughput<CQ<M>, M>(shape, n, o.repeats, 1024);
    const double bcq_t = throughput<BCQ<M>, M>(shape, n, o.repeats, 1024);
    const int per_producer = o.n_latency / shape.n_producers;
    const Percentiles iris_l = median_latency<IrisQueue<M>, M>(shape, per_producer, 5us, o.repeats);
    const Percentiles bcq_l = median_latency<BCQ<M>, M>(shape, per_producer, 5us, o.repeats);
    std::printf("| %-13s | %-14s | %10s | %7s | %7s | %10s | %10s | %7s | %7s |\n", shape.name,
                payload, rate(iris_t).c_str(), micros(iris_l.p50_us).c_str(),
                micros(iris_l.p99_us).c_str(), rate(cq_t).c_str(), rate(bcq_t).c_str(),
                micros(bcq_l.p50_us).c_str(), micros(bcq_l.p99_us).c_str());
    std::fflush(stdout);
}

template<class M> void asleep_row(const Shape& shape, const char* payload, const Options& o)
{
    const Percentiles iris_l = median_latency<IrisQueue<M>, M>(shape, o.n_asleep, 2ms, o.repeats);
    const Percentiles bcq_l = median_latency<BCQ<M>, M>(shape, o.n_asleep, 2ms, o.repeats);
    std::printf("| %-13s | %-14s | %10s | %7s | %7s | %10s | %10s | %7s | %7s |\n", shape.name,
                payload, "", micros(iris_l.p50_us).c_str(), micros(iris_l.p99_us).c_str(), "", "",
                micros(bcq_l.p50_us).c_str(), micros(bcq_l.p99_us).c_str());
    std::fflush(stdout);
}

// CPU time of this thread, which other processes on the machine do not inflate.
int64_t thread_cpu_ns()
{
    timespec t {};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return int64_t(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// Cost of one operation with no other thread involved: the part of the figures above that does
// not depend on scheduling. Bursts of 512 into a warm queue of 1024, so that nothing waits.
template<class M> void cost_row(const char* payload, uint64_t n)
{
    constexpr uint64_t burst = 512;
    IrisQueue<M> iq(1, 1, 1024);
    CQ<M> cq(1, 1, 1024);
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    M m {};
    for (int r = 0; r < 4; ++r) { // the first round warms up
        int64_t spent[4] = {0, 0, 0, 0};
        for (uint64_t done = 0; done < n; done += burst) {
            int64_t t0 = thread_cpu_ns();
            for (uint64_t i = 0; i < burst; ++i) iq.send(0, make_msg<M>(i));
            int64_t t1 = thread_cpu_ns();
            for (uint64_t i = 0; i < burst; ++i) iq.subs[0].try_receive();
            int64_t t2 = thread_cpu_ns();
            for (uint64_t i = 0; i < burst; ++i) cq.send(0, make_msg<M>(i));
            int64_t t3 = thread_cpu_ns();
            for (uint64_t i = 0; i < burst; ++i) cq.queues[0]->try_dequeue(*cq.ctok[0], m);
            int64_t t4 = thread_cpu_ns();
            spent[0] += t1 - t0, spent[1] += t2 - t1, spent[2] += t3 - t2, spent[3] += t4 - t3;
        }
        if (r == 0) continue;
        for (int k = 0; k < 4; ++k) best[k] = std::min(best[k], double(spent[k]) / double(n));
    }
    std::printf("| %-14s | %12.1f | %12.1f | %12.1f | %12.1f |\n", payload, best[0], best[1],
                best[2], best[3]);
}

} // namespace

int main(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) {
            o.n_messages = 200'000;
            o.repeats = 1;
            o.n_latency = 2'000;
            o.n_asleep = 50;
        } else if (std::strcmp(argv[i], "--capacity") == 0 && i + 1 < argc) {
            o.capacity = size_t(std::strtoull(argv[++i], nullptr, 10));
        } else {
            std::fprintf(stderr, "usage: %s [--quick] [--capacity N]\n", argv[0]);
            return 2;
        }
    }
#if defined(__linux__)
    prctl(PR_SET_TIMERSLACK, 1UL); // sleep_for(2 ms) means 2 ms, not 2.05
#endif
    const Shape spsc {"SPSC 1->1", 1, 1}, mpsc {"MPSC 4->1", 4, 1}, fan {"fan-out 1->4", 1, 4};
    const Shape spsc_asleep {"SPSC asleep", 1, 1};
    frame_pool();

    double load[3] = {0, 0, 0};
    if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        std::fclose(f);
    }
    std::printf("iris::Bus vs moodycamel, %u hardware threads, load average %.1f; %" PRIu64
                " messages per throughput run (best of %d); %d latency samples per run (median "
                "run of %d by p99)\n",
                std::thread::hardware_concurrency(), load[0], o.n_messages, o.repeats, o.n_latency,
                o.repeats);
    std::printf("iris: lossless subscriptions, capacity %zu for throughput (1024 for latency), "
                "receive() (polls up to 50 us, then sleeps on a futex)\n",
                o.capacity);
    std::printf("CQ: ConcurrentQueue + tokens, try_dequeue polling (stands in for "
                "ReaderWriterQueue, which Debian 12 does not package); BCQ: "
                "BlockingConcurrentQueue, wait_dequeue; both unbounded (initial size 1024)\n\n");
    std::printf("| %-13s | %-14s | %10s | %7s | %7s | %10s | %10s | %7s | %7s |\n", "scenario",
                "payload", "iris msg/s", "p50 us", "p99 us", "CQ msg/s", "BCQ msg/s", "p50 us",
                "p99 us");
    std::printf("|---------------|----------------|------------|---------|---------|------------|"
                "------------|---------|---------|\n");
    for (const Shape& s : {spsc, mpsc, fan}) {
        row<uint64_t>(s, "8 B", o);
        row<Msg64>(s, "64 B", o);
        row<Frame>(s, "frame (Buffer)", o);
    }
    asleep_row<uint64_t>(spsc_asleep, "8 B, 2 ms gaps", o);

    std::printf(
        "\nsingle thread, CPU ns per operation (best of 3 rounds, warm queues, no waiting):\n\n");
    std::printf("| %-14s | %12s | %12s | %12s | %12s |\n", "payload", "iris publish",
                "iris receive", "CQ enqueue", "CQ dequeue");
    std::printf("|----------------|--------------|--------------|--------------|--------------|\n");
    const uint64_t n_cost = o.repeats == 1 ? 1 << 16 : 1 << 18;
    cost_row<uint64_t>("8 B", n_cost);
    cost_row<Msg64>("64 B", n_cost);
    cost_row<Frame>("frame (Buffer)", n_cost);
    std::printf("\nmsg/s: messages published per second (fan-out delivers each 4 times; 64 B and "
                "frame runs send half as many, fan-out a quarter). latency: one message every 5 "
                "us per producer (yield-paced); \"asleep\": every 2 ms, so the consumer sleeps "
                "in the kernel and the figure is the wake-up time\n");
    return 0;
}
