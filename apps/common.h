// Pieces shared by the iris subcommands: progress bars, sampling options, thread settings.
#pragma once

#include "apps/args.h"
#include "reasoning/engine.h"

#include <string>
#include <string_view>
#include <vector>

namespace iris::app {

// A progress bar on stderr ("loading [=====>    ] 52%"), redrawn in place on a terminal and
// printed every 10% otherwise. finish() ends the line.
class ProgressBar
{
public:
    explicit ProgressBar(std::string label);
    void update(float fraction, const char* what = nullptr);
    void finish();

private:
    std::string label_;
    int last_percent_ = -1;
    bool tty_;
    bool done_ = false;
};

// The option names every generating command accepts.
std::vector<std::string> sampling_option_names();
std::vector<std::string> common_valued_options(); // --threads, --max-tiles, sampling, KV cache
const char* sampling_help();
reasoning::SamplingParams sampling_from_args(const Args& args);
// --max-prompt-tokens: the longest prompt a command runs (AskOptions::max_prompt_tokens). The
// default keeps a mistaken paste from running for minutes, as the server's limit does.
constexpr int kDefaultMaxPromptTokens = 8192;
int max_prompt_tokens_from_args(const Args& args);
// --kv TYPE (keys and values), --kv-k TYPE and --kv-v TYPE (one side), --kv-block N.
std::vector<std::string> kv_option_names();
const char* kv_help();
// The --model, --mmproj, --quantize, --precision and --device options of every command that
// loads a model, and the model::LoadOptions they give (progress shown on `bar`, which must
// outlive the load).
const char* load_help();
model::LoadOptions load_options(const Args& args, ProgressBar& bar);
model::KvCacheOptions kv_cache_from_args(const Args& args);
// Applies --threads (0 or absent: all cores).
void apply_threads(const Args& args);
// The model folder: --model, else $IRIS_MODEL, else the embedded demo model
// (resources/models/iris-demo beside the build tree, or share/iris/models/iris-demo of an
// install). Throws Error(not_found) saying where it looked.
std::string model_dir(const Args& args);
// The whole file; Error(not_found) naming it when it cannot be read.
std::string read_text_file(const std::string& path);
// Creates the folder and its parents; Error(io) naming it when that fails (a file in the way,
// a folder the user may not write).
void make_folder(const std::string& dir);
// Writes the file whole or not at all: a temporary beside it, synced and renamed over it.
// Error(io) naming the file when it cannot be written.
void write_whole_file(const std::string& path, std::string_view bytes);
// Whether the name ends like an image file the engine decodes (.png .jpg .jpeg .webp .bmp, any
// case).
bool is_image_path(const std::string& path);
// Prints ids on one line to stdout: space-separated, or a JSON array.
void print_ids(const std::vector<int32_t>& ids, bool json);
// Loads the engine of model_dir(args) with a progress bar; sessions get the KV cache of the
// --kv options.
std::unique_ptr<reasoning::Engine> load_engine(const Args& args);

} // namespace iris::app
