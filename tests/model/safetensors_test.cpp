// Safetensors reading, writing and validation; WeightSet folders (single file and sharded).
#include "model/model.h"
#include "tests/errors.h"
#include "tests/files.h"
#include "tests/golden.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

namespace fs = std::filesystem;
using iris::Error;
using iris::ErrorKind;
using namespace iris::model;
using iris::test::expect_error;
using iris::test::read_bytes;
using iris::test::TempDir;
using iris::test::write_bytes;

namespace {

const fs::path kGoldenDir = iris::test::golden_dir();

std::string le64(uint64_t n)
{
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
    return s;
}

// A file from a raw header text and a data section.
std::string craft(const std::string& header, const std::string& data = "")
{
    return le64(header.size()) + header + data;
}

// Writes `bytes` to a temp file and expects open() to fail with `kind` naming the file and
// every one of `parts`.
void expect_open_error(const std::string& bytes, ErrorKind kind,
                       std::initializer_list<std::string> parts)
{
    TempDir dir;
    std::string path = dir.file("crafted.safetensors");
    write_bytes(path, bytes);
    const std::string what = expect_error([&] { SafeTensors::open(path); }, kind, parts);
    if (!what.empty()) {
        EXPECT_NE(what.find(path), std::string::npos) << "message lacks the path: " << what;
    }
}

// 16 floats at [0, 64): the data section used by most crafted files.
std::string data_bytes(size_t n)
{
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 + 1);
    return s;
}

// A small valid file of a few tensors and dtypes (about 1.4 KiB).
std::string small_valid_file()
{
    TempDir dir;
    SafeTensorsWriter w;
    std::vector<float> a(64);
    for (size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i) - 3.f;
    w.add_f32("a.weight", {8, 8}, a);
    std::vector<uint16_t> b(100);
    for (size_t i = 0; i < b.size(); ++i) b[i] = f32_to_bf16(static_cast<float>(i) / 8.f);
    w.add("b.bf16", DType::bf16, {10, 10}, b.data(), b.size() * 2);
    std::vector<int64_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    w.add_i64("c.ids", {10}, ids);
    std::vector<uint16_t> h(300);
    for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_f16(static_cast<float>(i) - 150.f);
    w.add("d.f16", DType::f16, {3, 100}, h.data(), h.size() * 2);
    w.set_metadata("format", "pt");
    w.write(dir.file("small.safetensors"));
    return read_bytes(dir.file("small.safetensors"));
}

// The same file shape as above, without the writer: a base to break one field at a time.
const std::string kGoodEntry = R"("t":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]})";

} // namespace

// =============================================================================================
// Golden files

TEST(SafeTensors, ReadsEveryGoldenModelWithTheShapesTheIndexLists)
{
    IRIS_REQUIRE_GOLDEN();
    nlohmann::json index = nlohmann::json::parse(read_bytes((kGoldenDir / "index.json").string()));
    int models = 0;
    for (const auto& entry : fs::directory_iterator(kGoldenDir / "models")) {
        std::string file = (entry.path() / "model.safetensors").string();
        if (!fs::exists(file)) continue;
        SafeTensors st = SafeTensors::open(file);
        ASSERT_FALSE(st.tensors().empty()) << file;
        EXPECT_EQ(st.metadata().at("format"), "pt");
        EXPECT_EQ(st.path(), file);
        for (const TensorInfo& t : st.tensors()) {
            EXPECT_TRUE(t.dtype == DType::f32 || t.dtype == DType::bf16) << t.name;
            EXPECT_EQ(static_cast<size_t>(t.numel()) * dtype_size(t.dtype), t.nbytes);
            EXPECT_EQ(st.find(t.name), &t);
        }
        // The non-bf16 folders are listed in index.json with every tensor's shape.
        std::string name = entry.path().filename().string();
        if (index["models"].contains(name)) {
            const auto& tensors = index["models"][name]["tensors"];
            EXPECT_EQ(tensors.size(), st.tensors().size()) << name;
            for (const auto& [tname, shape] : tensors.items())
                EXPECT_EQ(st.get(tname).shape, shape.get<std::vector<int64_t>>()) << tname;
        }
        ++models;
    }
    EXPECT_EQ(models, 3);
}

TEST(SafeTensors, Bf16GoldenModelHoldsExactlyTheF32ModelsValues)
{
    IRIS_REQUIRE_GOLDEN();
    SafeTensors f32
        = SafeTensors::open((kGoldenDir / "models/tiny_qwen2/model.safetensors").string());
    SafeTensors bf16
        = SafeTensors::open((kGoldenDir / "models/tiny_qwen2_bf16/model.safetensors").string());
    ASSERT_EQ(f32.tensors().size(), bf16.tensors().size());
    for (const TensorInfo& t : f32.tensors()) {
        const TensorInfo& u = bf16.get(t.name);
        EXPECT_EQ(u.dtype, DType::bf16) << t.name;
        EXPECT_EQ(u.shape, t.shape) << t.name;
        std::vector<float> a = t.to_f32(), b = u.to_f32();
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << t.name;
        // And converting back gives the stored bf16 bits.
        for (size_t i = 0; i < a.size(); ++i) {
            uint16_t bits;
            std::memcpy(&bits, u.data + 2 * i, 2);
            ASSERT_EQ(f32_to_bf16(a[i]), bits) << t.name << "[" << i << "]";
        }
    }
}

