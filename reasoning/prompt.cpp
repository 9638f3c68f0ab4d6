#include "reasoning/prompt.h"

#include "core/core.h"

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

void replace_all(std::string& s, std::string_view from, std::string_view to)
{
    for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
        s.replace(pos, from.size(), to);
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

std::string render_prompt(const ChatTemplate& tmpl, const std::string& system_message,
                          const std::vector<ChatTurn>& history, const std::string& question)
{
    std::string system = tmpl.system_template;
    replace_all(system, "{system_message}",
                system_message.empty() ? tmpl.system_message : system_message);
    std::string out = system + tmpl.sep;
    // An empty message renders as the bare role, as in conversation.py's MPT style.
    auto add = [&](const std::string& role, const std::string& message) {
        out += role;
        if (!message.empty()) out += message + tmpl.sep;
    };
    for (const auto& turn : history) {
        add(tmpl.user_role, turn.user);
        add(tmpl.assistant_role, turn.assistant);
    }
    add(tmpl.user_role, question);
    out += tmpl.assistant_role;
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

std::string with_image_placeholders(const std::string& question, int n_images, ImageLayout layout)
{
    if (n_images > 0 && question.find("<image>") == std::string::npos)
        return image_placeholders(n_images, layout) + question;
    return question;
}

std::string expand_image_placeholders(const std::string& prompt,
                                      const std::vector<int>& tokens_per_image)
{
    static const std::string placeholder = "<image>";
    std::string out;
    size_t pos = 0, n = 0;
    for (size_t hit = prompt.find(placeholder); hit != std::string::npos;
         hit = prompt.find(placeholder, pos)) {
        if (n == tokens_per_image.size())
            throw Error(ErrorKind::invalid_argument,
                        strfmt("the prompt has more <image> placeholders than the %zu images given",
                               tokens_per_image.size()));
        out.append(prompt, pos, hit - pos);
        out += "<img>";
        out.reserve(out.size() + size_t(tokens_per_image[n]) * 13 + 6);
        for (int i = 0; i < tokens_per_image[n]; ++i) out += "<IMG_CONTEXT>";
        out += "</img>";
        ++n;
        pos = hit + placeholder.size();
    }
    if (n != tokens_per_image.size())
        throw Error(ErrorKind::invalid_argument,
                    strfmt("the prompt has %zu <image> placeholders but %zu images were given", n,
                           tokens_per_image.size()));
    out.append(prompt, pos);
    return out;
}

} // namespace iris::reasoning
