// safetensors files (model/safetensors.cpp): the header's JSON, dtypes, shapes and offsets, and
// the tensor conversions. A file that opens is written back with SafeTensorsWriter and must open
// again to the same tensors and metadata.
#include "model/model.h"
#include "tests/fuzz/fuzz.h"

#include <cstring>

using namespace iris;
using namespace iris::model;

namespace {

void read_all(const SafeTensors& st)
{
    for (const TensorInfo& t : st.tensors()) {
        IRIS_FUZZ_CHECK(st.find(t.name) == &t, "find(\"%s\") is another tensor", t.name.c_str());
        IRIS_FUZZ_CHECK(t.nbytes == size_t(t.numel()) * dtype_size(t.dtype),
                        "tensor \"%s\": %zu bytes for %lld values", t.name.c_str(), t.nbytes,
                        (long long)t.numel());
        fuzz::accepts([&] { (void)t.to_f32(); });
        fuzz::accepts([&] { (void)t.to_i64(); });
    }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string path = (fuzz::scratch_dir() / "in.safetensors").string();
    fuzz::write_file(path, fuzz::as_text(data, size));
    std::optional<SafeTensors> st;
    if (!fuzz::accepts([&] { st.emplace(SafeTensors::open(path)); })) return 0;
    read_all(*st);

    // Written back, the same tensors and metadata come out.
    SafeTensorsWriter w;
    for (const TensorInfo& t : st->tensors()) w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
    for (const auto& [k, v] : st->metadata()) w.set_metadata(k, v);
    const std::string again_path = (fuzz::scratch_dir() / "again.safetensors").string();
    w.write(again_path);
    SafeTensors again = SafeTensors::open(again_path);
    IRIS_FUZZ_CHECK(again.tensors().size() == st->tensors().size(), "%zu tensors became %zu",
                    st->tensors().size(), again.tensors().size());
    for (const TensorInfo& t : st->tensors()) {
        const TensorInfo* u = again.find(t.name);
        IRIS_FUZZ_CHECK(u, "tensor \"%s\" lost on rewriting", t.name.c_str());
        IRIS_FUZZ_CHECK(u->dtype == t.dtype && u->shape == t.shape && u->nbytes == t.nbytes
                            && (t.nbytes == 0 || std::memcmp(u->data, t.data, t.nbytes) == 0),
                        "tensor \"%s\" changed on rewriting", t.name.c_str());
    }
    IRIS_FUZZ_CHECK(again.metadata() == st->metadata(), "metadata changed on rewriting");
    return 0;
}
