// Fixtures shared by the perception suites: the sample media, a scratch folder, and files made
// at run time with the ffmpeg command-line tool.
#pragma once

#include "perception/perception.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace iris::test {

inline const std::string kSamples = IRIS_SOURCE_DIR "/resources/samples/";
// 224x224, 12 fps, 84 frames (7 s), H.264 + AAC; the soundtrack is clip_speech.
inline const std::string kClipVideo = kSamples + "clip-shapes.mp4";
inline const std::string kClipWav = kSamples + "clip-speech-16k.wav"; // 97951 samples
// What espeak-ng says in both (SPEECH in tools/demo/make_samples.py).
inline const std::string kClipSpeech
    = "Look, the blue square is moving to the right. Now a green star appears. "
      "Remember to buy milk.";

// A folder of its own, removed with everything in it.
class ScratchDir
{
public:
    explicit ScratchDir(const std::string& tag)
        : path_(std::filesystem::temp_directory_path()
                / ("iris_" + tag + "_" + std::to_string(getpid())))
    {
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~ScratchDir() { std::filesystem::remove_all(path_); }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::string write(const std::string& name, const std::string& bytes) const
    {
        std::ofstream(file(name), std::ios::binary) << bytes;
        return file(name);
    }

private:
    std::filesystem::path path_;
};

inline bool have_ffmpeg_cli()
{
    return std::system("ffmpeg -version >/dev/null 2>&1") == 0;
}

// Runs `ffmpeg -y -loglevel error <args>`; false if it failed.
inline bool ffmpeg(const std::string& args)
{
    return std::system(("ffmpeg -nostdin -y -loglevel error " + args).c_str()) == 0;
}

// Every 16 kHz sample of a file's audio, read with perception::AudioSource.
inline std::vector<int16_t> samples_of(const std::string& file)
{
    perception::AudioSource audio(file);
    std::vector<int16_t> all;
    while (auto chunk = audio.read())
        all.insert(all.end(), chunk->samples.begin(), chunk->samples.end());
    return all;
}

} // namespace iris::test

#define IRIS_REQUIRE_FFMPEG_CLI()                                                                  \
    do {                                                                                           \
        if (!::iris::test::have_ffmpeg_cli())                                                      \
            GTEST_SKIP() << "the ffmpeg command-line tool is not installed";                       \
    } while (0)
