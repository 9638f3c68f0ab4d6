// iris watch, recall, memory and live: perception feeds the memory through the bus; the model
// captions each clip and answers from what was remembered.
#include "apps/commands.h"
#include "apps/common.h"
#include "assistant/assistant.h"
#include "memory/memory.h"
#include "perception/perception.h"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

namespace iris::app {
namespace {

namespace mem = iris::memory;
namespace perc = iris::perception;

std::string clock_text(int64_t unix_us, bool seconds)
{
    std::time_t t = std::time_t(unix_us / 1'000'000);
    std::tm tm {};
    localtime_r(&t, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, seconds ? "%H:%M:%S" : "%H:%M", &tm);
    return buf;
}

mem::Store open_store(const Args& args, const reasoning::Engine* engine, bool read_only)
{
    mem::StoreOptions o;
    o.read_only = read_only;
    if (engine) o.dim = assistant::embedding_dim(*engine);
    return mem::Store::open(args.required("--db"), o);
}

void print_hits(const std::vector<mem::Hit>& hits)
{
    for (const auto& h : hits)
        std::fprintf(stderr, "  #%lld %s-%s %s\n", (long long)h.entry.id,
                     clock_text(h.entry.t_start_us, true).c_str(),
                     clock_text(h.entry.t_end_us, true).c_str(), h.entry.caption.c_str());
}

// Runs the pipeline to its end (or until stopped) and stores one entry per clip. Answers spoken
// or typed queries from memory when `answer_queries`.
int ingest(const Args& args, perc::PipelineOptions popts, bool answer_queries)
{
    auto engine = load_engine(args);
    mem::Store store = open_store(args, engine.get(), false);
    std::fprintf(stderr, "memory: %s, %lld entries\n", store.dir().c_str(),
                 (long long)store.count());
    ProgressBar bar("watch");
    assistant::LiveEvents events;
    events.stored = [](const mem::Entry& e) {
        // One line per acknowledged entry: it is durable once printed.
        std::printf("stored #%lld %s-%s %s%s%s\n", (long long)e.id,
                    clock_text(e.t_start_us, true).c_str(), clock_text(e.t_end_us, true).c_str(),
                    e.caption.c_str(),
                    e.transcript.empty() ? "" : " | heard: ", e.transcript.c_str());
        std::fflush(stdout);
    };
    events.heard
        = [](const mem::Text& t) { std::fprintf(stderr, "\r\033[K[heard] %s\n", t.text.c_str()); };
    events.progress = [&](const perc::Progress& p) {
        if (p.video && p.duration_us > 0)
            bar.update(float(double(p.pts_us) / double(p.duration_us)));
    };
    events.asked = [](const perc::Query& q) {
        std::printf("%s> %s\n", q.source == perc::QuerySource::spoken ? "heard" : "you",
                    q.text.c_str());
        std::fflush(stdout);
    };
    events.answer = [](const reasoning::AnswerPiece& a) {
        std::fwrite(a.text.data(), 1, a.text.size(), stdout);
        if (a.done) {
            if (!a.error.empty()) std::printf("(no answer: %s)", a.error.c_str());
            std::printf("\n");
            for (const auto& m : a.used)
                std::fprintf(stderr, "  #%lld %s-%s %s\n", (long long)m.id,
                             clock_text(m.t_start_us, true).c_str(),
                             clock_text(m.t_end_us, true).c_str(), m.caption.c_str());
        }
        std::fflush(stdout);
    };
    assistant::LiveOptions options;
    options.answer = answer_queries;
    options.responder.ask.max_prompt_tokens = max_prompt_tokens_from_args(args);
    assistant::Live live(*engine, store, std::move(popts), options, events);
    std::atomic<bool> done {false};
    std::thread typed;
    if (answer_queries)
        typed = std::thread([&] {
            std::string line;
            while (!done && std::getline(std::cin, line)) live.ask(line);
        });
    std::exception_ptr failure;
    int64_t stored = 0;
    try {
        stored = live.run();
    } catch (...) {
        failure = std::current_exception();
    }
    done = true;
    bar.finish();
    if (typed.joinable()) typed.detach(); // blocked reading stdin; the process is ending
    store.save_index();
    std::fprintf(stderr, "stored %lld entries; memory holds %lld\n", (long long)stored,
                 (long long)store.count());
    if (failure) std::rethrow_exception(failure);
    return 0;
}

perc::PipelineOptions pipeline_options(const Args& args)
{
    perc::PipelineOptions o;
    o.video = args.str("--video");
    o.audio = args.str("--audio");
    o.realtime = !args.flag("--fast");
    o.sampler.fps = args.number("--fps", 1.0, 0.01, 60);
    o.sampler.scene_threshold = float(args.number("--scene-threshold", 0.1, 0.0, 1.0));
    int64_t duration = int64_t(args.number("--duration", 0, 0, 1e7) * 1e6);
    o.video_options.duration_us = duration;
    o.audio_options.duration_us = duration;
    if (args.has("--wake")) o.wake.phrase = args.str("--wake");
    return o;
}

const std::vector<std::string> kIngestOptions
    = {"--model",    "--mmproj",          "--db",       "--video", "--audio",
       "--fps",      "--scene-threshold", "--duration", "--wake",  "--threads",
       "--quantize", "--precision",       "--device"};

} // namespace

int cmd_watch(int argc, char** argv)
{
    Args args(argc, argv, kIngestOptions, {"--fast", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris watch --video FILE|/dev/videoN|testsrc [--audio FILE|mic] --db DIR\n"
            "                  [--fast] [--fps N] [--scene-threshold X] [--duration SECONDS]\n"
            "                  [--model DIR]\n"
            "\n"
            "Watches and listens, and remembers: frames are sampled at --fps (default 1), cut "
            "into\n"
            "clips at scene changes or every 16 frames, and each clip is stored in the memory "
            "DIR\n"
            "with key frames, the model's caption, what was said, and an embedding. Prints one\n"
            "line per stored entry (durable once printed). Files play at real speed unless "
            "--fast.\n"
            "--audio may name the video file itself to use its soundtrack.\n%s",
            load_help());
        return 0;
    }
    apply_threads(args);
    auto o = pipeline_options(args);
    if (o.video.empty())
        throw Error(ErrorKind::invalid_argument, "give --video (a file, /dev/videoN or testsrc)");
    return ingest(args, o, false);
}

int cmd_live(int argc, char** argv)
{
    auto valued = kIngestOptions;
    valued.push_back("--max-prompt-tokens");
    Args args(argc, argv, valued, {"--fast", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf("usage: iris live --db DIR [--video /dev/video0] [--audio mic] [--wake "
                    "PHRASE]\n"
                    "\n"
                    "Watches the camera and listens to the microphone like `iris watch`, and "
                    "answers\n"
                    "questions from memory: typed on stdin, or spoken after the wake phrase "
                    "(default\n"
                    "\"hey iris\").\n"
                    "  --max-prompt-tokens N  refuse a longer question's prompt (default 8192)\n%s",
                    load_help());
        return 0;
    }
    apply_threads(args);
    auto o = pipeline_options(args);
    if (o.video.empty()) o.video = "/dev/video0";
    if (o.audio.empty()) o.audio = "mic";
    return ingest(args, o, true);
}

int cmd_recall(int argc, char** argv)
{
    auto valued = common_valued_options();
    valued.insert(valued.end(), {"--db", "--k"});
    Args args(argc, argv, valued, {"--json", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf("usage: iris recall --db DIR [--k N] [--json] [--model DIR] QUESTION\n"
                    "\n"
                    "Answers from memory: the entries nearest the question (embedding and "
                    "words, fused\n"
                    "by rank; \"in the last 10 minutes\", \"between 15:00 and 16:00\", "
                    "\"today\" filter\n"
                    "by time) are given to the model with their times. Prints the answer, "
                    "then the\n"
                    "entries and time ranges it used.\n%s",
                    sampling_help());
        return 0;
    }
    if (args.positionals().size() != 1)
        throw Error(ErrorKind::invalid_argument, "give the question as one argument");
    apply_threads(args);
    auto engine = load_engine(args);
    mem::Store store = open_store(args, engine.get(), true);
    bool json = args.flag("--json");
    reasoning::AskOptions ask;
    ask.sampling = sampling_from_args(args);
    ask.max_prompt_tokens = max_prompt_tokens_from_args(args);
    auto r = assistant::answer_from_memory(
        *engine, store, args.positionals()[0], int(args.integer("--k", 5, 1, 100)), ask,
        [&](std::string_view piece) {
            if (!json) {
                std::fwrite(piece.data(), 1, piece.size(), stdout);
                std::fflush(stdout);
            }
            return true;
        });
    if (json) {
        nlohmann::json j {{"answer", r.answer.text}, {"used", nlohmann::json::array()}};
        for (const auto& h : r.hits)
            j["used"].push_back({{"id", h.entry.id},
                                 {"t_start_us", h.entry.t_start_us},
                                 {"t_end_us", h.entry.t_end_us},
                                 {"caption", h.entry.caption},
                                 {"transcript", h.entry.transcript}});
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("\n");
    std::fprintf(stderr, "used:\n");
    print_hits(r.hits);
    return 0;
}

int cmd_memory(int argc, char** argv)
{
    Args args(argc, argv, {"--db", "--out", "--limit"}, {"--json", "-h", "--help"});
    const auto& pos = args.positionals();
    if (args.flag("-h") || args.flag("--help") || pos.empty()) {
        std::printf("usage: iris memory list [--limit N] [--json] --db DIR\n"
                    "       iris memory show ID --db DIR [--out DIR]   (--out: write its key "
                    "frames)\n"
                    "       iris memory delete ID --db DIR\n"
                    "       iris memory export --db DIR --out DIR      (entries.jsonl + "
                    "frames/)\n");
        return pos.empty() && !args.flag("-h") && !args.flag("--help") ? 2 : 0;
    }
    const std::string& what = pos[0];
    auto id_arg = [&] {
        if (pos.size() != 2) throw Error(ErrorKind::invalid_argument, "give the entry id");
        char* end = nullptr;
        long long id = std::strtoll(pos[1].c_str(), &end, 10);
        if (!end || *end || id <= 0)
            throw Error(ErrorKind::invalid_argument, "'" + pos[1] + "' is not an entry id");
        return int64_t(id);
    };
    auto entry_json = [](const mem::Entry& e) {
        return nlohmann::json {{"id", e.id},
                               {"start", clock_text(e.t_start_us, true)},
                               {"end", clock_text(e.t_end_us, true)},
                               {"t_start_us", e.t_start_us},
                               {"t_end_us", e.t_end_us},
                               {"caption", e.caption},
                               {"transcript", e.transcript}};
    };
    if (what == "list") {
        mem::Store store = open_store(args, nullptr, true);
        mem::ListOptions lo;
        lo.limit = args.integer("--limit", 100, 1, INT32_MAX);
        auto entries = store.list(lo);
        if (args.flag("--json")) {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& e : entries) j.push_back(entry_json(e));
            std::printf("%s\n", j.dump(2).c_str());
        } else {
            for (const auto& e : entries)
                std::printf("#%lld %s-%s %s%s%s\n", (long long)e.id,
                            clock_text(e.t_start_us, true).c_str(),
                            clock_text(e.t_end_us, true).c_str(), e.caption.c_str(),
                            e.transcript.empty() ? "" : " | heard: ", e.transcript.c_str());
            std::fprintf(stderr, "%zu of %lld entries\n", entries.size(), (long long)store.count());
        }
        return 0;
    }
    if (what == "show") {
        mem::Store store = open_store(args, nullptr, true);
        int64_t id = id_arg();
        auto e = store.get(id, true);
        if (!e) throw Error(ErrorKind::not_found, strfmt("no entry #%lld", (long long)id));
        auto j = entry_json(*e);
        j["key_frames"] = e->key_frames.size();
        if (args.has("--out")) {
            std::filesystem::path out = args.str("--out");
            make_folder(out.string());
            for (size_t i = 0; i < e->key_frames.size(); ++i) {
                auto path = out / strfmt("%lld-%zu.jpg", (long long)id, i + 1);
                const auto& b = e->key_frames[i].jpeg;
                write_whole_file(
                    path.string(),
                    std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
                j["key_frame_files"].push_back(path.string());
            }
        }
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    if (what == "delete") {
        mem::Store store = open_store(args, nullptr, false);
        int64_t id = id_arg();
        if (!store.remove(id))
            throw Error(ErrorKind::not_found, strfmt("no entry #%lld", (long long)id));
        std::fprintf(stderr, "deleted #%lld; %lld entries left\n", (long long)id,
                     (long long)store.count());
        return 0;
    }
    if (what == "export") {
        mem::Store store = open_store(args, nullptr, true);
        int64_t n = store.export_to(args.required("--out"));
        std::fprintf(stderr, "exported %lld entries to %s\n", (long long)n,
                     args.str("--out").c_str());
        return 0;
    }
    throw Error(ErrorKind::invalid_argument,
                "unknown memory command '" + what + "' (list, show, delete, export)");
}

} // namespace iris::app
