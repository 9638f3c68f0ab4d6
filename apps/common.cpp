#include "apps/common.h"
#include "core/atomic-file.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <unistd.h>

namespace iris::app {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label))
    , tty_(isatty(STDERR_FILENO) != 0)
{ }

void ProgressBar::update(float fraction, const char* what)
{
    int percent = int(std::clamp(fraction, 0.f, 1.f) * 100.f + 0.5f);
    if (percent == last_percent_
        || (!tty_ && percent / 10 == last_percent_ / 10 && last_percent_ >= 0))
        return;
    last_percent_ = percent;
    constexpr int width = 30;
    int filled = percent * width / 100;
    std::string bar(size_t(filled), '=');
    if (filled < width) bar += '>' + std::string(size_t(width - filled - 1), ' ');
    std::fprintf(stderr, "%s%s [%s] %3d%% %-40.40s%s", tty_ ? "\r" : "", label_.c_str(),
                 bar.c_str(), percent, what ? what : "", tty_ ? "" : "\n");
    std::fflush(stderr);
}

void ProgressBar::finish()
{
    if (done_) return;
    done_ = true;
    update(1.f);
    if (tty_) std::fprintf(stderr, "\n");
}

std::vector<std::string> sampling_option_names()
{
    return {"--temperature", "--top-k",          "--top-p", "--repeat-penalty",
            "--seed",        "--max-new-tokens", "--stop"};
}

std::vector<std::string> common_valued_options()
{
    auto v = sampling_option_names();
    v.insert(v.end(),
             {"--model", "--mmproj", "--threads", "--max-tiles", "--max-prompt-tokens",
              "--quantize", "--precision", "--device"});
    for (auto& name : kv_option_names()) v.push_back(name);
    return v;
}

std::vector<std::string> kv_option_names()
{
    return {"--kv",       "--kv-k",      "--kv-v",    "--kv-block", "--kv-bits",
            "--kv-group", "--kv-window", "--kv-sink", "--kv-clip"};
}

const char* load_help()
{
    return "  --model PATH         a checkpoint folder (config.json, safetensors), llama.cpp's\n"
           "                       language-model .gguf, or a folder holding one\n"
           "  --mmproj FILE        the vision tower of a .gguf model (llama.cpp's mmproj file;\n"
           "                       default: the one mmproj*.gguf beside the model)\n"
           "  --quantize TYPE      quantize the language model at load, as llama-quantize would:\n"
           "                       q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q4_K_S, q4_K_M, q5_K_S,\n"
           "                       q5_K_M or q6_K (default: the weights as stored)\n"
           "  --precision P        f32 (default, exact) or bf16: BF16 weights meet bf16 "
           "activations\n"
           "                       in prompt and image products (AVX512_BF16: about 2x faster)\n"
           "  --device D           where the model runs: cpu, cuda or cuda:N (a CUDA build on a\n"
           "                       machine with a GPU; `iris info` lists them; default:\n"
           "                       $IRIS_DEVICE, else cpu)\n";
}

const char* kv_help()
{
    return "  --kv TYPE            KV cache type: f32 (default), f16, q8 (llama.cpp q8_0), q4 "
           "(q4_0)\n"
           "                       or skvq (SKVQ: calibrated low-bit groups, f32 sink and "
           "window)\n"
           "  --kv-k TYPE          the keys' type alone (overrides --kv); --kv-v TYPE the "
           "values'\n"
           "  --kv-block N         tokens per KV cache block (default 64)\n"
           "  --kv-bits KxVy       skvq bits: K 2, 4 or 8; V 1.5, 2, 4 or 8 (default K2V1.5)\n"
           "  --kv-group N         skvq channels per group: 32, 64 or 128 (default 128, at most "
           "a head)\n"
           "  --kv-window N        skvq: the last N tokens stay f32 (default 128)\n"
           "  --kv-sink N          skvq: the first N tokens stay f32 (default 5)\n"
           "  --kv-clip A          skvq clipping factor in [0.5, 1] for every group (default: "
           "the\n"
           "                       model's kv-calibration file, else 1)\n";
}

model::KvCacheOptions kv_cache_from_args(const Args& args)
{
    model::KvCacheOptions kv;
    if (args.has("--kv")) kv.k_type = kv.v_type = model::kv_type_from_name(args.str("--kv"));
    if (args.has("--kv-k")) kv.k_type = model::kv_type_from_name(args.str("--kv-k"));
    if (args.has("--kv-v")) kv.v_type = model::kv_type_from_name(args.str("--kv-v"));
    kv.block_tokens = int(args.integer("--kv-block", kv.block_tokens, 1, 65536));
    if (args.has("--kv-bits")) model::parse_kv_bits(args.str("--kv-bits"), kv.skvq);
    kv.skvq.group = int(args.integer("--kv-group", kv.skvq.group, 32, 128));
    if (kv.skvq.group != 32 && kv.skvq.group != 64 && kv.skvq.group != 128)
        throw Error(ErrorKind::invalid_argument, "--kv-group must be 32, 64 or 128");
    kv.skvq.window = int(args.integer("--kv-window", kv.skvq.window, 0, 1 << 20));
    kv.skvq.sink = int(args.integer("--kv-sink", kv.skvq.sink, 0, 65536));
    kv.skvq.clip = float(args.number("--kv-clip", kv.skvq.clip, 0.5, 1));
    const bool skvq_settings = args.has("--kv-bits") || args.has("--kv-group")
        || args.has("--kv-window") || args.has("--kv-sink") || args.has("--kv-clip");
    if (skvq_settings && kv.k_type != model::KvType::skvq)
        throw Error(ErrorKind::invalid_argument,
                    "--kv-bits, --kv-group, --kv-window, --kv-sink and --kv-clip need --kv skvq");
    if ((kv.k_type == model::KvType::skvq) != (kv.v_type == model::KvType::skvq))
        throw Error(ErrorKind::invalid_argument,
                    "skvq stores keys and values alike: use --kv skvq with --kv-bits");
    return kv;
}

