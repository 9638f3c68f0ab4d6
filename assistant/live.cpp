// Live (assistant.h): the pipeline's events become memory entries, its queries answers.
#include "assistant/assistant.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace iris::assistant {

namespace perc = iris::perception;
using namespace std::chrono_literals;

namespace {

// Speech that ends this long after a clip may still belong to it (VAD end time plus padding).
constexpr int64_t kTranscriptLagUs = 1'500'000;

// A closed clip waiting for its transcript.
struct PendingClip
{
    perc::ClipEvent clip;
    std::vector<perc::VideoFrame> frames;
};

// The clip as the memory takes it: wall-clock times, the frames' pixels shared with the bus.
Clip wall_clock_clip(const PendingClip& p, int64_t origin_unix_us)
{
    Clip clip {.t_start_us = origin_unix_us + p.clip.start_us,
               .t_end_us = origin_unix_us + std::max(p.clip.end_us, p.clip.start_us)};
    for (const perc::VideoFrame& f : p.frames)
        clip.frames.push_back({.t_us = origin_unix_us + f.pts_us, .image = f.image});
    return clip;
}

template<class F, class... A> void tell(const F& f, const A&... a)
{
    if (f) f(a...);
}

} // namespace

struct Live::State
{
    State(const reasoning::Engine& e, memory::Store& s, perc::PipelineOptions input, LiveOptions o,
          LiveEvents ev)
        : engine(e)
        , store(s)
        , options(std::move(o))
        , events(std::move(ev))
        , has_audio(!input.audio.empty() || input.feed)
        , pipeline(bus, std::move(input))
    { }

    const reasoning::Engine& engine;
    memory::Store& store;
    const LiveOptions options;
    const LiveEvents events;
    const bool has_audio;
    Bus bus; // this run's own: before the pipeline, which publishes on it
    perc::Pipeline pipeline;
    std::mutex ask_mutex;
    bool running = false; // under ask_mutex
    std::vector<std::string> asked_early; // before run() started the pipeline; under ask_mutex
};

Live::Live(const reasoning::Engine& engine, memory::Store& store, perc::PipelineOptions input,
           LiveOptions options, LiveEvents events)
    : state_(std::make_unique<State>(engine, store, std::move(input), std::move(options),
                                     std::move(events)))
{ }

Live::~Live()
{
    stop();
}

void Live::stop()
{
    state_->pipeline.stop();
}

void Live::ask(std::string_view question)
{
    if (trim(question).empty()) return;
    std::lock_guard lock(state_->ask_mutex);
    if (state_->running)
        state_->pipeline.ask(question);
    else
        state_->asked_early.emplace_back(question);
}

