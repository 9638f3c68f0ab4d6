// core/bus — the typed, lock-free message bus that connects Iris modules.
//
//   iris::Bus bus;
//   // One message type per topic name; every caller of topic("asr.text") gets the same channel.
//   iris::Topic<Transcript> text = bus.topic<Transcript>("asr.text");
//   // Lossless by default: a full queue (256 messages) makes publishers wait, then fail.
//   iris::Subscription<Transcript> memory = text.subscribe({.name = "memory"});
//   text.publish(Transcript{...}); // any thread; throws Error(timeout) or Error(closed)
//   while (std::optional<Transcript> t = memory.receive()) store(*t); // nullopt once closed
//
//   // Large payloads travel as reference-counted immutable Buffers and Images (core/image.h):
//   // fan-out copies a pointer.
//   struct Frame { int64_t pts_us; iris::Image image; };
//   auto frames = bus.topic<Frame>("video.frames");
//   auto preview = frames.subscribe({.delivery = iris::Delivery::latest, .capacity = 2});
//   frames.publish(Frame{t, iris::Image::copy_of(w, h, pixels)});
//
//   bus.close(); // wakes every waiting publisher and consumer; nothing is delivered afterwards
//
// Thread safety: every function may be called from any thread. publish, try_receive and receive
// take no mutex (atomics only; a consumer that waits sleeps on a futex after a short spin);
// subscribe, unsubscribe, stats and close lock. A Subscription may be received from by several
// threads (each message goes to one of them), but must not be moved or destroyed while another
// thread is inside one of its calls. Handles keep what they use alive: a Topic or Subscription
// that outlives its Bus is simply closed.
#pragma once

