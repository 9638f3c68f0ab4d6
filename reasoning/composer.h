// reasoning/composer — articles with images and web pages, written by the model.
//
//   std::vector<PoolImage> pool = {{"beach.jpg", load_image("beach.jpg")}, ...};
//   Article a = compose_article(engine, {.instruction = "Write about our trip.", .pool = pool});
//   write("article.md", a.markdown);  // images as images/<n>.jpg (article_image_file)
//   write("article.html", article_html(a, pool));  // one self-contained file
//
// As InternLM-XComposer does, an article is written in steps of one conversation: an outline
// ("# Title" and numbered section titles), then each section, in which the model marks where an
// image would help with a "[[image: description]]" line. Each mark gets the pool image the model
// itself finds most likely to show the description (image_match_scores), each image at most once,
// and a caption the model writes for it.
//
// Thread safety: free functions are reentrant; each call runs its own sessions on the engine.
#pragma once

#include "reasoning/engine.h"

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace iris::reasoning {

struct PoolImage
{
    std::string name; // where it came from: a file name, a memory entry
    Image image;
};

// Called between steps with what is being done; return false to cancel (Error(cancelled)).
using ComposeProgress = std::function<bool(const std::string& stage, int done, int total)>;

struct ComposeOptions
{
    SamplingParams sampling; // greedy by default
    int max_tiles = 0; // 0: the checkpoint's
    int max_prompt_tokens = 0; // as AskOptions::max_prompt_tokens, for every step's prompt
    ComposeProgress progress;
    // Polled before every forward pass, as AskOptions::cancelled; true ends with Error(cancelled).
    std::function<bool()> cancelled;
};

struct ArticleRequest
{
    std::string instruction;
    std::string source; // optional text the article draws on
    std::vector<PoolImage> pool;
    int max_sections = 6;
    int max_section_tokens = 400;
};

struct ArticleImage
{
    std::string description; // what the mark asked for
    int pool_index = -1; // the chosen image, -1 when none was left
    double score = 0; // image_match_scores of the choice
    std::string caption;
};

struct Article
{
    std::string title;
    std::vector<std::string> sections; // the outline
    std::string markdown; // marks replaced by ![caption](images/<n>.jpg), unplaced marks removed
    std::vector<ArticleImage> images; // every mark, in order
    GenerationStats stats; // summed over every step
};

Article compose_article(const Engine& engine, const ArticleRequest& request,
                        const ComposeOptions& options = {});
// The relative file name an article's Markdown uses for images[i] (empty when not placed).
std::string article_image_file(const Article& article, size_t i);
// One self-contained HTML page of the article: the Markdown rendered (raw HTML in it dropped),
// the chosen pool images embedded as JPEG data: URLs, make_self_contained_html applied.
std::string article_html(const Article& article, const std::vector<PoolImage>& pool);

// scores[d][i]: how likely images[i] is the pool image descriptions[d] speaks of, by Bayes with
// a uniform prior over the pool (each row sums to 1) from the probability that the model's
// caption of the image ("Give a short caption.") names the description: at its start or after
// an "and" or a comma of its own greedy caption, the likeliest place kept. A caption names what
// an image shows, several things included, and a tiny model that answers yes/no questions near
// chance still captions well. Each image goes through the vision tower at one tile unless
// options.max_tiles says otherwise.
std::vector<std::vector<double>> image_match_scores(const Engine& engine,
                                                    const std::vector<Image>& images,
                                                    const std::vector<std::string>& descriptions,
                                                    const ComposeOptions& options = {});
// Gives each description a different image: pairs are taken best score first; a description
// left without an image (more descriptions than images) gets -1.
std::vector<int> assign_images(const std::vector<std::vector<double>>& scores);

struct WebpageRequest
{
    std::string instruction; // what the page shows; with a screenshot, optional extra wishes
    std::optional<Image> screenshot; // a page to rebuild
    int max_tokens = 2048;
};

struct Webpage
{
    std::string html; // make_self_contained_html of the model's page
    std::string model_output; // what the model wrote
    GenerationStats stats;
};

Webpage compose_webpage(const Engine& engine, const WebpageRequest& request,
                        const ComposeOptions& options = {});

// Turns any text into one well-formed, self-contained HTML page: parsed by libxml2's HTML parser
// (which closes and nests what was left open; text without markup becomes the body), everything
// that would fetch removed (external src/href of resources, <link>, <base>, <iframe>, <object>,
// <embed>, refresh, CSS url() and @import that are not data:), and a Content-Security-Policy
// meta tag that forbids network access added. Inline CSS and JS stay. `images` maps src values
// to what replaces them (e.g. data: URLs).
std::string make_self_contained_html(std::string_view html,
                                     const std::map<std::string, std::string>& images = {});

} // namespace iris::reasoning