TEST(SafeTensors, ReadsEveryGoldenTensorFileWithTheDtypesAndShapesTheIndexLists)
{
    IRIS_REQUIRE_GOLDEN();
    nlohmann::json index = nlohmann::json::parse(read_bytes((kGoldenDir / "index.json").string()));
    int files = 0;
    for (const auto& [category, cases] : index["cases"].items()) {
        if (!cases.is_object()) continue;
        for (const auto& [case_name, c] : cases.items()) {
            if (!c.is_object() || !c.contains("file") || !c.contains("tensors")) continue;
            std::string file = (kGoldenDir / c["file"].get<std::string>()).string();
            SafeTensors st = SafeTensors::open(file);
            EXPECT_EQ(st.tensors().size(), c["tensors"].size()) << file;
            for (const auto& [tname, desc] : c["tensors"].items()) {
                const TensorInfo& t = st.get(tname);
                EXPECT_EQ(t.shape, desc["shape"].get<std::vector<int64_t>>())
                    << file << " " << tname;
                if (desc["dtype"] == "int64") {
                    EXPECT_EQ(t.dtype, DType::i64);
                    EXPECT_EQ(t.to_i64().size(), static_cast<size_t>(t.numel()));
                    EXPECT_THROW(t.to_f32(), Error);
                } else {
                    EXPECT_EQ(t.dtype, DType::f32);
                    std::vector<float> v = t.to_f32();
                    EXPECT_EQ(v.size(), static_cast<size_t>(t.numel()));
                    for (float x : v) ASSERT_TRUE(std::isfinite(x)) << file << " " << tname;
                    EXPECT_THROW(t.to_i64(), Error);
                }
            }
            ++files;
        }
    }
    EXPECT_GE(files, 8);
    // The pixel-values file is not listed per tensor; it still must open.
    SafeTensors pv = SafeTensors::open(
        (kGoldenDir / "preprocess/img_448x448_pixel_values.safetensors").string());
    EXPECT_FALSE(pv.tensors().empty());
}

TEST(SafeTensors, GetOfAMissingTensorIsNotFoundNamingTheFile)
{
    IRIS_REQUIRE_GOLDEN();
    std::string file = (kGoldenDir / "models/tiny_qwen2/model.safetensors").string();
    SafeTensors st = SafeTensors::open(file);
    EXPECT_EQ(st.find("no.such.tensor"), nullptr);
    expect_error([&] { st.get("no.such.tensor"); }, ErrorKind::not_found, {file, "no.such.tensor"});
}

TEST(WeightSet, OpensEveryGoldenModelFolder)
{
    IRIS_REQUIRE_GOLDEN();
    for (const char* name : {"tiny_qwen2", "tiny_qwen2_bf16", "tiny_internlm2"}) {
        std::string dir = (kGoldenDir / "models" / name).string();
        WeightSet ws = WeightSet::open_dir(dir);
        SafeTensors st = SafeTensors::open(dir + "/model.safetensors");
        EXPECT_EQ(ws.names().size(), st.tensors().size());
        EXPECT_NE(ws.find("mlp1.1.weight"), nullptr);
        EXPECT_EQ(ws.get("mlp1.1.weight").shape, st.get("mlp1.1.weight").shape);
        expect_error([&] { ws.get("missing.weight"); }, ErrorKind::not_found,
                     {dir, "missing.weight"});
    }
}

// =============================================================================================
// Conversions

TEST(Conversions, Bf16RoundsToNearestEvenAndKeepsSpecialValues)
{
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
    EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.0.
    EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);
    // 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: ties up to even.
    EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);
    // Just above halfway rounds up.
    EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
    EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
    EXPECT_EQ(f32_to_bf16(-INFINITY), 0xFF80);
    EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80); // rounds to Inf
    uint16_t nan = f32_to_bf16(std::numeric_limits<float>::quiet_NaN());
    EXPECT_TRUE(std::isnan(bf16_to_f32(nan)));
    // A NaN whose payload is only in the low bits must not become Inf.
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0x7F800001u)))));
    for (uint32_t v = 0; v < 0x10000; ++v) {
        float f = bf16_to_f32(static_cast<uint16_t>(v));
        if (std::isnan(f))
            EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
        else
            ASSERT_EQ(f32_to_bf16(f), v);
    }
}

