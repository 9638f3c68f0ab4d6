// A question finds the memories it is about, and is answered from them.
#include "assistant/assistant.h"

#include <algorithm>

namespace iris::assistant {
namespace {

std::vector<reasoning::Remembered> remembered(const std::vector<memory::Hit>& hits)
{
    std::vector<reasoning::Remembered> used;
    for (const memory::Hit& h : hits)
        used.push_back({.id = h.entry.id,
                        .t_start_us = h.entry.t_start_us,
                        .t_end_us = h.entry.t_end_us,
                        .caption = h.entry.caption,
                        .transcript = h.entry.transcript});
    return used;
}

} // namespace

std::vector<memory::Hit> find_memories(const reasoning::Engine* engine, const memory::Store& store,
                                       const std::string& text, const FindOptions& options)
{
    memory::Query q;
    q.text = text;
    q.k = options.k;
    q.t_from_us = options.t_from_us;
    q.t_to_us = options.t_to_us;
    q.with_frames = options.with_frames;
    if (auto when = memory::parse_time_phrase(text, wall_us())) {
        q.t_from_us = std::max(q.t_from_us, when->range.from_us);
        q.t_to_us = std::min(q.t_to_us, when->range.to_us);
        q.text = when->rest;
        // A time phrase alone ("in the last hour") asks for what happened then: newest first.
        if (trim(q.text).empty()) {
            memory::ListOptions l {.t_from_us = q.t_from_us, .t_to_us = q.t_to_us, .limit = q.k};
            l.with_frames = q.with_frames;
            std::vector<memory::Hit> hits;
            for (auto& e : store.list(l)) hits.push_back({.entry = std::move(e)});
            return hits;
        }
    }
    if (engine && embedding_dim(*engine) == store.dim())
        q.embedding = reasoning::memory_embedding(*engine, {}, q.text);
    return memory::Retriever(store).search(q);
}

std::vector<reasoning::Remembered> recall(const reasoning::Engine* engine,
                                          const memory::Store& store, const std::string& question,
                                          int k)
{
    return remembered(find_memories(engine, store, question, {.k = k}));
}

Recollection answer_from_memory(const reasoning::Engine& engine, const memory::Store& store,
                                const std::string& question, int k,
                                const reasoning::AskOptions& options,
                                const reasoning::TextCallback& on_text)
{
    Recollection r;
    r.hits = find_memories(&engine, store, question, {.k = k});
    reasoning::Session session(engine);
    r.answer = session.ask(reasoning::memory_prompt(remembered(r.hits), question),
                           std::vector<Image> {}, options, on_text);
    return r;
}

} // namespace iris::assistant
