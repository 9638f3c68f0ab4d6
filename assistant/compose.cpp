// Memories lend their key frames to a composition.
#include "assistant/assistant.h"
#include "reasoning/image.h"

namespace iris::assistant {

std::vector<reasoning::PoolImage> memory_pool(const reasoning::Engine* engine,
                                              const memory::Store& store,
                                              const std::string& instruction, int k)
{
    std::vector<reasoning::PoolImage> pool;
    for (const memory::Hit& h :
         find_memories(engine, store, instruction, {.k = k, .with_frames = true})) {
        const std::vector<memory::KeyFrame>& frames = h.entry.key_frames;
        if (frames.empty()) continue;
        const Buffer& jpeg = frames[frames.size() / 2].jpeg;
        pool.push_back({strfmt("memory %lld", static_cast<long long>(h.entry.id)),
                        reasoning::decode_image(jpeg.bytes())});
    }
    return pool;
}

} // namespace iris::assistant
