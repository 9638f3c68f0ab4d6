#include "reasoning/prompt.h"

#include "core/core.h"
#include "model/model.h"

namespace iris::reasoning {
namespace {

// The templates of the official InternVL conversation.py (internvl_chat/internvl/conversation.py).
const std::vector<ChatTemplate>& templates()
{
    static const std::vector<ChatTemplate> all = {
        {"internvl2_5",
         "<|im_start|>system\n{system_message}",
         "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
         "多模态大语言模型。",
         "<|im_start|>user\n",
         "<|im_start|>assistant\n",
         "<|im_end|>\n",
         {}},
        {"internlm2-chat",
         "<|im_start|>system\n{system_message}",
         "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
         "是一个有用无害的人工智能助手。",
         "<|im_start|>user\n",
         "<|im_start|>assistant\n",
         "<|im_end|>",
         {}},
        {"Hermes-2",
         "<|im_start|>system\n{system_message}",
         "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
         "是一个有用无害的人工智能助手。",
         "<|im_start|>user\n",
         "<|im_start|>assistant\n",
         "<|im_end|>",
         {"<|endoftext|>"}},
    };
    return all;
}

} // namespace

const ChatTemplate& chat_template(std::string_view name)
{
    for (const auto& t : templates())
        if (t.name == name) return t;
    throw Error(ErrorKind::unsupported,
                "unknown chat template '" + std::string(name)
                    + "' (supported: internvl2_5, internlm2-chat, Hermes-2)");
}

Prompt& Prompt::add(std::string_view text, bool special)
{
    if (text.empty()) return *this;
    if (!parts_.empty() && parts_.back().special == special)
        parts_.back().text += text;
    else
        parts_.push_back({std::string(text), special});
    return *this;
}

Prompt& Prompt::append(const Prompt& other)
{
    for (const Part& p : other.parts_) add(p.text, p.special);
    return *this;
}

std::string Prompt::text() const
{
    std::string out;
    for (const Part& p : parts_) out += p.text;
    return out;
}

std::vector<int32_t> Prompt::encode(const model::Tokenizer& tokenizer, bool add_bos) const
{
    std::vector<model::Tokenizer::TextPart> views;
    views.reserve(parts_.size());
    for (const Part& p : parts_) views.push_back({p.text, p.special});
    return tokenizer.encode(std::span<const model::Tokenizer::TextPart>(views), add_bos);
}

Prompt render_prompt(const ChatTemplate& tmpl, const std::string& system_message,
                     const std::vector<ChatTurn>& history, const Prompt& question)
{
    Prompt out;
    const std::string& sys = tmpl.system_template;
    const size_t at = sys.find("{system_message}");
    out.add_template(sys.substr(0, at));
    if (at != std::string::npos) {
        if (system_message.empty())
            out.add_template(tmpl.system_message);
        else
            out.add_text(system_message);
        out.add_template(sys.substr(at + std::string_view("{system_message}").size()));
    }
    out.add_template(tmpl.sep);
    // An empty message renders as the bare role, as in conversation.py's MPT style.
    auto add = [&](const std::string& role, const Prompt& message) {
        out.add_template(role);
        if (!message.empty()) out.append(message).add_template(tmpl.sep);
    };
    for (const auto& turn : history) {
        add(tmpl.user_role, turn.user);
        add(tmpl.assistant_role, turn.assistant);
    }
    add(tmpl.user_role, question);
    out.add_template(tmpl.assistant_role);
    return out;
}

std::string image_placeholders(int n_images, ImageLayout layout)
{
    std::string out;
    for (int i = 1; i <= n_images; ++i) {
        switch (layout) {
        case ImageLayout::single:
            out += "<image>\n";
            break;
        case ImageLayout::numbered:
            out += "Image-" + std::to_string(i) + ": <image>\n";
            break;
        case ImageLayout::frames:
            out += "Frame" + std::to_string(i) + ": <image>\n";
            break;
        }
    }
    return out;
}

Prompt with_image_placeholders(const std::string& question, int n_images, ImageLayout layout)
{
    Prompt out;
    out.add_template(image_placeholders(n_images, layout));
    out.add_text(question);
    return out;
}

Prompt with_image_markers(const std::string& question, int n_images, ImageLayout layout)
{
    static constexpr std::string_view marker = "<image>";
    if (n_images == 0 || question.find(marker) == std::string::npos)
        return with_image_placeholders(question, n_images, layout);
    Prompt out;
    size_t pos = 0;
    for (size_t hit; (hit = question.find(marker, pos)) != std::string::npos;
         pos = hit + marker.size())
        out.add_text(std::string_view(question).substr(pos, hit - pos)).add_template(marker);
    out.add_text(std::string_view(question).substr(pos));
    return out;
}

Prompt expand_image_placeholders(const Prompt& prompt, const std::vector<int>& tokens_per_image)
{
    static constexpr std::string_view placeholder = "<image>";
    Prompt out;
    size_t n = 0;
    for (const Prompt::Part& part : prompt.parts()) {
        if (!part.special) {
            out.add_text(part.text);
            continue;
        }
        const std::string& s = part.text;
        std::string text;
        size_t pos = 0;
        for (size_t hit = s.find(placeholder); hit != std::string::npos;
             hit = s.find(placeholder, pos)) {
            if (n == tokens_per_image.size())
                throw Error(
                    ErrorKind::invalid_argument,
                    strfmt("the prompt has more <image> placeholders than the %zu images given",
                           tokens_per_image.size()));
            text.append(s, pos, hit - pos);
            text += "<img>";
            text.reserve(text.size() + size_t(tokens_per_image[n]) * 13 + 6);
            for (int i = 0; i < tokens_per_image[n]; ++i) text += "<IMG_CONTEXT>";
            text += "</img>";
            ++n;
            pos = hit + placeholder.size();
        }
        text.append(s, pos);
        out.add_template(text);
    }
    if (n != tokens_per_image.size())
        throw Error(ErrorKind::invalid_argument,
                    strfmt("the prompt has %zu <image> placeholders but %zu images were given", n,
                           tokens_per_image.size()));
    return out;
}

} // namespace iris::reasoning
