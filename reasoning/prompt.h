// reasoning/prompt — prompts and generation: the official chat templates, image placeholders,
// sampling as Hugging Face's generate does it, and generated ids turned into text.
//
//   const ChatTemplate& tmpl = chat_template("internvl2_5");
//   std::string q = with_image_placeholders("What is it?", 1, ImageLayout::single);
//   std::string prompt = render_prompt(tmpl, "", {}, q); // then expand_image_placeholders
//   Sampler sampler({.temperature = 0.7f, .top_p = 0.9f, .seed = 1});
//   int32_t next = sampler.sample(logits, ids);           // logits [vocab], ids seen so far
//
// Thread safety: free functions are reentrant; a Sampler or a TextStream is used by one thread
// at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iris::model {
class Tokenizer; // model/model.h
}

namespace iris::reasoning {

// A conversation template of the official conversation.py (separator style MPT): the prompt is
// system_template(system_message) + sep, then role + message + sep per finished message, and
// the bare assistant role last.
struct ChatTemplate
{
    std::string name;
    std::string system_template; // contains "{system_message}"
    std::string system_message; // the template's default
    std::string user_role;
    std::string assistant_role;
    std::string sep;
    std::vector<std::string> stop_strings; // besides the sep token
};

// "internvl2_5", "internlm2-chat" or "Hermes-2"; throws Error(unsupported) naming the others.
const ChatTemplate& chat_template(std::string_view name);

struct ChatTurn
{
    std::string user;
    std::string assistant;
};

// The prompt text exactly as the official chat() builds it (before <image> expansion).
// An empty system_message selects the template's default.
std::string render_prompt(const ChatTemplate& tmpl, const std::string& system_message,
                          const std::vector<ChatTurn>& history, const std::string& question);

// How several images are introduced in a question.
enum class ImageLayout {
    single, // "<image>\n"
    numbered, // "Image-1: <image>\nImage-2: <image>\n"
    frames, // "Frame1: <image>\nFrame2: <image>\n" (video)
};
std::string image_placeholders(int n_images, ImageLayout layout);
// The question with placeholders for n_images put in front when it names no "<image>" itself
// (chat() does this for the first question; Iris for every question with images).
std::string with_image_placeholders(const std::string& question, int n_images, ImageLayout layout);

// Replaces each "<image>" left to right by "<img>" + "<IMG_CONTEXT>" x tokens + "</img>".
// Throws Error(invalid_argument) when the number of placeholders and of images differ.
std::string expand_image_placeholders(const std::string& prompt,
                                      const std::vector<int>& tokens_per_image);

// Sampling as Hugging Face's generate applies it: repetition penalty, temperature, top-k,
// top-p, then a draw. temperature == 0 is greedy (argmax; ties go to the lowest id).
struct SamplingParams
{
    float temperature = 0.f;
    int top_k = 0; // 0 = off
    float top_p = 1.f; // 1 = off
    float repetition_penalty = 1.f; // 1 = off; applies to every token already in the context
    uint64_t seed = 0;
    int max_new_tokens = 512;
    std::vector<std::string> stop; // stop strings, cut from the answer

    void validate() const; // throws Error(invalid_argument) naming the field
};

class Sampler
{
public:
    explicit Sampler(const SamplingParams& params);
    // Picks the next token from logits [vocab]; `context` holds the ids seen so far (for the
    // repetition penalty). Modifies logits in place.
    int32_t sample(std::span<float> logits, std::span<const int32_t> context);

private:
    SamplingParams params_;
    uint64_t state_;
    std::vector<std::pair<float, int32_t>> scratch_;
};

// Turns a growing list of generated ids into text pieces: emits only complete UTF-8, and holds
// back text that could still become one of the stop strings.
class TextStream
{
public:
    TextStream(const model::Tokenizer& tokenizer, std::vector<std::string> stop);
    // Adds one id; returns the text that is now final (may be empty).
    std::string push(int32_t id);
    // True once a stop string appeared; the text before it has been emitted.
    bool stopped() const { return stopped_; }
    // Emits whatever is held back (at the end of generation).
    std::string flush();
    const std::string& text() const { return emitted_; }

private:
    const model::Tokenizer& tokenizer_;
    std::vector<std::string> stop_;
    std::vector<int32_t> ids_;
    std::string emitted_;
    bool stopped_ = false;
};

} // namespace iris::reasoning