TEST(Conversions, F16RoundTripsEveryValueAndHandlesSubnormalsInfAndNaN)
{
    for (uint32_t v = 0; v < 0x10000; ++v) {
        float f = f16_to_f32(static_cast<uint16_t>(v));
        if (std::isnan(f))
            ASSERT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << v;
        else
            ASSERT_EQ(f32_to_f16(f), v) << v;
    }
    EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f); // smallest subnormal
    EXPECT_EQ(f16_to_f32(0x03FF), 1023 * 0x1p-24f);
    EXPECT_EQ(f16_to_f32(0x7BFF), 65504.f);
    EXPECT_EQ(f16_to_f32(0x7C00), INFINITY);
    EXPECT_EQ(f16_to_f32(0xFC00), -INFINITY);
    EXPECT_EQ(f32_to_f16(65519.f), 0x7BFF); // below the halfway point to 65536
    EXPECT_EQ(f32_to_f16(65520.f), 0x7C00); // halfway: ties to even, which is Inf
    EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
    EXPECT_EQ(f32_to_f16(-1e10f), 0xFC00);
    EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000); // halfway to the smallest subnormal: even is 0
    EXPECT_EQ(f32_to_f16(0x1p-25f * 1.0001f), 0x0001);
    EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002); // 1.5 ulp ties to even 2
    EXPECT_EQ(f32_to_f16(-0.f), 0x8000);
    EXPECT_EQ(f32_to_f16(1e-30f), 0x0000);
    EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3C00); // tie to even
    EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
    EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::bit_cast<float>(0x7F800001u)))));
}

#if defined(__FLT16_MAX__)
TEST(Conversions, F16MatchesTheCompilersConversionOnRandomFloats)
{
    std::mt19937 rng(7);
    for (int i = 0; i < 200000; ++i) {
        float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
        if (std::isnan(f)) continue;
        _Float16 h = static_cast<_Float16>(f);
        ASSERT_EQ(f32_to_f16(f), std::bit_cast<uint16_t>(h)) << f;
    }
}
#endif

// =============================================================================================
// Writer

TEST(SafeTensorsWriter, RoundTripKeepsEveryBytesShapesDtypesAndMetadata)
{
    TempDir dir;
    std::mt19937 rng(1);
    for (int round = 0; round < 50; ++round) {
        SafeTensorsWriter w;
        struct Expect
        {
            DType dtype;
            std::vector<int64_t> shape;
            std::string bytes;
        };
        std::map<std::string, Expect> expect;
        int n = 1 + static_cast<int>(rng() % 6);
        for (int i = 0; i < n; ++i) {
            DType dtype = static_cast<DType>(rng() % 5);
            std::vector<int64_t> shape;
            int dims = static_cast<int>(rng() % 4);
            for (int d = 0; d < dims; ++d) shape.push_back(static_cast<int64_t>(rng() % 5));
            size_t numel = 1;
            for (int64_t d : shape) numel *= static_cast<size_t>(d);
            std::string bytes(numel * dtype_size(dtype), '\0');
            for (char& c : bytes) c = static_cast<char>(rng());
            std::string name = iris::strfmt("t%u.%d", static_cast<unsigned>(rng() % 1000), i);
            w.add(name, dtype, shape, bytes.data(), bytes.size());
            expect[name] = {dtype, shape, bytes};
        }
        w.set_metadata("format", "pt");
        w.set_metadata("round", std::to_string(round));
        std::string path = dir.file("rt.safetensors");
        w.write(path);
        SafeTensors st = SafeTensors::open(path);
        ASSERT_EQ(st.tensors().size(), expect.size());
        for (const auto& [name, e] : expect) {
            const TensorInfo& t = st.get(name);
            EXPECT_EQ(t.dtype, e.dtype);
            EXPECT_EQ(t.shape, e.shape);
            ASSERT_EQ(t.nbytes, e.bytes.size());
            EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.data), t.nbytes), e.bytes);
        }
        EXPECT_EQ(st.metadata().at("format"), "pt");
        EXPECT_EQ(st.metadata().at("round"), std::to_string(round));
    }
}

TEST(SafeTensorsWriter, LaysOutTheFileLikeTheOfficialWriter)
{
    TempDir dir;
    SafeTensorsWriter w;
    std::vector<float> a = {1, 2, 3};
    std::vector<float> b = {4, 5};
    w.add_f32("zeta", {3}, a);
    w.add_f32("alpha", {2}, b);
    w.set_metadata("format", "pt");
    w.write(dir.file("x.safetensors"));
    std::string bytes = read_bytes(dir.file("x.safetensors"));
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    EXPECT_EQ(n % 8, 0u);
    std::string header = bytes.substr(8, n);
    EXPECT_EQ(header.front(), '{');
    size_t end = header.find_last_not_of(' ');
    EXPECT_EQ(header[end], '}');
    EXPECT_LT(header.size() - end - 1, 8u); // only padding after the object
    // Sorted by name: alpha's data first.
    EXPECT_LT(header.find("alpha"), header.find("zeta"));
    EXPECT_NE(header.find(R"("alpha":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})"),
              std::string::npos)
        << header;
    EXPECT_EQ(bytes.size(), 8 + n + 20);
    float first;
    std::memcpy(&first, bytes.data() + 8 + n, 4);
    EXPECT_EQ(first, 4.f);
    // No temporary file is left behind.
    int files = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
    EXPECT_EQ(files, 1);
}

