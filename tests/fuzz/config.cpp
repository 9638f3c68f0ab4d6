// config.json of a checkpoint (model/config.cpp): every field's presence, type and range. A
// config that parses must give a positive image token count.
#include "model/model.h"
#include "tests/fuzz/fuzz.h"

using namespace iris;
using namespace iris::model;

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::optional<ModelConfig> c;
    if (!fuzz::accepts(
            [&] { c.emplace(ModelConfig::parse(fuzz::as_text(data, size), "config.json")); }))
        return 0;
    int n = 0;
    fuzz::accepts([&] { n = c->num_image_token(); });
    IRIS_FUZZ_CHECK(n >= 1, "config accepted with num_image_token() = %d", n);
    return 0;
}
