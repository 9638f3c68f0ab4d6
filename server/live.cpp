// Live sessions (GET /v1/realtime, docs/live.md): a WebSocket whose client streams camera frames
// and microphone audio and asks questions, and hears what Iris heard, remembered and answers,
// spoken too. Each session runs assistant::Live over a perception::Feed of what the client sends.
//
// The session's socket is served by Boost.Beast on the HTTP worker that took the request: its
// io_context runs on that thread, reading messages and writing events; the Live run has a thread
// of its own and hands its events to the io_context. cpp-httplib has no WebSockets.
#include "assistant/assistant.h"
#include "reasoning/image.h"
#include "server/http.h"
#include "server/internal.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <espeak-ng/speak_lib.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <malloc.h>
#include <map>
#include <strings.h>
#include <sys/socket.h>
#include <thread>

namespace iris::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;

namespace {

// The subprotocol a browser names to pass the API key (it cannot set Authorization on a
// WebSocket), as OpenAI's Realtime API takes it; the server answers with "realtime".
constexpr std::string_view kKeyProtocol = "openai-insecure-api-key.";
constexpr int64_t kSecond = 1'000'000;
// Events waiting for a client that does not read, past which it is cut off.
constexpr size_t kMaxQueuedEventBytes = 16u << 20;

// espeak-ng keeps its state in globals: one synthesis at a time, in this process.
class Voice
{
public:
    // The text as 16-bit mono samples at sample_rate(); empty when espeak-ng cannot speak.
    static std::vector<int16_t> say(const std::string& text)
    {
        std::lock_guard lock(mutex());
        if (rate() <= 0) return {};
        std::vector<int16_t> samples;
        espeak_Synth(text.c_str(), text.size() + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, nullptr,
                     &samples);
        return samples;
    }
    static int sample_rate()
    {
        std::lock_guard lock(mutex());
        return rate();
    }

private:
    static std::mutex& mutex()
    {
        static std::mutex m;
        return m;
    }
    static int on_samples(short* wav, int n, espeak_EVENT* events)
    {
        auto* out = static_cast<std::vector<int16_t>*>(events->user_data);
        if (wav && n > 0) out->insert(out->end(), wav, wav + n);
        return 0;
    }
    // With the mutex held: espeak-ng's output rate, after loading it once; 0 when it failed.
    static int rate()
    {
        static const int r = [] {
            const int hz = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, nullptr,
                                             espeakINITIALIZE_DONT_EXIT);
            if (hz <= 0 || espeak_SetVoiceByName("en-us") != EE_OK) {
                IRIS_LOG_WARN("live: espeak-ng cannot speak; answers are sent as text only");
                return 0;
            }
            espeak_SetSynthCallback(on_samples);
            return hz;
        }();
        return r;
    }
};

// At most `rate` a second on average, `burst` at once.
class Bucket
{
public:
    Bucket(double rate, double burst)
        : rate_(rate)
        , burst_(burst)
        , tokens_(burst)
    { }
    bool take(double n, int64_t now)
    {
        tokens_ = std::min(burst_, tokens_ + rate_ * double(now - last_) / 1e6);
        last_ = now;
        if (tokens_ < n) return false;
        tokens_ -= n;
        return true;
    }

private:
    double rate_, burst_, tokens_;
    int64_t last_ = now_us();
};

// The subprotocols a client offered, trimmed.
std::vector<std::string> offered_protocols(const httplib::Request& req)
{
    std::vector<std::string> out;
    const std::string& list = req.get_header_value("Sec-WebSocket-Protocol");
    for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        const std::string_view p = trim(std::string_view(list).substr(at, comma - at));
        if (!p.empty()) out.emplace_back(p);
        at = comma + 1;
    }
    return out;
}

json error_event(const std::string& code, const std::string& message)
{
    return {{"type", "error"},
            {"error", {{"type", "invalid_request_error"}, {"code", code}, {"message", message}}}};
}

json entry_event(const memory::Entry& e)
{
    json frames = json::array();
    for (size_t k = 0; k < e.key_frames.size(); ++k)
        frames.push_back(strfmt("/v1/memory/%lld?frame=%zu", (long long)e.id, k));
    return {{"type", "memory.entry.created"},
            {"entry",
             {{"id", e.id},
              {"t_start_us", e.t_start_us},
              {"t_end_us", e.t_end_us},
              {"caption", e.caption},
              {"transcript", e.transcript},
              {"key_frames", frames}}}};
}