TEST(SafeTensorsWriter, ReplacesAnExistingFileAndWritesAnEmptyFile)
{
    TempDir dir;
    std::string path = dir.file("e.safetensors");
    write_bytes(path, "old contents");
    SafeTensorsWriter().write(path);
    SafeTensors st = SafeTensors::open(path);
    EXPECT_TRUE(st.tensors().empty());
    EXPECT_TRUE(st.metadata().empty());
}

TEST(SafeTensorsWriter, RejectsSizeMismatchesDuplicateNamesAndReservedNames)
{
    SafeTensorsWriter w;
    std::vector<float> v(4);
    expect_error([&] { w.add("x", DType::f32, {5}, v.data(), 16); }, ErrorKind::invalid_argument,
                 {"x"});
    expect_error([&] { w.add("y", DType::f32, {-1}, v.data(), 16); }, ErrorKind::invalid_argument,
                 {"y"});
    w.add_f32("x", {2, 2}, v);
    expect_error([&] { w.add_f32("x", {4}, v); }, ErrorKind::invalid_argument, {"x"});
    expect_error([&] { w.add_f32("__metadata__", {4}, v); }, ErrorKind::invalid_argument, {});
}

TEST(SafeTensorsWriter, FailsWithAnIoErrorWhenTheFolderDoesNotExist)
{
    TempDir dir;
    SafeTensorsWriter w;
    expect_error([&] { w.write(dir.file("no/such/folder/x.safetensors")); }, ErrorKind::io,
                 {"no/such/folder"});
}

// =============================================================================================
// TensorInfo

TEST(TensorInfo, ConvertsIntegerTensorsAndRejectsMismatchedBuffers)
{
    int32_t i32[3] = {-5, 0, 7};
    TensorInfo t;
    t.name = "ids";
    t.dtype = DType::i32;
    t.shape = {3};
    t.data = reinterpret_cast<const uint8_t*>(i32);
    t.nbytes = sizeof i32;
    EXPECT_EQ(t.to_i64(), (std::vector<int64_t> {-5, 0, 7}));
    expect_error([&] { t.to_f32(); }, ErrorKind::unsupported, {"ids", "I32"});
    t.nbytes = 8;
    expect_error([&] { t.to_i64(); }, ErrorKind::invalid_argument, {"ids"});
    t.shape = {};
    t.nbytes = 4;
    EXPECT_EQ(t.numel(), 1); // a scalar
    EXPECT_EQ(t.to_i64(), (std::vector<int64_t> {-5}));
}

TEST(DType, NamesAndSizesUseTheSafetensorsSpelling)
{
    EXPECT_STREQ(dtype_name(DType::f32), "F32");
    EXPECT_STREQ(dtype_name(DType::f16), "F16");
    EXPECT_STREQ(dtype_name(DType::bf16), "BF16");
    EXPECT_STREQ(dtype_name(DType::i32), "I32");
    EXPECT_STREQ(dtype_name(DType::i64), "I64");
    EXPECT_STREQ(dtype_name(DType::u8), "U8");
    EXPECT_EQ(dtype_size(DType::f32), 4u);
    EXPECT_EQ(dtype_size(DType::f16), 2u);
    EXPECT_EQ(dtype_size(DType::bf16), 2u);
    EXPECT_EQ(dtype_size(DType::i32), 4u);
    EXPECT_EQ(dtype_size(DType::i64), 8u);
    EXPECT_EQ(dtype_size(DType::u8), 1u);
}

// =============================================================================================
// Crafted files: one per error class

TEST(SafeTensors, AcceptsAHandCraftedMinimalFile)
{
    TempDir dir;
    std::string path = dir.file("ok.safetensors");
    // Keys out of offset order, padding, a zero-size tensor and metadata.
    write_bytes(
        path,
        craft(R"({"b":{"dtype":"F32","shape":[2,2],"data_offsets":[48,64]},)"
              R"("__metadata__":{"k":"v"},"e":{"dtype":"I64","shape":[0],"data_offsets":[0,0]},)"
              R"("a":{"dtype":"F32","shape":[12],"data_offsets":[0,48]}}   )",
              data_bytes(64)));
    SafeTensors st = SafeTensors::open(path);
    ASSERT_EQ(st.tensors().size(), 3u);
    // File order: by data offset.
    EXPECT_EQ(st.tensors()[0].name, "e");
    EXPECT_EQ(st.tensors()[1].name, "a");
    EXPECT_EQ(st.tensors()[2].name, "b");
    EXPECT_EQ(st.get("b").to_f32().size(), 4u);
    EXPECT_TRUE(st.get("e").to_i64().empty());
    EXPECT_EQ(st.metadata().at("k"), "v");
}

