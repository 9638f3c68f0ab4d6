// reasoning/prompt — prompts and generation: the official chat templates, image placeholders,
// sampling as Hugging Face's generate does it, and generated ids turned into text.
//
//   const ChatTemplate& tmpl = chat_template("internvl2_5");
//   Prompt q = with_image_placeholders("What is it?", 1, ImageLayout::single);
//   Prompt prompt = expand_image_placeholders(render_prompt(tmpl, "", {}, q), {256});
//   std::vector<int32_t> ids = prompt.encode(tokenizer, /*add_bos=*/true);
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

// A prompt as parts: template text (the chat template's roles and separators, the image
// placeholders the engine puts in for the images it was given), whose added-token strings become
// control ids, and client text (questions, answers, system messages, transcripts), whose
// added-token strings stay ordinary text. A string converts to client text, so words never
// become control tokens by accident.
class Prompt
{
public:
    struct Part
    {
        std::string text;
        bool special = false; // template text
        bool operator==(const Part&) const = default;
    };

    Prompt() = default;
    Prompt(std::string client_text) { add_text(client_text); } // implicit: see above
    Prompt(const char* client_text) { add_text(client_text); }

    Prompt& add_template(std::string_view text) { return add(text, true); }
    Prompt& add_text(std::string_view text) { return add(text, false); }
    Prompt& append(const Prompt& other);

    const std::vector<Part>& parts() const { return parts_; }
    bool empty() const { return parts_.empty(); }
    // The parts end to end: what the official pipeline would tokenize as one string.
    std::string text() const;
    // Tokenizer::encode over the parts.
    std::vector<int32_t> encode(const model::Tokenizer& tokenizer, bool add_bos) const;

    bool operator==(const Prompt&) const = default;

private:
    Prompt& add(std::string_view text, bool special);

    std::vector<Part> parts_; // adjacent parts of one kind are merged; none is empty
};

struct ChatTurn
{
    Prompt user; // the question, with its images' placeholders
    std::string assistant;
};

// The prompt exactly as the official chat() builds it (before <image> expansion). The system
// message is client text; an empty one selects the template's default (template text).
Prompt render_prompt(const ChatTemplate& tmpl, const std::string& system_message,
                     const std::vector<ChatTurn>& history, const Prompt& question);

// How several images are introduced in a question.
enum class ImageLayout {
    single, // "<image>\n"
    numbered, // "Image-1: <image>\nImage-2: <image>\n"
    frames, // "Frame1: <image>\nFrame2: <image>\n" (video)
};
std::string image_placeholders(int n_images, ImageLayout layout);
// The question (client text) with placeholders for n_images put in front (chat() does this for
// the first question; Iris for every question with images). An "<image>" in the question is text.
Prompt with_image_placeholders(const std::string& question, int n_images, ImageLayout layout);
// As chat() treats a question: each "<image>" the question names places an image there, and a
// question naming none gets them in front. Only for an explicit request (iris ask
// --image-markers): the question is the user's own template.
Prompt with_image_markers(const std::string& question, int n_images, ImageLayout layout);

// Replaces each "<image>" of the template text, left to right, by "<img>" + "<IMG_CONTEXT>" x
// tokens + "</img>". Throws Error(invalid_argument) when the number of placeholders and of
// images differ.
Prompt expand_image_placeholders(const Prompt& prompt, const std::vector<int>& tokens_per_image);

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
