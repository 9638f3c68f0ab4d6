// assistant — the assistant's use cases over the reasoning and memory modules, written once for
// `iris`, iris-desktop and `iris serve`: a clip becomes a long-term memory entry, and a question
// finds the entries it is about, to answer from them, to list them or to compose with their key
// frames.
//
//   namespace as = iris::assistant;
//   // Remembering: the clip's sampled frames (pixels shared, not copied) and what was said.
//   as::Clip clip {.t_start_us = t0, .t_end_us = t1, .frames = frames,
//                  .transcript = as::heard_during(transcripts, t0, t1)};
//   int64_t id = store.add(as::clip_entry(engine, clip));
//
//   // Recalling: "in the last hour" narrows the time range; words and embedding rank the rest.
//   as::Recollection r = as::answer_from_memory(engine, store, "What did I see today?", 5, {}, {});
//   std::vector<memory::Hit> hits = as::find_memories(&engine, store, "a red car", {.k = 20});
//   Responder responder(engine, bus, [&](const std::string& q, int k) {
//       return as::recall(&engine, store, q, k);
//   });
//   request.pool = as::memory_pool(&engine, store, request.instruction);
//
// Times are wall-clock microseconds since the Unix epoch, as in memory.h; time phrases use the
// local time zone.
//
// Thread safety: every function is reentrant. Calls on any number of threads may share one
// Engine and one Store (each call runs its own Session; Store and Retriever are thread-safe),
// and so may any number of Live runs.
#pragma once

#include "memory/memory.h"
#include "perception/perception.h"
#include "reasoning/composer.h"
#include "reasoning/engine.h"
#include "reasoning/responder.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace iris::assistant {

// ---------------------------------------------------------------------------------------------
// Remembering

// Key frames are stored at most this large on their longer side (the demo model sees 224 px,
// real ones 448 px tiles).
inline constexpr int kKeyFrameSide = 448;

// A clip to remember: a scene of the video, cut by the frame sampler.
struct Clip
{
    int64_t t_start_us = 0; // the time range the entry covers; t_start_us <= t_end_us
    int64_t t_end_us = 0;
    std::vector<memory::Frame> frames; // the sampled frames, oldest first; at least one
    std::string transcript; // what was said meanwhile (heard_during), may be empty
};

// The text of the transcripts that overlap [from_us, to_us) (end at or after from_us, start
// before to_us), in their order, joined by single spaces; empty texts are skipped.
std::string heard_during(std::span<const memory::Text> transcripts, int64_t from_us, int64_t to_us);

// The long-term entry of a clip, ready for Store::add: the first, middle and last frames
// (reasoning::clip_key_frames) scaled to at most kKeyFrameSide as JPEG key frames, and the
// caption and embedding of reasoning::describe_clip. Runs the model (one short answer).
// Throws Error(invalid_argument) for a clip without frames.
memory::Entry clip_entry(const reasoning::Engine& engine, const Clip& clip);

// The length of the engine's reasoning::memory_embedding: the dim of a store it writes.
int embedding_dim(const reasoning::Engine& engine);

// ---------------------------------------------------------------------------------------------
// Recalling

struct FindOptions
{
    int k = 5; // hits wanted
    // Only entries overlapping [t_from_us, t_to_us]; a time phrase narrows this further.
    int64_t t_from_us = memory::kTimeMin;
    int64_t t_to_us = memory::kTimeMax;
    bool with_frames = false;
};

// The entries `text` is about, best first (memory::Retriever): a time phrase in it ("in the last
// hour", "between 9:00 and 10:00", "today") narrows the range and is left out of the words (a
// time phrase alone finds the newest entries of its range); the rest is matched by words and,
// with an engine whose embedding_dim is the store's, by reasoning::memory_embedding. With no engine
// (or another model's store) only words match. Throws what Retriever::search throws.
std::vector<memory::Hit> find_memories(const reasoning::Engine* engine, const memory::Store& store,
                                       const std::string& text, const FindOptions& options = {});

// find_memories' hits as a prompt shows them (reasoning::Responder's recall).
std::vector<reasoning::Remembered> recall(const reasoning::Engine* engine,
                                          const memory::Store& store, const std::string& question,
                                          int k);

struct Recollection
{
    reasoning::Answer answer;
    std::vector<memory::Hit> hits; // the entries the prompt carried, best first, without frames
};

// Answers a question from the k entries it is about: a fresh session asked
// reasoning::memory_prompt, as the responder does, streaming the answer to on_text.
Recollection answer_from_memory(const reasoning::Engine& engine, const memory::Store& store,
                                const std::string& question, int k,
                                const reasoning::AskOptions& options,
                                const reasoning::TextCallback& on_text);

// ---------------------------------------------------------------------------------------------
// Living: watching, listening, remembering and answering at once (`iris live`, `iris watch`,
// the live sessions of `iris serve`)

struct LiveOptions
{
    bool answer = true; // answer typed and spoken questions from memory
    reasoning::ResponderOptions responder {.parallel = 2}; // a typed question need not wait
    int latest_frames = 0; // the newest sampled frames shown with each question
};

// What a live run reports, each on the run's thread, in order; any may be empty.
struct LiveEvents
{
    std::function<void(const memory::Entry&)> stored; // durable, with its id
    std::function<void(const memory::Text&)> heard; // a transcript, wall-clock times
    std::function<void(const perception::VoiceEvent&)> voice;
    std::function<void(const perception::Query&)> asked; // typed, or spoken after the wake phrase
    std::function<void(const reasoning::AnswerPiece&)> answer;
    std::function<void(const perception::Progress&)> progress;
};

// Runs a perception pipeline and remembers each clip in the store once what was said during it
// has been heard (key frames, caption, transcript, embedding); answers questions from memory
// on the responder's threads, after what was seen until then is stored.
class Live
{
public:
    Live(const reasoning::Engine& engine, memory::Store& store, perception::PipelineOptions input,
         LiveOptions options = {}, LiveEvents events = {});
    ~Live(); // stop()
    Live(const Live&) = delete;
    Live& operator=(const Live&) = delete;

    // Starts the pipeline and runs until its inputs end or stop(): the clips seen are stored,
    // the questions asked answered. The entries stored; rethrows the pipeline's error (what was
    // stored before it stays). Throws what Pipeline::start throws.
    int64_t run();
    // Ends the inputs early (what was seen is still stored); from any thread.
    void stop();
    // A typed question (blank ones are ignored); from any thread. One asked before run() is
    // asked once the pipeline starts; one asked after run() returned is dropped.
    void ask(std::string_view question);

private:
    struct State;
    std::unique_ptr<State> state_;
};

// ---------------------------------------------------------------------------------------------
// Composing

// How many memories lend a key frame to a composition unless the user says otherwise.
inline constexpr int kMemoryPoolSize = 12;

// The middle key frame of each of the k entries find_memories finds for an article's
// instruction, decoded and named "memory <id>": images for reasoning::ArticleRequest::pool.
// Entries without key frames are skipped. Throws what find_memories throws, and
// Error(invalid_input) for a key frame that does not decode.
std::vector<reasoning::PoolImage> memory_pool(const reasoning::Engine* engine,
                                              const memory::Store& store,
                                              const std::string& instruction,
                                              int k = kMemoryPoolSize);

} // namespace iris::assistant