// Where a sentence of a streamed answer ends: speaking it need not wait for the rest.
size_t sentence_end(std::string_view text)
{
    const size_t end = text.find_last_of(".!?\n");
    return end == std::string_view::npos ? 0 : end + 1;
}

} // namespace

LiveEvent parse_live_event(std::string_view text, int max_json_depth)
{
    const json m = parse_body(text, max_json_depth);
    const Fields f {m, ""};
    const std::string type = f.str("type", 64).value_or("");
    LiveEvent e;
    if (type == "input_audio_buffer.append") {
        e.type = LiveEvent::Type::audio;
        const std::vector<uint8_t> bytes = base64_decode(f.str("audio", SIZE_MAX).value_or(""));
        if (bytes.empty() || bytes.size() % 2)
            bad_request("audio is base64 of 16-bit samples: an even number of bytes", "audio");
        e.audio.resize(bytes.size() / 2);
        std::memcpy(e.audio.data(), bytes.data(), bytes.size()); // little-endian, as x86
    } else if (type == "input_video_frame.append") {
        e.type = LiveEvent::Type::frame;
        e.image = base64_decode(f.str("image", SIZE_MAX).value_or(""));
        if (e.image.empty()) bad_request("image is a base64 JPEG frame", "image");
    } else if (type == "conversation.item.create") {
        // {"item": {"type": "message", "role": "user", "content": [{"type": "input_text",
        // "text": ...}]}}
        e.type = LiveEvent::Type::question;
        const json* item = m.contains("item") && m["item"].is_object() ? &m["item"] : nullptr;
        const json* content = item && item->contains("content") && (*item)["content"].is_array()
            ? &(*item)["content"]
            : nullptr;
        if (content)
            for (const json& part : *content)
                if (part.is_object() && part.contains("type") && part["type"] == "input_text"
                    && part.contains("text") && part["text"].is_string())
                    e.question += part["text"].get<std::string>();
        if (trim(e.question).empty())
            bad_request("a question is an item whose content has input_text", "item");
        if (e.question.size() > 4000) bad_request("a question has at most 4000 bytes", "item");
    } else if (type == "session.update") {
        e.type = LiveEvent::Type::update;
        if (!m.contains("session") || !m["session"].is_object())
            bad_request("session.update needs a session object", "session");
        const Fields s {m["session"], "session."};
        e.wake_phrase = s.str("wake_phrase", 200);
        if (e.wake_phrase && perception::words_of(*e.wake_phrase).empty())
            bad_request("the wake phrase needs a word", "session.wake_phrase");
        e.output_audio = s.boolean("output_audio");
    } else {
        bad_request("unknown event type '" + type.substr(0, 64)
                        + "': send input_audio_buffer.append, input_video_frame.append, "
                          "conversation.item.create or session.update",
                    "type");
    }
    return e;
}

class LiveSession
{
public:
    LiveSession(const Context& ctx, int fd)
        : ctx_(ctx)
        , ws_(ioc_)
        , idle_(ioc_)
        , tick_(ioc_)
        , audio_rate_(perception::kSampleRate * 1.25, perception::kSampleRate * 2.0)
        , frame_rate_(ctx.options.live_max_fps, ctx.options.live_max_fps * 2.0)
    {
        sockaddr_storage address {};
        socklen_t length = sizeof address;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
        ws_.next_layer().assign(address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd);
    }

    // Answers the upgrade (the request's head is in `received`), then serves the session until
    // the client leaves, a limit ends it or the server stops. `refusal` closes it at once.
    void run(const std::string& received, const std::string& refusal, bool realtime_protocol)
    {
        ws_.set_option(websocket::stream_base::decorator([&](websocket::response_type& res) {
            res.set(beast::http::field::server, "iris");
            if (realtime_protocol) res.set(beast::http::field::sec_websocket_protocol, "realtime");
        }));
        // The handshakes, and pings at half the idle time: a client that vanished answers none.
        ws_.set_option(websocket::stream_base::timeout {
            .handshake_timeout = std::chrono::seconds(ctx_.options.timeout_s),
            .idle_timeout = std::chrono::seconds(ctx_.options.timeout_s),
            .keep_alive_pings = true});
        ws_.read_message_max(ctx_.options.live_max_message_bytes);
        ws_.async_accept(net::buffer(received), [&](beast::error_code ec) {
            if (ec) return end();
            accepted_ = true;
            if (!refusal.empty()) return close(websocket::close_code::try_again_later, refusal);
            begin();
        });
        ioc_.run();
        // The client is gone: what it sent is still perceived and remembered, whole.
        if (feed_) feed_->close();
        if (live_thread_.joinable()) live_thread_.join();
    }