int64_t Live::run()
{
    State& s = *state_;
    const LiveEvents& ev = s.events;
    auto frames = s.bus.topic<perc::FrameEvent>(perc::kTopicFrames).subscribe({.name = "live"});
    auto clips = s.bus.topic<perc::ClipEvent>(perc::kTopicClips).subscribe({.name = "live"});
    auto transcripts
        = s.bus.topic<perc::Transcript>(perc::kTopicTranscripts).subscribe({.name = "live"});
    auto queries = s.bus.topic<perc::Query>(perc::kTopicQueries).subscribe({.name = "live"});
    auto voice = s.bus.topic<perc::VoiceEvent>(perc::kTopicVoice).subscribe({.name = "live"});
    auto progress = s.bus.topic<perc::Progress>(perc::kTopicProgress)
                        .subscribe({.delivery = Delivery::latest, .capacity = 8, .name = "live"});
    // Queries are answered by the responder on its own threads; the answers stream back over
    // the bus, so remembering never stops for them.
    auto questions = s.bus.topic<reasoning::Question>(reasoning::kTopicQuestions);
    auto answers = s.bus.topic<reasoning::AnswerPiece>(reasoning::kTopicAnswers)
                       .subscribe({.capacity = 4096, .name = "live"});
    std::optional<reasoning::Responder> responder;
    if (s.options.answer)
        responder.emplace(
            s.engine, s.bus,
            [&](const std::string& question, int k) {
                return recall(&s.engine, s.store, question, k);
            },
            s.options.responder);

    s.pipeline.start();
    {
        std::lock_guard lock(s.ask_mutex);
        s.running = true;
        for (const std::string& q : s.asked_early) s.pipeline.ask(q);
        s.asked_early.clear();
    }
    std::atomic<bool> done {false};
    std::exception_ptr failure;
    std::thread waiter([&] {
        try {
            s.pipeline.wait();
        } catch (...) {
            failure = std::current_exception();
        }
        done = true;
    });

    std::map<uint64_t, std::vector<perc::VideoFrame>> open_frames;
    std::deque<perc::VideoFrame> latest; // the newest sampled frames, for questions
    std::deque<PendingClip> pending;
    std::vector<memory::Text> heard; // wall-clock times
    // A clip is stored once its transcript is complete: the audio has passed its end, nobody is
    // speaking, and every speech segment that ended has been transcribed.
    int64_t audio_pts = 0;
    const bool no_audio = !s.has_audio;
    bool speaking = false;
    int64_t n_segments = 0, n_transcripts = 0, n_stored = 0;
    uint64_t n_asked = 0, n_answered = 0;
    auto store_ready = [&](bool all) {
        while (!pending.empty()) {
            const PendingClip& p = pending.front();
            const bool heard_all = no_audio
                || (audio_pts >= p.clip.end_us + kTranscriptLagUs && !speaking
                    && n_transcripts >= n_segments);
            if (!all && !heard_all) break;
            const int64_t origin = s.pipeline.origin_unix_us();
            Clip clip = wall_clock_clip(p, origin);
            clip.transcript = heard_during(heard, clip.t_start_us, origin + p.clip.end_us);
            memory::Entry e = clip_entry(s.engine, clip);
            e.id = s.store.add(e);
            ++n_stored;
            tell(ev.stored, e);
            pending.pop_front();
            // What was heard before this clip belongs to no later one.
            std::erase_if(heard,
                          [&](const memory::Text& t) { return t.t_end_us < clip.t_start_us; });
        }
    };
    for (;;) {
        // Every event was published before `done` was set: a pass that starts after it and
        // receives nothing has seen them all.
        const bool finished = done;
        bool idle = true;
        while (auto f = frames.try_receive()) {
            if (s.options.latest_frames > 0) {
                latest.push_back(f->frame);
                if (int(latest.size()) > s.options.latest_frames) latest.pop_front();
            }
            open_frames[f->clip_id].push_back(std::move(f->frame));
            idle = false;
        }
        while (auto v = voice.try_receive()) {
            speaking = v->speaking;
            n_segments += !v->speaking;
            tell(ev.voice, *v);
            idle = false;
        }
        while (auto t = transcripts.try_receive()) {
            ++n_transcripts;
            memory::Text text {.t_start_us = t->origin_unix_us + t->start_us,
                               .t_end_us = t->origin_unix_us + t->end_us,
                               .text = std::move(t->text)};
            if (!text.text.empty()) tell(ev.heard, text);
            heard.push_back(std::move(text));
            idle = false;
        }
        while (auto p = progress.try_receive()) {
            if (!p->video) audio_pts = std::max(audio_pts, p->pts_us);
            tell(ev.progress, *p);
        }
        while (auto c = clips.try_receive()) {
            // Every frame of the clip was published before the clip event.
            while (int(open_frames[c->clip_id].size()) < c->n_frames) {
                auto f = frames.receive_for(100ms);
                if (!f) break;
                open_frames[f->clip_id].push_back(std::move(f->frame));
            }
            auto node = open_frames.extract(c->clip_id);
            if (!node.empty() && !node.mapped().empty())
                pending.push_back({*c, std::move(node.mapped())});
            idle = false;
        }
        while (auto q = queries.try_receive()) {
            tell(ev.asked, *q);
            if (!responder) continue;
            store_ready(true); // what was seen until now is in memory before the question
            reasoning::Question question {.id = ++n_asked, .text = q->text};
            for (const perc::VideoFrame& f : latest) question.images.push_back(f.image);
            questions.publish(std::move(question));
            idle = false;
        }
        while (auto a = answers.try_receive()) {
            n_answered += a->done;
            tell(ev.answer, *a);
            idle = false;
        }
        if (n_answered < n_asked) idle = false; // an answer is still coming
        store_ready(false);
        if (finished && idle) {
            store_ready(true);
            break;
        }
        if (idle) std::this_thread::sleep_for(5ms);
    }
    {
        std::lock_guard lock(s.ask_mutex);
        s.running = false;
    }
    waiter.join();
    if (failure) std::rethrow_exception(failure);
    return n_stored;
}

} // namespace iris::assistant
