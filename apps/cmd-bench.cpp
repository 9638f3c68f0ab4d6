// iris bench: prompt processing, decode and vision throughput of a checkpoint on this machine,
// printed like llama-bench, to set the figures beside llama.cpp's (docs/HOWTO-add-model.md §7).
#include "apps/commands.h"
#include "apps/common.h"
#include "model/arch.h"
#include "model/model.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <sys/resource.h>

namespace iris::app {
namespace {

using nlohmann::json;

double cpu_seconds()
{
    rusage u {};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec)
        + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Wall time and this process' CPU time since construction: their ratio shows how much of the
// machine a test got (other jobs on a shared machine lower it, and the figures with it).
struct Stopwatch
{
    int64_t wall0 = now_us();
    double cpu0 = cpu_seconds();
    double wall_ms() const { return double(now_us() - wall0) / 1000.0; }
    double cpu_ms() const { return (cpu_seconds() - cpu0) * 1000.0; }
};

// One test's timings: each repetition's wall time for `units` tokens or tiles.
struct Result
{
    std::string name; // "pp512", "tg128 @ d512", "vit448 x1"
    std::string unit; // "token" or "tile"
    int units = 0;
    std::vector<double> ms;
    double cpu_ms = 0; // summed over the repetitions

    void add(const Stopwatch& w)
    {
        ms.push_back(w.wall_ms());
        cpu_ms += w.cpu_ms();
    }
    // CPU time over wall time x threads: 1 when every thread had a core to itself.
    double cpu_share(int threads) const
    {
        double wall = 0;
        for (double t : ms) wall += t;
        return wall > 0 ? cpu_ms / (wall * threads) : 0;
    }

    double median_ms() const
    {
        auto v = ms;
        std::sort(v.begin(), v.end());
        const size_t n = v.size();
        return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    }
    double min_ms() const { return *std::min_element(ms.begin(), ms.end()); }
    double per_s(double t_ms) const { return t_ms > 0 ? units * 1000.0 / t_ms : 0; }
    // llama-bench's figure: the mean of the reps' rates and their sample standard deviation.
    std::pair<double, double> rate_mean_sd() const
    {
        double sum = 0, sq = 0;
        for (double t : ms) sum += per_s(t);
        const double mean = sum / double(ms.size());
        for (double t : ms) sq += (per_s(t) - mean) * (per_s(t) - mean);
        return {mean, ms.size() > 1 ? std::sqrt(sq / double(ms.size() - 1)) : 0.0};
    }
};

std::string human_bytes(double b)
{
    if (b >= double(1ull << 30)) return strfmt("%.2f GiB", b / double(1ull << 30));
    if (b >= double(1ull << 20)) return strfmt("%.2f MiB", b / double(1ull << 20));
    return strfmt("%.2f KiB", b / 1024.0);
}

std::string human_params(int64_t n)
{
    if (n >= 1'000'000'000) return strfmt("%.2fB", double(n) / 1e9);
    if (n >= 1'000'000) return strfmt("%.1fM", double(n) / 1e6);
    return strfmt("%.1fK", double(n) / 1e3);
}

// Characters of UTF-8 text ("±" is two bytes, one column).
size_t columns(const std::string& s)
{
    return size_t(std::count_if(s.begin(), s.end(), [](char ch) { return (ch & 0xC0) != 0x80; }));
}

// A markdown table with columns padded to their widest cell; `right` marks numeric columns.
void print_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right)
{
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], columns(r[c]));
    auto line = [&](const std::vector<std::string>& r) {
        std::string s = "|";
        for (size_t c = 0; c < r.size(); ++c) {
            const std::string pad(width[c] - columns(r[c]), ' ');
            s.append(" ")
                .append(right[c] ? pad : "")
                .append(r[c])
                .append(right[c] ? "" : pad)
                .append(" |");
        }
        std::printf("%s\n", s.c_str());
    };
    line(rows[0]);
    std::string sep = "|";
    for (size_t c = 0; c < width.size(); ++c)
        sep.append(" ").append(width[c] - 1, '-').append(right[c] ? ":" : "-").append(" |");
    std::printf("%s\n", sep.c_str());
    for (size_t i = 1; i < rows.size(); ++i) line(rows[i]);
}