const char* sampling_help()
{
    static const std::string text
        = std::string("sampling (greedy by default):\n"
                      "  --temperature T      0 = greedy (default 0)\n"
                      "  --top-k K            keep the K most likely tokens (0 = off)\n"
                      "  --top-p P            nucleus sampling mass in (0, 1] (default 1 = off)\n"
                      "  --repeat-penalty R   divide the logits of generated tokens by R (default "
                      "1 = off)\n"
                      "  --seed N             random seed (default 0)\n"
                      "  --max-new-tokens N   at most N new tokens (default 512)\n"
                      "  --stop TEXT          stop when TEXT appears (repeatable)\n"
                      "other:\n"
                      "  --max-tiles N        at most N tiles per image, 1..64 (default: the "
                      "model's, usually "
                      "12)\n"
                      "  --threads N          CPU threads (default: all cores)\n"
                      "  --max-prompt-tokens N  refuse longer prompts, images included (default "
                      "8192,\n"
                      "                       at most the model's max_position_embeddings)\n")
        + load_help() + kv_help();
    return text.c_str();
}

reasoning::SamplingParams sampling_from_args(const Args& args)
{
    reasoning::SamplingParams p;
    p.temperature = float(args.number("--temperature", 0, 0, 100));
    p.top_k = int(args.integer("--top-k", 0, 0, 1 << 30));
    p.top_p = float(args.number("--top-p", 1, 1e-6, 1));
    p.repetition_penalty = float(args.number("--repeat-penalty", 1, 1e-3, 100));
    p.seed = uint64_t(args.integer("--seed", 0, 0, INT64_MAX));
    p.max_new_tokens = int(args.integer("--max-new-tokens", 512, 1, 1 << 20));
    p.stop = args.all("--stop");
    p.validate();
    return p;
}

int max_prompt_tokens_from_args(const Args& args)
{
    return int(args.integer("--max-prompt-tokens", kDefaultMaxPromptTokens, 1, 1 << 24));
}

void apply_threads(const Args& args)
{
    int threads = int(args.integer("--threads", 0, 0, 1024));
    if (threads > 0) set_default_threads(threads);
}

std::string model_dir(const Args& args)
{
    if (args.has("--model")) return args.str("--model");
    if (const char* env = std::getenv("IRIS_MODEL"); env && *env) return env;
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec).parent_path();
    std::vector<fs::path> candidates
        = {exe / "../../resources/models/iris-demo", exe / "../share/iris/models/iris-demo"};
    for (const auto& c : candidates)
        if (fs::exists(c / "config.json", ec)) return fs::weakly_canonical(c, ec).string();
    std::string where;
    for (const auto& c : candidates) {
        where += ' ';
        where += c.lexically_normal().string();
    }
    throw Error(ErrorKind::not_found,
                "no --model given, IRIS_MODEL is not set and the demo model is not at" + where);
}

void print_ids(const std::vector<int32_t>& ids, bool json)
{
    std::string out = json ? "[" : "";
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) out += json ? ", " : " ";
        out += std::to_string(ids[i]);
    }
    out += json ? "]\n" : "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
}

model::LoadOptions load_options(const Args& args, ProgressBar& bar)
{
    model::LoadOptions opts;
    opts.progress = [&bar](float f, const char* what) { bar.update(f, what); };
    opts.quantize = args.str("--quantize");
    opts.precision = model::precision_from_name(args.str("--precision", "f32"));
    opts.mmproj = args.str("--mmproj");
    opts.device = args.str("--device"); // empty: $IRIS_DEVICE, else the CPU
    return opts;
}

std::unique_ptr<reasoning::Engine> load_engine(const Args& args)
{
    apply_threads(args);
    ProgressBar bar("loading");
    reasoning::EngineOptions opts;
    opts.load = load_options(args, bar);
    opts.kv_cache = kv_cache_from_args(args);
    auto engine = reasoning::Engine::load(model_dir(args), opts);
    bar.finish();
    return engine;
}

std::string read_text_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::not_found, "cannot read '" + path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void make_folder(const std::string& dir)
{
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    // A file of that name is no folder, whatever create_directories made of it.
    if (!ec && !std::filesystem::is_directory(dir, ec))
        ec = std::make_error_code(std::errc::not_a_directory);
    if (ec) throw Error(ErrorKind::io, "cannot create the folder '" + dir + "': " + ec.message());
}

void write_whole_file(const std::string& path, std::string_view bytes)
{
    write_file_atomically(path, [&](const TempFile& f) { f.write(bytes.data(), bytes.size()); });
}

bool is_image_path(const std::string& path)
{
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](char c) { return char(std::tolower(static_cast<unsigned char>(c))); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp" || ext == ".bmp";
}

} // namespace iris::app
