// The HTTP front (http.h): one poll loop for connections between requests, a worker pool for
// requests whose head is in.
#include "server/http.h"

#include "server/internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace iris::server {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kNever = Clock::time_point::max();

// httplib bounds neither the whole head nor the number of its lines' bytes: larger heads get 431.
constexpr size_t kMaxHeadBytes = 64u << 10;

// Set on a worker when a read of the current request's body ran out of time, and when the
// connection must close after the current response.
thread_local bool t_read_timed_out = false;
thread_local bool t_close_after = false;
// The connection a worker serves, and whether a handler took it over (take_connection).
thread_local struct Conn* t_conn = nullptr;
thread_local bool t_taken = false;

int ms_until(Clock::time_point t)
{
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
    return int(std::clamp<int64_t>(ms, 0, INT_MAX));
}

// Whether `events` came on `fd` within the time; false when it ran out.
bool wait_for(int fd, short events, int timeout_ms)
{
    pollfd p {fd, events, 0};
    int r;
    do {
        r = ::poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    return r > 0;
}

std::string socket_address(int fd, bool peer, int* port = nullptr)
{
    sockaddr_storage a {};
    socklen_t len = sizeof a;
    char buf[INET6_ADDRSTRLEN] = "";
    auto* sa = reinterpret_cast<sockaddr*>(&a);
    if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) return buf;
    if (a.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(a);
        inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
        if (port) *port = ntohs(in.sin_port);
    } else if (a.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
        inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf);
        if (port) *port = ntohs(in6.sin6_port);
    }
    return buf;
}

