// reasoning/responder — answering from memory, over the bus, and how a clip is remembered (its
// caption and the vector that indexes it).
//
//   auto recall = [&](const std::string& q, int k) { return my_recall(q, k); };
//   Responder responder(*engine, bus, recall);
//   auto answers = bus.topic<AnswerPiece>(kTopicAnswers).subscribe({.name = "ui"});
//   bus.topic<Question>(kTopicQuestions).publish(Question{.id = 1, .text = "What did I see?"});
//   while (auto p = answers.receive()) { show(p->text); if (p->done) break; }
//
// The memory module finds what is remembered; the caller turns its hits into Remembered (the
// reasoning module does not depend on memory), and the responder builds the prompt and streams
// the answer.
//
// Thread safety: a Responder answers on its own thread and is reached through the bus from any
// thread; the free functions are reentrant.
#pragma once

#include "core/bus.h"
#include "reasoning/engine.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace iris::reasoning {

// A remembered clip as a prompt shows it.
struct Remembered
{
    int64_t id = 0;
    int64_t t_start_us = 0; // wall clock, microseconds since the Unix epoch
    int64_t t_end_us = 0;
    std::string caption;
    std::string transcript;
};

// "Memory:\n[HH:MM] caption: ...\n[HH:MM] transcript: ...\nQuestion: <question>", oldest first,
// local time: the form the demo model learnt.
std::string memory_prompt(std::vector<Remembered> memories, const std::string& question);

inline constexpr const char* kTopicQuestions = "reasoning.questions"; // Question
inline constexpr const char* kTopicAnswers = "reasoning.answers"; // AnswerPiece
inline constexpr const char* kTopicCancels = "reasoning.cancels"; // CancelQuestion

// An earlier turn of a conversation, replayed before a question.
struct PastTurn
{
    std::string question;
    std::vector<Image> images;
    std::string answer;
};

struct Question
{
    uint64_t id = 0; // echoed in every AnswerPiece
    std::string text;
    std::vector<Image> images; // e.g. the latest frames: shown as video frames, one tile each
    // false: no memories are recalled and the text is asked as it is, its images shown as
    // pictures (tiled like `iris ask`: "<image>", or "Image-1: <image>" ... for several).
    bool recall = true;
    // With recall false, the conversation so far: its turns come before the question, so that
    // a follow-up ("and what colour is it?") is about the same pictures.
    std::vector<PastTurn> history;
};

// Ends the answer to question_id (finish_reason "cancelled"), or skips it if not yet started.
struct CancelQuestion
{
    uint64_t question_id = 0;
};

struct AnswerPiece
{
    uint64_t question_id = 0;
    std::string text; // the next piece of the answer (empty in the last message)
    bool done = false; // the last message of this answer; the fields below are set in it
    std::string finish_reason; // "stop", "length", "cancelled" or "error"
    std::string answer; // the whole answer
    std::vector<Remembered> used; // the memories the prompt carried
    std::string error; // why answering failed
    GenerationStats stats; // of the answer
    size_t kv_cache_bytes = 0; // the answer's KV cache at its end
};

struct ResponderOptions
{
    AskOptions ask; // sampling and limits (cancelled, layout and batcher are the responder's)
    int k = 5; // memories per question
    // Questions answered at once, each on its own worker, decoded together in a Batcher's
    // steps (a typed question need not wait for a spoken one); each answer is what it is alone.
    int parallel = 1;
    // Prompt prefixes and encoded images kept from one question for the next (earlier turns,
    // the system prompt, frames shown again; reasoning/prefix-cache.h); 0: none.
    size_t prompt_cache_bytes = 128u << 20;
};

// Answers the questions published on kTopicQuestions, `parallel` at a time on its own threads:
// asks `recall` for up to k memories, runs a fresh session on memory_prompt and the question's
// images, and publishes the answer on kTopicAnswers piece by piece, then a done message (also
// when answering failed). A CancelQuestion on kTopicCancels ends or skips that answer. The
// destructor cancels the answers in progress and joins the threads.
class Responder
{
public:
    using Recall = std::function<std::vector<Remembered>(const std::string& question, int k)>;
    Responder(const Engine& engine, Bus& bus, Recall recall, ResponderOptions options = {});
    ~Responder();
    Responder(const Responder&) = delete;
    Responder& operator=(const Responder&) = delete;

private:
    struct State;
    std::unique_ptr<State> state_;
};

// The vector that stands for a remembered clip in the memory index: the mean of the images'
// visual tokens (one tile each, as the model sees video frames) and the mean of the text's input
// token embeddings, each scaled to unit length, side by side: [2 * llm hidden size]. A part with
// no input is zeros, so a text-only query is scored by the text half alone and an image query by
// the visual half. Cheap (no LLM layers run) and deterministic.
std::vector<float> memory_embedding(const Engine& engine, const std::vector<Image>& images,
                                    std::string_view text);

// The frames a remembered clip keeps as key frames: the first, middle and last of n (fewer
// when n < 3).
std::vector<size_t> clip_key_frames(size_t n);

struct ClipDescription
{
    std::string caption;
    std::vector<float> embedding;
};

// How a clip is remembered (`iris watch`, the desktop's recorder): the model's caption of the
// middle key frame (one tile, at most 48 tokens) and memory_embedding of the key frames and of
// caption + transcript.
ClipDescription describe_clip(const Engine& engine, const std::vector<Image>& key_frames,
                              const std::string& transcript);

} // namespace iris::reasoning