// Two decimals, or four below 1 so that slow figures (ViT tiles per second) keep their digits.
std::string figure(double v)
{
    return strfmt(v < 1 ? "%.4f" : "%.2f", v);
}

// iris bench --depths: decode speed over deep caches of each KV setting.
int bench_kv_depths(const Args& args, const std::string& dir, const model::KvCacheOptions& kv,
                    int n_gen, int reps)
{
    std::vector<int> depths;
    std::string list = args.str("--depths");
    for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        const std::string item = list.substr(at, comma - at);
        char* end = nullptr;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || v < 1 || v > (1 << 22))
            throw Error(ErrorKind::invalid_argument,
                        "--depths must be a comma-separated list of token counts, got '" + list
                            + "'");
        depths.push_back(int(v));
        at = comma + 1;
    }
    std::vector<model::KvCacheOptions> settings
        = {{model::KvType::f16, model::KvType::f16, kv.block_tokens, {}}};
    if (kv.k_type == model::KvType::skvq && args.all("--kv-bits").size() > 1) {
        for (const auto& bits : args.all("--kv-bits")) {
            settings.push_back(kv);
            model::parse_kv_bits(bits, settings.back().skvq);
        }
    } else if (model::kv_cache_name(kv) != "f16") {
        settings.push_back(kv);
    }
    apply_threads(args);
    const int threads = default_thread_pool().size();
    ProgressBar bar("loading");
    const model::LoadOptions opts = load_options(args, bar);
    auto net = model::InternVL::load(dir, opts);
    bar.finish();
    const auto& cfg = net->config();
    { // Warm-up: touches every weight once.
        auto warm = net->new_cache(settings[0]);
        const int32_t ids[2] = {0, 1};
        net->forward(*warm, ids, {}, -1);
        net->forward(*warm, std::span<const int32_t>(ids, 1), {}, -1);
    }
    std::printf("model:   %s (%d layers, %d KV heads of %d channels, weights %s); threads %d; "
                "tg%d, %d reps; caches filled with random keys and values\n\n",
                dir.c_str(), cfg.llm.num_hidden_layers, cfg.llm.num_key_value_heads,
                cfg.llm.head_dim, opts.quantize.empty() ? "as stored" : opts.quantize.c_str(),
                threads, n_gen, reps);
    std::vector<std::string> head = {"kv", "bytes/token", "vs f16", "tokens in 4 GiB"};
    for (int d : depths) head.push_back(strfmt("t/s @ d%d", d));
    std::vector<std::vector<std::string>> rows = {head};
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<int32_t> any_id(0, cfg.llm.vocab_size - 1);
    const size_t f16_bytes = net->new_cache(settings[0])->bytes_per_token();
    // speeds[setting][depth]; the settings take turns within each rep, so that a change in
    // what else the machine runs does not favour one of them.
    std::vector<std::vector<std::string>> speeds(settings.size());
    std::vector<size_t> fixed(settings.size()); // beside the tokens' rows, at the last depth
    for (int depth : depths) {
        ProgressBar run(strfmt("d%d", depth));
        std::vector<std::unique_ptr<model::KvCache>> caches;
        for (const auto& setting : settings) {
            caches.push_back(net->new_cache(setting));
            caches.back()->append_random(depth, 7);
        }
        std::vector<Result> tg(settings.size(), Result {strfmt("tg%d", n_gen), "token", n_gen, {}});
        for (int r = 0; r < reps; ++r)
            for (size_t si = 0; si < settings.size(); ++si) {
                model::KvCache& cache = *caches[si];
                const Stopwatch w;
                for (int i = 0; i < n_gen; ++i) {
                    const int32_t id = any_id(rng);
                    net->forward(cache, std::span<const int32_t>(&id, 1), {}, -1);
                }
                tg[si].add(w);
                fixed[si] = cache.bytes() - size_t(cache.n_tokens()) * cache.bytes_per_token();
                cache.truncate(depth);
                run.update(float(r * settings.size() + si + 1) / float(reps * settings.size()));
            }
        run.finish();
        for (size_t si = 0; si < settings.size(); ++si)
            speeds[si].push_back(figure(tg[si].per_s(tg[si].median_ms())) + " ("
                                 + figure(tg[si].per_s(tg[si].min_ms())) + ")");
    }
    for (size_t si = 0; si < settings.size(); ++si) {
        const size_t per_token = net->new_cache(settings[si])->bytes_per_token();
        std::vector<std::string> row = {
            model::kv_cache_name(settings[si]), std::to_string(per_token),
            strfmt("%.2fx", double(f16_bytes) / double(per_token)),
            strfmt("%.0fk", (double(4ull << 30) - double(fixed[si])) / double(per_token) / 1024.0)};
        row.insert(row.end(), speeds[si].begin(), speeds[si].end());
        rows.push_back(row);
    }
    std::printf("\n");
    std::vector<bool> right(head.size(), true);
    right[0] = false;
    print_table(rows, right);
    std::printf("\nt/s: median (best) of the reps. tokens in 4 GiB: (4 GiB - what the cache holds "
                "beside the rows of its tokens: scratch, f32 sink and window, partly filled "
                "blocks) / bytes per token\n");
    return 0;
}

} // namespace

