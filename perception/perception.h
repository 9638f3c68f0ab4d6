// perception — turns cameras, video files, microphones and audio files into events on the bus:
// sampled frames grouped into clips, voice activity, transcripts and user queries.
//
//   iris::Bus bus;
//   auto clips = bus.topic<perception::ClipEvent>(perception::topic_clips).subscribe();
//   perception::Pipeline watch(bus, {.video = "clip.mp4", .audio = "clip.mp4"});
//   watch.start();   // opens the sources and the speech model here; throws Error
//   while (auto c = clips.receive()) ...   // frames, transcripts, queries likewise
//   watch.wait();    // until both sources ended; rethrows a worker's error
//
// The parts work on their own as well (tests, benchmarks, tools):
//
//   VideoSource video("clip.mp4");            // a file, "/dev/video0" or "testsrc"
//   FrameSampler sampler;                     // 1 fps, clips of up to 16 frames
//   while (auto f = video.read(sampler.next_pts_us())) { auto step = sampler.offer(*f); ... }
//
//   AudioSource audio("clip.mp4");            // 16 kHz mono; "mic" for the microphone
//   Vad vad;  Recognizer asr;
//   while (auto chunk = audio.read())
//       for (SpeechSegment& s : vad.push(chunk->samples)) print(asr.recognize(s).text);
//
//   auto feed = std::make_shared<Feed>(FeedOptions {.decode = decode_jpeg});
//   Pipeline live(bus, {.feed = feed});       // frames and audio a client pushes (iris serve)
//   feed->push_frame(pts_us, jpeg);  feed->push_audio(pcm16);  feed->close();
//
// Only local files and devices are opened: no network protocols and no playlists.
// Times are stream times in microseconds: pts_us counts from the start of the stream. Bus
// messages also carry origin_unix_us, the wall-clock time of pts 0 (the same for every message
// of one Pipeline run), so wall time = origin_unix_us + pts_us.
//
// Thread safety: a source, sampler, Vad, Recognizer or WakeDetector is used by one thread at a
// time. Pipeline's functions may be called from any thread; messages are published from its
// worker threads.
#pragma once

#include "core/bus.h"
#include "core/core.h"
#include "core/image.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace iris::perception {

namespace detail {
class AudioBackend;
}

// =============================================================================================
// Bus messages and their topics

inline constexpr const char* kTopicFrames = "perception.frames"; // FrameEvent
inline constexpr const char* kTopicClips = "perception.clips"; // ClipEvent
inline constexpr const char* kTopicVoice = "perception.voice"; // VoiceEvent
inline constexpr const char* kTopicTranscripts = "perception.transcripts"; // Transcript
inline constexpr const char* kTopicQueries = "perception.queries"; // Query
inline constexpr const char* kTopicProgress = "perception.progress"; // Progress

// A decoded video frame.
struct VideoFrame
{
    int64_t pts_us = 0;
    Image image;
};

// A sampled frame and the clip it belongs to.
struct FrameEvent
{
    VideoFrame frame;
    uint64_t clip_id = 0; // 0, 1, 2, ... in stream order
    int index_in_clip = 0; // 0 for the frame that opened the clip
    float scene_diff = 0.f; // difference to the clip's first frame, 0..1 (see FrameSampler)
    int64_t origin_unix_us = 0;
};

enum class ClipEnd {
    scene_change, // the next sampled frame differed too much from the clip's first frame
    full, // the clip reached SamplerOptions::clip_frames_max frames
    end_of_stream,
};
const char* clip_end_name(ClipEnd reason); // "scene_change", "full", "end_of_stream"

// A clip that closed: its frames were published before it, with its clip_id.
struct ClipEvent
{
    uint64_t clip_id = 0;
    int64_t start_us = 0; // pts of its first frame
    int64_t end_us = 0; // last frame's pts + one sampling interval, at most the next clip's start
    int n_frames = 0;
    ClipEnd reason = ClipEnd::end_of_stream;
    int64_t origin_unix_us = 0;
};

// Speech started or ended (OmniLive interrupts an answer being spoken when speech starts).
struct VoiceEvent
{
    bool speaking = false;
    int64_t pts_us = 0; // where the speech starts or ends, including the VAD's padding
    int64_t origin_unix_us = 0;
};

// What was said in one speech segment.
struct Transcript
{
    int64_t start_us = 0; // first and last recognised word (the segment when there is none)
    int64_t end_us = 0;
    std::string text; // lower-case words separated by single spaces; may be empty
    int64_t origin_unix_us = 0;
};

