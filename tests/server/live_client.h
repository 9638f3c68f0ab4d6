// A live-session client (docs/live.md) over Boost.Beast's WebSocket, and the events it sends:
// for the live tests and live_bench.
#pragma once

#include "tests/server/bytes.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace iris::test {

namespace live {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;
using json = nlohmann::json;
} // namespace live

// What the upgrade request carries.
struct Handshake
{
    std::vector<std::string> protocols = {"realtime"};
    std::string origin;
    std::string bearer;
};

// A live-session client: the handshake in the constructor, then events read on a thread of
// its own, each given "received_us" (steady clock) on arrival; sends are handed to that thread.
class LiveClient
{
    using json = live::json;
    using tcp = live::tcp;

public:
    LiveClient(int port, const Handshake& h = {})
        : ws_(ioc_)
    {
        tcp::resolver resolver(ioc_);
        live::net::connect(ws_.next_layer(), resolver.resolve("127.0.0.1", std::to_string(port)));
        ws_.set_option(
            live::websocket::stream_base::decorator([&](live::websocket::request_type& req) {
                std::string list;
                for (const auto& p : h.protocols) list += (list.empty() ? "" : ", ") + p;
                if (!list.empty()) req.set(live::beast::http::field::sec_websocket_protocol, list);
                if (!h.origin.empty()) req.set(live::beast::http::field::origin, h.origin);
                if (!h.bearer.empty())
                    req.set(live::beast::http::field::authorization, "Bearer " + h.bearer);
            }));
        live::beast::error_code ec;
        ws_.handshake(response_, "127.0.0.1:" + std::to_string(port), "/v1/realtime", ec);
        if (ec) return;
        open_ = true;
        read();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~LiveClient()
    {
        live::net::post(ioc_, [this] {
            live::beast::error_code ec;
            ws_.next_layer().close(ec);
        });
        if (thread_.joinable()) thread_.join();
    }

    bool open() const { return open_; }
    const live::websocket::response_type& response() const { return response_; }

    void send(const json& event) { send_text(event.dump(), true); }
    void send_text(std::string text, bool is_text = true)
    {
        live::net::post(ioc_, [this, text = std::move(text), is_text] {
            out_.push_back({text, is_text});
            if (out_.size() == 1) write();
        });
    }
    // Ends the session as a browser tab does, or drops the connection without a word.
    void close()
    {
        live::net::post(
            ioc_, [this] { ws_.async_close(live::websocket::close_code::normal, [](auto) {}); });
    }
    void drop()
    {
        live::net::post(ioc_, [this] {
            live::beast::error_code ec;
            ws_.next_layer().close(ec);
        });
    }

    // The next event whose type is `type` (others are kept for later), or nullopt after `wait`.
    std::optional<json> next(const std::string& type,
                             std::chrono::milliseconds wait = std::chrono::seconds(60))
    {
        std::unique_lock lock(mu_);
        std::optional<json> found;
        cv_.wait_for(lock, wait, [&] {
            for (auto it = events_.begin(); it != events_.end(); ++it)
                if ((*it)["type"] == type) {
                    found = std::move(*it);
                    events_.erase(it);
                    return true;
                }
            return closed_;
        });
        return found;
    }
    // Every event of a type received so far.
    std::vector<json> all(const std::string& type)
    {
        std::lock_guard lock(mu_);
        std::vector<json> out;
        for (const json& e : seen_)
            if (e["type"] == type) out.push_back(e);
        return out;
    }
    // Waits for the server to close; its close code and reason.
    std::pair<int, std::string> closed(std::chrono::milliseconds wait = std::chrono::seconds(30))
    {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, wait, [&] { return closed_; });
        return {closed_ ? int(reason_.code) : -1, std::string(reason_.reason.c_str())};
    }

private:
    void read()
    {
        ws_.async_read(in_, [this](live::beast::error_code ec, size_t) {
            std::lock_guard lock(mu_);
            if (ec) {
                closed_ = true;
                reason_ = ws_.reason();
                cv_.notify_all();
                return;
            }
            json e = json::parse(live::beast::buffers_to_string(in_.data()), nullptr, false);
            in_.consume(in_.size());
            e["received_us"] = std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count();
            events_.push_back(e);
            seen_.push_back(e);
            cv_.notify_all();
            read();
        });
    }
    void write()
    {
        ws_.text(out_.front().second);
        ws_.async_write(live::net::buffer(out_.front().first),
                        [this](live::beast::error_code ec, size_t) {
                            out_.pop_front();
                            if (!ec && !out_.empty()) write();
                        });
    }

    live::net::io_context ioc_;
    live::websocket::stream<tcp::socket> ws_;
    live::websocket::response_type response_;
    bool open_ = false;
    live::beast::flat_buffer in_;
    std::deque<std::pair<std::string, bool>> out_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<json> events_;
    std::vector<json> seen_;
    bool closed_ = false;
    live::websocket::close_reason reason_;
};

inline live::json audio_event(const int16_t* samples, size_t n)
{
    return {{"type", "input_audio_buffer.append"},
            {"audio", base64(std::string(reinterpret_cast<const char*>(samples), n * 2))}};
}

inline live::json frame_event(const std::string& jpeg)
{
    return {{"type", "input_video_frame.append"}, {"image", base64(jpeg)}};
}

inline live::json question_event(const std::string& text)
{
    return {{"type", "conversation.item.create"},
            {"item",
             {{"type", "message"},
              {"role", "user"},
              {"content", {{{"type", "input_text"}, {"text", text}}}}}}};
}

// The samples of the sample speech (16 kHz mono WAV, 44-byte header).
inline std::vector<int16_t> speech()
{
    const std::string wav = read_file(IRIS_SOURCE_DIR "/resources/samples/clip-speech-16k.wav");
    std::vector<int16_t> s((wav.size() - 44) / 2);
    std::memcpy(s.data(), wav.data() + 44, s.size() * 2);
    return s;
}

} // namespace iris::test