int cmd_bench(int argc, char** argv)
{
    std::vector<std::string> valued
        = {"--model", "--mmproj", "-p",         "-n",          "--threads", "--tiles", "--reps",
           "--depth", "--depths", "--quantize", "--precision", "--device",  "--batch"};
    for (auto& name : kv_option_names()) valued.push_back(name);
    Args args(argc, argv, valued, {"--json", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris bench --model DIR|FILE.gguf [--mmproj FILE] [-p 512] [-n 128] [--depth "
            "D]\n"
            "                  [--kv TYPE] [--threads N]\n"
            "                  [--tiles 1] [--reps 3] [--quantize TYPE] [--precision f32|bf16]\n"
            "                  [--device cpu|cuda[:N]] [--batch B] [--json]\n"
            "\n"
            "Measures, on random inputs, like llama-bench:\n"
            "  ppP          prompt processing: P tokens into an empty KV cache, tokens/s\n"
            "  tgN @ dP     decode: N single-token steps after that prompt, tokens/s\n"
            "  tgN xB @ dP  with --batch B: B sequences, each after its own copy of the prompt,\n"
            "               decoded together in N batched steps; tokens/s of all B together\n"
            "  vit448 xT    vision: T random 448x448 tiles through InternViT + mlp1, ms per tile\n"
            "With --depth D the cache first holds D random tokens, and both ppP @ dD and\n"
            "tgN @ dD start from there (the cache is truncated back to D before each).\n"
            "Each is run --reps times; the table shows the median and the best. 0 skips a test.\n"
            "--json prints one JSON object instead of the table. Random weights are fine\n"
            "(see 'iris make-random'). --quantize q8_0|q4_0|q4_K_M|... quantizes the language\n"
            "model's matrices at load, each tensor to the type llama-quantize would give it.\n"
            "--precision bf16 rounds the activations of BF16 prompt and image products to bf16.\n"
            "--device cuda runs it on the first GPU (`iris info` lists the devices).\n"
            "\n"
            "With --depths D1,D2,... it compares KV caches instead: f16 and the --kv setting\n"
            "(with --kv skvq, one per --kv-bits given) by bytes per token, the context that fits\n"
            "in 4 GiB of KV, and tgN decode speed at each depth, the cache filled with random\n"
            "keys and values (no prompt is run, so deep contexts are quick to reach).\n"
            "%s",
            kv_help());
        return 0;
    }
    const std::string dir = model_dir(args);
    const int n_prompt = int(args.integer("-p", 512, 0, 1 << 20));
    const int n_gen = int(args.integer("-n", 128, 0, 1 << 20));
    const int depth = int(args.integer("--depth", 0, 0, 1 << 20));
    const int n_tiles = int(args.integer("--tiles", 1, 0, 256));
    const int reps = int(args.integer("--reps", 3, 1, 1000));
    const int n_batch = int(args.integer("--batch", 1, 1, 256));
    const bool as_json = args.flag("--json");
    const model::KvCacheOptions kv = kv_cache_from_args(args);
    const std::string kv_name = model::kv_cache_name(kv);
    apply_threads(args);
    const int threads = default_thread_pool().size();

    if (args.has("--depths")) return bench_kv_depths(args, dir, kv, n_gen, reps);
    if (n_batch > 1 && depth > 0)
        throw Error(ErrorKind::invalid_argument, "--batch and --depth do not go together");
    ProgressBar bar("loading");
    const model::LoadOptions opts = load_options(args, bar);
    const Stopwatch load_time;
    auto net = model::InternVL::load(dir, opts);
    bar.finish();
    const double load_ms = load_time.wall_ms();
    const auto& cfg = net->config();
    const int vocab = cfg.llm.vocab_size;
    const char* arch = model::llm_arch(cfg.llm.arch).gguf_arch; // llama-bench names it so

    // Random ids never equal to an image-context id: -1 marks none, so no visual rows are needed.
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<int32_t> any_id(0, vocab - 1);
    std::vector<int32_t> prompt(static_cast<size_t>(n_prompt)), gen(static_cast<size_t>(n_gen));
    for (auto& id : prompt) id = any_id(rng);
    for (auto& id : gen) id = any_id(rng);
    constexpr int32_t no_image = -1;

    // Warm-up: touches every weight and grows the scratch buffers once, as llama-bench does.
    {
        auto cache = net->new_cache(kv);
        const int32_t warm[4] = {any_id(rng), any_id(rng), any_id(rng), any_id(rng)};
        net->forward(*cache, warm, {}, no_image);
        net->forward(*cache, std::span<const int32_t>(warm, 1), {}, no_image);
    }

    std::vector<Result> results;
    size_t kv_bytes = 0, kv_bytes_per_token = net->new_cache(kv)->bytes_per_token();
    if (n_prompt > 0 || n_gen > 0) {
        // The context of --depth, filled once in prompt-sized chunks (as a session prefills).
        auto context = net->new_cache(kv);
        if (depth > 0) {
            std::vector<int32_t> ids(static_cast<size_t>(depth));
            for (auto& id : ids) id = any_id(rng);
            ProgressBar fill(strfmt("depth %d", depth));
            for (int at = 0; at < depth; at += 512) {
                const int n = std::min(512, depth - at);
                net->forward(*context, std::span<const int32_t>(ids).subspan(size_t(at), size_t(n)),
                             {}, no_image);
                fill.update(float(at + n) / float(depth));
            }
            fill.finish();
        }
        const std::string at = depth > 0 ? strfmt(" @ d%d", depth) : "";
        const std::string x = n_batch > 1 ? strfmt(" x%d", n_batch) : "";
        Result pp {strfmt("pp%d", n_prompt) + at, "token", n_prompt, {}};
        Result tg {depth > 0          ? strfmt("tg%d", n_gen) + x + at
                       : n_prompt > 0 ? strfmt("tg%d", n_gen) + x + strfmt(" @ d%d", n_prompt)
                                      : strfmt("tg%d", n_gen) + x,
                   "token",
                   n_gen * n_batch,
                   {}};
        auto batch = net->new_batch();
        std::vector<model::BatchItem> items(static_cast<size_t>(n_batch));
        ProgressBar run("llm");
        for (int r = 0; r < reps; ++r) {
            std::unique_ptr<model::KvCache> fresh;
            if (depth == 0) fresh = net->new_cache(kv);
            model::KvCache* cache = depth > 0 ? context.get() : fresh.get();
            if (n_prompt > 0) {
                const Stopwatch w;
                net->forward(*cache, prompt, {}, no_image);
                pp.add(w);
                kv_bytes = std::max(kv_bytes, cache->bytes());
                if (depth > 0) cache->truncate(depth);
            }
            if (n_gen > 0) {
                // --batch: the other sequences, each after its own copy of the prompt.
                std::vector<std::unique_ptr<model::KvCache>> others;
                for (int b = 1; b < n_batch; ++b) {
                    others.push_back(net->new_cache(kv));
                    if (n_prompt > 0) net->forward(*others.back(), prompt, {}, no_image);
                    items[size_t(b)].cache = others.back().get();
                }
                items[0].cache = cache;
                const Stopwatch w;
                for (int i = 0; i < n_gen; ++i) {
                    const std::span<const int32_t> next(&gen[size_t(i)], 1);
                    if (n_batch == 1) {
                        net->forward(*cache, next, {}, no_image);
                    } else {
                        for (auto& item : items) item.ids = next;
                        net->forward_batch(*batch, items);
                    }
                    if (i % 8 == 7) run.update(float(r * n_gen + i + 1) / float(reps * n_gen));
                }
                tg.add(w);
                kv_bytes = std::max(kv_bytes, cache->bytes());
                if (depth > 0) cache->truncate(depth);
            }
            run.update(float(r + 1) / float(reps));
        }
        run.finish();
        if (n_prompt > 0) results.push_back(pp);
        if (n_gen > 0) results.push_back(tg);
    }
    if (n_tiles > 0) {
        const int s = cfg.force_image_size;
        std::normal_distribution<float> normal(0.f, 1.f); // roughly ImageNet-normalised pixels
        std::vector<float> pixels(size_t(n_tiles) * 3 * size_t(s) * size_t(s));
        for (auto& v : pixels) v = normal(rng);
        Result vit {strfmt("vit%d x%d", s, n_tiles), "tile", n_tiles, {}};
        ProgressBar run("vision");
        for (int r = 0; r < reps; ++r) {
            const Stopwatch w;
            auto visual = net->encode_images(pixels, n_tiles);
            vit.add(w);
            run.update(float(r + 1) / float(reps));
        }
        run.finish();
        results.push_back(vit);
    }

    // Quantized at load, the weights in memory are what the figures depend on.
    const model::InternVL::FileWeights& files = net->file_weights();
    const std::string weights = opts.quantize.empty() ? files.types : opts.quantize;
    const double size = opts.quantize.empty()
        ? double(files.bytes)
        : double(net->weight_bytes_owned() + net->weight_bytes_mapped());
    const std::string model_name
        = strfmt("%s %s %s", arch, human_params(files.params).c_str(), weights.c_str());
    if (as_json) {
        json tests = json::array();
        for (const auto& r : results)
            tests.push_back({{"test", r.name},
                             {"unit", r.unit},
                             {"n", r.units},
                             {"reps", r.ms.size()},
                             {"samples_ms", r.ms},
                             {"median_ms", r.median_ms()},
                             {"min_ms", r.min_ms()},
                             {"median_per_s", r.per_s(r.median_ms())},
                             {"best_per_s", r.per_s(r.min_ms())},
                             {"median_ms_per_unit", r.median_ms() / r.units},
                             {"avg_per_s", r.rate_mean_sd().first},
                             {"stddev_per_s", r.rate_mean_sd().second},
                             {"cpu_share", r.cpu_share(threads)}});
        json out = {{"model", dir},
                    {"model_name", model_name},
                    {"arch", arch},
                    {"layers", cfg.llm.num_hidden_layers},
                    {"hidden", cfg.llm.hidden_size},
                    {"heads", cfg.llm.num_attention_heads},
                    {"kv_heads", cfg.llm.num_key_value_heads},
                    {"vocab", vocab},
                    {"vision_layers", cfg.vision.num_hidden_layers},
                    {"vision_hidden", cfg.vision.hidden_size},
                    {"params", files.params},
                    {"file_bytes", files.bytes},
                    {"file_dtype", files.types},
                    {"quantize", opts.quantize},
                    {"weight_bytes_owned", net->weight_bytes_owned()},
                    {"weight_bytes_mapped", net->weight_bytes_mapped()},
                    {"kv_type", kv_name},
                    {"kv_block_tokens", kv.block_tokens},
                    {"kv_bytes_per_token", kv_bytes_per_token},
                    {"kv_cache_bytes", kv_bytes},
                    {"depth", depth},
                    {"threads", threads},
                    {"device", net->device()},
                    {"load_ms", load_ms},
                    {"tests", tests}};
        std::printf("%s\n", out.dump(2).c_str());
        return 0;
    }

    std::printf("model:   %s (%s, %d layers, hidden %d, %d/%d heads, vocab %d; vision %d layers, "
                "hidden %d)\n",
                dir.c_str(), arch, cfg.llm.num_hidden_layers, cfg.llm.hidden_size,
                cfg.llm.num_attention_heads, cfg.llm.num_key_value_heads, vocab,
                cfg.vision.num_hidden_layers, cfg.vision.hidden_size);
    std::printf(
        "weights: %s parameters, files %s %s; in memory %s owned + %s mapped; loaded in %.1f s\n",
        human_params(files.params).c_str(), human_bytes(double(files.bytes)).c_str(),
        files.types.c_str(), human_bytes(double(net->weight_bytes_owned())).c_str(),
        human_bytes(double(net->weight_bytes_mapped())).c_str(), load_ms / 1000.0);
    const int max_tokens = depth > 0 ? depth + std::max(n_prompt, n_gen) : n_prompt + n_gen;
    std::printf("kv cache: %s, %zu bytes per token (scales included), %s held at %d tokens; "
                "threads %d; %d reps\n",
                kv_name.c_str(), kv_bytes_per_token, human_bytes(double(kv_bytes)).c_str(),
                max_tokens, threads, reps);
    std::printf(
        "t/s: mean ± standard deviation of the reps (llama-bench's columns; vision: tiles/s),\n"
        "median t/s and best t/s: fastest rep, ms/unit: median, cpu: CPU time over wall time x\n"
        "threads (other jobs taking cores, or serial work, lower it)\n\n");
    std::vector<std::vector<std::string>> rows
        = {{"model", "size", "params", "backend", "threads", "test", "t/s", "median t/s",
            "best t/s", "ms/unit", "cpu", "kv"}};
    // llama-bench's spelling: the CPU with its kernels, or the GPU.
    const std::string device = net->device();
    const std::string backend
        = device == "cpu" ? strfmt("CPU %s", model::cpu_kernels_name()) : "CUDA " + device;
    for (const auto& r : results) {
        // For vision "t/s" counts tiles per second; the unit column says which.
        const auto [mean, sd] = r.rate_mean_sd();
        rows.push_back({model_name, human_bytes(size), human_params(files.params), backend,
                        std::to_string(threads), r.name, strfmt("%.2f ± %.2f", mean, sd),
                        figure(r.per_s(r.median_ms())), figure(r.per_s(r.min_ms())),
                        figure(r.median_ms() / r.units) + " ms/" + r.unit,
                        strfmt("%.0f%%", 100 * r.cpu_share(threads)),
                        r.unit == "token" ? kv_name : "-"});
    }
    print_table(rows, {false, true, true, false, true, false, true, true, true, true, true, false});
    return 0;
}

} // namespace iris::app