enum class QuerySource { typed, spoken };

// A question for the assistant: typed, or spoken after the wake phrase.
struct Query
{
    std::string text;
    QuerySource source = QuerySource::typed;
    int64_t unix_us = 0; // when it was asked, wall clock
};

// How far a Pipeline's source got; published about once a second of stream time and at the end.
struct Progress
{
    bool video = true; // from the video source, else from the audio source
    int64_t pts_us = 0; // stream time reached
    int64_t duration_us = 0; // 0 when unknown or live
    uint64_t n_decoded = 0; // video frames, or audio samples
    uint64_t n_corrupt = 0; // packets or frames skipped as corrupt
    bool finished = false; // the source ended, was stopped, or failed (error says why)
    std::string error;
};

// =============================================================================================
// Video

struct VideoOptions
{
    // Pace files and test patterns to their timestamps (cameras pace themselves).
    bool realtime = false;
    // Output size: 0 keeps the source's; with one of them 0 the aspect ratio is kept.
    int width = 0;
    int height = 0;
    // Capture size and rate asked of a camera (0: its default) and used by test patterns
    // (0: 640x480 at 30 fps).
    int capture_width = 640;
    int capture_height = 480;
    int capture_fps = 30;
    int64_t duration_us = 0; // end the stream after this much stream time; 0: no limit
    int threads = 0; // decoder threads; 0: FFmpeg picks
};

struct VideoInfo
{
    std::string format; // FFmpeg's demuxer, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "video4linux2"
    std::string codec; // e.g. "h264"
    int width = 0; // of the source (frames may be scaled, see VideoOptions)
    int height = 0;
    double fps = 0; // nominal; 0 when unknown
    int64_t duration_us = 0; // 0 when unknown or live
    bool live = false; // a camera or a test pattern
};

struct VideoStats
{
    uint64_t n_decoded = 0; // frames out of the decoder, corrupt ones excepted
    uint64_t n_converted = 0; // frames converted to RGB and returned
    uint64_t n_corrupt = 0; // packets the decoder refused and frames it flagged corrupt
};

// Demuxes and decodes the video stream of a file, camera or test pattern with FFmpeg.
class VideoSource
{
public:
    // `input`: a local file path or file: URL (mp4, mkv, webm, mov, avi, ...), a V4L2 device
    // ("/dev/videoN", "/dev/v4l/by-id/..."), or a test pattern "testsrc", "testsrc2" or
    // "smptebars". Throws Error(not_found) for a missing file or device, Error(unsupported) for a
    // URL of another scheme, a playlist or a format that is not a media container,
    // Error(invalid_input) for a file FFmpeg cannot read or that has no video stream. A stop
    // request on `stop` makes read() return nullopt.
    explicit VideoSource(const std::string& input, VideoOptions options = {},
                         std::stop_token stop = {});
    ~VideoSource();
    VideoSource(VideoSource&&) noexcept;
    VideoSource& operator=(VideoSource&&) noexcept;

    // The next frame with pts_us >= min_pts_us. Frames before it are decoded (later frames
    // depend on them) but not converted to RGB. A corrupt packet or frame is skipped and
    // counted. nullopt at the end of the stream, past options.duration_us, or once stop is
    // requested. Throws Error(io) when the file or device keeps failing to read.
    std::optional<VideoFrame> read(int64_t min_pts_us = std::numeric_limits<int64_t>::min());

    const VideoInfo& info() const;
    VideoStats stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// =============================================================================================
// Frame sampling and clips (OmniLive, docs/memory.md §2.1)

struct SamplerOptions
{
    double fps = 1.0; // sampled frames per second of stream time
    // A sampled frame whose scene_diff to its clip's first frame reaches this opens a new clip.
    // scene_diff is the mean absolute difference of 32x32 grey thumbnails (box-averaged, BT.601
    // luma), divided by 255: about 0.01 for sensor noise, up to 0.07 for the shapes moving and
    // appearing in the sample clip, 0.15 and more for a cut to another scene.
    float scene_threshold = 0.1f;
    int clip_frames_min = 3; // a scene change never closes a clip with fewer frames (OmniLive: 3)
    int clip_frames_max = 16; // a clip closes when it has this many frames (OmniLive: 16)

    void validate() const; // throws Error(invalid_argument) naming the field
};

// Picks frames at a steady rate by pts and groups them into clips.
class FrameSampler
{
public:
    explicit FrameSampler(SamplerOptions options = {});

