#include "core/bus.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Under ThreadSanitizer every atomic is ~10x slower; the assertions are the same.
#if defined(__SANITIZE_THREAD__)
constexpr int kMessages = 5000;
#else
constexpr int kMessages = 20000;
#endif

// A message that says who sent it and in which order.
struct Stamp
{
    uint32_t producer = 0;
    uint32_t seq = 0;
};

// Publishes K stamps from each of n_producers threads at once.
void run_producers(const iris::Topic<Stamp>& topic, int n_producers, int k,
                   std::chrono::nanoseconds timeout = 60s)
{
    std::vector<std::thread> threads;
    for (int p = 0; p < n_producers; ++p)
        threads.emplace_back([&, p] {
            for (int i = 0; i < k; ++i) topic.publish(Stamp {uint32_t(p), uint32_t(i)}, timeout);
        });
    for (auto& t : threads) t.join();
}

// What one consumer saw: per producer, the sequence numbers in arrival order.
struct Seen
{
    explicit Seen(int n_producers)
        : by_producer(size_t(n_producers))
    { }
    std::vector<std::vector<uint32_t>> by_producer;
    void add(const Stamp& s) { by_producer[s.producer].push_back(s.seq); }
};

} // namespace

// ---------------------------------------------------------------------------------------------
// Basics

TEST(Bus, FanOutDeliversTheSameBufferToEverySubscriberWithoutCopyingItsBytes)
{
    iris::Bus bus;
    auto frames = bus.topic<iris::Buffer>("video.frames");
    auto a = frames.subscribe({.name = "memory"});
    auto b = frames.subscribe({.delivery = iris::Delivery::latest, .capacity = 2, .name = "ui"});
    auto c = frames.subscribe({.name = "reasoning"});

    std::vector<uint8_t> pixels(640 * 480 * 3, 42);
    iris::Buffer frame = iris::Buffer::adopt(std::move(pixels));
    const uint8_t* bytes = frame.data();
    frames.publish(frame);

    for (auto* sub : {&a, &b, &c}) {
        std::optional<iris::Buffer> got = sub->try_receive();
        ASSERT_TRUE(got);
        EXPECT_EQ(got->data(), bytes);
        EXPECT_EQ(got->size(), 640u * 480u * 3u);
    }
    EXPECT_EQ(frame.use_count(), 1); // every delivered copy has been released again
}

TEST(Bus, ASubscriptionSeesOnlyMessagesPublishedAfterItSubscribed)
{
    iris::Bus bus;
    auto numbers = bus.topic<int>("numbers");
    numbers.publish(1); // nobody listens: counted, then gone
    auto sub = numbers.subscribe();
    numbers.publish(2);
    EXPECT_EQ(sub.try_receive(), 2);
    EXPECT_EQ(sub.try_receive(), std::nullopt);
    EXPECT_EQ(numbers.stats().published, 2u);
}