// An answer of the front itself, which then closes the connection; best effort, without
// waiting: the client may be gone or not reading.
void answer(int fd, int status, const std::string& message)
{
    const char* reason = status == 408 ? "Request Timeout"
        : status == 429                ? "Too Many Requests"
                                       : "Request Header Fields Too Large";
    const std::string body = error_body({status, message});
    const std::string msg
        = strfmt("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n%s\r\n",
                 status, reason, body.size(), status == 429 ? "Retry-After: 2\r\n" : "")
        + body;
    (void)::send(fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

struct Conn
{
    int fd = -1;
    std::string client; // the peer's address, without its port
    std::string in; // bytes received and not yet consumed
    size_t used = 0; // consumed bytes at the front of `in`
    size_t served = 0; // requests answered
    bool head_started = false; // bytes of the next request arrived
    Clock::time_point head_deadline = kNever; // the whole head is due
    Clock::time_point quiet_deadline = kNever; // the next byte is due
    // Time a worker has waited for the client to take response bytes since it took the
    // connection: pipelined requests share it, so a client that reads a trickle cannot keep a
    // worker longer than the idle timeout.
    Clock::duration send_waited {};

    Clock::time_point deadline() const { return std::min(head_deadline, quiet_deadline); }
    bool head_complete(size_t from) const
    {
        return in.find("\r\n\r\n", std::max(from, used)) != std::string::npos;
    }
};

// A connection's bytes as httplib reads them: first what the front received, then the socket,
// each wait bounded by the idle timeout and every read of the body by the body's deadline.
class ConnStream final : public httplib::Stream
{
public:
    ConnStream(Conn& c, const HttpLimits& limits)
        : c_(c)
        , idle_ms_(limits.idle_timeout_s * 1000)
        , body_deadline_(Clock::now() + std::chrono::seconds(limits.body_timeout_s))
    { }

    bool is_readable() const override
    {
        return c_.used < c_.in.size() || wait_for(c_.fd, POLLIN, idle_ms_);
    }
    // Writable in time, and the client has not hung up (as httplib's own stream).
    bool is_writable() const override
    {
        if (t_taken) return true; // writes are dropped (write)
        if (!wait_to_send()) return false;
        if (!wait_for(c_.fd, POLLIN, 0)) return true;
        char b;
        return ::recv(c_.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }
    ssize_t read(char* ptr, size_t size) override
    {
        if (c_.used < c_.in.size()) {
            const size_t n = std::min(size, c_.in.size() - c_.used);
            std::memcpy(ptr, c_.in.data() + c_.used, n);
            c_.used += n;
            return ssize_t(n);
        }
        if (!wait_for(c_.fd, POLLIN, std::min(idle_ms_, ms_until(body_deadline_)))) {
            t_read_timed_out = true;
            return -1;
        }
        ssize_t n;
        do {
            n = ::recv(c_.fd, ptr, size, 0);
        } while (n < 0 && errno == EINTR);
        return n;
    }
    // Sends what the socket takes now (httplib calls again with the rest): a blocking send of
    // a whole body would wait on a slow reader without bound.
    ssize_t write(const char* ptr, size_t size) override
    {
        if (t_taken) return ssize_t(size); // the handler speaks its own protocol on it now
        for (;;) {
            if (!wait_to_send()) return -1;
            const ssize_t n = ::send(c_.fd, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) return n;
        }
    }
    void get_remote_ip_and_port(std::string& ip, int& port) const override
    {
        ip = socket_address(c_.fd, true, &port);
    }
    void get_local_ip_and_port(std::string& ip, int& port) const override
    {
        ip = socket_address(c_.fd, false, &port);
    }
    socket_t socket() const override { return c_.fd; }

private:
    // Room to send came before the connection's send budget (the idle timeout) ran out.
    bool wait_to_send() const
    {
        const auto start = Clock::now();
        const auto left = std::chrono::milliseconds(idle_ms_) - c_.send_waited;
        const bool ok = left > Clock::duration::zero()
            && wait_for(c_.fd, POLLOUT,
                        int(std::chrono::ceil<std::chrono::milliseconds>(left).count()));
        c_.send_waited += Clock::now() - start;
        return ok;
    }

    Conn& c_;
    const int idle_ms_;
    const Clock::time_point body_deadline_;
};

} // namespace

// The task queue httplib's accept loop feeds: it runs each job at once on the accept thread
// (HttpServer::process_and_close_socket, which only admits the socket), and owns the poll loop
// and the workers.
class HttpServer::Front final : public httplib::TaskQueue
{
public:
    explicit Front(HttpServer& http)
        : http_(http)
        , limits_(http.limits_)
        , wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC))
        , workers_(size_t(limits_.workers))
    {
        poller_ = std::thread([this] { poll_loop(); });
        http_.front_ = this;
    }
    ~Front() override
    {
        shutdown();
        ::close(wake_fd_);
    }

    void enqueue(std::function<void()> fn) override { fn(); }

    // Closes the waiting connections; requests being served finish first.
    void shutdown() override
    {
        {
            std::lock_guard lock(mu_);
            if (stopping_) return;
            stopping_ = true;
        }
        http_.front_ = nullptr;
        wake();
        poller_.join();
        workers_.shutdown();
    }

    // A new connection waits for its first head, unless its address has too many open.
    void admit(int fd)
    {
        auto c = std::make_unique<Conn>();
        c->fd = fd;
        c->client = socket_address(fd, true);
        const auto now = Clock::now();
        c->head_deadline = now + std::chrono::seconds(limits_.head_timeout_s);
        c->quiet_deadline = now + std::chrono::seconds(limits_.idle_timeout_s);
        {
            std::lock_guard lock(mu_);
            int& open = per_client_[c->client];
            if (!stopping_ && open < limits_.max_client_connections) {
                ++open;
                waiting_.push_back(std::move(c));
            } else if (open == 0) {
                per_client_.erase(c->client);
            }
        }
        if (!c) return wake();
        if (!stopping_) {
            answer(fd, 429,
                   strfmt("this address has %d connections open, the most one client may have; "
                          "close idle ones or retry shortly",
                          limits_.max_client_connections));
            http_.refused_(429);
        }
        ::close(fd);
    }

private:
    void wake()
    {
        const uint64_t one = 1;
        (void)!::write(wake_fd_, &one, sizeof one);
    }

    // With mu_ held.
    void release(std::unique_ptr<Conn> c)
    {
        if (c->fd >= 0) {
            ::shutdown(c->fd, SHUT_RDWR);
            ::close(c->fd);
        }
        auto it = per_client_.find(c->client);
        if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
    }

    enum class Got { nothing, more, head, gone, too_big };

    Got receive(Conn& c, Clock::time_point now)
    {
        char buf[16384];
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return Got::nothing;
        if (n <= 0) return Got::gone;
        const size_t from = c.in.size() >= 3 ? c.in.size() - 3 : 0;
        c.in.append(buf, size_t(n));
        if (!c.head_started) {
            c.head_started = true;
            if (c.served > 0) c.head_deadline = now + std::chrono::seconds(limits_.head_timeout_s);
        }
        c.quiet_deadline = now + std::chrono::seconds(limits_.idle_timeout_s);
        if (c.head_complete(from)) return Got::head;
        return c.in.size() - c.used > kMaxHeadBytes ? Got::too_big : Got::more;
    }

    void poll_loop()
    {
        std::vector<pollfd> fds;
        std::unique_lock lock(mu_);
        while (!stopping_) {
            fds.assign(1, pollfd {wake_fd_, POLLIN, 0});
            Clock::time_point next = kNever;
            for (const auto& c : waiting_) {
                fds.push_back({c->fd, POLLIN, 0});
                next = std::min(next, c->deadline());
            }
            lock.unlock();
            // Only this thread removes from waiting_, so its first fds.size() - 1 entries are
            // still the polled ones when the lock is back.
            ::poll(fds.data(), fds.size(), next == kNever ? -1 : ms_until(next));
            uint64_t woken;
            (void)!::read(wake_fd_, &woken, sizeof woken);
            lock.lock();
            if (stopping_) break;
            const auto now = Clock::now();
            std::vector<std::unique_ptr<Conn>> still;
            still.reserve(waiting_.size());
            for (size_t i = 0; i < waiting_.size(); ++i) {
                std::unique_ptr<Conn>& c = waiting_[i];
                Got got
                    = i + 1 < fds.size() && fds[i + 1].revents ? receive(*c, now) : Got::nothing;
                if (got == Got::head) {
                    Conn* ready = c.release();
                    workers_.enqueue([this, ready] { serve(std::unique_ptr<Conn>(ready)); });
                } else if (got == Got::too_big) {
                    answer(c->fd, 431, strfmt("the request head is over %zu bytes", kMaxHeadBytes));
                    http_.refused_(431);
                    release(std::move(c));
                } else if (got == Got::gone) {
                    release(std::move(c));
                } else if (now >= c->deadline()) {
                    // A kept-alive connection that stays quiet just ends; one that began a
                    // request (or never sent one) hears why.
                    if (c->head_started || c->served == 0) {
                        answer(c->fd, 408,
                               now >= c->head_deadline
                                   ? strfmt("the request head did not arrive within %d s",
                                            limits_.head_timeout_s)
                                   : strfmt("no bytes came for %d s", limits_.idle_timeout_s));
                        http_.refused_(408);
                    }
                    release(std::move(c));
                } else {
                    still.push_back(std::move(c));
                }
            }
            waiting_ = std::move(still);
        }
        for (auto& c : waiting_) release(std::move(c));
        waiting_.clear();
    }

    // On a worker: the requests of a connection whose head is in, then the connection goes
    // back to the poll loop (or is closed).
    void serve(std::unique_ptr<Conn> c)
    {
        while (!stopping_) {
            ConnStream strm(*c, limits_);
            t_read_timed_out = false;
            t_close_after = false;
            t_taken = false;
            t_conn = c.get();
            const bool last = ++c->served >= http_.keep_alive_max_count_;
            bool closed = false;
            const bool served = http_.serve(strm, last, closed);
            t_conn = nullptr;
            if (t_taken) {
                // Its handler's protocol goes on over its own descriptor: no shutdown here.
                std::lock_guard lock(mu_);
                ::close(c->fd);
                c->fd = -1;
                release(std::move(c));
                return;
            }
            if (!served || closed || last || t_close_after || t_read_timed_out) break;
            c->in.erase(0, c->used);
            c->used = 0;
            if (c->head_complete(0)) continue; // the client sent its next request ahead
            const auto now = Clock::now();
            c->send_waited = {};
            c->head_started = !c->in.empty();
            c->head_deadline
                = c->head_started ? now + std::chrono::seconds(limits_.head_timeout_s) : kNever;
            c->quiet_deadline = now
                + std::chrono::seconds(c->head_started ? limits_.idle_timeout_s
                                                       : limits_.keep_alive_s);
            std::lock_guard lock(mu_);
            if (stopping_) break;
            waiting_.push_back(std::move(c));
            wake();
            return;
        }
        std::lock_guard lock(mu_);
        release(std::move(c));
    }

    HttpServer& http_;
    const HttpLimits& limits_;
    const int wake_fd_;
    std::mutex mu_;
    std::vector<std::unique_ptr<Conn>> waiting_; // idle, or their head is arriving
    std::map<std::string, int> per_client_; // open connections by client address
    std::atomic<bool> stopping_ {false};
    httplib::ThreadPool workers_;
    std::thread poller_;
};

HttpServer::HttpServer(const HttpLimits& limits, std::function<void(int)> refused)
    : limits_(limits)
    , refused_(std::move(refused))
{
    new_task_queue = [this] { return new Front(*this); };
}

HttpServer::~HttpServer() = default;

void HttpServer::widen_backlog()
{
    ::listen(svr_sock_, SOMAXCONN);
}

bool HttpServer::read_timed_out()
{
    return t_read_timed_out;
}

void HttpServer::close_after_response()
{
    t_close_after = true;
}

int HttpServer::take_connection(std::string& received)
{
    if (!t_conn) throw Error(ErrorKind::internal, "take_connection outside a request's handler");
    const int fd = ::fcntl(t_conn->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        throw Error(ErrorKind::io, strfmt("cannot take the connection: %s", strerror(errno)));
    received = t_conn->in;
    t_taken = true;
    return fd;
}

bool HttpServer::process_and_close_socket(socket_t sock)
{
    Front* front = front_;
    if (!front) {
        ::close(sock);
        return false;
    }
    front->admit(sock);
    return true;
}

bool HttpServer::serve(httplib::Stream& strm, bool close_connection, bool& connection_closed)
{
    return process_request(strm, close_connection, connection_closed, nullptr);
}

} // namespace iris::server