    // From any thread: ends the session (the server is stopping).
    void stop()
    {
        net::post(ioc_,
                  [this] { close(websocket::close_code::going_away, "the server is stopping"); });
    }

private:
    void begin()
    {
        origin_us_ = wall_us();
        last_input_us_ = now_us();
        send({{"type", "session.created"},
              {"session",
               {{"wake_phrase", wake_.phrase},
                {"input_audio_format", {{"type", "pcm16"}, {"rate", perception::kSampleRate}}},
                {"output_audio_format", {{"type", "pcm16"}, {"rate", Voice::sample_rate()}}},
                {"output_audio", output_audio_.load()},
                {"limits",
                 {{"max_message_bytes", ctx_.options.live_max_message_bytes},
                  {"max_frames_per_second", ctx_.options.live_max_fps},
                  {"idle_timeout_s", ctx_.options.live_idle_timeout_s}}}}}});
        read();
        watch_idle();
        report();
    }

    void read()
    {
        ws_.async_read(in_, [this](beast::error_code ec, size_t) {
            if (ec) return end();
            if (!ws_.got_text()) {
                return close(websocket::close_code::unknown_data,
                             "send JSON text messages, not binary ones");
            }
            last_input_us_ = now_us();
            const std::string text = beast::buffers_to_string(in_.data());
            in_.consume(in_.size());
            try {
                on_message(text);
            } catch (const ApiError& e) {
                send(error_event("invalid_request", e.message));
            } catch (const Error& e) {
                send(error_event(e.kind() == ErrorKind::resource ? "limit" : "invalid_request",
                                 e.what()));
            } catch (const std::exception& e) {
                IRIS_LOG_ERROR("live: %s", e.what());
                return close(websocket::close_code::internal_error, "internal error");
            }
            if (!closing_) read();
        });
    }

    void on_message(const std::string& text)
    {
        LiveEvent e = parse_live_event(text, ctx_.options.max_json_depth);
        const int64_t now = now_us();
        switch (e.type) {
        case LiveEvent::Type::audio:
            if (!audio_rate_.take(double(e.audio.size()), now))
                return close(websocket::close_code::policy_error,
                             "audio arrives faster than real time (16 kHz)");
            start();
            try {
                feed_->push_audio(e.audio); // never dropped: too much waiting ends the session
            } catch (const Error& error) {
                return close(websocket::close_code::try_again_later, error.what());
            }
            break;
        case LiveEvent::Type::frame:
            if (!frame_rate_.take(1, now))
                return close(websocket::close_code::policy_error,
                             strfmt("more than %d frames a second", ctx_.options.live_max_fps));
            start();
            feed_->push_frame(wall_us() - origin_us_, Buffer::adopt(std::move(e.image)));
            break;
        case LiveEvent::Type::question:
            start();
            live_->ask(e.question);
            break;
        case LiveEvent::Type::update:
            if (e.wake_phrase) {
                if (live_)
                    bad_request("the wake phrase is set before the first input",
                                "session.wake_phrase");
                wake_.phrase = *e.wake_phrase;
            }
            if (e.output_audio) output_audio_ = *e.output_audio;
            send({{"type", "session.updated"},
                  {"session",
                   {{"wake_phrase", wake_.phrase}, {"output_audio", output_audio_.load()}}}});
            break;
        }
    }

