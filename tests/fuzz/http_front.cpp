// The HTTP front (server/http.cpp) and the server's checks before any route (server/server.cpp:
// Host, content types, authentication, the error handler), over loopback as a client sees them:
// the input is sent on a fresh connection as the bytes of one or more requests, the client
// half-closes, and reads what comes back. Whatever the bytes (heads cut anywhere, bodies shorter
// or longer than Content-Length, chunked bodies, pipelined requests, heads past the size limit),
// the server answers with HTTP/1.1 and a status a client's mistake deserves, then closes the
// connection at once: a client that has finished sending must never hold a connection or a
// worker. The demo model answers chats with at most 4 tokens.
#include "assistant/assistant.h"
#include "reasoning/engine.h"
#include "server/server.h"
#include "tests/fuzz/fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

using namespace iris;

namespace {

// Never destroyed: the server runs on its own thread until libFuzzer calls exit().
reasoning::Engine* engine;
memory::Store* store;
server::Server* http;
int port = 0;

int connect_loopback()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) fuzz::finding(strfmt("socket: %s", std::strerror(errno)));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        int err = errno;
        if (err == EINTR) {
            // libFuzzer's once-a-second SIGALRM interrupted connect(); the connection goes on.
            pollfd pfd {fd, POLLOUT, 0};
            while (::poll(&pfd, 1, 900) < 0 && errno == EINTR) { }
            socklen_t len = sizeof err;
            if (!(pfd.revents & (POLLOUT | POLLERR | POLLHUP))
                || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = ETIMEDOUT;
        }
        if (err != 0) fuzz::finding(strfmt("cannot connect: %s", std::strerror(err)));
    }
    return fd;
}

// Sends while the server reads, reading its answers as they come (a server that answers
// before it read everything must not deadlock with a client that writes first).
std::string exchange(std::string_view request)
{
    const int fd = connect_loopback();
    std::string answer;
    size_t sent = 0;
    bool half_closed = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(900);
    for (;;) {
        if (sent == request.size() && !half_closed) {
            ::shutdown(fd, SHUT_WR);
            half_closed = true;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            fuzz::finding(strfmt("the connection is still open 900 ms after the client %s",
                                 half_closed ? "finished sending" : "began sending"));
        }
        pollfd pfd {fd, short(POLLIN | (half_closed ? 0 : POLLOUT)), 0};
        if (::poll(&pfd, 1, int(left.count())) <= 0) continue;
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[16384];
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break; // closed (or reset after an early answer)
            answer.append(buf, size_t(n));
        } else if (pfd.revents & POLLOUT) {
            const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent,
                                     MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n < 0) {
                sent = request.size(); // the server closed its side: stop writing
            } else {
                sent += size_t(n);
            }
        }
    }
    ::close(fd);
    return answer;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    engine = reasoning::Engine::load(std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo")
                 .release();
    store = new memory::Store(memory::Store::open((fuzz::scratch_dir() / "memory").string(),
                                                  {.dim = assistant::embedding_dim(*engine)}));
    server::Options options;
    options.port = 0;
    options.max_new_tokens = 4;
    options.max_prompt_tokens = 256;
    options.max_body_bytes = 1 << 16;
    options.max_images = 1;
    options.max_pdf_pages = 2;
    options.document_tile_budget = 1;
    options.prompt_cache_bytes = 0;
    options.threads = 4;
    http = new server::Server(*engine, store, options);
    port = http->bind();
    std::thread([] { http->run(); }).detach();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string answer = exchange(fuzz::as_text(data, size));
    if (answer.empty()) return 0; // nothing that looked like the start of a request
    IRIS_FUZZ_CHECK(answer.starts_with("HTTP/1.1 ") && answer.size() >= 12,
                    "the answer does not begin with a status line: %.40s", answer.c_str());
    const int status = std::atoi(answer.c_str() + 9);
    // A client's bytes may earn any 2xx or 4xx, and 503 while the engine is busy; a 5xx is a
    // fault of the server.
    IRIS_FUZZ_CHECK((status >= 200 && status < 300) || (status >= 400 && status < 500)
                        || status == 503,
                    "answered %d: %.200s", status, answer.c_str());
    return 0;
}