    // What one offered frame caused, in publishing order: the clip it closed, the sampled
    // frame, then the clip it filled.
    struct Step
    {
        std::optional<ClipEvent> closed_before; // closed by a scene change at this frame
        std::optional<FrameEvent> sampled; // the frame, if it was sampled
        std::optional<ClipEvent> closed_after; // the clip this frame made full
    };

    // Frames with an earlier pts are not sampled (VideoSource::read can skip converting them).
    int64_t next_pts_us() const { return next_pts_us_; }
    // Samples the frame if its pts has reached next_pts_us(). origin_unix_us is left 0.
    Step offer(const VideoFrame& frame);
    // Closes the open clip at the end of the stream, if there is one.
    std::optional<ClipEvent> finish();

    // The difference measure behind scene_diff, for two RGB24 frames of any sizes.
    static float scene_difference(const VideoFrame& a, const VideoFrame& b);

private:
    ClipEvent close_clip(ClipEnd reason, int64_t end_us);

    SamplerOptions options_;
    int64_t interval_us_ = 0;
    int64_t next_pts_us_ = std::numeric_limits<int64_t>::min();
    uint64_t next_clip_id_ = 0;
    int n_clip_frames_ = 0; // 0: no clip is open
    int64_t clip_start_us_ = 0;
    int64_t last_pts_us_ = 0;
    std::vector<uint8_t> clip_thumb_; // the open clip's first frame, 32x32 grey
};

// =============================================================================================
// Audio

inline constexpr int kSampleRate = 16000; // every AudioChunk and SpeechSegment: 16 kHz mono

struct AudioOptions
{
    bool realtime = false; // pace files to their timestamps (a microphone paces itself)
    int64_t duration_us = 0; // end the stream after this much stream time; 0: no limit
    int chunk_ms = 100; // microphone read size
};

// Consecutive samples: pts_us follows from the number of samples before it.
struct AudioChunk
{
    int64_t pts_us = 0;
    std::vector<int16_t> samples; // 16 kHz mono
};

struct AudioInfo
{
    std::string description; // "mic: <device name>" or "<format>/<codec>, <rate> Hz, <n> ch"
    int64_t duration_us = 0; // 0 when unknown or live
    bool live = false;
};

struct AudioStats
{
    uint64_t n_samples = 0; // 16 kHz samples returned
    uint64_t n_corrupt = 0; // packets or frames skipped as corrupt
    uint64_t n_overflows = 0; // microphone reads that found samples lost
};

// Audio resampled to 16 kHz mono: the audio track of any media file FFmpeg reads (with the
// same local-only rules as VideoSource), or a microphone through PortAudio.
class AudioSource
{
public:
    // `input`: "mic" for the default input device, or a file path / file: URL. Throws
    // Error(not_found) when there is no such file or no input device (no sound card), and
    // otherwise as VideoSource does; Error(invalid_input) when the file has no audio stream.
    explicit AudioSource(const std::string& input, AudioOptions options = {},
                         std::stop_token stop = {});
    ~AudioSource();
    AudioSource(AudioSource&&) noexcept;
    AudioSource& operator=(AudioSource&&) noexcept;

    // The next samples; nullopt at the end, past options.duration_us, or once stop is
    // requested. Throws Error(io) when the device or file keeps failing to read.
    std::optional<AudioChunk> read();

    const AudioInfo& info() const;
    AudioStats stats() const;

private:
    std::unique_ptr<detail::AudioBackend> backend_; // FFmpeg file or PortAudio microphone
    AudioOptions options_;
    int64_t n_samples_ = 0;
    int64_t pace_wall_us_ = 0; // realtime: wall time of the first read
    bool ended_ = false;
};

// =============================================================================================
// Voice activity and speech recognition

struct VadOptions
{
    int frame_ms = 20; // energy is measured per frame
    // A frame is speech when its energy exceeds the noise floor by threshold_db and is above
    // min_db (dBFS). The floor follows quiet frames down at once and rises slowly.
    float threshold_db = 12.f;
    float min_db = -50.f;
    int start_ms = 60; // this much consecutive speech starts a segment
    int end_ms = 500; // this much consecutive non-speech ends it
    int pad_ms = 200; // kept before the start and after the end (<= end_ms)
    int max_ms = 20000; // longer speech is cut into segments this long