    // The Live run starts with the first input, once the settings are known.
    void start()
    {
        if (live_) return;
        feed_ = std::make_shared<perception::Feed>(perception::FeedOptions {
            .decode
            = [limits = frame_limits()](
                  const Buffer& b) { return reasoning::decode_image(b.bytes(), limits, "frame"); },
            .max_frames_queued = 8});
        assistant::LiveEvents events;
        events.stored = [this](const memory::Entry& e) { post(entry_event(e)); };
        events.heard = [this](const memory::Text& t) {
            post({{"type", "conversation.item.input_audio_transcription.completed"},
                  {"transcript", t.text},
                  {"t_start_us", t.t_start_us},
                  {"t_end_us", t.t_end_us}});
        };
        events.voice = [this](const perception::VoiceEvent& v) {
            post({{"type",
                   v.speaking ? "input_audio_buffer.speech_started"
                              : "input_audio_buffer.speech_stopped"},
                  {"audio_ms", v.pts_us / 1000}});
        };
        events.asked = [this](const perception::Query& q) { asked(q); };
        events.answer = [this](const reasoning::AnswerPiece& a) { answered(a); };
        live_.emplace(
            ctx_.engine, *ctx_.store,
            perception::PipelineOptions {
                .feed = feed_, .wake = wake_, .origin_unix_us = origin_us_},
            assistant::LiveOptions {.responder
                                    = {.ask = {.max_prompt_tokens = ctx_.options.max_prompt_tokens},
                                       .parallel = 1,
                                       .prompt_cache_bytes = 32u << 20},
                                    .latest_frames = 1},
            events);
        live_thread_ = std::thread([this] {
            try {
                live_->run();
            } catch (const std::exception& e) {
                IRIS_LOG_ERROR("live: the session failed: %s", e.what());
                post(error_event("session_failed", e.what()));
                net::post(ioc_, [this] {
                    close(websocket::close_code::internal_error, "the session failed");
                });
            }
        });
    }

    reasoning::ImageLimits frame_limits() const
    {
        reasoning::ImageLimits l;
        l.max_side = 4096;
        l.max_pixels = 4096 * 2160;
        l.max_encoded_bytes = ctx_.options.live_max_message_bytes;
        return l;
    }

    // On the Live's thread.
    struct Response
    {
        std::string id;
        int64_t asked_us = 0; // the end of the spoken question, or when it was typed (wall)
        std::string unspoken; // answer text not given to the voice yet
        int64_t first_text_us = 0, first_audio_us = 0;
    };

    void asked(const perception::Query& q)
    {
        Response r {strfmt("resp_%llu", (unsigned long long)++n_asked_), q.unix_us};
        post({{"type", "response.created"},
              {"response",
               {{"id", r.id},
                {"question", q.text},
                {"source", q.source == perception::QuerySource::spoken ? "spoken" : "typed"}}}});
        responses_[n_asked_] = std::move(r);
    }

    void answered(const reasoning::AnswerPiece& a)
    {
        auto it = responses_.find(a.question_id);
        if (it == responses_.end()) return;
        Response& r = it->second;
        if (!a.text.empty()) {
            if (!r.first_text_us) r.first_text_us = wall_us();
            post({{"type", "response.text.delta"}, {"response_id", r.id}, {"delta", a.text}});
        }
        if (output_audio_) {
            // Whole sentences as they complete, the rest at the end.
            const std::string pending = r.unspoken + a.text;
            const size_t end = a.done ? pending.size() : sentence_end(pending);
            if (end > 0) speak(r, pending.substr(0, end));
            r.unspoken = pending.substr(end);
        }
        if (!a.done) return;
        json used = json::array();
        for (const reasoning::Remembered& m : a.used) used.push_back(m.id);
        auto ms = [&](int64_t t) { return t ? json((t - r.asked_us) / 1000) : json(nullptr); };
        post({{"type", "response.text.done"}, {"response_id", r.id}, {"text", a.answer}});
        if (output_audio_) post({{"type", "response.audio.done"}, {"response_id", r.id}});
        post({{"type", "response.done"},
              {"response",
               {{"id", r.id},
                {"status", a.error.empty() ? "completed" : "failed"},
                {"finish_reason", a.finish_reason},
                {"error", a.error},
                {"memories", used},
                {"latency_ms",
                 {{"first_text", ms(r.first_text_us)}, {"first_audio", ms(r.first_audio_us)}}}}}});
        responses_.erase(it);
    }

