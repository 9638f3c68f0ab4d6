#include "perception/perception.h"

#include <chrono>

namespace iris::perception {

namespace {

using namespace std::chrono_literals;

enum Worker { worker_video, worker_audio, worker_asr };

// A segment on its way from the audio thread to the recognizer; `last` ends the stream.
struct SpeechItem
{
    SpeechSegment segment;
    bool last = false;
};

// Progress is reported about this often in stream time.
constexpr int64_t kProgressIntervalUs = 1'000'000;

// Publishes once no lossless subscriber is full, so that a slow consumer slows the source down
// instead of making publish time out. False when the message was not delivered because the bus
// closed or stop was requested while waiting.
template<class T>
bool publish_when_room(const Topic<T>& topic, T message, const std::stop_token& stop)
{
    for (;;) {
        bool full = false;
        for (const SubscriptionStats& sub : topic.stats().subscriptions)
            full = full || (sub.delivery == Delivery::lossless && sub.depth >= sub.capacity);
        if (!full) break;
        if (stop.stop_requested()) return false;
        std::this_thread::sleep_for(1ms);
    }
    const PublishResult result = topic.try_publish(std::move(message));
    if (result.status == PublishStatus::timeout)
        IRIS_LOG_WARN("perception: a subscriber of %s stayed full; %u did not get a message",
                      topic.name().c_str(), result.n_refused);
    return result.status != PublishStatus::closed;
}

std::string error_text(const std::exception_ptr& error)
{
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

} // namespace

struct Pipeline::Channels
{
    explicit Channels(Bus& bus)
        : frames(bus.topic<FrameEvent>(kTopicFrames))
        , clips(bus.topic<ClipEvent>(kTopicClips))
        , voice(bus.topic<VoiceEvent>(kTopicVoice))
        , transcripts(bus.topic<Transcript>(kTopicTranscripts))
        , queries(bus.topic<Query>(kTopicQueries))
        , progress(bus.topic<Progress>(kTopicProgress))
        , speech(internal.topic<SpeechItem>("speech"))
        , speech_in(speech.subscribe({.capacity = 64, .name = "asr"}))
    { }

