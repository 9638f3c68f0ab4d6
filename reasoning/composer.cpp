// Articles with images and web pages, written by the model in steps (see composer.h).
#include "reasoning/composer.h"
#include "reasoning/composer-impl.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <tuple>

namespace iris::reasoning {
namespace {

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        out.push_back(text.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return out;
}

void add_stats(GenerationStats& sum, const GenerationStats& s)
{
    sum.n_prompt_tokens += s.n_prompt_tokens;
    sum.n_reused_tokens += s.n_reused_tokens;
    sum.n_generated += s.n_generated;
    sum.n_tiles += s.n_tiles;
    sum.vision_ms += s.vision_ms;
    sum.prefill_ms += s.prefill_ms;
    sum.decode_ms += s.decode_ms;
}

[[noreturn]] void cancelled()
{
    throw Error(ErrorKind::cancelled, "composing was cancelled");
}

void check_progress(const ComposeOptions& options, const std::string& stage, int done, int total)
{
    if ((options.progress && !options.progress(stage, done, total))
        || (options.cancelled && options.cancelled()))
        cancelled();
}

// One step of a composition: cancelled generation is an error, the statistics add up.
Answer ask_step(Session& session, const std::string& question, const std::vector<Image>& images,
                const AskOptions& ask, GenerationStats& sum)
{
    Answer a = session.ask(question, images, ask, {});
    if (a.finish_reason == "cancelled") cancelled();
    add_stats(sum, a.stats);
    return a;
}

// The prompts are the ones the demo model is trained on (tools/demo/generate.py, composer
// tasks); downloaded checkpoints follow them as plain instructions.
std::string outline_question(const ArticleRequest& r)
{
    std::string q
        = "Write an outline for an article.\nInstruction: " + std::string(trim(r.instruction));
    if (!trim(r.source).empty()) q += "\nSource:\n" + std::string(trim(r.source));
    return q;
}

std::string section_question(const std::string& section)
{
    return "Write the section \"" + section + "\".";
}

// Asked for each chosen image's caption, and the reply whose start image_match_scores weighs.
constexpr const char* kCaptionQuestion = "Give a short caption.";

// Markdown's image text: brackets and line breaks would end it early.
std::string alt_text(std::string s)
{
    for (char& c : s)
        if (c == '[' || c == ']' || c == '\n' || c == '\r') c = ' ';
    return std::string(trim(s));
}

} // namespace

namespace composer {

Outline parse_outline(const std::string& text, int max_sections)
{
    Outline a;
    for (const auto& raw : lines_of(text)) {
        std::string line(trim(raw));
        if (line.empty()) continue;
        if (a.title.empty() && line.rfind("# ", 0) == 0) {
            a.title = std::string(trim(line.substr(2)));
            continue;
        }
        size_t i = 0;
        while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
        std::string item;
        if (i > 0 && i < line.size() && (line[i] == '.' || line[i] == ')'))
            item = std::string(trim(line.substr(i + 1)));
        else if (line.rfind("- ", 0) == 0 || line.rfind("* ", 0) == 0)
            item = std::string(trim(line.substr(2)));
        else if (line.rfind("## ", 0) == 0)
            item = std::string(trim(line.substr(3)));
        else if (a.title.empty())
            a.title = std::string(trim(line.substr(line.find_first_not_of('#'))));
        if (!item.empty() && int(a.sections.size()) < max_sections) a.sections.push_back(item);
    }
    if (a.title.empty()) a.title = "Article";
    if (a.sections.empty()) a.sections.push_back(a.title);
    return a;
}

std::vector<Mark> find_marks(const std::string& text)
{
    std::vector<Mark> marks;
    size_t pos = 0;
    while ((pos = text.find("[[image:", pos)) != std::string::npos) {
        // A mark the model did not close ends at the end of its line.
        size_t line_end = std::min(text.find('\n', pos), text.size());
        size_t end = text.find("]]", pos);
        bool closed = end != std::string::npos && end < line_end;
        size_t d_end = closed ? end : line_end, after = closed ? end + 2 : line_end;
        std::string d(trim(std::string_view(text).substr(pos + 8, d_end - pos - 8)));
        marks.push_back({pos, after, d});
        pos = after;
    }
    return marks;
}

} // namespace composer

std::vector<std::vector<double>> image_match_scores(const Engine& engine,
                                                    const std::vector<Image>& images,
                                                    const std::vector<std::string>& descriptions,
                                                    const ComposeOptions& options)
{
    TilingOptions tiling = engine.tiling(options.max_tiles > 0 ? options.max_tiles : 1);
    const auto& tok = engine.tokenizer();
    AskOptions greedy;
    greedy.sampling.max_new_tokens = 48;
    std::vector<std::vector<double>> scores(descriptions.size(),
                                            std::vector<double>(images.size(), 0.0));
    for (size_t i = 0; i < images.size(); ++i) {
        check_progress(options, "matching images", int(i), int(images.size()));
        EncodedImage enc = engine.encode(preprocess_image(images[i], tiling));
        // The model's own caption of the image, and where in it a thing is named: at the start
        // and after each "and" or comma.
        std::string caption = Session(engine).ask(kCaptionQuestion, {enc}, greedy, {}).text;
        std::vector<std::string> heads {""};
        for (size_t p = 0; p < caption.size(); ++p)
            if (caption.compare(p, 5, " and ") == 0 || caption.compare(p, 2, ", ") == 0)
                heads.push_back(caption.substr(0, caption[p] == ',' ? p + 1 : p + 4));
        std::vector<std::vector<int32_t>> head_ids;
        for (const std::string& head : heads) head_ids.push_back(tok.encode_text(head, false));
        Session session(engine);
        for (size_t d = 0; d < descriptions.size(); ++d) {
            // log P(the caption names the description there | image), the best place kept.
            double best = -INFINITY;
            for (size_t h = 0; h < heads.size(); ++h) {
                const std::string text
                    = heads[h].empty() ? descriptions[d] : heads[h] + " " + descriptions[d];
                const auto ids = tok.encode_text(text, /*add_bos=*/false);
                const auto& hid = head_ids[h];
                if (ids.size() < hid.size() || !std::equal(hid.begin(), hid.end(), ids.begin()))
                    continue; // the description would change how the head is tokenized
                auto lps = session.answer_logprobs(kCaptionQuestion, {enc}, text);
                double sum = 0;
                for (size_t k = hid.size(); k < lps.size(); ++k) sum += lps[k];
                best = std::max(best, sum);
            }
            scores[d][i] = best;
        }
    }
    for (auto& row : scores) {
        if (row.empty()) continue;
        const double top = *std::max_element(row.begin(), row.end());
        double sum = 0;
        for (double& s : row) sum += (s = std::exp(s - top));
        for (double& s : row) s /= sum;
    }
    return scores;
}

std::vector<int> assign_images(const std::vector<std::vector<double>>& scores)
{
    std::vector<std::tuple<double, size_t, size_t>> pairs; // (score, description, image)
    for (size_t d = 0; d < scores.size(); ++d)
        for (size_t i = 0; i < scores[d].size(); ++i) pairs.emplace_back(scores[d][i], d, i);
    // Best score first; ties go to the earlier description, then the earlier image.
    std::stable_sort(pairs.begin(), pairs.end(),
                     [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
    std::vector<int> chosen(scores.size(), -1);
    std::vector<bool> used(scores.empty() ? 0 : scores[0].size(), false);
    for (const auto& [s, d, i] : pairs) {
        if (chosen[d] != -1 || used[i]) continue;
        chosen[d] = int(i);
        used[i] = true;
    }
    return chosen;
}

std::string article_image_file(const Article& article, size_t i)
{
    if (i >= article.images.size() || article.images[i].pool_index < 0) return {};
    return strfmt("images/%zu.jpg", i + 1);
}

Article compose_article(const Engine& engine, const ArticleRequest& request,
                        const ComposeOptions& options)
{
    if (trim(request.instruction).empty())
        throw Error(ErrorKind::invalid_argument, "the article needs an instruction");
    if (request.max_sections < 1 || request.max_sections > 32)
        throw Error(ErrorKind::invalid_argument, "max_sections must be within 1..32");
    if (request.max_section_tokens < 1 || request.max_section_tokens > 8192)
        throw Error(ErrorKind::invalid_argument, "max_section_tokens must be within 1..8192");
    options.sampling.validate();

    Article a;
    Session writer(engine);
    AskOptions ask;
    ask.sampling = options.sampling;
    ask.max_tiles = options.max_tiles;
    ask.max_prompt_tokens = options.max_prompt_tokens;
    ask.cancelled = options.cancelled;

    check_progress(options, "outline", 0, 1);
    ask.sampling.max_new_tokens = 256;
    Answer outline = ask_step(writer, outline_question(request), {}, ask, a.stats);
    composer::Outline plan = composer::parse_outline(outline.text, request.max_sections);
    a.title = plan.title;
    a.sections = plan.sections;

    std::vector<std::string> texts;
    ask.sampling.max_new_tokens = request.max_section_tokens;
    for (size_t s = 0; s < a.sections.size(); ++s) {
        check_progress(options, "sections", int(s), int(a.sections.size()));
        Answer part = ask_step(writer, section_question(a.sections[s]), {}, ask, a.stats);
        std::string text = part.text;
        if (!trim(text).starts_with('#')) text = "## " + a.sections[s] + "\n\n" + text;
        texts.push_back(text);
    }

    // Every mark of every section, then one image for each from the pool.
    std::vector<std::vector<composer::Mark>> marks;
    std::vector<std::string> wanted;
    std::vector<size_t> wanted_mark; // which mark each wanted description is
    for (const auto& t : texts) {
        marks.push_back(composer::find_marks(t));
        for (const auto& m : marks.back()) {
            if (!m.description.empty()) {
                wanted.push_back(m.description);
                wanted_mark.push_back(a.images.size());
            }
            a.images.push_back({m.description});
        }
    }
    std::vector<int> chosen(a.images.size(), -1);
    std::vector<double> chosen_score(a.images.size(), 0.0);
    if (!wanted.empty() && !request.pool.empty()) {
        std::vector<Image> pool;
        for (const auto& p : request.pool) pool.push_back(p.image);
        auto scores = image_match_scores(engine, pool, wanted, options);
        std::vector<int> assigned = assign_images(scores);
        for (size_t w = 0; w < wanted.size(); ++w) {
            chosen[wanted_mark[w]] = assigned[w];
            if (assigned[w] >= 0) chosen_score[wanted_mark[w]] = scores[w][size_t(assigned[w])];
        }
    }
    int n_placed = int(std::count_if(chosen.begin(), chosen.end(), [](int c) { return c >= 0; }));
    int n_captioned = 0;
    for (size_t k = 0; k < chosen.size(); ++k) {
        if (chosen[k] < 0) continue;
        check_progress(options, "captions", n_captioned++, n_placed);
        a.images[k].pool_index = chosen[k];
        a.images[k].score = chosen_score[k];
        Session captioner(engine);
        AskOptions cap = ask;
        cap.sampling.max_new_tokens = 48;
        Answer c
            = captioner.ask(kCaptionQuestion, {request.pool[size_t(chosen[k])].image}, cap, {});
        add_stats(a.stats, c.stats);
        std::string caption(trim(c.text));
        if (!caption.empty() && caption.back() == '.') caption.pop_back();
        a.images[k].caption = caption.empty() ? a.images[k].description : caption;
    }

    // The Markdown: marks become images (or go), sections joined under the title.
    a.markdown = "# " + a.title + "\n";
    size_t k = 0;
    for (size_t s = 0; s < texts.size(); ++s) {
        std::string out;
        size_t pos = 0;
        for (const auto& m : marks[s]) {
            out += texts[s].substr(pos, m.begin - pos);
            if (a.images[k].pool_index >= 0) {
                std::string cap = alt_text(a.images[k].caption);
                out += "![" + cap + "](" + article_image_file(a, k) + ")\n*" + cap + "*";
            }
            pos = m.end;
            ++k;
        }
        out += texts[s].substr(pos);
        a.markdown += "\n" + std::string(trim(out)) + "\n";
    }
    check_progress(options, "done", 1, 1);
    return a;
}

Webpage compose_webpage(const Engine& engine, const WebpageRequest& request,
                        const ComposeOptions& options)
{
    if (!request.screenshot && trim(request.instruction).empty())
        throw Error(ErrorKind::invalid_argument,
                    "the web page needs an instruction or a screenshot");
    if (request.max_tokens < 1 || request.max_tokens > 16384)
        throw Error(ErrorKind::invalid_argument, "max_tokens must be within 1..16384");
    options.sampling.validate();
    AskOptions ask;
    ask.sampling = options.sampling;
    ask.sampling.max_new_tokens = request.max_tokens;
    ask.max_tiles = options.max_tiles;
    ask.max_prompt_tokens = options.max_prompt_tokens;
    ask.cancelled = options.cancelled;
    check_progress(options, "writing", 0, 1);
    Session session(engine);
    Webpage page;
    std::string q = "Write a web page as one HTML file.\nInstruction: "
        + std::string(trim(request.instruction));
    if (request.screenshot) {
        q = "Write the HTML of this web page.";
        if (std::string wish = std::string(trim(request.instruction)); !wish.empty()) {
            q += '\n';
            q += wish;
        }
    }
    std::vector<Image> shown;
    if (request.screenshot) shown.push_back(*request.screenshot);
    Answer answer = ask_step(session, q, shown, ask, page.stats);
    page.model_output = answer.text;
    // A page in a fenced block is taken from inside the fence.
    std::string html = answer.text;
    if (size_t f = html.find("```"); f != std::string::npos) {
        size_t body = html.find('\n', f);
        size_t close = body == std::string::npos ? body : html.find("```", body);
        if (body != std::string::npos)
            html = html.substr(body + 1, close == std::string::npos ? close : close - body - 1);
    }
    page.html = make_self_contained_html(html);
    check_progress(options, "done", 1, 1);
    return page;
}

} // namespace iris::reasoning