TEST(SafeTensors, RejectsAFileShorterThanEightBytes)
{
    for (size_t n = 0; n < 8; ++n)
        expect_open_error(std::string(n, '\x01'), ErrorKind::invalid_input, {"shorter"});
}

TEST(SafeTensors, RejectsAHeaderLengthAboveTheLimitWithoutAllocating)
{
    expect_open_error(le64(100'000'001) + "{}", ErrorKind::invalid_input, {"100000001", "limit"});
    expect_open_error(le64(1ull << 63) + "{}", ErrorKind::invalid_input, {"limit"});
    expect_open_error(le64(~0ull) + "{}", ErrorKind::invalid_input, {"limit"});
}

TEST(SafeTensors, RejectsAHeaderLengthPastTheEndOfTheFile)
{
    expect_open_error(le64(100) + "{}", ErrorKind::invalid_input, {"past the end"});
    expect_open_error(le64(100'000'000) + "{}", ErrorKind::invalid_input, {"past the end"});
}

TEST(SafeTensors, RejectsAHeaderThatIsNotUtf8)
{
    expect_open_error(craft("{\"\xff\":{}}"), ErrorKind::invalid_input, {"UTF-8"});
    expect_open_error(craft("{\"\xc0\xaf\":{}}"), ErrorKind::invalid_input, {"UTF-8"}); // overlong
    expect_open_error(craft("{\"\xed\xa0\x80\":{}}"), ErrorKind::invalid_input,
                      {"UTF-8"}); // surrogate
    expect_open_error(craft("{\"\xe2\x82\":{}}"), ErrorKind::invalid_input, {"UTF-8"}); // cut short
}

TEST(SafeTensors, RejectsAHeaderThatIsNotJson)
{
    expect_open_error(craft("{\"t\":"), ErrorKind::invalid_input, {"invalid JSON"});
    expect_open_error(craft("not json"), ErrorKind::invalid_input, {"invalid JSON"});
    expect_open_error(craft("{} {}"), ErrorKind::invalid_input, {"invalid JSON"});
    expect_open_error(craft(""), ErrorKind::invalid_input, {"invalid JSON"});
}

TEST(SafeTensors, RejectsAHeaderThatIsNotAnObject)
{
    expect_open_error(craft("[1,2]"), ErrorKind::invalid_input, {"not a JSON object"});
    expect_open_error(craft("\"x\""), ErrorKind::invalid_input, {"not a JSON object"});
    expect_open_error(craft("42"), ErrorKind::invalid_input, {"not a JSON object"});
}

TEST(SafeTensors, RejectsDuplicateTensorNames)
{
    expect_open_error(craft("{" + kGoodEntry + "," + kGoodEntry + "}", data_bytes(64)),
                      ErrorKind::invalid_input, {"duplicate", "\"t\""});
}

TEST(SafeTensors, RejectsDuplicateFieldsAndMetadataKeys)
{
    expect_open_error(
        craft(R"({"t":{"dtype":"F32","dtype":"F32","shape":[4,4],"data_offsets":[0,64]}})",
              data_bytes(64)),
        ErrorKind::invalid_input, {"duplicate", "dtype"});
    expect_open_error(craft(R"({"__metadata__":{"a":"1","a":"2"}})"), ErrorKind::invalid_input,
                      {"duplicate", "\"a\""});
    expect_open_error(craft(R"({"__metadata__":{},"__metadata__":{}})"), ErrorKind::invalid_input,
                      {"duplicate", "__metadata__"});
}

TEST(SafeTensors, RejectsMoreTensorsThanTheCountCapQuickly)
{
    // 100k tiny entries stay far below the 100 MB header cap (a known CPU/memory attack).
    std::string header = "{";
    for (int i = 0; i < 100'000; ++i) {
        if (i) header += ',';
        header
            += "\"t" + std::to_string(i) + R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
    }
    header += "}";
    expect_open_error(craft(header), ErrorKind::resource, {"65536"});
}

