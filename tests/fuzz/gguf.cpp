// GGUF files (model/gguf.cpp) read from memory, so AddressSanitizer sees every read past the
// end: the header, metadata, tensor table and data section; then what Iris builds from them, the
// tokenizer of tokenizer.ggml.* and the model configuration (paired with the seed corpus's
// language model and mmproj). A file that opens is written back with GgufWriter and must read
// back to the same metadata and tensors.
#include "model/gguf.h"
#include "model/model.h"
#include "model/network-impl.h"
#include "tests/fuzz/fuzz.h"

#include <cstring>
#include <optional>

using namespace iris;
using namespace iris::model;

namespace {

std::optional<GgufFile> seed_llm, seed_mmproj;

std::optional<GgufFile> open_seed(const char* name)
{
    std::ifstream in(std::string(IRIS_SOURCE_DIR) + "/tests/fuzz/corpus/gguf/" + name,
                     std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    std::optional<GgufFile> f;
    if (!fuzz::accepts([&] { f.emplace(GgufFile::from_bytes(std::move(bytes), name)); }))
        fuzz::finding(std::string("the seed ") + name + " does not open");
    return f;
}

void check_rewrite(const GgufFile& f)
{
    GgufWriter w;
    for (const auto& [key, value] : f.metadata().entries()) w.set(key, value);
    for (const GgufTensor& t : f.tensors())
        w.add_tensor_view(t.name, t.ggml_type, t.ne, t.data, t.nbytes);
    const std::string path = (fuzz::scratch_dir() / "again.gguf").string();
    w.write(path);
    GgufFile again = GgufFile::open(path);
    IRIS_FUZZ_CHECK(again.metadata().entries() == f.metadata().entries(),
                    "metadata changed on rewriting");
    IRIS_FUZZ_CHECK(again.tensors().size() == f.tensors().size(), "%zu tensors became %zu",
                    f.tensors().size(), again.tensors().size());
    for (size_t i = 0; i < f.tensors().size(); ++i) {
        const GgufTensor &a = f.tensors()[i], &b = again.tensors()[i];
        IRIS_FUZZ_CHECK(a.name == b.name && a.ggml_type == b.ggml_type && a.ne == b.ne
                            && a.nbytes == b.nbytes
                            && (a.nbytes == 0 || std::memcmp(a.data, b.data, a.nbytes) == 0),
                        "tensor \"%s\" changed on rewriting", a.name.c_str());
    }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    fuzz::quiet();
    seed_llm = open_seed("qwen2-llm.gguf");
    seed_mmproj = open_seed("internvl-mmproj.gguf");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::optional<GgufFile> f;
    if (!fuzz::accepts([&] {
            f.emplace(GgufFile::from_bytes(std::vector<uint8_t>(data, data + size), "in"));
        }))
        return 0;
    for (const GgufTensor& t : f->tensors()) {
        IRIS_FUZZ_CHECK(t.offset + t.nbytes <= f->file_size(), "tensor \"%s\" ends past the file",
                        t.name.c_str());
        (void)t.numel();
        (void)t.rows();
        (void)t.shape();
        fuzz::accepts([&] { (void)f->weight_type(t); });
    }
    for (const auto& [key, value] : f->metadata().entries()) {
        (void)value.type_name();
        for (size_t i = 0; i < value.size() && i < 4; ++i) {
            (void)value.as_i64(i);
            (void)value.as_u64(i);
            (void)value.as_f64(i);
            (void)value.as_bool(i);
            (void)value.as_string(i);
        }
    }
    fuzz::accepts([&] {
        auto tok = Tokenizer::from_gguf(f->metadata());
        std::vector<int32_t> ids = tok->encode("Hello <|im_end|> wörld 123", true);
        (void)tok->decode(ids, false);
        (void)tok->decode_hf(ids, true);
    });
    fuzz::accepts([&] { (void)gguf_model_config(*f, *seed_mmproj); });
    fuzz::accepts([&] { (void)gguf_model_config(*seed_llm, *f); });
    check_rewrite(*f);
    return 0;
}
