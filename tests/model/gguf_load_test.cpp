// Loading llama.cpp's InternVL files: iris quantize's GGUF pair of each golden tiny checkpoint
// read back as a model. At f32 the files hold the checkpoint's values, so the network must
// reproduce the official logits and the checkpoint's visual tokens (InternLM2's q and k rows
// come permuted to GGML's RoPE order and are rotated in that order); quantized, it must equal
// the checkpoint quantized at load to the same bytes. Then where the files are found
// (ModelPaths), and what bad files give.
#include "model/gguf.h"
#include "network-golden.h"
#include "reasoning/engine.h"
#include "reasoning/image.h"
#include "tests/errors.h"
#include "tests/files.h"

#include <filesystem>
#include <random>

namespace iris::test {
namespace {

namespace fs = std::filesystem;
using namespace iris::model;

QuantizeResult export_model(const std::string& rel_model, const std::string& type,
                            const fs::path& out, const std::string& mmproj_type = "f32")
{
    QuantizeOptions o;
    o.type = type;
    o.mmproj_type = mmproj_type;
    o.out_dir = out.string();
    return quantize_checkpoint(golden_dir() + "/" + rel_model, o);
}

std::vector<float> all_logits(const InternVL& net, std::span<const int32_t> ids)
{
    auto cache = net.new_cache();
    auto logits = net.forward(*cache, ids, {}, -1, /*all_logits=*/true);
    return {logits.begin(), logits.end()};
}

TEST(GgufLoad, F32FilesReproduceTheOfficialLogitsAndTheCheckpointsVisualTokens)
{
    IRIS_REQUIRE_GOLDEN();
    for (const auto& [name, cs] : golden_index()["cases"]["llm_only"].items()) {
        SCOPED_TRACE(name);
        const std::string model = cs["model"].get<std::string>();
        TempDir out;
        const QuantizeResult r = export_model(model, "f32", out.path());
        const auto net = InternVL::load(r.llm_path, {.mmproj = r.mmproj_path});
        const auto ref = golden_model(model);
        EXPECT_EQ(net->config().llm.arch, ref->config().llm.arch);
        EXPECT_EQ(net->config().llm.vocab_size, ref->config().llm.vocab_size);
        EXPECT_EQ(net->num_image_token(), ref->num_image_token());

        GoldenFile f(cs["file"].get<std::string>());
        const std::vector<int32_t> ids = f.ids("input_ids");
        const double err = max_abs_diff(all_logits(*net, ids), f.f32("logits"));
        report("gguf f32 " + name + " logits", err);
        EXPECT_LE(err, kTolerance);

        // Decoding token by token goes through the cache the same way.
        auto cache = net->new_cache();
        std::vector<float> inc;
        for (int32_t id : ids) {
            auto l = net->forward(*cache, std::span<const int32_t>(&id, 1), {}, -1);
            inc.insert(inc.end(), l.begin(), l.end());
        }
        EXPECT_LE(max_abs_diff(inc, f.f32("logits_incremental")), kTolerance);

        std::mt19937 rng(7);
        std::normal_distribution<float> normal;
        std::vector<float> pixels(size_t(2) * 3 * 448 * 448);
        for (float& v : pixels) v = normal(rng);
        const std::vector<float> a = net->encode_images(pixels, 2);
        const std::vector<float> b = ref->encode_images(pixels, 2);
        report("gguf f32 " + name + " visual tokens vs checkpoint", max_abs_diff(a, b));
        EXPECT_LE(max_abs_diff(a, b), 1e-6);
        EXPECT_EQ(net->file_weights().types, "f32");
        // In place, InternViT's split qkv too: only the stacked qkv biases are copies.
        EXPECT_LT(net->weight_bytes_owned(), net->weight_bytes_mapped() / 50);
    }
}

TEST(GgufLoad, QuantizedFilesEqualTheCheckpointQuantizedAtLoad)
{
    IRIS_REQUIRE_GOLDEN();
    for (const std::string type : {"q8_0", "q4_0", "q4_K_M"}) {
        for (const auto& [name, cs] : golden_index()["cases"]["llm_only"].items()) {
            SCOPED_TRACE(name + " " + type);
            const std::string model = cs["model"].get<std::string>();
            TempDir out;
            const QuantizeResult r = export_model(model, type, out.path());
            // A folder holding both files is a model too.
            const auto net = InternVL::load(out.path().string());
            const auto ref = InternVL::load(golden_dir() + "/" + model, {.quantize = type});
            GoldenFile f(cs["file"].get<std::string>());
            const std::vector<int32_t> ids = f.ids("input_ids");
            const std::vector<float> a = all_logits(*net, ids), b = all_logits(*ref, ids);
            if (net->config().llm.arch == LlmArch::qwen2) {
                // The same bytes in the same layout meet the same kernels.
                EXPECT_EQ(a, b);
            } else {
                // InternLM2's q and k channels come in another order, and so do the sums of
                // q·k: an ulp of difference there can move an activation quantized to int8 by
                // one code in a later product (with the rows put back in the checkpoint's order
                // the two are equal to the bit). So the two stay far closer to each other than
                // to the official f32 logits, and equally close to those.
                const std::vector<float> official = f.f32("logits");
                const double apart = max_abs_diff(a, b), err = max_abs_diff(b, official);
                report("gguf " + type + " " + name + " vs load-time", apart);
                EXPECT_LE(apart, 0.1 * err) << "load-time vs official: " << err;
                EXPECT_NEAR(max_abs_diff(a, official), err, 0.1 * err);
            }
            // Used in place: nothing but the small f32 tensors is copied.
            EXPECT_LT(net->weight_bytes_owned(), ref->weight_bytes_owned());
        }
    }
}

TEST(GgufLoad, TheDemoModelAnswersTheSameFromItsGgufFiles)
{
    const std::string demo = std::string(IRIS_SOURCE_DIR) + "/resources/models/iris-demo";
    TempDir out;
    QuantizeOptions o;
    o.type = "f32";
    o.mmproj_type = "f32";
    o.out_dir = out.path().string();
    quantize_checkpoint(demo, o);
    const auto gguf = reasoning::Engine::load(out.path().string());
    const auto ref = reasoning::Engine::load(demo);
    const auto image = reasoning::load_image(std::string(IRIS_SOURCE_DIR)
                                             + "/resources/samples/document-sign.png");
    for (const char* question : {"Describe the image briefly.", "What does the sign say?"}) {
        SCOPED_TRACE(question);
        reasoning::Session a(*gguf, ""), b(*ref, "");
        const auto x = a.ask(question, {image}, {}, {});
        const auto y = b.ask(question, {image}, {}, {});
        EXPECT_EQ(x.text, y.text);
        EXPECT_EQ(x.tokens, y.tokens);
    }
}

// ---------------------------------------------------------------------------------------------
// Where the files are

TEST(ModelPaths, FindsTheMmprojBesideTheLanguageModelOrTakesTheOneGiven)
{
    IRIS_REQUIRE_GOLDEN();
    TempDir out;
    const QuantizeResult r = export_model("models/tiny_qwen2", "q8_0", out.path());

    const ModelPaths folder = ModelPaths::resolve(out.path().string());
    EXPECT_EQ(folder.gguf, r.llm_path);
    EXPECT_EQ(folder.mmproj, r.mmproj_path);
    EXPECT_EQ(folder.name(), "tiny_qwen2-Q8_0");
    const ModelPaths file = ModelPaths::resolve(r.llm_path);
    EXPECT_EQ(file.mmproj, r.mmproj_path);
    EXPECT_EQ(ModelPaths::resolve(r.llm_path, r.mmproj_path).mmproj, r.mmproj_path);

    const ModelPaths ckpt = ModelPaths::resolve(golden_dir() + "/models/tiny_qwen2");
    EXPECT_FALSE(ckpt.is_gguf());
    EXPECT_EQ(ckpt.name(), "tiny_qwen2");
    expect_error([&] { ModelPaths::resolve(ckpt.dir, r.mmproj_path); }, ErrorKind::invalid_argument,
                 {"--mmproj is for GGUF models"});

    // The mmproj given as the model, a missing mmproj, a second language model.
    expect_error([&] { ModelPaths::resolve(r.mmproj_path); }, ErrorKind::invalid_argument,
                 {"is an mmproj", "--mmproj"});
    expect_error([&] { ModelPaths::resolve(r.llm_path, out.file("none.gguf")); },
                 ErrorKind::not_found, {"none.gguf"});
    fs::copy_file(r.llm_path, out.file("other.gguf"));
    expect_error([&] { ModelPaths::resolve(out.path().string()); }, ErrorKind::invalid_argument,
                 {"several language models", "--model FILE.gguf"});
    fs::remove(r.mmproj_path);
    expect_error([&] { InternVL::load(r.llm_path); }, ErrorKind::not_found,
                 {"language model alone", "--mmproj"});
    expect_error([&] { ModelPaths::resolve(out.file("absent")); }, ErrorKind::not_found,
                 {"does not exist"});
}

// ---------------------------------------------------------------------------------------------
// Bad files

// A copy of `f` with the metadata changed by edit, at `path`.
void rewrite(const GgufFile& f, const std::string& path,
             const std::function<void(GgufWriter&)>& edit,
             const std::function<bool(const GgufTensor&)>& keep = {})
{
    GgufWriter w;
    for (const auto& [key, value] : f.metadata().entries()) w.set(key, value);
    edit(w);
    for (const GgufTensor& t : f.tensors())
        if (!keep || keep(t)) w.add_tensor_view(t.name, t.ggml_type, t.ne, t.data, t.nbytes);
    w.write(path);
}

TEST(GgufLoad, MetadataThatDisagreesWithTheTensorsIsAClearError)
{
    IRIS_REQUIRE_GOLDEN();
    TempDir out;
    const QuantizeResult r = export_model("models/tiny_qwen2", "q8_0", out.path());
    const GgufFile llm = GgufFile::open(r.llm_path), mmproj = GgufFile::open(r.mmproj_path);
    const std::string bad = out.file("bad.gguf"), bad_mmproj = out.file("mmproj-bad.gguf");
    auto load = [&](const std::string& model, const std::string& proj) {
        InternVL::load(model, {.mmproj = proj});
    };
    struct Case
    {
        const char* what;
        bool in_mmproj; // edits the mmproj, else the language model
        std::function<void(GgufWriter&)> edit;
        ErrorKind kind;
        std::vector<std::string> message;
    };
    const uint32_t layers = llm.metadata().get_u32("qwen2.block_count");
    const std::vector<Case> cases = {
        {"another architecture",
         false,
         [](GgufWriter& w) { w.set_string("general.architecture", "llama"); },
         ErrorKind::unsupported,
         {"general.architecture is \"llama\"", "qwen2"}},
        {"a layer more than the file has",
         false,
         [&](GgufWriter& w) { w.set_u32("qwen2.block_count", layers + 1); },
         ErrorKind::not_found,
         {strfmt("blk.%u.attn_norm.weight is missing", layers)}},
        {"no heads",
         false,
         [](GgufWriter& w) { w.set_u32("qwen2.attention.head_count", 0); },
         ErrorKind::invalid_input,
         {"head_count"}},
        {"a wider embedding",
         false,
         [](GgufWriter& w) { w.set_u32("qwen2.embedding_length", 128); },
         ErrorKind::invalid_input,
         {"not one model"}},
        {"a wider MLP",
         false,
         [](GgufWriter& w) { w.set_u32("qwen2.feed_forward_length", 1024); },
         ErrorKind::invalid_input,
         {"blk.0.ffn_gate.weight has shape"}},
        {"a count given as text",
         false,
         [](GgufWriter& w) { w.set_string("qwen2.context_length", "long"); },
         ErrorKind::invalid_input,
         {"qwen2.context_length"}},
        {"yarn",
         false,
         [](GgufWriter& w) { w.set_string("qwen2.rope.scaling.type", "yarn"); },
         ErrorKind::unsupported,
         {"rope.scaling.type"}},
        {"another projector",
         true,
         [](GgufWriter& w) { w.set_string("clip.projector_type", "llava"); },
         ErrorKind::unsupported,
         {"clip.projector_type is \"llava\""}},
        {"SiLU",
         true,
         [](GgufWriter& w) { w.set_bool("clip.use_silu", true); },
         ErrorKind::unsupported,
         {"GELU"}},
        {"another model's width",
         true,
         [](GgufWriter& w) { w.set_u32("clip.vision.projection_dim", 4096); },
         ErrorKind::invalid_input,
         {"not one model"}},
        {"no scale factor",
         true,
         [](GgufWriter& w) { w.set_u32("clip.vision.projector.scale_factor", 0); },
         ErrorKind::invalid_input,
         {"downsample_ratio"}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        rewrite(c.in_mmproj ? mmproj : llm, c.in_mmproj ? bad_mmproj : bad, c.edit);
        const std::string msg = expect_error(
            [&] { load(c.in_mmproj ? r.llm_path : bad, c.in_mmproj ? bad_mmproj : r.mmproj_path); },
            c.kind, {});
        for (const std::string& part : c.message)
            EXPECT_NE(msg.find(part), std::string::npos) << msg;
    }
    // The language model given twice, a tensor gone, a tensor Iris cannot compute on.
    expect_error([&] { load(r.llm_path, r.llm_path); }, ErrorKind::invalid_input, {"not \"clip\""});
    rewrite(
        mmproj, bad_mmproj, [](GgufWriter&) {},
        [](const GgufTensor& t) { return t.name != "v.blk.0.attn_k.weight"; });
    expect_error([&] { load(r.llm_path, bad_mmproj); }, ErrorKind::not_found,
                 {"mmproj-bad.gguf: tensor v.blk.0.attn_k.weight is missing"});
}

// Random bytes of the metadata and tensor table changed one at a time: the reader or the
// loader refuses the file with an iris::Error, or it loads a model that runs; nothing crashes.
TEST(GgufLoad, ByteFlipsInTheHeadersNeverCrashTheLoader)
{
    IRIS_REQUIRE_GOLDEN();
    TempDir out;
    const QuantizeResult r = export_model("models/tiny_internlm2", "q4_0", out.path());
    for (const std::string* path : {&r.llm_path, &r.mmproj_path}) {
        const std::string original = read_bytes(*path);
        const size_t header = size_t(GgufFile::open(*path).data_offset());
        std::mt19937 rng(11);
        int loaded = 0, refused = 0;
        for (int i = 0; i < 150; ++i) {
            std::string bytes = original;
            const size_t at = std::uniform_int_distribution<size_t>(0, header - 1)(rng);
            bytes[at] = char(bytes[at] ^ (1 << std::uniform_int_distribution<int>(0, 7)(rng)));
            write_bytes(*path, bytes);
            try {
                const auto net = InternVL::load(r.llm_path, {.mmproj = r.mmproj_path});
                const int32_t id = 1;
                auto cache = net->new_cache();
                net->forward(*cache, std::span<const int32_t>(&id, 1), {}, -1);
                ++loaded;
            } catch (const Error&) {
                ++refused;
            }
        }
        write_bytes(*path, original);
        std::printf("[ sweep    ] %s: %d loaded, %d refused\n", path->c_str(), loaded, refused);
        EXPECT_GT(refused, 0);
    }
}

} // namespace
} // namespace iris::test