#include "core/core.h"
#include "core/image.h" // Buffer, Image: what large payloads travel as

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace iris {

// ---------------------------------------------------------------------------------------------
// Options, results and statistics

// What a subscription does when its queue is full.
enum class Delivery : uint8_t {
    lossless, // the publisher waits for room up to its timeout, then gets a timeout failure
    latest, // the publisher never waits: the oldest queued message is dropped and counted
};
const char* delivery_name(Delivery delivery); // "lossless", "latest"

struct SubscribeOptions
{
    Delivery delivery = Delivery::lossless;
    // Queue depth in messages, rounded up to a power of two; 1 .. 2^22, else
    // Error(invalid_argument).
    size_t capacity = 256;
    // Names the subscriber in stats, logs and errors ("memory", "ui.preview").
    std::string name;
    // How long receive() polls before it sleeps: a polling consumer answers within a
    // microsecond, a sleeping one needs the kernel to wake it (several to tens of microseconds).
    // After 2 us of polling it yields its CPU between polls, and it stops early if that CPU is
    // wanted by another thread. 0: sleep at once.
    std::chrono::microseconds spin {50};
};

// Publish calls wait at most this long for a full lossless subscriber unless told otherwise.
inline constexpr std::chrono::milliseconds kDefaultPublishTimeout {1000};

enum class PublishStatus : uint8_t {
    ok, // every subscriber that was subscribed and open queued the message
    timeout, // a lossless subscriber stayed full until the deadline (the others got it)
    closed, // the bus was closed before or while publishing
};

struct PublishResult
{
    PublishStatus status = PublishStatus::ok;
    uint32_t n_delivered = 0; // subscriptions that queued the message
    uint32_t n_refused = 0; // lossless subscriptions that did not get it (timeout or close)
    bool ok() const { return status == PublishStatus::ok; }
};

// Counters are read while traffic flows, so they can be off by the calls in flight; once no call
// is in flight, for every subscription: published == delivered + dropped + depth.
struct SubscriptionStats
{
    std::string name;
    Delivery delivery = Delivery::lossless;
    uint64_t capacity = 0;
    uint64_t published = 0; // messages offered to this subscription while it was open
    uint64_t delivered = 0; // messages its consumer received
    // Messages it will never receive: the oldest evicted by a full `latest` queue, a `lossless`
    // publish that timed out (the publisher was told), or queued messages discarded by close.
    uint64_t dropped = 0;
    uint64_t depth = 0; // messages queued now
    uint64_t depth_max = 0; // high-water mark of depth
};

struct TopicStats
{
    std::string name;
    std::string type; // the message type, demangled
    uint64_t published = 0; // publish calls made while the topic was open
    uint64_t failed = 0; // publish calls that returned timeout or closed
    std::vector<SubscriptionStats> subscriptions; // current subscribers, oldest first
};

template<class T> class Topic;
template<class T> class Subscription;

// ---------------------------------------------------------------------------------------------
// The implementation, in core/bus-impl.h (included at the end), is not part of the API.

namespace detail {
class TopicCore;
template<class T> class SubState;
struct BusCore;
} // namespace detail

// ---------------------------------------------------------------------------------------------
// Subscription: one subscriber's bounded queue on a topic. Move-only; unsubscribes when
// destroyed. An empty (default-constructed) Subscription behaves as closed.

template<class T> class Subscription
{
public:
    Subscription() = default;
    Subscription(Subscription&&) noexcept = default;
    Subscription& operator=(Subscription&& other) noexcept
    {
        if (this != &other) {
            unsubscribe();
            state_ = std::move(other.state_);
            topic_ = std::move(other.topic_);
        }
        return *this;
    }
    ~Subscription() { unsubscribe(); }

    // The oldest queued message, or nullopt when the queue is empty or closed. Never blocks.
    std::optional<T> try_receive() noexcept;
    // Waits for a message; nullopt only once the subscription is closed (bus closed or
    // unsubscribed). Spins for SubscribeOptions::spin, then sleeps without using a core.
    std::optional<T> receive() noexcept;
    // Like receive(), but also returns nullopt after `timeout`; closed() tells the two apart.
    std::optional<T> receive_for(std::chrono::nanoseconds timeout) noexcept;

    // True once the bus closed or this subscription was unsubscribed (or is empty).
    bool closed() const noexcept { return !state_ || state_->is_closed(); }
    // Leaves the topic: publishers stop seeing it, waiters wake, queued messages are discarded
    // (counted as dropped). Idempotent; stats() keeps working afterwards.
    void unsubscribe() noexcept;
    SubscriptionStats stats() const { return state_ ? state_->stats() : SubscriptionStats {}; }
    explicit operator bool() const noexcept { return state_ != nullptr; }

private:
    friend class Topic<T>;
    Subscription(std::shared_ptr<detail::SubState<T>> state,
                 std::shared_ptr<detail::TopicCore> topic)
        : state_(std::move(state))
        , topic_(std::move(topic))
    { }
    std::shared_ptr<detail::SubState<T>> state_;
    std::shared_ptr<detail::TopicCore> topic_; // null once unsubscribed
};

// ---------------------------------------------------------------------------------------------
// Topic: a cheap, copyable handle to a named channel that carries messages of type T.
//
// T is copied into each subscriber's queue, so keep it small: put large payloads in a Buffer or
// a std::shared_ptr<const X>, whose copies share the bytes. T must be nothrow-movable.

template<class T> class Topic
{
    static_assert(!std::is_reference_v<T> && !std::is_const_v<T>, "use a plain value type");
    static_assert(std::is_nothrow_move_constructible_v<T>, "messages must be nothrow-movable");
    static_assert(std::is_copy_constructible_v<T>, "messages are copied for each subscriber");
    static_assert(sizeof(T) <= 1024,
                  "large messages must travel as iris::Buffer or std::shared_ptr<const T>");

public:
    Topic() = default; // empty: every call throws Error(invalid_argument)

    const std::string& name() const;

    // Adds a subscriber that sees every message published from now on. Throws
    // Error(invalid_argument) for a bad capacity. On a closed bus the subscription is closed.
    Subscription<T> subscribe(SubscribeOptions options = {}) const;

    // Queues `message` for every current subscriber. `latest` subscribers never make it wait;
    // for each full `lossless` subscriber it waits (spinning briefly, then sleeping) until
    // `timeout` has passed since its first wait. Throws Error(timeout) naming the subscribers
    // that did not get the message (the others did), Error(closed) if the bus is closed; an
    // exception from T's copy constructor propagates.
    void publish(T message, std::chrono::nanoseconds timeout = kDefaultPublishTimeout) const;
    // Same without exceptions for timeout and close: the result says what happened.
    PublishResult try_publish(T message,
                              std::chrono::nanoseconds timeout = kDefaultPublishTimeout) const;

    TopicStats stats() const;
    explicit operator bool() const noexcept { return core_ != nullptr; }

private:
    friend class Bus;
    explicit Topic(std::shared_ptr<detail::TopicCore> core)
        : core_(std::move(core))
    { }
    detail::TopicCore& core() const;
    std::shared_ptr<detail::TopicCore> core_;
};

// ---------------------------------------------------------------------------------------------
// Bus: the registry of topics. Usually one per process, created by the app and passed down.

class Bus
{
public:
    Bus();
    ~Bus(); // closes
    Bus(const Bus&) = delete;
    Bus& operator=(const Bus&) = delete;

    // The topic called `name`, created on first use. Every caller gets the same channel. Throws
    // Error(invalid_argument) if the name is empty or the topic already carries another type.
    template<class T> Topic<T> topic(const std::string& name)
    {
        return Topic<T>(find_or_add(name, typeid(T)));
    }

    // Closes every topic and subscription: waiting publishers and consumers wake, publish fails
    // with `closed`, receive returns nullopt, queued messages are discarded (counted as
    // dropped). Idempotent. Topics asked for later are born closed.
    void close();
    bool closed() const noexcept;

    // Every topic, sorted by name.
    std::vector<TopicStats> stats() const;

private:
    std::shared_ptr<detail::TopicCore> find_or_add(const std::string& name,
                                                   const std::type_info& type);
    std::unique_ptr<detail::BusCore> core_;
};

} // namespace iris

#include "core/bus-impl.h"
