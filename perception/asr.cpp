#include "perception/perception.h"

#include <pocketsphinx.h>
#include <sphinxbase/err.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>

namespace iris::perception {

namespace {

// pocketsphinx reports its configuration and progress at length; only problems reach the log.
void sphinx_to_log(void*, err_lvl_t level, const char* fmt, ...)
{
    if (level < ERR_WARN || log_level() > LogLevel::warn) return;
    char text[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    std::string_view line(text);
    while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (level >= ERR_ERROR)
        IRIS_LOG_WARN("pocketsphinx: %.*s", int(line.size()), line.data());
    else
        IRIS_LOG_DEBUG("pocketsphinx: %.*s", int(line.size()), line.data());
}

std::string model_dir(const AsrOptions& options)
{
    if (!options.model_dir.empty()) return options.model_dir;
    if (const char* env = std::getenv("IRIS_POCKETSPHINX_MODEL"); env && *env) return env;
    return IRIS_POCKETSPHINX_MODELDIR "/en-us";
}

// Fillers and markers the decoder puts between words: <s>, </s>, <sil>, [NOISE], ++UM++.
bool is_filler(std::string_view word)
{
    return word.empty() || word[0] == '<' || word[0] == '[' || word[0] == '+';
}

} // namespace

struct Recognizer::Impl
{
    cmd_ln_t* config = nullptr;
    ps_decoder_t* decoder = nullptr;
    int frame_rate = 100;

    ~Impl()
    {
        if (decoder) ps_free(decoder);
        if (config) cmd_ln_free_r(config);
    }
};

Recognizer::Recognizer(AsrOptions options)
    : impl_(std::make_unique<Impl>())
{
    static std::once_flag once;
    std::call_once(once, [] {
        err_set_logfp(nullptr); // the configuration dump is written there directly
        err_set_callback(sphinx_to_log, nullptr);
    });

    const std::string dir = model_dir(options);
    const std::string hmm = dir + "/en-us", lm = dir + "/en-us.lm.bin",
                      dict = dir + "/cmudict-en-us.dict";
    // pocketsphinx exits the process on some missing files: check them first.
    for (const std::string& path : {hmm + "/mdef", lm, dict})
        if (!std::filesystem::exists(path))
            throw Error(ErrorKind::not_found,
                        "speech model file missing: " + path
                            + " (install the Debian package pocketsphinx-en-us, or set "
                              "IRIS_POCKETSPHINX_MODEL to a folder with en-us/, en-us.lm.bin "
                              "and cmudict-en-us.dict)");
    impl_->config = cmd_ln_init(nullptr, ps_args(), TRUE, "-hmm", hmm.c_str(), "-lm", lm.c_str(),
                                "-dict", dict.c_str(), "-samprate", "16000", nullptr);
    if (impl_->config) impl_->decoder = ps_init(impl_->config);
    if (!impl_->decoder)
        throw Error(ErrorKind::invalid_input, "pocketsphinx could not load the model in " + dir);
    impl_->frame_rate = cmd_ln_int32_r(impl_->config, "-frate");
}

Recognizer::~Recognizer() = default;
Recognizer::Recognizer(Recognizer&&) noexcept = default;
Recognizer& Recognizer::operator=(Recognizer&&) noexcept = default;

Transcript Recognizer::recognize(const SpeechSegment& segment)
{
    Transcript out;
    out.start_us = segment.start_us;
    out.end_us = segment.end_us;
    if (segment.samples.empty()) return out;
    ps_decoder_t* ps = impl_->decoder;
    if (ps_start_utt(ps) < 0
        || ps_process_raw(ps, segment.samples.data(), segment.samples.size(), FALSE, TRUE) < 0
        || ps_end_utt(ps) < 0)
        throw Error(ErrorKind::internal, "pocketsphinx failed to decode a speech segment");

    const int64_t us_per_frame = 1'000'000 / impl_->frame_rate;
    bool first = true;
    for (ps_seg_t* seg = ps_seg_iter(ps); seg; seg = ps_seg_next(seg)) {
        std::string_view word = ps_seg_word(seg);
        if (is_filler(word)) continue;
        word = word.substr(0, word.find('(')); // "the(2)": a second pronunciation
        int start_frame = 0, end_frame = 0;
        ps_seg_frames(seg, &start_frame, &end_frame);
        if (first) out.start_us = segment.start_us + start_frame * us_per_frame;
        out.end_us = segment.start_us + (end_frame + 1) * us_per_frame;
        if (!first) out.text += ' ';
        out.text += word;
        first = false;
    }
    return out;
}

} // namespace iris::perception
