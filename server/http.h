// The HTTP front: httplib's request handling over connections that wait for their request head
// without holding a worker thread.
//
// httplib gives each accepted connection a worker for its whole life and bounds only each read,
// so clients that send a header byte now and then hold every worker. Here a connection waits in
// one poll loop while it is idle or its head is arriving, with a deadline for the whole head;
// only a complete head takes a worker, which reads the body under a deadline of its own and
// writes the answer, then gives the connection back. Bytes a client sent ahead (pipelined
// requests) stay with the connection and are served in order.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>

namespace iris::server {

struct HttpLimits
{
    int head_timeout_s = 10; // request line and headers, from the first byte (or the accept)
    int body_timeout_s = 60; // the whole body, from when the head is in
    int idle_timeout_s = 30; // no byte in or out for this long, or this long in all waiting to
                             // send while a worker holds the connection, ends it
    int keep_alive_s = 5; // an idle kept-alive connection waits this long for its next request
    int max_client_connections = 32; // open connections of one client address
    int workers = 40; // threads serving requests whose head is in
};

class HttpServer : public httplib::Server
{
public:
    // `refused` is told the status of every request the front answers itself (408, 429, 431).
    HttpServer(const HttpLimits& limits, std::function<void(int status)> refused);
    ~HttpServer() override;

    // Debian's compiled cpp-httplib listens with a backlog of 5, and a burst of clients beyond
    // that sees failed connections instead of answers: listen() again on the bound socket only
    // widens its queue.
    void widen_backlog();
    // On a worker, in the handlers of a request: whether a read of its body ran out of time
    // (the error handler answers 408 instead of httplib's 400).
    static bool read_timed_out();
    // The connection closes once this response is written (httplib itself would go on reading
    // the next request where this one's unread body is).
    static void close_after_response();
    // On a worker, in a route's handler: the connection, for a protocol of the handler's own (a
    // WebSocket). Returns a duplicate of its socket, which the caller owns and closes, and the
    // bytes received on it so far (the request's head, and any that followed it). Nothing the
    // handler sets in its response is sent; the front closes its own descriptor, without
    // shutting the connection down, once the handler returns.
    static int take_connection(std::string& received);

private:
    class Front;
    // Called on the accept thread (the task queue runs it inline): hands the socket to the front.
    bool process_and_close_socket(socket_t sock) override;
    bool serve(httplib::Stream& strm, bool close_connection, bool& connection_closed);

    const HttpLimits limits_;
    const std::function<void(int)> refused_;
    std::atomic<Front*> front_ {nullptr};
};

} // namespace iris::server
