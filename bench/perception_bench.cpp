// perception_bench — how fast perception keeps up with a video, and how well it hears.
//
//   perception_bench                 makes a 1280x720 30 fps H.264 file of 20 s with the ffmpeg
//                                    tool (in a temporary folder) and measures on it
//   perception_bench --input FILE    measures on FILE instead
//   perception_bench --seconds N     length of the generated file (default 20)
//   perception_bench --threads N     decoder threads (default 2: the target is 2 cores)
//
// Video: VideoSource + FrameSampler as `iris watch --fast` runs them before the bus: every
// frame decoded, the 1 fps samples converted to RGB and compared for clip boundaries. "x real
// time" is stream seconds per wall second. "per CPU s" is stream seconds per CPU second of the
// whole process: on a machine that other work keeps busy the wall clock measures that work too,
// so compare CPU figures there.
// ASR: the spoken samples through AudioSource, Vad and Recognizer (pocketsphinx en-us); word
// error rate against what was said, and the speed.
#include "perception/perception.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using namespace iris::perception;

namespace {

// What espeak-ng says in the sample clip (SPEECH in tools/demo/make_samples.py).
const char* const kClipSpeech = "Look, the blue square is moving to the right. Now a green star "
                                "appears. Remember to buy milk.";

double cpu_seconds()
{
    timespec ts {};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double wall_seconds()
{
    return double(iris::now_us()) * 1e-6;
}

struct Row
{
    std::string what;
    double stream_s = 0;
    double wall_s = 0;
    double cpu_s = 0;
    std::string note;
};

void print_row(const Row& r)
{
    std::printf("| %-48s | %8.1f | %7.2f | %7.2f | %11.1f | %9.1f | %-32s |\n", r.what.c_str(),
                r.stream_s, r.wall_s, r.cpu_s, r.stream_s / r.wall_s, r.stream_s / r.cpu_s,
                r.note.c_str());
}

Row bench_video(const std::string& path, int threads)
{
    const double wall0 = wall_seconds(), cpu0 = cpu_seconds();
    VideoSource video(path, {.threads = threads});
    FrameSampler sampler;
    int n_sampled = 0, n_clips = 0;
    while (std::optional<VideoFrame> frame = video.read(sampler.next_pts_us())) {
        FrameSampler::Step step = sampler.offer(*frame);
        n_sampled += step.sampled ? 1 : 0;
        n_clips += (step.closed_before ? 1 : 0) + (step.closed_after ? 1 : 0);
    }
    n_clips += sampler.finish() ? 1 : 0;
    Row row;
    const VideoInfo& info = video.info();
    row.what = iris::strfmt("video %dx%d %.0f fps %s, %d decoder thread%s", info.width, info.height,
                            info.fps, info.codec.c_str(), threads, threads == 1 ? "" : "s");
    row.wall_s = wall_seconds() - wall0;
    row.cpu_s = cpu_seconds() - cpu0;
    const VideoStats stats = video.stats();
    row.stream_s = double(stats.n_decoded) / info.fps;
    row.note = iris::strfmt("%" PRIu64 " frames, %d sampled, %d clips", stats.n_decoded, n_sampled,
                            n_clips);
    return row;
}

Row bench_asr(const std::string& path, const std::string& label)
{
    Recognizer asr;
    const double wall0 = wall_seconds(), cpu0 = cpu_seconds();
    AudioSource audio(path);
    Vad vad;
    std::string heard;
    auto hear = [&](const SpeechSegment& s) { heard += asr.recognize(s).text + " "; };
    while (std::optional<AudioChunk> chunk = audio.read())
        for (const SpeechSegment& s : vad.push(chunk->samples)) hear(s);
    if (std::optional<SpeechSegment> s = vad.flush()) hear(*s);
    Row row;
    row.what = "ASR " + label;
    row.wall_s = wall_seconds() - wall0;
    row.cpu_s = cpu_seconds() - cpu0;
    row.stream_s = double(audio.stats().n_samples) / kSampleRate;
    row.note = iris::strfmt("WER %.2f", word_error_rate(kClipSpeech, heard));
    std::printf("%s heard: \"%s\"\n", label.c_str(), heard.c_str());
    return row;
}

} // namespace

int main(int argc, char** argv)
{
    std::string input;
    int seconds = 20, threads = 2;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--input") == 0 && i + 1 < argc) {
            input = argv[++i];
        } else if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = std::max(1, std::atoi(argv[++i]));
        } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = std::max(0, std::atoi(argv[++i]));
        } else {
            std::fprintf(stderr, "usage: %s [--input FILE] [--seconds N] [--threads N]\n", argv[0]);
            return 2;
        }
    }
    const std::string samples = IRIS_SOURCE_DIR "/resources/samples/";

    std::filesystem::path scratch;
    if (input.empty()) {
        scratch = std::filesystem::temp_directory_path()
            / ("iris_perception_bench_" + std::to_string(getpid()));
        std::filesystem::create_directories(scratch);
        input = (scratch / "720p30.mp4").string();
        // A moving test pattern with a little temporal noise, so that the bitrate is that of a
        // camera (several Mbit/s) rather than of a flat synthetic picture.
        const std::string cmd = iris::strfmt(
            "ffmpeg -nostdin -y -loglevel error -f lavfi -i "
            "'testsrc2=size=1280x720:rate=30:duration=%d,noise=alls=6:allf=t' -c:v libx264 "
            "-preset veryfast -crf 23 -pix_fmt yuv420p '%s'",
            seconds, input.c_str());
        std::fprintf(stderr, "making a %d s 1280x720 30 fps H.264 file with ffmpeg...\n", seconds);
        if (std::system(cmd.c_str()) != 0) {
            std::fprintf(stderr, "ffmpeg failed; install it or pass --input FILE\n");
            return 1;
        }
    }

    double load = -1;
    if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf", &load) != 1) load = -1;
        std::fclose(f);
    }
    const auto bytes = std::filesystem::file_size(input);
    std::printf("perception bench: %u hardware threads, load average %.1f; video %s (%.1f MB)\n",
                std::thread::hardware_concurrency(), load, input.c_str(), double(bytes) / 1e6);
    std::vector<Row> rows;
    rows.push_back(bench_video(input, threads));
    rows.push_back(bench_asr(samples + "clip-speech-16k.wav", "clip-speech-16k.wav"));
    rows.push_back(bench_asr(samples + "clip-shapes.mp4", "clip-shapes.mp4 (AAC soundtrack)"));
    std::printf("\n| %-48s | %8s | %7s | %7s | %11s | %9s | %-32s |\n", "stage", "stream s",
                "wall s", "cpu s", "x real time", "per CPU s", "");
    std::printf(
        "|--------------------------------------------------|----------|---------|---------|"
        "-------------|-----------|----------------------------------|\n");
    for (const Row& r : rows) print_row(r);
    std::printf("\nx real time: stream s / wall s (target for video: >= 5 on 2 cores); per CPU s: "
                "stream s / CPU s of all threads. ASR loads its model before the clock starts.\n");
    if (!scratch.empty()) std::filesystem::remove_all(scratch);
    return 0;
}