    void validate() const; // throws Error(invalid_argument) naming the field
};

struct SpeechSegment
{
    int64_t start_us = 0; // stream time of samples[0]
    int64_t end_us = 0;
    std::vector<int16_t> samples; // 16 kHz mono, padding included
};

// Energy-based voice activity detection over 16 kHz mono samples.
class Vad
{
public:
    explicit Vad(VadOptions options = {});
    // Takes the samples that follow the previous ones (time 0 is the first sample ever pushed)
    // and returns the segments that ended within them.
    std::vector<SpeechSegment> push(std::span<const int16_t> samples);
    // Ends the stream: the segment in progress, if any.
    std::optional<SpeechSegment> flush();
    // Start of the segment in progress (padding included), if speech is going on.
    std::optional<int64_t> speech_start_us() const;

private:
    void on_frame(const int16_t* frame, std::vector<SpeechSegment>& out);
    SpeechSegment cut(int64_t end_sample);
    int64_t time_us(int64_t sample) const { return sample * 1'000'000 / kSampleRate; }

    VadOptions options_;
    int frame_len_ = 0, start_frames_ = 0, end_frames_ = 0, pad_len_ = 0, max_len_ = 0;
    std::vector<int16_t> partial_; // samples of an unfinished frame
    std::vector<int16_t> kept_; // samples from kept_start_ on: pre-roll or the open segment
    int64_t kept_start_ = 0;
    int64_t n_samples_ = 0; // samples framed so far
    float floor_db_ = 0.f; // noise floor, dBFS
    bool speaking_ = false;
    int n_run_ = 0; // consecutive speech frames (silent state) or non-speech frames (speaking)
    int64_t run_start_ = 0; // first sample of the current speech run
    int64_t segment_start_ = 0;
    int64_t last_speech_end_ = 0; // end sample of the last speech frame
};

// pocketsphinx and its US English model (Debian package pocketsphinx-en-us).
struct AsrOptions
{
    // Folder holding en-us/ (acoustic model), en-us.lm.bin and cmudict-en-us.dict; empty: the
    // one pocketsphinx was installed with, or IRIS_POCKETSPHINX_MODEL.
    std::string model_dir;
};

// Speech to text, one segment at a time (an utterance per segment).
class Recognizer
{
public:
    // Loads the model (about a second). Throws Error(not_found) naming a missing model file.
    explicit Recognizer(AsrOptions options = {});
    ~Recognizer();
    Recognizer(Recognizer&&) noexcept;
    Recognizer& operator=(Recognizer&&) noexcept;

    Transcript recognize(const SpeechSegment& segment);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// =============================================================================================
// Queries

struct WakeOptions
{
    std::string phrase = "hey iris"; // matched on words, ignoring case and punctuation
    // A transcript that is only the wake phrase makes the next one within this time the query.
    int64_t follow_us = 5'000'000;
};

// Turns transcripts that contain the wake phrase into spoken queries.
class WakeDetector
{
public:
    explicit WakeDetector(WakeOptions options = {}); // Error(invalid_argument): no words
    // The query in this transcript: the words after the wake phrase. unix_us is
    // origin_unix_us + end_us.
    std::optional<Query> feed(const Transcript& transcript);

private:
    std::vector<std::string> phrase_;
    int64_t follow_us_ = 0;
    std::optional<int64_t> armed_until_us_; // after a bare wake phrase
};

// Lower-case words of `text`: letters, digits and apostrophes; everything else separates.
std::vector<std::string> words_of(std::string_view text);

// Word error rate of `hypothesis` against `reference` (words as words_of splits them):
// (substitutions + deletions + insertions) / reference words. 0 for two empty texts, 1 for an
// empty hypothesis.
double word_error_rate(std::string_view reference, std::string_view hypothesis);

// A typed question as a Query: trimmed, asked now. Error(invalid_argument) when it is blank.
Query typed_query(std::string_view text);

// =============================================================================================
// Pushed input

struct FeedOptions
{
    // Pixels of a pushed frame's bytes (a JPEG, say); throws Error for bytes it refuses (the
    // frame is skipped and counted corrupt). Called on the pipeline's video thread, and only
    // for the frames the sampler keeps.
    std::function<Image(const Buffer&)> decode;
    int max_frames_queued = 8; // frames past this wait nowhere: the oldest is dropped, counted
    int64_t max_audio_queued_us = 30'000'000; // audio past this is refused: it came too fast
};

struct FeedStats
{
    uint64_t n_frames = 0; // pushed
    uint64_t n_dropped = 0; // dropped unseen while the video thread was behind (back-pressure)
    uint64_t n_skipped = 0; // passed over by the sampler without decoding
    uint64_t n_corrupt = 0; // refused by decode
    uint64_t n_decoded = 0;
    uint64_t n_samples = 0; // 16 kHz audio samples pushed; audio is never dropped
    int64_t audio_queued_us = 0; // pushed and not yet taken by the audio thread
};

// Frames and audio that a caller pushes, from a network client say, for a Pipeline to perceive
// instead of a camera and a microphone. Stream time is the caller's: frames carry their pts,
// audio counts from its first sample. Thread-safe: pushes from one thread, reads from the
// pipeline's.
class Feed
{
public:
    explicit Feed(FeedOptions options); // Error(invalid_argument) without decode
    Feed(const Feed&) = delete;
    Feed& operator=(const Feed&) = delete;