TEST(SafeTensors, AcceptsTensorsUpToTheCountCap)
{
    std::string header = "{";
    for (int i = 0; i < 65'536; ++i) {
        if (i) header += ',';
        header
            += "\"t" + std::to_string(i) + R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
    }
    header += "}";
    TempDir dir;
    write_bytes(dir.file("cap.safetensors"), craft(header));
    EXPECT_EQ(SafeTensors::open(dir.file("cap.safetensors")).tensors().size(), 65'536u);
}

TEST(SafeTensors, RejectsDeeplyNestedJson)
{
    std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
    expect_open_error(craft(R"({"t":)" + deep + "}"), ErrorKind::invalid_input, {"\"t\""});
    expect_open_error(
        craft(R"({"t":{"dtype":"F32","shape":[[[[1]]]],"data_offsets":[0,4]}})", data_bytes(4)),
        ErrorKind::invalid_input, {"shape"});
    expect_open_error(craft(R"({"__metadata__":{"k":{"k":{"k":"v"}}}})"), ErrorKind::invalid_input,
                      {"__metadata__"});
}

TEST(SafeTensors, RejectsAnEntryThatIsNotAnObject)
{
    expect_open_error(craft(R"({"t":[1,2]})"), ErrorKind::invalid_input, {"\"t\"", "object"});
    expect_open_error(craft(R"({"t":"F32"})"), ErrorKind::invalid_input, {"\"t\"", "object"});
    expect_open_error(craft(R"({"t":null})"), ErrorKind::invalid_input, {"\"t\"", "object"});
}

TEST(SafeTensors, RejectsAnEntryWithAMissingOrUnknownField)
{
    expect_open_error(craft(R"({"t":{"shape":[4,4],"data_offsets":[0,64]}})", data_bytes(64)),
                      ErrorKind::invalid_input, {"\"t\"", "dtype"});
    expect_open_error(craft(R"({"t":{"dtype":"F32","data_offsets":[0,64]}})", data_bytes(64)),
                      ErrorKind::invalid_input, {"\"t\"", "shape"});
    expect_open_error(craft(R"({"t":{"dtype":"F32","shape":[4,4]}})", data_bytes(64)),
                      ErrorKind::invalid_input, {"\"t\"", "data_offsets"});
    expect_open_error(
        craft(R"({"t":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64],"x":1}})", data_bytes(64)),
        ErrorKind::invalid_input, {"\"t\"", "unknown field \"x\""});
}

TEST(SafeTensors, RejectsAnUnknownDtypeAsInvalidAndAnUnsupportedOneNamingIt)
{
    expect_open_error(
        craft(R"({"t":{"dtype":"F33","shape":[4,4],"data_offsets":[0,64]}})", data_bytes(64)),
        ErrorKind::invalid_input, {"\"t\"", "F33"});
    expect_open_error(
        craft(R"({"w":{"dtype":"F64","shape":[4,2],"data_offsets":[0,64]}})", data_bytes(64)),
        ErrorKind::unsupported, {"\"w\"", "F64"});
    expect_open_error(
        craft(R"({"t":{"dtype":3,"shape":[4,4],"data_offsets":[0,64]}})", data_bytes(64)),
        ErrorKind::invalid_input, {"\"t\"", "dtype must be a string"});
}

TEST(SafeTensors, RejectsAShapeThatIsNotAnArrayOfNonNegativeIntegers)
{
    for (const char* shape : {"[-1,4]", "[4.0,4]", "[\"4\",4]", "[true]", "4", "[null]",
                              "[18446744073709551615]", "[1,1,1,1,1,1,1,1,16]"}) {
        expect_open_error(craft(std::string(R"({"t":{"dtype":"F32","shape":)") + shape
                                    + R"(,"data_offsets":[0,64]}})",
                                data_bytes(64)),
                          ErrorKind::invalid_input, {"\"t\""});
    }
}

TEST(SafeTensors, RejectsMalformedDataOffsets)
{
    for (const char* offsets : {"[0]", "[0,64,64]", "[-1,63]", "[0,64.0]", "0", "[]", "[\"0\",64]"})
        expect_open_error(craft(std::string(R"({"t":{"dtype":"F32","shape":[4,4],"data_offsets":)")
                                    + offsets + "}}",
                                data_bytes(64)),
                          ErrorKind::invalid_input, {"\"t\"", "data_offsets"});
}

TEST(SafeTensors, RejectsAShapeWhoseByteSizeOverflows)
{
    expect_open_error(
        craft(R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,64]}})",
              data_bytes(64)),
        ErrorKind::invalid_input, {"\"t\"", "overflows"});
    expect_open_error(
        craft(R"({"t":{"dtype":"I64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
        ErrorKind::invalid_input, {"\"t\"", "overflows"});
}

TEST(SafeTensors, RejectsOffsetsThatDoNotMatchTheShape)
{
    expect_open_error(
        craft(R"({"t":{"dtype":"F32","shape":[4,4],"data_offsets":[0,60]}})", data_bytes(60)),
        ErrorKind::invalid_input, {"\"t\"", "needs 64"});
}

TEST(SafeTensors, RejectsOffsetsThatEndBeforeTheyBegin)
{
    expect_open_error(
        craft(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[64,0]}})", data_bytes(64)),
        ErrorKind::invalid_input, {"\"t\"", "end before"});
}

TEST(SafeTensors, RejectsOffsetsThatOverlap)
{
    expect_open_error(craft(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},)"
                            R"("b":{"dtype":"F32","shape":[8],"data_offsets":[16,48]}})",
                            data_bytes(48)),
                      ErrorKind::invalid_input, {"\"b\"", "overlap"});
    // Two tensors on the same bytes.
    expect_open_error(craft(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},)"
                            R"("b":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})",
                            data_bytes(32)),
                      ErrorKind::invalid_input, {"overlap"});
}

