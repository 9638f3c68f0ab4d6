// A thread that receives one bus subscription and hands every message to a QObject's thread.
#pragma once

#include "core/bus.h"

#include <QMetaObject>
#include <QObject>

#include <chrono>
#include <functional>
#include <thread>

namespace iris::ui {

// Owned by (a member of) the receiver: the destructor joins the thread before the receiver is
// gone, and Qt drops the messages still queued for a receiver that was destroyed.
template<class T> class BusListener
{
public:
    using Handler = std::function<void(T)>;

    BusListener() = default;
    BusListener(Subscription<T> subscription, QObject* receiver, Handler handler)
        : m_thread([subscription = std::move(subscription), receiver,
                    handler = std::move(handler)](std::stop_token stop) mutable {
            // Polled, so that stopping never waits on a receive() that nothing wakes.
            while (!stop.stop_requested() && !subscription.closed()) {
                std::optional<T> message = subscription.receive_for(std::chrono::milliseconds(50));
                if (!message) continue;
                QMetaObject::invokeMethod(
                    receiver,
                    [handler, m = std::move(*message)]() mutable { handler(std::move(m)); },
                    Qt::QueuedConnection);
            }
        })
    { }

private:
    std::jthread m_thread;
};

} // namespace iris::ui
