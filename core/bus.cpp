// core/bus — the slow paths of the message bus: sleeping and waking, subscribing, closing,
// statistics and error text. The hot paths (publish, receive) are templates in bus-impl.h.
#include "core/bus.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <map>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

namespace iris {

const char* delivery_name(Delivery delivery)
{
    switch (delivery) {
    case Delivery::lossless:
        return "lossless";
    case Delivery::latest:
        return "latest";
    }
    return "unknown";
}

namespace detail {

// ---------------------------------------------------------------------------------------------
// Barriers. A lock-prefixed instruction costs 5-10 ns; publish and receive would need one for
// each handshake with a sleeper and one to announce a hazard. membarrier(PRIVATE_EXPEDITED)
// instead makes the rare side pay: it interrupts every CPU running one of our threads and runs
// a full fence there, so the hot side's program order (kept by a compiler barrier) is enough.

std::atomic<bool> asymmetric_barriers {false};
#if defined(__SANITIZE_THREAD__)
std::atomic<int> tsan_fence_word {0};
#endif

void init_barriers() noexcept
{
    static const bool done = [] {
#if defined(__linux__) && defined(SYS_membarrier)
        // IRIS_BUS_FENCES=symmetric forces the fallback, to test it or to rule membarrier out.
        const char* forced = std::getenv("IRIS_BUS_FENCES");
        if (forced != nullptr && std::strcmp(forced, "symmetric") == 0) return true;
        const long query = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        const bool ok = query >= 0 && (query & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0
            && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
        asymmetric_barriers.store(ok, std::memory_order_release);
        if (!ok) IRIS_LOG_DEBUG("bus: membarrier unavailable, using symmetric fences");
#endif
        return true;
    }();
    (void)done;
}

void heavy_barrier() noexcept
{
#if defined(__linux__) && defined(SYS_membarrier)
    if (asymmetric_barriers.load(std::memory_order_relaxed)) {
        if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
        // Cannot fail once registered; were it to, the light side would be unprotected.
        IRIS_LOG_ERROR("bus: membarrier failed: %s", std::strerror(errno));
        std::abort();
    }
#endif
    full_fence();
}

// ---------------------------------------------------------------------------------------------
// Spinning places

namespace {
std::atomic<int> spinners {0};
const int kMaxSpinners = std::max(1, int(std::thread::hardware_concurrency() / 2));
} // namespace

bool start_spinning() noexcept
{
    int n = spinners.load(std::memory_order_relaxed);
    while (n < kMaxSpinners)
        if (spinners.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
    return false;
}

void stop_spinning() noexcept
{
    spinners.fetch_sub(1, std::memory_order_relaxed);
}

void yield_cpu() noexcept
{
    std::this_thread::yield();
}

// ---------------------------------------------------------------------------------------------
// Hazard records

namespace {

std::atomic<HazardRecord*> hazard_records {nullptr};

// Hands this thread's record back when the thread exits.
struct HazardOwner
{
    HazardRecord* record = nullptr;
    ~HazardOwner()
    {
        if (record == nullptr) return;
        this_thread_hazards = nullptr;
        record->in_use.store(false, std::memory_order_release);
    }
};
thread_local HazardOwner hazard_owner;

} // namespace

HazardRecord* acquire_hazard_record()
{
    HazardRecord* found = nullptr;
    for (HazardRecord* r = hazard_records.load(std::memory_order_acquire); r; r = r->next) {
        bool expected = false;
        if (!r->in_use.load(std::memory_order_relaxed)
            && r->in_use.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
            found = r;
            break;
        }
    }
    if (found == nullptr) {
        // Records are never freed: a scan may be reading one at any time.
        static std::atomic<uint32_t> n_records {0};
        found = std::make_unique<HazardRecord>().release();
        found->in_use.store(true, std::memory_order_relaxed);
        found->index = n_records.fetch_add(1, std::memory_order_relaxed);
        HazardRecord* head = hazard_records.load(std::memory_order_relaxed);
        do {
            found->next = head;
        } while (!hazard_records.compare_exchange_weak(head, found, std::memory_order_release,
                                                       std::memory_order_relaxed));
    }
    hazard_owner.record = found;
    this_thread_hazards = found;
    return found;
}

std::atomic<const void*>* nested_hazard_slot(HazardRecord& record, const TopicCore& topic)
{
    for (int i = 1; i < HazardRecord::kNSlots; ++i)
        if (record.slot[i].load(std::memory_order_relaxed) == nullptr) return &record.slot[i];
    throw Error(ErrorKind::internal,
                strfmt("bus: publish on topic '%s' nested %d deep (a message's copy constructor "
                       "publishing?)",
                       topic.name_.c_str(), HazardRecord::kNSlots));
}

// ---------------------------------------------------------------------------------------------
// Sleeping. A futex lets a waiter sleep on the very word a notifier changes, with an absolute
// deadline, and costs the notifier nothing when nobody sleeps (EventCount checks first).

Clock::time_point deadline_after(std::chrono::nanoseconds d) noexcept
{
    const Clock::time_point now = Clock::now();
    if (d <= std::chrono::nanoseconds::zero()) return now;
    if (d >= Clock::time_point::max() - now) return Clock::time_point::max();
    return now + std::chrono::duration_cast<Clock::duration>(d);
}

namespace {

// The futex word is the low (on little-endian machines, first) half of a 64-bit atomic.
uint32_t* futex_word(std::atomic<uint64_t>& state) noexcept
{
    static_assert(std::endian::native == std::endian::little);
    static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t));
    return reinterpret_cast<uint32_t*>(&state);
}

void futex_wait(std::atomic<uint64_t>& state, uint32_t expected,
                Clock::time_point deadline) noexcept
{
#if defined(__linux__)
    // steady_clock is CLOCK_MONOTONIC, which FUTEX_WAIT_BITSET takes as an absolute deadline.
    timespec ts {};
    timespec* timeout = nullptr;
    if (deadline != Clock::time_point::max()) {
        const auto ns
            = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch())
                  .count();
        if (ns <= 0) return;
        ts.tv_sec = time_t(ns / 1000000000);
        ts.tv_nsec = long(ns % 1000000000);
        timeout = &ts;
    }
    // Returns on wake, timeout, a signal, or at once if the epoch already moved (EAGAIN); the
    // caller re-checks everything in each case.
    syscall(SYS_futex, futex_word(state), FUTEX_WAIT_BITSET_PRIVATE, expected, timeout, nullptr,
            FUTEX_BITSET_MATCH_ANY);
#else
    // Portable fallback: short naps. Correct (callers re-check), just slower to wake.
    if (uint32_t(state.load(std::memory_order_acquire)) != expected) return;
    const auto nap = std::chrono::microseconds(50);
    if (deadline == Clock::time_point::max() || deadline - Clock::now() > nap)
        std::this_thread::sleep_for(nap);
    else
        std::this_thread::sleep_until(deadline);
#endif
}

void futex_wake_all(std::atomic<uint64_t>& state) noexcept
{
#if defined(__linux__)
    syscall(SYS_futex, futex_word(state), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
    (void)state;
#endif
}

} // namespace

void EventCount::wait(uint32_t key, Clock::time_point deadline) noexcept
{
    futex_wait(state_, key, deadline);
    cancel_wait(key); // woken by a timeout or a signal rather than a notify: stop counting
}

void EventCount::notify_slow() noexcept
{
    // Bump the epoch and clear the count in one step: a waiter that has read the old epoch but
    // not yet slept then returns at once, and the sleepers are woken exactly once.
    uint64_t s = state_.load(std::memory_order_seq_cst);
    do {
        if ((s >> 32) == 0) return;
    } while (
        !state_.compare_exchange_weak(s, uint64_t(uint32_t(s) + 1), std::memory_order_seq_cst));
    futex_wake_all(state_);
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

SubCore::SubCore(const SubscribeOptions& options)
    : name_(options.name.empty() ? std::string("(unnamed)") : options.name)
    , delivery_(options.delivery)
    , spin_(std::max(options.spin, std::chrono::microseconds::zero()))
{ }

void SubCore::close() noexcept
{
    if (closed_.exchange(true, std::memory_order_seq_cst)) return;
    not_empty_.notify_all();
    not_full_.notify_all();
    // Free the payloads now (frames can be large) rather than when the last handle goes. A
    // publisher that checked `closed_` just before may still add one; it stays counted in depth.
    discarded_.fetch_add(drain(), std::memory_order_relaxed);
}

SubscriptionStats SubCore::stats() const
{
    SubscriptionStats s;
    s.name = name_;
    s.delivery = delivery_;
    s.capacity = capacity();
    // Read the events that follow a head move before the head, and the tail last, so that a
    // snapshot taken under traffic errs towards "in flight" rather than negative counts.
    const uint64_t evicted = evicted_.load(std::memory_order_acquire);
    const uint64_t discarded = discarded_.load(std::memory_order_acquire);
    const uint64_t refused = refused_.load(std::memory_order_acquire);
    const uint64_t h = head();
    const uint64_t t = std::max(tail(), h);
    s.published = t + refused;
    s.dropped = evicted + discarded + refused;
    s.delivered = h >= evicted + discarded ? h - evicted - discarded : 0;
    s.depth = std::min<uint64_t>(t - h, s.capacity);
    s.depth_max = std::max(depth_max_.load(std::memory_order_relaxed), s.depth);
    return s;
}

uint64_t checked_capacity(const SubscribeOptions& options, const std::string& topic)
{
    constexpr size_t max_capacity = size_t(1) << 22;
    if (options.capacity == 0 || options.capacity > max_capacity)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("bus: subscribing '%s' to topic '%s': capacity %zu is not in 1..%zu",
                           options.name.c_str(), topic.c_str(), options.capacity, max_capacity));
    // A power of two turns the position-to-slot mapping into a mask; two slots at least, so a
    // consumer moving a message out never makes a `latest` queue of one look permanently full.
    uint64_t capacity = 2;
    while (capacity < options.capacity) capacity <<= 1;
    return capacity;
}

// ---------------------------------------------------------------------------------------------
// Topics

TopicCore::TopicCore(std::string name, std::type_index type, std::string type_name, bool closed)
    : name_(std::move(name))
    , type_(type)
    , type_name_(std::move(type_name))
    , closed_(closed)
{
    std::lock_guard lock(mutex_);
    install_locked();
}

TopicCore::~TopicCore()
{
    // No handle is left, so no publisher holds a snapshot.
    delete current_.load(std::memory_order_acquire);
    for (const Snapshot* s : retired_) delete s;
}

void TopicCore::install_locked()
{
    retired_.reserve(retired_.size() + 1); // so that retiring below cannot throw
    auto next = std::make_unique<Snapshot>();
    next->subs = subs_;
    const Snapshot* old = current_.exchange(next.release(), std::memory_order_acq_rel);
    if (old != nullptr) retired_.push_back(old);
    reclaim_locked();
}

void TopicCore::reclaim_locked() noexcept
{
    if (retired_.empty()) return;
    // After the barrier every publisher has either announced the snapshot it read (and we see
    // it below) or will find current_ changed when it re-reads it.
    heavy_barrier();
    auto in_use = [](const Snapshot* s) {
        for (HazardRecord* r = hazard_records.load(std::memory_order_acquire); r; r = r->next)
            for (const auto& slot : r->slot)
                if (slot.load(std::memory_order_acquire) == s) return true;
        return false;
    };
    // A snapshot still named by a slot (its publisher is waiting for room, say) stays retired
    // until a later change or the topic's end.
    std::erase_if(retired_, [&](const Snapshot* s) {
        if (in_use(s)) return false;
        delete s;
        return true;
    });
}

void TopicCore::attach(std::shared_ptr<SubCore> sub)
{
    std::lock_guard lock(mutex_);
    if (is_closed()) {
        sub->close();
        return;
    }
    subs_.push_back(std::move(sub));
    try {
        install_locked();
    } catch (...) {
        subs_.pop_back();
        throw;
    }
}

void TopicCore::detach(SubCore* sub) noexcept
{
    // Closing first releases any publisher sleeping on this queue, so it moves on at once.
    sub->close();
    std::lock_guard lock(mutex_);
    auto it = std::find_if(subs_.begin(), subs_.end(),
                           [&](const std::shared_ptr<SubCore>& s) { return s.get() == sub; });
    if (it == subs_.end()) return;
    std::shared_ptr<SubCore> keep = *it; // the old snapshot may hold the last reference
    subs_.erase(it);
    try {
        install_locked();
    } catch (const std::exception& e) {
        // Only allocation can fail here; the closed subscriber stays listed, which is harmless.
        IRIS_LOG_ERROR("bus: unsubscribing '%s' from '%s': %s", sub->name_.c_str(), name_.c_str(),
                       e.what());
        subs_.push_back(std::move(keep));
    }
}

void TopicCore::close() noexcept
{
    std::lock_guard lock(mutex_);
    closed_.store(true, std::memory_order_seq_cst);
    for (const auto& sub : subs_) sub->close();
    reclaim_locked();
}

TopicStats TopicCore::stats() const
{
    TopicStats s;
    s.name = name_;
    s.type = type_name_;
    for (const Counter& c : published_) s.published += c.n.load(std::memory_order_relaxed);
    s.failed = failed_.load(std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    s.subscriptions.reserve(subs_.size());
    for (const auto& sub : subs_) s.subscriptions.push_back(sub->stats());
    return s;
}

// ---------------------------------------------------------------------------------------------
// Errors

std::string type_name(const std::type_info& type)
{
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(
        abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
    return status == 0 && name ? std::string(name.get()) : std::string(type.name());
}

void throw_empty_handle(const char* what)
{
    throw Error(ErrorKind::invalid_argument,
                strfmt("bus: this %s handle is empty (default-constructed)", what));
}

void describe_refusal(std::string* why, const SubCore& sub, bool closed)
{
    if (why == nullptr) return;
    try {
        if (!why->empty()) *why += ", ";
        *why += strfmt(closed ? "'%s' (was waiting for room)" : "'%s' (lossless, capacity %llu)",
                       sub.name_.c_str(), static_cast<unsigned long long>(sub.capacity()));
    } catch (...) {
        // Out of memory while describing a failure: the status still says what happened.
    }
}

void throw_publish_failure(const TopicCore& topic, const PublishResult& result,
                           std::chrono::nanoseconds timeout, const std::string& why)
{
    if (result.status == PublishStatus::closed) {
        throw Error(ErrorKind::closed,
                    strfmt("bus: cannot publish on topic '%s': the bus is closed%s%s",
                           topic.name_.c_str(), why.empty() ? "" : "; not delivered to ",
                           why.c_str()));
    }
    throw Error(ErrorKind::timeout,
                strfmt("bus: publish on topic '%s' timed out after %.3f ms: the message was not "
                       "delivered to %u full subscriber(s): %s; it was delivered to %u other(s)",
                       topic.name_.c_str(),
                       std::chrono::duration<double, std::milli>(timeout).count(), result.n_refused,
                       why.c_str(), result.n_delivered));
}

// ---------------------------------------------------------------------------------------------
// Bus

struct BusCore
{
    mutable std::mutex mutex;
    std::map<std::string, std::shared_ptr<TopicCore>> topics; // guarded by mutex
    std::atomic<bool> closed {false};
};

} // namespace detail

Bus::Bus()
    : core_(std::make_unique<detail::BusCore>())
{
    detail::init_barriers();
}

Bus::~Bus()
{
    close();
}

std::shared_ptr<detail::TopicCore> Bus::find_or_add(const std::string& name,
                                                    const std::type_info& type)
{
    if (name.empty()) throw Error(ErrorKind::invalid_argument, "bus: a topic needs a name");
    std::lock_guard lock(core_->mutex);
    auto it = core_->topics.find(name);
    if (it != core_->topics.end()) {
        if (it->second->type_ != std::type_index(type))
            throw Error(ErrorKind::invalid_argument,
                        strfmt("bus: topic '%s' carries %s, not %s", name.c_str(),
                               it->second->type_name_.c_str(), detail::type_name(type).c_str()));
        return it->second;
    }
    auto topic
        = std::make_shared<detail::TopicCore>(name, std::type_index(type), detail::type_name(type),
                                              core_->closed.load(std::memory_order_acquire));
    core_->topics.emplace(name, topic);
    return topic;
}

void Bus::close()
{
    std::vector<std::shared_ptr<detail::TopicCore>> topics;
    {
        std::lock_guard lock(core_->mutex);
        if (core_->closed.exchange(true, std::memory_order_seq_cst)) return;
        for (const auto& [name, topic] : core_->topics) topics.push_back(topic);
    }
    for (const auto& topic : topics) topic->close();
    IRIS_LOG_DEBUG("bus: closed %zu topic(s)", topics.size());
}

bool Bus::closed() const noexcept
{
    return core_->closed.load(std::memory_order_acquire);
}

std::vector<TopicStats> Bus::stats() const
{
    std::vector<std::shared_ptr<detail::TopicCore>> topics;
    {
        std::lock_guard lock(core_->mutex);
        for (const auto& [name, topic] : core_->topics) topics.push_back(topic);
    }
    std::vector<TopicStats> out;
    out.reserve(topics.size());
    for (const auto& topic : topics) out.push_back(topic->stats());
    return out;
}

} // namespace iris
