// ShortTerm: the recent window of frames, captions and transcripts.
#include "memory/memory.h"

#include <algorithm>

namespace iris::memory {

ShortTerm::ShortTerm(const ShortTermOptions& options)
    : options_(options)
{
    if (options_.window_us <= 0 || options_.max_frames == 0 || options_.max_texts == 0)
        throw Error(ErrorKind::invalid_argument, "short-term memory: bad options");
}

void ShortTerm::evict(int64_t newest_us)
{
    newest_us_ = std::max(newest_us_, newest_us);
    int64_t oldest_kept = newest_us_ - options_.window_us;
    while (frames_.size() > options_.max_frames
           || (!frames_.empty() && frames_.front().t_us < oldest_kept))
        frames_.pop_front();
    for (std::deque<Text>* texts : {&captions_, &transcripts_})
        while (texts->size() > options_.max_texts
               || (!texts->empty() && texts->front().t_end_us < oldest_kept))
            texts->pop_front();
}

void ShortTerm::add_frame(Frame frame)
{
    std::lock_guard lock(mutex_);
    int64_t t = frame.t_us;
    frames_.push_back(std::move(frame));
    evict(t);
}

void ShortTerm::add_caption(Text caption)
{
    std::lock_guard lock(mutex_);
    int64_t t = caption.t_end_us;
    captions_.push_back(std::move(caption));
    evict(t);
}

void ShortTerm::add_transcript(Text transcript)
{
    std::lock_guard lock(mutex_);
    int64_t t = transcript.t_end_us;
    transcripts_.push_back(std::move(transcript));
    evict(t);
}

std::vector<Frame> ShortTerm::frames(int64_t since_us) const
{
    std::lock_guard lock(mutex_);
    std::vector<Frame> out;
    for (const Frame& f : frames_)
        if (f.t_us >= since_us) out.push_back(f);
    return out;
}

std::vector<Frame> ShortTerm::latest_frames(size_t n) const
{
    std::lock_guard lock(mutex_);
    n = std::min(n, frames_.size());
    return std::vector<Frame>(frames_.end() - ptrdiff_t(n), frames_.end());
}

std::vector<Text> ShortTerm::captions(int64_t since_us) const
{
    std::lock_guard lock(mutex_);
    std::vector<Text> out;
    for (const Text& t : captions_)
        if (t.t_end_us >= since_us) out.push_back(t);
    return out;
}

std::vector<Text> ShortTerm::transcripts(int64_t since_us) const
{
    std::lock_guard lock(mutex_);
    std::vector<Text> out;
    for (const Text& t : transcripts_)
        if (t.t_end_us >= since_us) out.push_back(t);
    return out;
}

void ShortTerm::clear()
{
    std::lock_guard lock(mutex_);
    frames_.clear();
    captions_.clear();
    transcripts_.clear();
    newest_us_ = kTimeMin;
}

} // namespace iris::memory