TEST(SafeTensors, RejectsOffsetsThatLeaveAGap)
{
    expect_open_error(craft(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                            R"("b":{"dtype":"F32","shape":[4],"data_offsets":[32,48]}})",
                            data_bytes(48)),
                      ErrorKind::invalid_input, {"\"b\"", "gap"});
    // Not starting at 0.
    expect_open_error(
        craft(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})", data_bytes(32)),
        ErrorKind::invalid_input, {"\"t\"", "gap"});
}

TEST(SafeTensors, RejectsOffsetsPastTheEndOfTheFile)
{
    expect_open_error(craft("{" + kGoodEntry + "}", data_bytes(63)), ErrorKind::invalid_input,
                      {"\"t\"", "past"});
    expect_open_error(
        craft(
            R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})"),
        ErrorKind::invalid_input, {"\"t\""});
}

TEST(SafeTensors, RejectsBytesLeftOverAfterTheLastTensor)
{
    expect_open_error(craft("{" + kGoodEntry + "}", data_bytes(65)), ErrorKind::invalid_input,
                      {"cover 64", "65"});
    expect_open_error(craft("{}", "x"), ErrorKind::invalid_input, {"cover 0"});
}

TEST(SafeTensors, RejectsMetadataThatIsNotAStringToStringObject)
{
    expect_open_error(craft(R"({"__metadata__":[]})"), ErrorKind::invalid_input, {"__metadata__"});
    expect_open_error(craft(R"({"__metadata__":"pt"})"), ErrorKind::invalid_input,
                      {"__metadata__"});
    expect_open_error(craft(R"({"__metadata__":{"format":1}})"), ErrorKind::invalid_input,
                      {"__metadata__", "format", "string"});
    expect_open_error(craft(R"({"__metadata__":{"format":null}})"), ErrorKind::invalid_input,
                      {"__metadata__", "format"});
}

TEST(SafeTensors, ReportsAMissingFileAsNotFoundAndAFolderAsInvalid)
{
    TempDir dir;
    expect_error([&] { SafeTensors::open(dir.file("absent.safetensors")); }, ErrorKind::not_found,
                 {"absent.safetensors"});
    expect_error([&] { SafeTensors::open(dir.path().string()); }, ErrorKind::invalid_input,
                 {dir.path().string()});
}

TEST(SafeTensors, EveryTruncationOfAValidFileGivesACleanError)
{
    std::string full = small_valid_file();
    ASSERT_GT(full.size(), 1024u);
    ASSERT_LT(full.size(), 4096u);
    TempDir dir;
    std::string path = dir.file("full.safetensors");
    write_bytes(path, full);
    ASSERT_EQ(SafeTensors::open(path).tensors().size(), 4u);
    for (size_t len = 0; len < full.size(); ++len) {
        std::string cut = dir.file("cut.safetensors");
        write_bytes(cut, full.substr(0, len));
        try {
            SafeTensors::open(cut);
            ADD_FAILURE() << "a file cut to " << len << " bytes was accepted";
        } catch (const Error& e) {
            ASSERT_EQ(e.kind(), ErrorKind::invalid_input) << len << ": " << e.what();
        }
    }
}

TEST(SafeTensors, SurvivesRandomByteFlipsOfAValidFile)
{
    // Every mutation either opens (and then its tensors are readable) or gives an iris::Error.
    std::string full = small_valid_file();
    TempDir dir;
    std::string path = dir.file("m.safetensors");
    std::mt19937 rng(3);
    for (int i = 0; i < 2000; ++i) {
        std::string m = full;
        int flips = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < flips; ++k) {
            // Mostly in the header, where the parsing is.
            size_t at = rng() % 2 ? rng() % std::min<size_t>(m.size(), 400) : rng() % m.size();
            m[at] = static_cast<char>(rng());
        }
        write_bytes(path, m);
        try {
            SafeTensors st = SafeTensors::open(path);
            for (const TensorInfo& t : st.tensors()) {
                if (t.dtype == DType::i64 || t.dtype == DType::i32)
                    EXPECT_EQ(t.to_i64().size(), static_cast<size_t>(t.numel()));
                else
                    EXPECT_EQ(t.to_f32().size(), static_cast<size_t>(t.numel()));
            }
        } catch (const Error&) { }
    }
}

// =============================================================================================
// WeightSet folders

namespace {

// Writes a shard with one F32 tensor per name.
void write_shard(const std::string& path, const std::vector<std::string>& names)
{
    SafeTensorsWriter w;
    for (size_t i = 0; i < names.size(); ++i) {
        std::vector<float> v = {static_cast<float>(i), 1.f, 2.f};
        w.add_f32(names[i], {3}, v);
    }
    w.write(path);
}

void write_index(const TempDir& dir, const std::string& weight_map_json)
{
    write_bytes(dir.file("model.safetensors.index.json"),
                R"({"metadata":{"total_size":48},"weight_map":)" + weight_map_json + "}");
}

} // namespace

