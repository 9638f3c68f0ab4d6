// A live session's client events (server/live.cpp, docs/live.md): the JSON text messages a
// WebSocket client sends, parsed and checked as a session does before it acts on one. A bad
// message is an ApiError of status 400 (or an Error a client can act on, such as malformed
// base64); what parses holds what the session relies on.
#include "perception/perception.h"
#include "server/internal.h"
#include "tests/fuzz/fuzz.h"

using namespace iris;
using namespace iris::server;

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    LiveEvent e;
    try {
        e = parse_live_event(fuzz::as_text(data, size), 32);
    } catch (const ApiError& error) {
        IRIS_FUZZ_CHECK(error.status == 400, "answered %d: %s", error.status,
                        error.message.c_str());
        return 0;
    } catch (const Error& error) {
        IRIS_FUZZ_CHECK(error.kind() != ErrorKind::internal, "Error(internal): %s", error.what());
        return 0;
    }
    switch (e.type) {
    case LiveEvent::Type::audio:
        IRIS_FUZZ_CHECK(!e.audio.empty(), "audio without samples");
        break;
    case LiveEvent::Type::frame:
        IRIS_FUZZ_CHECK(!e.image.empty(), "a frame without bytes");
        break;
    case LiveEvent::Type::question:
        IRIS_FUZZ_CHECK(!trim(e.question).empty() && e.question.size() <= 4000,
                        "a question of %zu bytes", e.question.size());
        break;
    case LiveEvent::Type::update:
        IRIS_FUZZ_CHECK(!e.wake_phrase || !perception::words_of(*e.wake_phrase).empty(),
                        "a wake phrase of no words");
        break;
    }
    return 0;
}
