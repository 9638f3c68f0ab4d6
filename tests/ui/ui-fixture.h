// Shared by the ui tests: paths of the samples and the demo model, and a memory store made with
// the real memory module and the demo model's embeddings.
#pragma once

#include "memory/memory.h"
#include "reasoning/engine.h"
#include "reasoning/image.h"
#include "reasoning/responder.h"

#include <QImage>
#include <QSet>
#include <QString>

#include <chrono>
#include <string>

namespace iris::test {

inline const std::string kSourceDir = IRIS_SOURCE_DIR;
inline const std::string kDemoModel = kSourceDir + "/resources/models/iris-demo";

inline std::string samplePath(const std::string& name)
{
    return kSourceDir + "/resources/samples/" + name;
}

// The entries of prepareMemory, oldest first: what each clip showed and what was heard.
struct FixtureEntry
{
    const char* frame;
    const char* caption;
    const char* transcript;
};
inline constexpr FixtureEntry kFixtureEntries[] = {
    {"clip-frame1.png", "a red circle and a blue square", ""},
    {"clip-frame3.png", "a green star and a blue square", "buy milk on the way home"},
    {"document-receipt.png", "a receipt", "what is the cash"},
};

// A store in `dir` holding kFixtureEntries ten minutes apart, ending now, each with its sample
// as key frame and the demo model's memory embedding. Returns the store's embedding length.
inline int prepareMemory(const std::string& dir, const reasoning::Engine& engine)
{
    const int dim = 2 * engine.config().llm.hidden_size;
    memory::Store store = memory::Store::open(dir, {.dim = dim});
    const int64_t now = wall_us();
    const int64_t step = 600'000'000;
    int64_t start = now - step * int64_t(std::size(kFixtureEntries));
    for (const FixtureEntry& f : kFixtureEntries) {
        Image image = reasoning::load_image(samplePath(f.frame));
        memory::Entry e;
        e.t_start_us = start;
        e.t_end_us = start + 8'000'000;
        e.caption = f.caption;
        e.transcript = f.transcript;
        e.key_frames.push_back(
            {.t_us = start, .jpeg = Buffer::adopt(reasoning::encode_jpeg(image))});
        e.embedding = reasoning::memory_embedding(engine, {image}, e.caption + " " + e.transcript);
        store.add(e);
        start += step;
    }
    return dim;
}

// How many different colours an image has (a blank or one-colour window has 1).
inline int distinctColors(const QImage& image)
{
    QSet<QRgb> colors;
    for (int y = 0; y < image.height(); y += 2)
        for (int x = 0; x < image.width(); x += 2) colors.insert(image.pixel(x, y));
    return colors.size();
}

} // namespace iris::test
