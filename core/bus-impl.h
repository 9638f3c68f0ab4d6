// core/bus-impl — the message bus's internals: the rings, the event counts, the hazard slots and
// the publish path, and the bodies of the templates that core/bus.h declares. Included at the end
// of core/bus.h, which it completes; not part of the API.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

namespace iris {
namespace detail {

using Clock = std::chrono::steady_clock;
inline constexpr size_t kCacheLine = 64;

inline void cpu_relax() noexcept
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Asymmetric fences. Each StoreLoad handshake in the bus (a publisher's store then its check for
// sleepers; a publisher's hazard slot then its re-read of the subscriber list) has a hot side,
// run for every message, and a rare side (a thread about to sleep, a subscriber list change).
// The hot side calls light_barrier(), which only stops the compiler; the rare side calls
// heavy_barrier(), which makes every running thread of the process execute a full fence
// (Linux membarrier). Where membarrier is refused, both are plain seq_cst fences.
extern std::atomic<bool> asymmetric_barriers; // set once, before the first Bus exists
#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer does not model fences; it does model a read-modify-write of a shared word.
extern std::atomic<int> tsan_fence_word;
#endif
inline void full_fence() noexcept
{
#if defined(__SANITIZE_THREAD__)
    tsan_fence_word.fetch_add(0, std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}
inline void light_barrier() noexcept
{
    if (asymmetric_barriers.load(std::memory_order_relaxed))
        std::atomic_signal_fence(std::memory_order_seq_cst);
    else
        full_fence();
}
void heavy_barrier() noexcept;
void init_barriers() noexcept;

// Spinning pays only while the thread being waited for runs; more spinners than spare CPUs just
// take their time away. A waiter spins only if it gets one of hardware_concurrency() / 2 (at
// least one) process-wide spinning places; otherwise it sleeps at once.
inline constexpr std::chrono::nanoseconds kBusySpin {std::chrono::microseconds(2)};
inline constexpr std::chrono::nanoseconds kYieldLost {std::chrono::microseconds(20)};
void yield_cpu() noexcept;
bool start_spinning() noexcept;
void stop_spinning() noexcept;

// Polls ready() until it returns true (then returns true) or until `end`. It pauses for
// kBusySpin, then yields the CPU between polls, so that the thread it waits for can run if it
// shares this CPU. When a yield took longer than yield_lost, some other thread had the CPU:
// it stops early, because on a contended CPU a sleeping waiter is woken sooner than a yielding
// one is given the CPU back.
template<class Ready> bool spin_until(Clock::time_point end, Ready&& ready) noexcept
{
    const Clock::time_point start = Clock::now();
    for (uint32_t n = 1;; ++n) {
        if (ready()) return true;
        cpu_relax();
        if ((n & 15) == 0) {
            const Clock::time_point now = Clock::now();
            if (now >= end) return false;
            if (now - start >= kBusySpin) break;
        }
    }
    for (;;) {
        if (ready()) return true;
        const Clock::time_point before = Clock::now();
        yield_cpu();
        const Clock::time_point after = Clock::now();
        if (after >= end || after - before >= kYieldLost) return ready();
    }
}

class SpinPlace
{
public:
    SpinPlace() = default;
    ~SpinPlace() { release(); }
    SpinPlace(const SpinPlace&) = delete;
    SpinPlace& operator=(const SpinPlace&) = delete;
    bool take() noexcept { return held_ = held_ || start_spinning(); }
    bool held() const noexcept { return held_; }
    void release() noexcept
    {
        if (held_) stop_spinning();
        held_ = false;
    }

private:
    bool held_ = false;
};

// now + d without overflow; d == nanoseconds::max() means "no deadline".
Clock::time_point deadline_after(std::chrono::nanoseconds d) noexcept;

// A futex-based event count: a waiter announces itself, re-checks its condition, then sleeps
// until notified. A notifier pays a load when nobody sleeps, and one wake-up call per group of
// sleepers: it takes them off the count as it bumps the epoch, so the messages that follow
// before they run do not each issue another system call. The waiter's heavy barrier after its
// increment and the notifier's light barrier after making the condition true guarantee that
// either the notifier sees the waiter or the waiter sees the condition.
class EventCount
{
public:
    uint32_t prepare_wait() noexcept
    {
        const auto key = uint32_t(state_.fetch_add(kOneWaiter, std::memory_order_seq_cst));
        heavy_barrier();
        return key;
    }
    // Withdraws a waiter that prepared with `key` and will not sleep (any more). A changed epoch
    // means a notifier already took it off the count.
    void cancel_wait(uint32_t key) noexcept
    {
        uint64_t s = state_.load(std::memory_order_relaxed);
        while (uint32_t(s) == key && (s >> 32) != 0)
            if (state_.compare_exchange_weak(s, s - kOneWaiter, std::memory_order_relaxed)) return;
    }
    // Sleeps until notified after prepare_wait() returned `key`, or until `deadline`; may return
    // early, so callers re-check their condition and the clock.
    void wait(uint32_t key, Clock::time_point deadline) noexcept;
    // Call after making the condition true.
    void notify_all() noexcept
    {
        light_barrier();
        if ((state_.load(std::memory_order_relaxed) >> 32) != 0) [[unlikely]]
            notify_slow();
    }

private:
    static constexpr uint64_t kOneWaiter = uint64_t(1) << 32;
    void notify_slow() noexcept;
    // Low half: the epoch, which is the futex word (little-endian); high half: waiters not yet
    // notified.
    std::atomic<uint64_t> state_ {0};
};

// Bounded MPMC ring with a sequence number per slot (D. Vyukov). Multiple producers because
// any thread may publish; multiple consumers because a `latest` publisher evicts the oldest.
// Positions are 64-bit and never wrap. A slot is free for position p when seq == p, and holds
// the message of position p when seq == p + 1.
template<class T> class Ring
{
public:
    explicit Ring(uint64_t capacity)
        : mask_(capacity - 1)
        , slots_(std::make_unique<Slot[]>(capacity))
    {
        for (uint64_t i = 0; i < capacity; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
    }
    ~Ring()
    {
        const uint64_t tail = tail_.load(std::memory_order_acquire);
        for (uint64_t p = head_.load(std::memory_order_acquire); p != tail; ++p) {
            Slot& s = slots_[p & mask_];
            if (s.seq.load(std::memory_order_acquire) == p + 1) s.value.~T();
        }
    }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    // Moves `value` in and sets *pos to its position, or returns false (and leaves `value`) when
    // the slot at the tail is not free yet.
    bool try_push(T& value, uint64_t* pos_out) noexcept
    {
        uint64_t pos = tail_.load(std::memory_order_relaxed);
        Slot* s;
        for (;;) {
            s = &slots_[pos & mask_];
            const int64_t dif = int64_t(s->seq.load(std::memory_order_acquire) - pos);
            if (dif == 0) {
                if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
            } else if (dif < 0) {
                return false;
            } else {
                pos = tail_.load(std::memory_order_relaxed);
            }
        }
        ::new (static_cast<void*>(&s->value)) T(std::move(value));
        s->seq.store(pos + 1, std::memory_order_release);
        *pos_out = pos;
        return true;
    }

    // Moves the oldest message into `out`, or returns false when the head slot holds none yet.
    // (An out-parameter: GCC returns a std::optional<T> through a byte store and a wider load,
    // which stalls store-to-load forwarding on every message.)
    bool try_pop(std::optional<T>& out) noexcept
    {
        uint64_t pos = head_.load(std::memory_order_relaxed);
        Slot* s;
        for (;;) {
            s = &slots_[pos & mask_];
            const int64_t dif = int64_t(s->seq.load(std::memory_order_acquire) - (pos + 1));
            if (dif == 0) {
                if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
            } else if (dif < 0) {
                return false;
            } else {
                pos = head_.load(std::memory_order_relaxed);
            }
        }
        out.emplace(std::move(s->value));
        s->value.~T();
        s->seq.store(pos + mask_ + 1, std::memory_order_release);
        return true;
    }

    // Whether the head slot holds a message / the tail slot is free.
    bool readable() const noexcept
    {
        const uint64_t pos = head_.load(std::memory_order_acquire);
        return slots_[pos & mask_].seq.load(std::memory_order_acquire) == pos + 1;
    }
    bool writable() const noexcept
    {
        const uint64_t pos = tail_.load(std::memory_order_acquire);
        return slots_[pos & mask_].seq.load(std::memory_order_acquire) == pos;
    }
    // Whether the n slots from the tail on are all free (checked at the last of them).
    bool writable_run(uint64_t n) const noexcept
    {
        const uint64_t pos = tail_.load(std::memory_order_relaxed) + n - 1;
        return int64_t(slots_[pos & mask_].seq.load(std::memory_order_relaxed) - pos) >= 0;
    }
    uint64_t head() const noexcept { return head_.load(std::memory_order_relaxed); }
    uint64_t tail() const noexcept { return tail_.load(std::memory_order_relaxed); }
    uint64_t capacity() const noexcept { return mask_ + 1; }

private:
    struct Slot
    {
        Slot() { }
        ~Slot() { }
        std::atomic<uint64_t> seq {0};
        union {
            T value;
        };
    };
    const uint64_t mask_;
    const std::unique_ptr<Slot[]> slots_;
    alignas(kCacheLine) std::atomic<uint64_t> tail_ {0}; // producers' line
    alignas(kCacheLine) std::atomic<uint64_t> head_ {0}; // consumers' line
    char pad_[kCacheLine - sizeof(std::atomic<uint64_t>)];
};

// The type-independent part of a subscription.
class SubCore
{
public:
    explicit SubCore(const SubscribeOptions& options);
    virtual ~SubCore() = default;
    SubCore(const SubCore&) = delete;
    SubCore& operator=(const SubCore&) = delete;

    bool is_closed() const noexcept { return closed_.load(std::memory_order_seq_cst); }
    // Marks closed, wakes every waiter, discards what is queued. Idempotent.
    void close() noexcept;
    SubscriptionStats stats() const;

    const std::string name_;
    const Delivery delivery_;
    const std::chrono::nanoseconds spin_;

    // Read on every operation, written only by sleepers and close.
    alignas(kCacheLine) std::atomic<bool> closed_ {false};
    EventCount not_empty_; // consumers sleep here
    EventCount not_full_; // lossless publishers sleep here

    // Written by publishers on the slow paths (a new high-water mark, eviction, refusal).
    alignas(kCacheLine) std::atomic<uint64_t> head_seen_ {0}; // a recent head, to skip most checks
    std::atomic<uint64_t> depth_max_ {0};
    std::atomic<uint64_t> evicted_ {0};
    std::atomic<uint64_t> refused_ {0};
    std::atomic<uint64_t> discarded_ {0}; // popped but not delivered because of close

    virtual uint64_t capacity() const noexcept = 0;

protected:
    virtual uint64_t drain() noexcept = 0; // pops and destroys everything queued
    virtual uint64_t head() const noexcept = 0;
    virtual uint64_t tail() const noexcept = 0;
};

// A subscriber list, immutable once installed. The snapshot owns its subscriptions, so a
// publisher that holds it may use them even after they unsubscribed.
struct Snapshot
{
    std::vector<std::shared_ptr<SubCore>> subs;
};

// Hazard slots: a publisher writes the snapshot it is about to use into a slot of its thread's
// record (a plain store), and a subscriber-list change frees a replaced snapshot only when no
// slot names it. This keeps shared counters (and their cache-line traffic) off the publish path.
// Records belong to threads and are reused after a thread exits; they live as long as the
// process. Slots nest, in case a message's copy constructor publishes.
struct alignas(kCacheLine) HazardRecord // one line each: its owner writes it on every publish
{
    static constexpr int kNSlots = 4;
    // Not `slots`: Qt defines that word as a macro, and this header may follow Qt's.
    std::atomic<const void*> slot[kNSlots] = {}; // slot 0 unless publishes nest
    std::atomic<bool> in_use {false};
    uint32_t index = 0; // 0, 1, 2... in creation order; picks a publish counter
    HazardRecord* next = nullptr; // set before the record is published
};
inline thread_local HazardRecord* this_thread_hazards = nullptr;
HazardRecord* acquire_hazard_record(); // for this thread, on its first publish

// The type-independent part of a topic.
class TopicCore
{
public:
    TopicCore(std::string name, std::type_index type, std::string type_name, bool closed);
    ~TopicCore();
    TopicCore(const TopicCore&) = delete;
    TopicCore& operator=(const TopicCore&) = delete;

    void attach(std::shared_ptr<SubCore> sub);
    void detach(SubCore* sub) noexcept;
    void close() noexcept;
    TopicStats stats() const;
    bool is_closed() const noexcept { return closed_.load(std::memory_order_acquire); }

    const std::string name_;
    const std::type_index type_;
    const std::string type_name_;

    // Publish counts, one per publishing thread (by hazard record index) so that counting is a
    // plain increment by the only writer rather than a locked one on a shared line; threads past
    // the first kNCounters share the last, atomically.
    static constexpr uint32_t kNCounters = 16;
    void count_publish(uint32_t record_index) noexcept
    {
        if (record_index < kNCounters - 1) [[likely]] {
            std::atomic<uint64_t>& n = published_[record_index].n;
            n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        } else {
            published_[kNCounters - 1].n.fetch_add(1, std::memory_order_relaxed);
        }
    }

    // Read by every publish, written only by subscribe, unsubscribe and close.
    alignas(kCacheLine) std::atomic<bool> closed_;
    std::atomic<const Snapshot*> current_ {nullptr};
    std::atomic<uint64_t> failed_ {0}; // written only when a publish fails
    struct alignas(kCacheLine) Counter
    {
        std::atomic<uint64_t> n {0};
    };
    Counter published_[kNCounters];

private:
    void install_locked(); // publishes a new Snapshot of subs_, retires the old one
    void reclaim_locked() noexcept; // frees retired snapshots that no hazard slot names
    alignas(kCacheLine) mutable std::mutex mutex_;
    std::vector<std::shared_ptr<SubCore>> subs_; // guarded by mutex_
    std::vector<const Snapshot*> retired_; // guarded by mutex_
};

// A free slot of this thread's record, past slot 0 (publishes nest); throws if none is left.
std::atomic<const void*>* nested_hazard_slot(HazardRecord& record, const TopicCore& topic);

// Holds the topic's current snapshot in a hazard slot for the duration of one publish. The
// common case uses slot 0 at a fixed address: a depth counter would chain every publish to the
// previous one through a store and a load.
class SnapshotPin
{
public:
    explicit SnapshotPin(const TopicCore& topic)
    {
        HazardRecord* record = this_thread_hazards;
        if (record == nullptr) [[unlikely]]
            record = acquire_hazard_record();
        slot_ = &record->slot[0];
        if (slot_->load(std::memory_order_relaxed) != nullptr) [[unlikely]]
            slot_ = nested_hazard_slot(*record, topic);
        const Snapshot* s = topic.current_.load(std::memory_order_acquire);
        for (;;) { // announce, then make sure it was still current once announced
            slot_->store(s, std::memory_order_release);
            light_barrier();
            const Snapshot* again = topic.current_.load(std::memory_order_acquire);
            if (again == s) break;
            s = again;
        }
        snapshot_ = s;
    }
    ~SnapshotPin() { slot_->store(nullptr, std::memory_order_release); }
    uint32_t record_index() const noexcept { return this_thread_hazards->index; }
    SnapshotPin(const SnapshotPin&) = delete;
    SnapshotPin& operator=(const SnapshotPin&) = delete;
    const Snapshot& operator*() const noexcept { return *snapshot_; }

private:
    std::atomic<const void*>* slot_;
    const Snapshot* snapshot_;
};

std::string type_name(const std::type_info& type); // demangled

[[noreturn]] void throw_empty_handle(const char* what);
[[noreturn]] void throw_publish_failure(const TopicCore& topic, const PublishResult& result,
                                        std::chrono::nanoseconds timeout, const std::string& why);
void describe_refusal(std::string* why, const SubCore& sub, bool closed);
uint64_t checked_capacity(const SubscribeOptions& options, const std::string& topic);

// What a publish's slow path needs and reports.
struct PushContext
{
    TopicCore& topic;
    Clock::time_point deadline; // min(): not computed yet (only a wait needs it)
    std::chrono::nanoseconds timeout;
    std::string* why; // receives the failure description, or null
    PublishStatus status = PublishStatus::ok;
    uint32_t n_refused = 0;
};

// Short spin a lossless publisher allows itself before it sleeps on a full queue.
inline constexpr std::chrono::nanoseconds kPublishSpin {std::chrono::microseconds(20)};

template<class T> class SubState final : public SubCore
{
public:
    SubState(const SubscribeOptions& options, uint64_t capacity)
        : SubCore(options)
        , ring_(capacity)
    { }

    // Publisher side. Moves from `value` and returns true when the message is queued.
    bool push(T& value, PushContext& context) noexcept
    {
        uint64_t pos;
        if (!is_closed() && ring_.try_push(value, &pos)) [[likely]] {
            pushed(pos);
            return true;
        }
        return push_slow(value, context);
    }

    // Consumer side: fill `out` and return true, or return false (empty or closed).
    bool try_receive(std::optional<T>& out) noexcept
    {
        if (is_closed()) [[unlikely]]
            return false;
        if (!ring_.try_pop(out)) return false;
        not_full_.notify_all();
        if (is_closed()) [[unlikely]] { // close raced with the pop: it must not be delivered
            out.reset();
            discarded_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        return true;
    }

    bool receive_until(Clock::time_point deadline, std::optional<T>& out) noexcept
    {
        return try_receive(out) || receive_slow(deadline, out);
    }

private:
    [[gnu::noinline]] bool receive_slow(Clock::time_point deadline, std::optional<T>& out) noexcept
    {
        if (spin_.count() > 0) {
            SpinPlace place;
            if (place.take()) {
                bool got = false;
                spin_until(std::min(Clock::now() + spin_, deadline), [&] {
                    got = try_receive(out);
                    return got || is_closed();
                });
                if (got) return true;
            }
        }
        for (;;) {
            if (try_receive(out)) return true;
            if (is_closed()) return false;
            const uint32_t key = not_empty_.prepare_wait();
            if (is_closed() || ring_.readable()) {
                not_empty_.cancel_wait(key);
                continue;
            }
            if (Clock::now() >= deadline) {
                not_empty_.cancel_wait(key);
                return false;
            }
            not_empty_.wait(key, deadline);
        }
    }

    uint64_t drain() noexcept override
    {
        uint64_t n = 0;
        for (std::optional<T> dropped; ring_.try_pop(dropped); dropped.reset()) ++n;
        not_full_.notify_all();
        return n;
    }
    uint64_t head() const noexcept override { return ring_.head(); }
    uint64_t tail() const noexcept override { return ring_.tail(); }
    uint64_t capacity() const noexcept override { return ring_.capacity(); }

    // After a push at `pos`: wake a sleeping consumer, track the high-water mark. head_seen_
    // is a stale lower bound of the head, so the consumer's line is read only when the depth
    // might be a new maximum.
    void pushed(uint64_t pos) noexcept
    {
        not_empty_.notify_all();
        const int64_t upper = int64_t(pos + 1 - head_seen_.load(std::memory_order_relaxed));
        if (upper > int64_t(depth_max_.load(std::memory_order_relaxed))) [[unlikely]]
            note_depth(pos);
    }

    [[gnu::noinline]] void note_depth(uint64_t pos) noexcept
    {
        const uint64_t head = ring_.head();
        head_seen_.store(head, std::memory_order_relaxed);
        if (pos + 1 <= head) return;
        const uint64_t depth = pos + 1 - head;
        uint64_t max = depth_max_.load(std::memory_order_relaxed);
        while (depth > max
               && !depth_max_.compare_exchange_weak(max, depth, std::memory_order_relaxed)) { }
    }

    [[gnu::noinline]] bool push_slow(T& value, PushContext& context) noexcept
    {
        uint64_t pos;
        bool waited = false;
        for (;;) {
            if (is_closed()) {
                if (context.topic.is_closed()) { // the bus closed under us: say so
                    ++context.n_refused;
                    context.status = PublishStatus::closed;
                    describe_refusal(context.why, *this, true);
                }
                return false; // unsubscribed: it is simply no longer a subscriber
            }
            if (ring_.try_push(value, &pos)) {
                pushed(pos);
                return true;
            }
            if (delivery_ == Delivery::latest) {
                // Full: drop the oldest. When the ring only looks full because a consumer is
                // still moving a message out of the tail slot, wait for it instead.
                const uint64_t tail = ring_.tail();
                if (int64_t(tail - ring_.head()) >= int64_t(ring_.capacity())) {
                    std::optional<T> oldest;
                    if (ring_.try_pop(oldest)) evicted_.fetch_add(1, std::memory_order_relaxed);
                } else {
                    cpu_relax();
                }
                continue;
            }
            if (!waited && context.deadline == Clock::time_point::min())
                context.deadline = deadline_after(context.timeout);
            const Clock::time_point now = Clock::now(); // after the deadline: a zero timeout fails
            if (now >= context.deadline) {
                refused_.fetch_add(1, std::memory_order_relaxed);
                ++context.n_refused;
                if (context.status == PublishStatus::ok) context.status = PublishStatus::timeout;
                describe_refusal(context.why, *this, false);
                return false;
            }
            if (!waited) {
                waited = true;
                SpinPlace place;
                if (place.take()) {
                    // Wait for a run of free slots, not just one: refilling slot by slot right
                    // behind the consumer would bounce each cache line between two cores twice.
                    const uint64_t run = std::min<uint64_t>(ring_.capacity() / 4, 64);
                    spin_until(std::min(now + kPublishSpin, context.deadline),
                               [&] { return ring_.writable_run(run) || is_closed(); });
                    continue;
                }
            }
            const uint32_t key = not_full_.prepare_wait();
            if (is_closed() || ring_.writable()) {
                not_full_.cancel_wait(key);
                continue;
            }
            not_full_.wait(key, context.deadline);
        }
    }

    Ring<T> ring_;
};

// Fans one message out to every current subscriber: copies for all but the last, which gets
// the original moved in. With Buffer or shared_ptr payloads a copy is a reference increment.
//
// The outcome comes back packed in one register: a PublishResult assembled in memory from a
// byte and two words and then read back whole stalls store-to-load forwarding, which cost more
// than the rest of an uncontended publish. [status:8 | n_refused:24 | n_delivered:32]
inline uint64_t pack_result(PublishStatus status, uint32_t n_delivered, uint32_t n_refused)
{
    return uint64_t(status) << 56 | uint64_t(n_refused & 0xffffff) << 32 | n_delivered;
}
inline PublishResult unpack_result(uint64_t packed)
{
    return PublishResult {PublishStatus(packed >> 56), uint32_t(packed),
                          uint32_t(packed >> 32) & 0xffffff};
}

template<class T>
uint64_t publish(TopicCore& topic, T& message, std::chrono::nanoseconds timeout, std::string* why)
{
    if (topic.is_closed()) [[unlikely]] {
        topic.failed_.fetch_add(1, std::memory_order_relaxed);
        return pack_result(PublishStatus::closed, 0, 0);
    }
    const SnapshotPin pin(topic);
    topic.count_publish(pin.record_index());
    // Only the slow path writes the context; the count of deliveries stays in a register.
    PushContext context {topic, Clock::time_point::min(), timeout, why};
    uint32_t n_delivered = 0;
    const std::shared_ptr<SubCore>* subs = (*pin).subs.data();
    const size_t n = (*pin).subs.size();
    for (size_t i = 0; i + 1 < n; ++i) {
        T copy(message);
        n_delivered += static_cast<SubState<T>&>(*subs[i]).push(copy, context);
    }
    if (n != 0) n_delivered += static_cast<SubState<T>&>(*subs[n - 1]).push(message, context);
    if (context.status != PublishStatus::ok) [[unlikely]]
        topic.failed_.fetch_add(1, std::memory_order_relaxed);
    return pack_result(context.status, n_delivered, context.n_refused);
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// The templates of core/bus.h

template<class T> inline std::optional<T> Subscription<T>::try_receive() noexcept
{
    std::optional<T> out;
    if (state_) state_->try_receive(out);
    return out;
}

template<class T> inline std::optional<T> Subscription<T>::receive() noexcept
{
    std::optional<T> out;
    if (state_) state_->receive_until(detail::Clock::time_point::max(), out);
    return out;
}

template<class T>
inline std::optional<T> Subscription<T>::receive_for(std::chrono::nanoseconds timeout) noexcept
{
    std::optional<T> out;
    if (state_) state_->receive_until(detail::deadline_after(timeout), out);
    return out;
}

template<class T> inline void Subscription<T>::unsubscribe() noexcept
{
    if (topic_) topic_->detach(state_.get());
    topic_.reset();
}

template<class T> inline const std::string& Topic<T>::name() const
{
    return core().name_;
}

template<class T> inline Subscription<T> Topic<T>::subscribe(SubscribeOptions options) const
{
    const uint64_t capacity = detail::checked_capacity(options, core().name_);
    auto state = std::make_shared<detail::SubState<T>>(options, capacity);
    core_->attach(state);
    return Subscription<T>(std::move(state), core_);
}

template<class T> inline void Topic<T>::publish(T message, std::chrono::nanoseconds timeout) const
{
    std::string why;
    const uint64_t result = detail::publish(core(), message, timeout, &why);
    if (result >> 56 != 0) [[unlikely]]
        detail::throw_publish_failure(*core_, detail::unpack_result(result), timeout, why);
}

template<class T>
inline PublishResult Topic<T>::try_publish(T message, std::chrono::nanoseconds timeout) const
{
    return detail::unpack_result(detail::publish(core(), message, timeout, nullptr));
}

template<class T> inline TopicStats Topic<T>::stats() const
{
    return core().stats();
}

template<class T> inline detail::TopicCore& Topic<T>::core() const
{
    if (!core_) [[unlikely]]
        detail::throw_empty_handle("Topic");
    return *core_;
}

} // namespace iris