    Topic<FrameEvent> frames;
    Topic<ClipEvent> clips;
    Topic<VoiceEvent> voice;
    Topic<Transcript> transcripts;
    Topic<Query> queries;
    Topic<Progress> progress;
    Bus internal; // the audio thread hands speech segments to the recognizer's thread
    Topic<SpeechItem> speech;
    Subscription<SpeechItem> speech_in;
};

Pipeline::Pipeline(Bus& bus, PipelineOptions options)
    : options_(std::move(options))
    , channels_(std::make_unique<Channels>(bus))
{ }

Pipeline::~Pipeline()
{
    stop();
}

void Pipeline::start()
{
    std::lock_guard lock(threads_mutex_);
    if (started_)
        throw Error(ErrorKind::invalid_argument, "the perception pipeline was already started");
    if (options_.video.empty() && options_.audio.empty() && !options_.feed)
        throw Error(ErrorKind::invalid_argument,
                    "nothing to perceive: no video and no audio input");
    if (options_.feed && !(options_.video.empty() && options_.audio.empty()))
        throw Error(ErrorKind::invalid_argument,
                    "a pipeline takes a feed or video and audio inputs, not both");
    options_.sampler.validate();
    options_.vad.validate();
    WakeDetector {options_.wake}; // validates the phrase

    VideoOptions video_options = options_.video_options;
    video_options.realtime = options_.realtime;
    AudioOptions audio_options = options_.audio_options;
    audio_options.realtime = options_.realtime;
    if (!options_.video.empty()) video_.emplace(options_.video, video_options, stop_.get_token());
    if (!options_.audio.empty()) audio_.emplace(options_.audio, audio_options, stop_.get_token());
    const bool feed = bool(options_.feed);
    if (audio_ || feed) recognizer_.emplace(options_.asr);
    origin_unix_us_ = options_.origin_unix_us != 0 ? options_.origin_unix_us : wall_us();
    started_ = true;
    if (video_ || feed) threads_.emplace_back([this] { run_video(stop_.get_token()); });
    if (audio_ || feed) {
        threads_.emplace_back([this] { run_audio(stop_.get_token()); });
        threads_.emplace_back([this] { run_asr(stop_.get_token()); });
    }
}

void Pipeline::wait()
{
    std::lock_guard lock(threads_mutex_);
    for (std::thread& t : threads_)
        if (t.joinable()) t.join();
    for (const std::exception_ptr& error : errors_)
        if (error) std::rethrow_exception(error);
}

void Pipeline::stop()
{
    stop_.request_stop();
    std::lock_guard lock(threads_mutex_);
    for (std::thread& t : threads_)
        if (t.joinable()) t.join();
}

void Pipeline::ask(std::string_view question)
{
    channels_->queries.publish(typed_query(question));
}

void Pipeline::run_video(std::stop_token stop)
{
    Feed* feed = options_.feed.get();
    Progress progress;
    progress.video = true;
    progress.duration_us = feed ? 0 : video_->info().duration_us;
    auto report = [&] {
        if (feed) {
            const FeedStats stats = feed->stats();
            progress.n_decoded = stats.n_decoded;
            progress.n_corrupt = stats.n_corrupt;
        } else {
            const VideoStats stats = video_->stats();
            progress.n_decoded = stats.n_decoded;
            progress.n_corrupt = stats.n_corrupt;
        }
        channels_->progress.try_publish(progress, 0ms); // never waits: progress can be skipped
    };
    try {
        FrameSampler sampler(options_.sampler);
        auto publish_clip = [&](std::optional<ClipEvent>& clip) {
            if (!clip) return true;
            clip->origin_unix_us = origin_unix_us_;
            return publish_when_room(channels_->clips, *clip, stop);
        };
        int64_t next_report_us = 0;
        bool open = true;
        while (open) {
            std::optional<VideoFrame> frame = feed ? feed->read_frame(sampler.next_pts_us(), stop)
                                                   : video_->read(sampler.next_pts_us());
            if (!frame) break;
            FrameSampler::Step step = sampler.offer(*frame);
            open = publish_clip(step.closed_before);
            if (open && step.sampled) {
                step.sampled->origin_unix_us = origin_unix_us_;
                open = publish_when_room(channels_->frames, std::move(*step.sampled), stop);
            }
            open = open && publish_clip(step.closed_after);
            progress.pts_us = frame->pts_us;
            if (frame->pts_us >= next_report_us) {
                report();
                next_report_us = frame->pts_us + kProgressIntervalUs;
            }
        }
        // What was seen before a stop still makes a clip.
        std::optional<ClipEvent> last = sampler.finish();
        if (open) publish_clip(last);
    } catch (...) {
        errors_[worker_video] = std::current_exception();
        progress.error = error_text(errors_[worker_video]);
        IRIS_LOG_ERROR("perception: video '%s' failed: %s", feed ? "feed" : options_.video.c_str(),
                       progress.error.c_str());
    }
    progress.finished = true;
    report();
}

void Pipeline::run_audio(std::stop_token stop)
{
    Feed* feed = options_.feed.get();
    Progress progress;
    progress.video = false;
    progress.duration_us = feed ? 0 : audio_->info().duration_us;
    auto report = [&] {
        if (feed) {
            progress.n_decoded = feed->stats().n_samples;
        } else {
            const AudioStats stats = audio_->stats();
            progress.n_decoded = stats.n_samples;
            progress.n_corrupt = stats.n_corrupt;
        }
        channels_->progress.try_publish(progress, 0ms);
    };
    try {
        Vad vad(options_.vad);
        int64_t announced_us = -1; // start of the speech announced last; -1: none
        auto voice = [&](bool speaking, int64_t pts_us) {
            return publish_when_room(channels_->voice,
                                     VoiceEvent {speaking, pts_us, origin_unix_us_}, stop);
        };
        auto ended = [&](SpeechSegment&& segment) {
            voice(false, segment.end_us);
            announced_us = -1;
            publish_when_room(channels_->speech, SpeechItem {std::move(segment), false}, stop);
        };
        int64_t next_report_us = 0;
        for (;;) {
            std::optional<AudioChunk> chunk = feed ? feed->read_audio(stop) : audio_->read();
            if (!chunk) break;
            for (SpeechSegment& segment : vad.push(chunk->samples)) ended(std::move(segment));
            const std::optional<int64_t> start = vad.speech_start_us();
            if (start && *start != announced_us) {
                voice(true, *start);
                announced_us = *start;
            }
            progress.pts_us = chunk->pts_us;
            if (chunk->pts_us >= next_report_us) {
                report();
                next_report_us = chunk->pts_us + kProgressIntervalUs;
            }
        }
        if (std::optional<SpeechSegment> segment = vad.flush()) ended(std::move(*segment));
    } catch (...) {
        errors_[worker_audio] = std::current_exception();
        progress.error = error_text(errors_[worker_audio]);
        IRIS_LOG_ERROR("perception: audio '%s' failed: %s", feed ? "feed" : options_.audio.c_str(),
                       progress.error.c_str());
    }
    publish_when_room(channels_->speech, SpeechItem {{}, true}, stop);
    progress.finished = true;
    report();
}

void Pipeline::run_asr(std::stop_token stop)
{
    try {
        WakeDetector wake(options_.wake);
        while (!stop.stop_requested()) {
            std::optional<SpeechItem> item = channels_->speech_in.receive_for(100ms);
            if (!item) continue;
            if (item->last) break;
            Transcript transcript = recognizer_->recognize(item->segment);
            if (transcript.text.empty()) continue;
            transcript.origin_unix_us = origin_unix_us_;
            IRIS_LOG_DEBUG("perception: heard \"%s\" at %.1f s", transcript.text.c_str(),
                           transcript.start_us / 1e6);
            std::optional<Query> query = wake.feed(transcript);
            if (!publish_when_room(channels_->transcripts, std::move(transcript), stop)) break;
            if (query && !publish_when_room(channels_->queries, std::move(*query), stop)) break;
        }
    } catch (...) {
        errors_[worker_asr] = std::current_exception();
        IRIS_LOG_ERROR("perception: speech recognition failed: %s",
                       error_text(errors_[worker_asr]).c_str());
    }
    channels_->speech_in.unsubscribe(); // the audio thread must not wait for us any more
}

} // namespace iris::perception