    void speak(Response& r, const std::string& text)
    {
        if (trim(text).empty()) return;
        const std::vector<int16_t> samples = Voice::say(text);
        if (samples.empty()) return;
        if (!r.first_audio_us) r.first_audio_us = wall_us();
        const auto* bytes = reinterpret_cast<const uint8_t*>(samples.data());
        post({{"type", "response.audio.delta"},
              {"response_id", r.id},
              {"delta", base64_encode({bytes, samples.size() * 2})}});
    }

    // From any thread.
    void post(json event)
    {
        net::post(ioc_, [this, text = event.dump(-1, ' ', false, json::error_handler_t::replace)] {
            send_text(text);
        });
    }

    void send(const json& event)
    {
        send_text(event.dump(-1, ' ', false, json::error_handler_t::replace));
    }

    void send_text(std::string text)
    {
        if (closing_) return;
        out_bytes_ += text.size();
        out_.push_back(std::move(text));
        if (out_bytes_ > kMaxQueuedEventBytes)
            return close(websocket::close_code::policy_error,
                         "the client does not read its events");
        if (!writing_) write();
    }

    void write()
    {
        writing_ = true;
        ws_.text(true);
        ws_.async_write(net::buffer(out_.front()), [this](beast::error_code ec, size_t) {
            out_bytes_ -= out_.front().size();
            out_.pop_front();
            writing_ = false;
            if (ec) return end();
            if (pending_close_) {
                const websocket::close_reason r = *pending_close_;
                return close(websocket::close_code(r.code),
                             std::string(r.reason.data(), r.reason.size()));
            }
            if (!out_.empty()) write();
        });
    }

    // Sends what is queued, then the close frame with its reason.
    void close(websocket::close_code code, const std::string& reason)
    {
        if (closing_) return;
        if (!accepted_) return end();
        if (writing_) {
            pending_close_ = websocket::close_reason(code, reason);
            return;
        }
        closing_ = true;
        IRIS_LOG_INFO("live: session closed (%d): %s", int(code), reason.c_str());
        ws_.async_close(websocket::close_reason(code, reason),
                        [this](beast::error_code) { end(); });
    }

    // The connection is over: run() returns, abandoning what is still pending (Beast may hold
    // a write suspended behind the failed read for good).
    void end()
    {
        closing_ = true;
        beast::error_code ec;
        ws_.next_layer().shutdown(tcp::socket::shutdown_both, ec);
        ws_.next_layer().close(ec);
        ioc_.stop();
    }

    void watch_idle()
    {
        idle_.expires_after(std::chrono::seconds(1));
        idle_.async_wait([this](beast::error_code ec) {
            if (ec || closing_) return;
            if (now_us() - last_input_us_ > int64_t(ctx_.options.live_idle_timeout_s) * kSecond)
                return close(websocket::close_code::normal,
                             strfmt("nothing came for %d s", ctx_.options.live_idle_timeout_s));
            watch_idle();
        });
    }

    // Once a second: what came, what was perceived and what was dropped.
    void report()
    {
        tick_.expires_after(std::chrono::seconds(1));
        tick_.async_wait([this](beast::error_code ec) {
            if (ec || closing_) return;
            const perception::FeedStats s = feed_ ? feed_->stats() : perception::FeedStats {};
            send({{"type", "session.stats"},
                  {"frames",
                   {{"received", s.n_frames},
                    {"decoded", s.n_decoded},
                    {"skipped", s.n_skipped},
                    {"dropped", s.n_dropped},
                    {"corrupt", s.n_corrupt}}},
                  {"audio",
                   {{"received_ms", s.n_samples * 1000 / perception::kSampleRate},
                    {"queued_ms", s.audio_queued_us / 1000}}}});
            report();
        });
    }

    const Context& ctx_;
    net::io_context ioc_;
    websocket::stream<tcp::socket> ws_;
    net::steady_timer idle_, tick_;
    beast::flat_buffer in_;
    std::deque<std::string> out_;
    size_t out_bytes_ = 0;
    bool accepted_ = false, writing_ = false, closing_ = false;
    std::optional<websocket::close_reason> pending_close_;
    Bucket audio_rate_, frame_rate_;
    int64_t origin_us_ = 0, last_input_us_ = 0;
    perception::WakeOptions wake_;
    std::atomic<bool> output_audio_ {true}; // read on the Live's thread
    std::shared_ptr<perception::Feed> feed_;
    std::optional<assistant::Live> live_;
    std::thread live_thread_;
    // On the Live's thread: the questions being answered, by question id.
    uint64_t n_asked_ = 0;
    std::map<uint64_t, Response> responses_;
};