TEST(WeightSet, OpensAShardedFolderThroughItsIndex)
{
    TempDir dir;
    write_shard(dir.file("model-00001-of-00002.safetensors"), {"a", "b"});
    write_shard(dir.file("model-00002-of-00002.safetensors"), {"c", "d"});
    write_index(
        dir,
        R"({"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors",)"
        R"("c":"model-00002-of-00002.safetensors","d":"model-00002-of-00002.safetensors"})");
    WeightSet ws = WeightSet::open_dir(dir.path().string());
    EXPECT_EQ(ws.names(), (std::vector<std::string> {"a", "b", "c", "d"}));
    EXPECT_EQ(ws.get("d").to_f32(), (std::vector<float> {1.f, 1.f, 2.f}));
    EXPECT_EQ(ws.find("e"), nullptr);
    // The set stays valid after a move.
    WeightSet moved = std::move(ws);
    EXPECT_EQ(moved.get("a").to_f32()[1], 1.f);
}

TEST(WeightSet, PrefersASingleModelFileOverAnIndex)
{
    TempDir dir;
    write_shard(dir.file("model.safetensors"), {"x"});
    write_index(dir, R"({"y":"missing.safetensors"})");
    WeightSet ws = WeightSet::open_dir(dir.path().string());
    EXPECT_EQ(ws.names(), (std::vector<std::string> {"x"}));
}

TEST(WeightSet, RejectsAFolderWithNeitherWeightFileNamingIt)
{
    TempDir dir;
    expect_error([&] { WeightSet::open_dir(dir.path().string()); }, ErrorKind::not_found,
                 {dir.path().string(), "model.safetensors"});
    expect_error([&] { WeightSet::open_dir(dir.file("nope")); }, ErrorKind::not_found, {"nope"});
}

TEST(WeightSet, RejectsAMissingShard)
{
    TempDir dir;
    write_shard(dir.file("s1.safetensors"), {"a"});
    write_index(dir, R"({"a":"s1.safetensors","b":"s2.safetensors"})");
    expect_error([&] { WeightSet::open_dir(dir.path().string()); }, ErrorKind::not_found,
                 {"s2.safetensors"});
}

TEST(WeightSet, RejectsATensorListedButMissingFromItsShard)
{
    TempDir dir;
    write_shard(dir.file("s1.safetensors"), {"a"});
    write_shard(dir.file("s2.safetensors"), {"c"});
    write_index(dir, R"({"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"})");
    expect_error([&] { WeightSet::open_dir(dir.path().string()); }, ErrorKind::invalid_input,
                 {"\"b\"", "s2.safetensors"});
}

TEST(WeightSet, RejectsATensorStoredInTwoShards)
{
    TempDir dir;
    write_shard(dir.file("s1.safetensors"), {"a", "b"});
    write_shard(dir.file("s2.safetensors"), {"b"});
    write_index(dir, R"({"a":"s1.safetensors","b":"s2.safetensors"})");
    expect_error([&] { WeightSet::open_dir(dir.path().string()); }, ErrorKind::invalid_input,
                 {"\"b\"", "more than one shard"});
}

TEST(WeightSet, RejectsShardNamesThatLeaveTheFolder)
{
    for (const char* name : {"../x.safetensors", "sub/x.safetensors", "/etc/passwd", "..", ".",
                             "a\\\\b.safetensors", ""}) {
        TempDir dir;
        write_index(dir, std::string(R"({"a":")") + name + "\"}");
        expect_error([&] { WeightSet::open_dir(dir.path().string()); }, ErrorKind::invalid_input,
                     {"model.safetensors.index.json", "\"a\""});
    }
}

TEST(WeightSet, RejectsAMalformedIndex)
{
    for (const char* text :
         {"{", "[]", R"({"weight_map":[]})", R"({"weight_map":{"a":1}})", R"({"other":{}})",
          R"({"weight_map":{}})", R"({"weight_map":{"a":"s.safetensors","a":"s.safetensors"}})"}) {
        TempDir dir;
        write_shard(dir.file("s.safetensors"), {"a"});
        write_bytes(dir.file("model.safetensors.index.json"), text);
        expect_error([&] { WeightSet::open_dir(dir.path().string()); }, ErrorKind::invalid_input,
                     {"model.safetensors.index.json"});
    }
}

TEST(WeightSet, ReportsACorruptShardNamingIt)
{
    TempDir dir;
    write_bytes(dir.file("s1.safetensors"), "garbage!garbage");
    write_index(dir, R"({"a":"s1.safetensors"})");
    expect_error([&] { WeightSet::open_dir(dir.path().string()); }, ErrorKind::invalid_input,
                 {"s1.safetensors"});
}