TEST(Bus, TopicsAreTypedAndANameCannotChangeItsType)
{
    iris::Bus bus;
    auto ints = bus.topic<int>("values");
    auto same = bus.topic<int>("values");
    auto sub = same.subscribe();
    ints.publish(5);
    EXPECT_EQ(sub.try_receive(), 5); // both handles are the same channel
    try {
        (void)bus.topic<double>("values");
        FAIL() << "expected a type mismatch";
    } catch (const iris::Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::invalid_argument);
        EXPECT_NE(std::string(e.what()).find("'values' carries int, not double"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW((void)bus.topic<int>(""), iris::Error);
}

TEST(Bus, BadCapacitiesAreRejectedAndOthersRoundUpToAPowerOfTwo)
{
    iris::Bus bus;
    auto t = bus.topic<int>("t");
    EXPECT_THROW(t.subscribe({.capacity = 0}), iris::Error);
    EXPECT_THROW(t.subscribe({.capacity = size_t(1) << 30}), iris::Error);
    EXPECT_EQ(t.subscribe({.capacity = 1}).stats().capacity, 2u);
    EXPECT_EQ(t.subscribe({.capacity = 100}).stats().capacity, 128u);
    EXPECT_THROW(iris::Topic<int>().publish(1), iris::Error); // an empty handle
}

TEST(Bus, StatsCountPublishedDeliveredDroppedAndTheHighWaterMark)
{
    iris::Bus bus;
    auto t = bus.topic<int>("counts");
    auto latest = t.subscribe({.delivery = iris::Delivery::latest, .capacity = 4, .name = "ui"});
    auto lossless = t.subscribe({.capacity = 16, .name = "memory"});
    for (int i = 0; i < 10; ++i) t.publish(i);
    // The latest queue keeps the newest four, in order.
    EXPECT_EQ(latest.try_receive(), 6);
    EXPECT_EQ(latest.try_receive(), 7);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(lossless.try_receive(), i);
    t.publish(10);

    const iris::SubscriptionStats l = latest.stats();
    EXPECT_EQ(l.name, "ui");
    EXPECT_EQ(l.delivery, iris::Delivery::latest);
    EXPECT_EQ(l.published, 11u);
    EXPECT_EQ(l.delivered, 2u);
    EXPECT_EQ(l.dropped, 6u); // 0..5 were evicted; 8, 9 and 10 are queued
    EXPECT_EQ(l.depth, 3u);
    EXPECT_EQ(l.depth_max, 4u);
    EXPECT_EQ(l.published, l.delivered + l.dropped + l.depth);

    const iris::SubscriptionStats m = lossless.stats();
    EXPECT_EQ(m.published, 11u);
    EXPECT_EQ(m.delivered, 10u);
    EXPECT_EQ(m.dropped, 0u);
    EXPECT_EQ(m.depth, 1u);
    EXPECT_EQ(m.depth_max, 10u);

    const iris::TopicStats s = t.stats();
    EXPECT_EQ(s.name, "counts");
    EXPECT_EQ(s.type, "int");
    EXPECT_EQ(s.published, 11u);
    EXPECT_EQ(s.failed, 0u);
    ASSERT_EQ(s.subscriptions.size(), 2u);
    EXPECT_EQ(s.subscriptions[0].name, "ui");
    EXPECT_EQ(s.subscriptions[1].name, "memory");
    ASSERT_EQ(bus.stats().size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Exact accounting under stress

TEST(Bus, LosslessDeliversEveryMessageExactlyOnceInProducerOrder)
{
    constexpr int n_producers = 4, n_consumers = 4;
    iris::Bus bus;
    auto topic = bus.topic<Stamp>("stress.lossless");
    // Small queues so that publishers really wait for room.
    std::vector<iris::Subscription<Stamp>> subs;
    for (int c = 0; c < n_consumers; ++c)
        subs.push_back(topic.subscribe({.capacity = 64, .name = iris::strfmt("c%d", c)}));
    std::vector<Seen> seen(n_consumers, Seen(n_producers));
    std::vector<std::thread> consumers;
    for (int c = 0; c < n_consumers; ++c)
        consumers.emplace_back([&, c] {
            for (int n = 0; n < n_producers * kMessages; ++n) {
                std::optional<Stamp> s = subs[size_t(c)].receive();
                ASSERT_TRUE(s) << "closed early";
                seen[size_t(c)].add(*s);
            }
        });
    run_producers(topic, n_producers, kMessages);
    for (auto& t : consumers) t.join();

    std::vector<uint32_t> expected(kMessages);
    std::iota(expected.begin(), expected.end(), 0u);
    for (int c = 0; c < n_consumers; ++c) {
        for (int p = 0; p < n_producers; ++p)
            ASSERT_EQ(seen[size_t(c)].by_producer[size_t(p)], expected)
                << "consumer " << c << ", producer " << p;
        const iris::SubscriptionStats s = subs[size_t(c)].stats();
        EXPECT_EQ(s.published, uint64_t(n_producers * kMessages));
        EXPECT_EQ(s.delivered, uint64_t(n_producers * kMessages));
        EXPECT_EQ(s.dropped, 0u);
        EXPECT_EQ(s.depth, 0u);
        EXPECT_GE(s.depth_max, 1u);
        EXPECT_LE(s.depth_max, 64u);
        EXPECT_EQ(subs[size_t(c)].try_receive(), std::nullopt);
    }
    EXPECT_EQ(topic.stats().published, uint64_t(n_producers * kMessages));
    EXPECT_EQ(topic.stats().failed, 0u);
}

TEST(Bus, ThreadsSharingOneSubscriptionSplitTheMessagesExactlyOnce)
{
    constexpr int n_producers = 2, n_receivers = 3;
    iris::Bus bus;
    auto topic = bus.topic<Stamp>("stress.shared");
    auto sub = topic.subscribe({.capacity = 32, .name = "pool"});
    std::vector<Seen> seen(n_receivers, Seen(n_producers));
    std::atomic<int> received {0};
    std::vector<std::thread> receivers;
    for (int r = 0; r < n_receivers; ++r)
        receivers.emplace_back([&, r] {
            while (std::optional<Stamp> s = sub.receive()) {
                seen[size_t(r)].add(*s);
                ++received;
            }
        });
    run_producers(topic, n_producers, kMessages);
    // Close only once every message reached a receiver: close discards what is still queued,
    // including a message a receiver has taken off the queue but not yet returned.
    while (received.load() != n_producers * kMessages) std::this_thread::sleep_for(1ms);
    bus.close();
    for (auto& t : receivers) t.join();

    for (int p = 0; p < n_producers; ++p) {
        std::vector<uint32_t> all;
        for (int r = 0; r < n_receivers; ++r) {
            const auto& got = seen[size_t(r)].by_producer[size_t(p)];
            // Each receiver still sees one producer's messages in order.
            EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
            all.insert(all.end(), got.begin(), got.end());
        }
        std::sort(all.begin(), all.end());
        std::vector<uint32_t> expected(kMessages);
        std::iota(expected.begin(), expected.end(), 0u);
        ASSERT_EQ(all, expected) << "producer " << p;
    }
}

TEST(Bus, LatestNeverBlocksThePublisherAndDeliveredPlusDroppedEqualsPublished)
{
    constexpr int n_producers = 4, n_consumers = 4;
    iris::Bus bus;
    auto topic = bus.topic<Stamp>("stress.latest");
    std::vector<iris::Subscription<Stamp>> subs;
    for (int c = 0; c < n_consumers; ++c)
        subs.push_back(topic.subscribe(
            {.delivery = iris::Delivery::latest, .capacity = 8, .name = iris::strfmt("c%d", c)}));
    // A stalled subscriber: nobody ever receives from it.
    auto stalled = topic.subscribe({.delivery = iris::Delivery::latest, .capacity = 4});

    std::vector<Seen> seen(n_consumers, Seen(n_producers));
    std::atomic<bool> done {false};
    std::vector<std::thread> consumers;
    for (int c = 0; c < n_consumers; ++c)
        consumers.emplace_back([&, c] {
            for (;;) {
                std::optional<Stamp> s = subs[size_t(c)].receive_for(1ms);
                if (s) {
                    seen[size_t(c)].add(*s);
                    if (c % 2 == 1) std::this_thread::yield(); // slow consumers drop more
                } else if (done.load()) {
                    break; // publishing ended and the queue stayed empty for 1 ms
                }
            }
        });
    // A zero timeout makes any wait a failure: `latest` must never need one.
    std::atomic<int> not_ok {0};
    std::vector<std::thread> producers;
    for (int p = 0; p < n_producers; ++p)
        producers.emplace_back([&, p] {
            for (int i = 0; i < kMessages; ++i)
                if (!topic.try_publish(Stamp {uint32_t(p), uint32_t(i)}, 0ns).ok()) ++not_ok;
        });
    for (auto& t : producers) t.join();
    done = true;
    for (auto& t : consumers) t.join();

    EXPECT_EQ(not_ok.load(), 0);
    const uint64_t published = uint64_t(n_producers * kMessages);
    for (int c = 0; c < n_consumers; ++c) {
        const iris::SubscriptionStats s = subs[size_t(c)].stats();
        EXPECT_EQ(s.published, published);
        EXPECT_EQ(s.depth, 0u);
        EXPECT_EQ(s.delivered + s.dropped, published) << "consumer " << c;
        uint64_t received = 0;
        for (const auto& got : seen[size_t(c)].by_producer) {
            // Drops leave gaps but never reorder or repeat.
            EXPECT_TRUE(std::adjacent_find(got.begin(), got.end(), std::greater_equal<uint32_t>())
                        == got.end());
            received += got.size();
        }
        EXPECT_EQ(received, s.delivered);
    }
    const iris::SubscriptionStats st = stalled.stats();
    EXPECT_EQ(st.published, published);
    EXPECT_EQ(st.delivered, 0u);
    EXPECT_EQ(st.depth, 4u);
    EXPECT_EQ(st.dropped, published - 4);
    EXPECT_EQ(st.depth_max, 4u);
}

// ---------------------------------------------------------------------------------------------
// Timeouts

TEST(Bus, ALosslessPublishTimesOutWithAnErrorNamingTheFullSubscriber)
{
    iris::Bus bus;
    auto topic = bus.topic<int>("asr.text");
    auto full = topic.subscribe({.capacity = 2, .name = "memory"});
    auto other = topic.subscribe({.delivery = iris::Delivery::latest, .capacity = 2, .name = "ui"});
    topic.publish(1);
    topic.publish(2);
    try {
        topic.publish(3, 20ms);
        FAIL() << "expected a timeout";
    } catch (const iris::Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::timeout);
        const std::string what = e.what();
        EXPECT_NE(what.find("'asr.text'"), std::string::npos) << what;
        EXPECT_NE(what.find("timed out after 20.000 ms"), std::string::npos) << what;
        EXPECT_NE(what.find("not delivered to 1 full subscriber(s): 'memory' (lossless, "
                            "capacity 2)"),
                  std::string::npos)
            << what;
        EXPECT_NE(what.find("delivered to 1 other"), std::string::npos) << what;
    }
    const iris::PublishResult r = topic.try_publish(4, 0ns);
    EXPECT_EQ(r.status, iris::PublishStatus::timeout);
    EXPECT_EQ(r.n_refused, 1u);
    EXPECT_EQ(r.n_delivered, 1u); // the latest subscriber got it

    // Nothing was dropped silently: the refusals are counted and the queue is intact.
    const iris::SubscriptionStats s = full.stats();
    EXPECT_EQ(s.published, 4u);
    EXPECT_EQ(s.dropped, 2u);
    EXPECT_EQ(s.depth, 2u);
    EXPECT_EQ(full.try_receive(), 1);
    EXPECT_EQ(full.try_receive(), 2);
    EXPECT_EQ(other.try_receive(), 3);
    EXPECT_EQ(other.try_receive(), 4);
    EXPECT_EQ(topic.stats().failed, 2u);
    // With room again, publishing works.
    EXPECT_TRUE(topic.try_publish(5, 0ns).ok());
}

TEST(Bus, ReceiveForReturnsNothingAfterItsTimeoutAndTheSubscriptionStaysOpen)
{
    iris::Bus bus;
    auto topic = bus.topic<int>("quiet");
    auto sub = topic.subscribe({.spin = 0us});
    EXPECT_EQ(sub.receive_for(5ms), std::nullopt);
    EXPECT_FALSE(sub.closed());
    topic.publish(9);
    EXPECT_EQ(sub.receive_for(5ms), 9);
}

TEST(Bus, AWaitingConsumerWakesForAMessagePublishedLater)
{
    iris::Bus bus;
    auto topic = bus.topic<int>("later");
    auto sub = topic.subscribe({.spin = 0us}); // sleep at once
    std::thread consumer([&] { EXPECT_EQ(sub.receive(), 7); });
    std::this_thread::sleep_for(5ms);
    topic.publish(7);
    consumer.join();
}

// ---------------------------------------------------------------------------------------------
// Shutdown

TEST(Bus, CloseWakesBlockedProducersAndConsumersAndNothingIsDeliveredAfterIt)
{
    iris::Bus bus;
    auto busy = bus.topic<int>("busy");
    auto idle = bus.topic<int>("idle");
    auto full = busy.subscribe({.capacity = 2, .name = "stuck"});
    busy.publish(1);
    busy.publish(2);
    auto empty1 = idle.subscribe({.spin = 0us});
    auto empty2 = idle.subscribe();

    std::atomic<int> closed_errors {0}, woken_consumers {0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) // producers stuck on a full lossless queue, for an hour
        threads.emplace_back([&] {
            try {
                busy.publish(3, std::chrono::hours(1));
            } catch (const iris::Error& e) {
                if (e.kind() == iris::ErrorKind::closed) ++closed_errors;
            }
        });
    for (auto* sub : {&empty1, &empty2}) // consumers waiting forever on empty queues
        threads.emplace_back([&, sub] {
            if (!sub->receive()) ++woken_consumers;
        });
    std::this_thread::sleep_for(20ms); // let them block (the outcome is the same if they don't)
    bus.close();
    for (auto& t : threads) t.join(); // nobody is left behind

    EXPECT_EQ(closed_errors.load(), 3);
    EXPECT_EQ(woken_consumers.load(), 2);
    EXPECT_TRUE(bus.closed());
    EXPECT_TRUE(full.closed());
    // The two queued messages were discarded, not delivered, and are counted.
    EXPECT_EQ(full.try_receive(), std::nullopt);
    EXPECT_EQ(full.receive(), std::nullopt);
    const iris::SubscriptionStats s = full.stats();
    EXPECT_EQ(s.delivered, 0u);
    EXPECT_EQ(s.depth, 0u);
    EXPECT_EQ(s.published, s.delivered + s.dropped + s.depth);
    // After close: publish fails clearly, new subscriptions and topics are closed.
    try {
        busy.publish(4);
        FAIL() << "expected Error(closed)";
    } catch (const iris::Error& e) {
        EXPECT_EQ(e.kind(), iris::ErrorKind::closed);
        EXPECT_NE(std::string(e.what()).find("'busy'"), std::string::npos) << e.what();
    }
    EXPECT_EQ(busy.try_publish(4).status, iris::PublishStatus::closed);
    EXPECT_TRUE(busy.subscribe().closed());
    EXPECT_EQ(bus.topic<int>("new").try_publish(1).status, iris::PublishStatus::closed);
    bus.close(); // idempotent
}

TEST(Bus, CloseWhileProducersAndConsumersRunLosesNothingSilently)
{
    constexpr int n_producers = 4, n_consumers = 4;
    iris::Bus bus;
    auto topic = bus.topic<Stamp>("stress.close");
    std::vector<iris::Subscription<Stamp>> subs;
    for (int c = 0; c < n_consumers; ++c) subs.push_back(topic.subscribe({.capacity = 16}));
    std::vector<uint64_t> received(n_consumers, 0);
    std::vector<std::thread> threads;
    for (int c = 0; c < n_consumers; ++c)
        threads.emplace_back([&, c] {
            while (subs[size_t(c)].receive()) ++received[size_t(c)];
        });
    std::atomic<uint64_t> ok {0}, failed {0};
    for (int p = 0; p < n_producers; ++p)
        threads.emplace_back([&, p] {
            for (uint32_t i = 0;; ++i) {
                const iris::PublishResult r = topic.try_publish(Stamp {uint32_t(p), i}, 10s);
                if (r.status == iris::PublishStatus::closed) {
                    ++failed;
                    return;
                }
                ++ok;
            }
        });
    while (ok.load() < 2000) std::this_thread::yield();
    bus.close();
    for (auto& t : threads) t.join();

    EXPECT_EQ(failed.load(), uint64_t(n_producers));
    for (int c = 0; c < n_consumers; ++c) {
        const iris::SubscriptionStats s = subs[size_t(c)].stats();
        EXPECT_EQ(s.delivered, received[size_t(c)]);
        EXPECT_EQ(s.published, s.delivered + s.dropped + s.depth);
        EXPECT_EQ(subs[size_t(c)].try_receive(), std::nullopt);
    }
}

TEST(Bus, UnsubscribingReleasesAPublisherWaitingOnThatSubscriber)
{
    iris::Bus bus;
    auto topic = bus.topic<int>("t");
    auto stuck = topic.subscribe({.capacity = 2, .name = "stuck"});
    auto fine = topic.subscribe({.name = "fine"});
    topic.publish(1);
    topic.publish(2);
    iris::PublishResult result;
    std::thread producer([&] { result = topic.try_publish(3, std::chrono::hours(1)); });
    std::this_thread::sleep_for(20ms);
    stuck.unsubscribe();
    producer.join(); // returns long before its hour

    EXPECT_TRUE(result.ok());
    EXPECT_EQ(result.n_refused, 0u);
    EXPECT_EQ(result.n_delivered, 1u);
    EXPECT_EQ(fine.try_receive(), 1);
    EXPECT_TRUE(stuck.closed());
    EXPECT_EQ(stuck.try_receive(), std::nullopt);
    EXPECT_EQ(stuck.stats().dropped, 2u); // its queued messages were discarded and counted
    EXPECT_EQ(topic.stats().subscriptions.size(), 1u);
}

TEST(Bus, SubscribingAndUnsubscribingWhilePublishingKeepsEverySubscriptionConsistent)
{
    constexpr int n_producers = 3;
    iris::Bus bus;
    auto topic = bus.topic<Stamp>("churn");
    std::atomic<bool> stop {false};
    std::vector<std::thread> producers;
    for (int p = 0; p < n_producers; ++p)
        producers.emplace_back([&, p] {
            for (uint32_t i = 0; !stop.load(); ++i) topic.publish(Stamp {uint32_t(p), i}, 60s);
        });
    std::thread churn([&] {
        for (int round = 0; round < 200; ++round) {
            auto sub = topic.subscribe(
                {.delivery = round % 2 ? iris::Delivery::latest : iris::Delivery::lossless,
                 .capacity = 8});
            std::vector<int64_t> last(n_producers, -1);
            for (int n = 0; n < 50; ++n) {
                std::optional<Stamp> s = sub.receive_for(10ms);
                if (!s) continue;
                ASSERT_GT(int64_t(s->seq), last[s->producer]); // in order, no repeats
                last[s->producer] = s->seq;
            }
            sub.unsubscribe();
            const iris::SubscriptionStats st = sub.stats();
            EXPECT_EQ(st.published, st.delivered + st.dropped + st.depth);
        }
    });
    churn.join();
    stop = true;
    for (auto& t : producers) t.join();
    EXPECT_TRUE(topic.stats().subscriptions.empty());
}

TEST(Bus, DroppedAndDiscardedPayloadsAreReleased)
{
    iris::Buffer frame = iris::Buffer::copy_of("frame", 5);
    {
        iris::Bus bus;
        auto topic = bus.topic<iris::Buffer>("frames");
        auto latest = topic.subscribe({.delivery = iris::Delivery::latest, .capacity = 2});
        auto lossless = topic.subscribe({.capacity = 4});
        for (int i = 0; i < 10; ++i) (void)topic.try_publish(frame, 0ns);
        EXPECT_EQ(frame.use_count(), 1 + 2 + 4); // the newest 2, and the first 4
        latest.unsubscribe();
        EXPECT_EQ(frame.use_count(), 1 + 4);
        bus.close();
        EXPECT_EQ(frame.use_count(), 1);
    }
    EXPECT_EQ(frame.use_count(), 1);
}

TEST(Bus, HandlesThatOutliveTheBusBehaveAsClosed)
{
    iris::Topic<int> topic;
    iris::Subscription<int> sub;
    {
        iris::Bus bus;
        topic = bus.topic<int>("t");
        sub = topic.subscribe();
        topic.publish(1);
    }
    EXPECT_TRUE(sub.closed());
    EXPECT_EQ(sub.receive(), std::nullopt);
    EXPECT_EQ(topic.try_publish(2).status, iris::PublishStatus::closed);
    iris::Subscription<int> empty;
    EXPECT_TRUE(empty.closed());
    EXPECT_EQ(empty.receive(), std::nullopt);
}