struct LiveSessions::State
{
    struct Running
    {
        std::unique_ptr<LiveSession> session;
        std::thread thread;
        bool refused = false;
        std::atomic<bool> done {false};
    };
    std::mutex mu;
    std::list<Running> running; // under mu
    bool stopping = false; // under mu

    // With mu held: joins the sessions that ended.
    void reap()
    {
        for (auto it = running.begin(); it != running.end();) {
            if (!it->done) {
                ++it;
                continue;
            }
            it->thread.join();
            it = running.erase(it);
        }
    }
};

LiveSessions::LiveSessions()
    : state_(std::make_unique<State>())
{ }

LiveSessions::~LiveSessions()
{
    stop_all();
}

void LiveSessions::serve(const Context& ctx, int fd, std::string received, bool realtime_protocol)
{
    std::lock_guard lock(state_->mu);
    state_->reap();
    const auto open = std::count_if(state_->running.begin(), state_->running.end(),
                                    [](const State::Running& r) { return !r.refused; });
    std::string refusal;
    if (state_->stopping)
        refusal = "the server is stopping";
    else if (open >= ctx.options.max_live_sessions)
        refusal = strfmt("the server has %d live sessions, the most it takes; try again later",
                         ctx.options.max_live_sessions);
    State::Running& r = state_->running.emplace_back();
    r.session = std::make_unique<LiveSession>(ctx, fd);
    r.refused = !refusal.empty();
    r.thread = std::thread(
        [st = state_.get(), &r, received = std::move(received), refusal, realtime_protocol] {
            try {
                r.session->run(received, refusal, realtime_protocol);
            } catch (const std::exception& e) { // a session's failure is not the server's
                IRIS_LOG_ERROR("live: the session failed: %s", e.what());
            }
            {
                std::lock_guard guard(st->mu);
                r.session.reset();
            }
            // A session's threads allocate in malloc arenas of their own (the speech model, the
            // prompts), which glibc keeps mapped after they are freed unless asked.
            malloc_trim(0);
            r.done = true;
        });
}

void LiveSessions::stop_all()
{
    std::list<State::Running> running;
    {
        std::lock_guard lock(state_->mu);
        state_->stopping = true;
        for (State::Running& r : state_->running)
            if (r.session) r.session->stop();
        running.splice(running.end(), state_->running);
    }
    // Without the lock: a session takes it to end.
    for (State::Running& r : running) r.thread.join();
}

void live_session(const httplib::Request& req, httplib::Response& res, const Context& ctx)
{
    if (!ctx.live)
        throw ApiError {404, "live sessions are off: start the server with --db DIR --live"};
    const std::string upgrade = req.get_header_value("Upgrade");
    if (upgrade.size() != 9 || strcasecmp(upgrade.c_str(), "websocket") != 0) {
        res.set_header("Upgrade", "websocket");
        throw ApiError {426, "GET /v1/realtime is a WebSocket: send Upgrade: websocket"};
    }
    // A page of another origin may open a WebSocket to any address: only the server's own
    // pages and the --cors-origin ones may (clients that are no browser send no Origin).
    const std::string& origin = req.get_header_value("Origin");
    const auto& allowed = ctx.options.cors_origins;
    if (!origin.empty() && origin != "http://" + req.get_header_value("Host")
        && std::find(allowed.begin(), allowed.end(), origin) == allowed.end())
        throw ApiError {403,
                        "live sessions from the origin " + origin.substr(0, 200)
                            + " are not allowed: start the server with --cors-origin "
                              "ORIGIN to allow it"};
    const std::vector<std::string> protocols = offered_protocols(req);
    const bool realtime_protocol
        = std::find(protocols.begin(), protocols.end(), "realtime") != protocols.end();
    std::string received;
    const int fd = HttpServer::take_connection(received);
    res.status = 101;
    ctx.live->serve(ctx, fd, std::move(received), realtime_protocol);
}

std::string live_key(const httplib::Request& req)
{
    for (const std::string& p : offered_protocols(req))
        if (p.starts_with(kKeyProtocol)) return p.substr(kKeyProtocol.size());
    return "";
}

} // namespace iris::server