    // A frame whose bytes options.decode turns into pixels; pts_us never goes back. When
    // max_frames_queued are waiting, the oldest is dropped.
    void push_frame(int64_t pts_us, Buffer bytes);
    // 16 kHz mono samples that follow the previous ones. Error(resource) when more than
    // max_audio_queued_us would wait (nothing of `samples` is kept then).
    void push_audio(std::span<const int16_t> samples);
    // Ends the stream: the pipeline perceives what is queued, then ends like a file.
    void close();
    FeedStats stats() const;

    // For the pipeline's threads: the next frame with pts_us >= min_pts_us, decoded (those
    // before it are skipped undecoded); the queued audio. nullopt once closed and drained, or
    // when stop is requested.
    std::optional<VideoFrame> read_frame(int64_t min_pts_us, std::stop_token stop);
    std::optional<AudioChunk> read_audio(std::stop_token stop);

private:
    FeedOptions options_;
    mutable std::mutex mutex_;
    std::condition_variable_any ready_;
    std::deque<std::pair<int64_t, Buffer>> frames_;
    std::vector<int16_t> audio_;
    int64_t audio_taken_ = 0; // samples handed to the audio thread
    bool closed_ = false;
    FeedStats stats_;
};

// =============================================================================================
// Pipeline

struct PipelineOptions
{
    std::string video; // as VideoSource takes it; empty: none
    std::string audio; // as AudioSource takes it ("mic", or a file, maybe the video file)
    // Instead of video and audio: what the caller pushes into the feed; the pipeline ends once
    // the feed is closed and drained.
    std::shared_ptr<Feed> feed;
    bool realtime = true; // pace files at real speed; false: as fast as the consumers allow
    VideoOptions video_options; // its realtime is replaced by the one above
    SamplerOptions sampler;
    AudioOptions audio_options; // its realtime is replaced by the one above
    VadOptions vad;
    AsrOptions asr;
    WakeOptions wake;
    int64_t origin_unix_us = 0; // wall-clock time of pts 0; 0: the time of start()
};

// Runs the sources on threads and publishes on the bus: FrameEvent, ClipEvent, VoiceEvent,
// Transcript, Query and Progress (topics above). Publishing waits while a lossless subscriber's
// queue is full, so a slow consumer slows a file down instead of losing frames.
class Pipeline
{
public:
    Pipeline(Bus& bus, PipelineOptions options);
    ~Pipeline(); // stop()
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;

    // Opens the sources and loads the speech model, then starts the threads. Throws what
    // VideoSource, AudioSource and Recognizer throw, or Error(invalid_argument) for bad options
    // or a second start.
    void start();
    // Waits until every source ended and its events were published; rethrows the first error
    // a worker hit (it was also published as Progress::error).
    void wait();
    // Ends the sources early and joins the threads. Idempotent; also when start() was not called.
    void stop();
    // Publishes a typed question (see typed_query).
    void ask(std::string_view question);

    // The wall-clock time of pts 0 of this run; set by start().
    int64_t origin_unix_us() const { return origin_unix_us_; }

private:
    void run_video(std::stop_token stop);
    void run_audio(std::stop_token stop);
    void run_asr(std::stop_token stop);

    struct Channels; // the bus topics and the queue between the audio and the ASR thread
    PipelineOptions options_;
    int64_t origin_unix_us_ = 0;
    std::unique_ptr<Channels> channels_;
    std::optional<VideoSource> video_;
    std::optional<AudioSource> audio_;
    std::optional<Recognizer> recognizer_;
    std::stop_source stop_;
    std::mutex threads_mutex_; // start, wait and stop may race
    bool started_ = false;
    std::vector<std::thread> threads_;
    std::exception_ptr errors_[3]; // video, audio, speech recognition; read after join
};

} // namespace iris::perception
