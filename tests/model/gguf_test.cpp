// GGUF reading, validation and writing: a file built byte by byte from the spec, writer round
// trips and layout, one rejection per malformed field, every truncation, random byte flips and
// random valid files.
#include "model/gguf.h"
#include "tests/errors.h"
#include "tests/files.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <unistd.h>

namespace fs = std::filesystem;
using iris::Error;
using iris::ErrorKind;
using namespace iris::model;
using cpu::WeightType;
using iris::test::expect_error;
using iris::test::read_bytes;
using iris::test::TempDir;
using iris::test::write_bytes;

namespace {

// GGML_TYPE_* ids used below.
constexpr uint32_t kTF32 = 0, kTF16 = 1, kTQ40 = 2, kTQ80 = 8, kTQ4K = 12, kTIq2Xxs = 16,
                   kTBf16 = 30, kTMxfp4 = 39;

// A GGUF file assembled field by field from the spec: every number little-endian, written one
// byte at a time, strings as a u64 length and the bytes.
class Bytes
{
public:
    Bytes& le(uint64_t v, int n)
    {
        for (int i = 0; i < n; ++i) s_ += static_cast<char>((v >> (8 * i)) & 0xFF);
        return *this;
    }
    Bytes& u8(uint8_t v) { return le(v, 1); }
    Bytes& u16(uint16_t v) { return le(v, 2); }
    Bytes& u32(uint32_t v) { return le(v, 4); }
    Bytes& u64(uint64_t v) { return le(v, 8); }
    Bytes& i8(int8_t v) { return le(static_cast<uint8_t>(v), 1); }
    Bytes& i16(int16_t v) { return le(static_cast<uint16_t>(v), 2); }
    Bytes& i32(int32_t v) { return le(static_cast<uint32_t>(v), 4); }
    Bytes& i64(int64_t v) { return le(static_cast<uint64_t>(v), 8); }
    Bytes& f32(float v) { return le(std::bit_cast<uint32_t>(v), 4); }
    Bytes& f64(double v) { return le(std::bit_cast<uint64_t>(v), 8); }
    Bytes& raw(std::string_view v)
    {
        s_ += v;
        return *this;
    }
    Bytes& str(std::string_view v) { return u64(v.size()).raw(v); }
    Bytes& pad(size_t alignment)
    {
        while (s_.size() % alignment) s_ += '\0';
        return *this;
    }
    Bytes& fill(size_t n, int seed = 1)
    {
        for (size_t i = 0; i < n; ++i) s_ += static_cast<char>(i * 13 + seed);
        return *this;
    }

    // "GGUF", version, tensor count, metadata count.
    Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3)
    {
        return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
    }
    // key, value type.
    Bytes& key(std::string_view k, uint32_t type) { return str(k).u32(type); }
    // key, ARRAY, element type, count.
    Bytes& array_key(std::string_view k, uint32_t elem_type, uint64_t n)
    {
        return str(k).u32(9).u32(elem_type).u64(n);
    }
    // name, n_dims, dims, type, offset.
    Bytes& tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset)
    {
        str(name).u32(static_cast<uint32_t>(ne.size()));
        for (uint64_t d : ne) u64(d);
        return u32(type).u64(offset);
    }

    size_t size() const { return s_.size(); }
    const std::string& str() const { return s_; }

private:
    std::string s_;
};

// One f32 tensor "t" of 4 values at offset 0: a base to break one field at a time.
std::string one_tensor_file(std::vector<uint64_t> ne = {4}, uint32_t type = kTF32,
                            uint64_t offset = 0, size_t data = 16, std::string name = "t")
{
    Bytes b;
    b.header(1, 0).tensor(name, std::move(ne), type, offset).pad(32).fill(data);
    return b.str();
}

// Writes `bytes` to a temp file and expects open() to fail with invalid_input naming the file
// and every one of `parts`.
void expect_open_error(const std::string& bytes, std::initializer_list<std::string> parts)
{
    TempDir dir;
    std::string path = dir.file("crafted.gguf");
    write_bytes(path, bytes);
    const std::string what
        = expect_error([&] { GgufFile::open(path); }, ErrorKind::invalid_input, parts);
    if (!what.empty()) {
        EXPECT_EQ(what.rfind(path + ": ", 0), 0u)
            << "message does not start with the path: " << what;
    }
}

GgufFile open_bytes(const TempDir& dir, const std::string& bytes,
                    const std::string& name = "x.gguf")
{
    write_bytes(dir.file(name), bytes);
    return GgufFile::open(dir.file(name));
}

std::vector<uint8_t> bytes_of(const std::string& s)
{
    return std::vector<uint8_t>(s.begin(), s.end());
}

std::string tensor_bytes(const GgufTensor& t)
{
    return std::string(reinterpret_cast<const char*>(t.data), t.nbytes);
}

std::string pattern(size_t n, int seed)
{
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 31 + seed * 7 + 3);
    return s;
}

std::vector<uint8_t> pattern_bytes(size_t n, int seed)
{
    std::string s = pattern(n, seed);
    return std::vector<uint8_t>(s.begin(), s.end());
}

// A small valid file from the writer: metadata of several types (a string array included)
// and five tensors of four types (about 1.5 KiB).
std::string small_valid_file()
{
    TempDir dir;
    GgufWriter w;
    w.set_string("general.architecture", "qwen2");
    w.set_u32("qwen2.block_count", 2);
    w.set_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    w.set_bool("tokenizer.ggml.add_bos_token", false);
    w.set_string_array("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b", "\xC4\xA0the"});
    std::vector<int32_t> types = {3, 3, 1, 1, 1};
    w.set_i32_array("tokenizer.ggml.token_type", types);
    std::vector<float> scores = {0.f, -1.f, -2.5f, -3.f, -4.f};
    w.set_f32_array("tokenizer.ggml.scores", scores);
    w.add_tensor("token_embd.weight", kTF32, {8, 5}, pattern_bytes(160, 1));
    w.add_tensor("blk.0.attn_q.weight", kTQ80, {64, 3}, pattern_bytes(3 * 68, 2));
    w.add_tensor("blk.0.ffn_down.weight", kTQ4K, {256, 1}, pattern_bytes(144, 3));
    w.add_tensor("blk.0.attn_norm.weight", kTF16, {7}, pattern_bytes(14, 4));
    w.add_tensor("output_norm.weight", kTF32, {3}, pattern_bytes(12, 5));
    w.write(dir.file("small.gguf"));
    return read_bytes(dir.file("small.gguf"));
}

// Calls every accessor of an opened file and reads every byte it points at.
void exercise(const GgufFile& f)
{
    const GgufMetadata& m = f.metadata();
    for (const auto& entry : m.entries()) {
        const auto& key = entry.first; // named, not bound: lambdas below capture it
        const auto& v = entry.second;
        EXPECT_EQ(m.find(key), &v);
        (void)v.type_name();
        for (size_t i = 0; i <= v.size(); ++i) { // one past the end too: nullopt, no read
            (void)v.as_i64(i);
            (void)v.as_u64(i);
            (void)v.as_f64(i);
            (void)v.as_bool(i);
            if (const std::string* s = v.as_string(i)) {
                volatile size_t sum = 0;
                for (char c : *s) sum = sum + static_cast<unsigned char>(c);
            }
        }
        auto quietly = [](auto&& fn) {
            try {
                fn();
            } catch (const Error&) { }
        };
        quietly([&] { m.get_u32(key); });
        quietly([&] { m.get_i64(key); });
        quietly([&] { m.get_u64(key); });
        quietly([&] { m.get_f32(key); });
        quietly([&] { m.get_bool(key); });
        quietly([&] { m.get_string(key); });
        quietly([&] { m.get_string_array(key); });
        quietly([&] { m.get_i32_array(key); });
        quietly([&] { m.get_f32_array(key); });
    }
    for (const GgufTensor& t : f.tensors()) {
        EXPECT_EQ(f.find(t.name), &t);
        ASSERT_GE(t.ne.size(), 1u);
        ASSERT_LE(t.ne.size(), 4u);
        EXPECT_GE(t.numel(), 0);
        EXPECT_EQ(t.shape().size(), t.ne.size());
        EXPECT_LE(t.offset + t.nbytes, f.file_size());
        EXPECT_EQ(t.offset % f.alignment(), 0u);
        volatile uint8_t sum = 0;
        for (size_t i = 0; i < t.nbytes; ++i) sum = sum + t.data[i];
        if (t.type) {
            EXPECT_EQ(f.weight_type(t), *t.type);
            EXPECT_EQ(t.nbytes,
                      t.numel() == 0 ? 0
                                     : static_cast<size_t>(t.rows())
                              * cpu::weight_row_bytes(*t.type, t.ne[0]));
        } else {
            EXPECT_THROW(f.weight_type(t), Error);
        }
    }
}

} // namespace

// =============================================================================================
// Types

TEST(GgmlTypes, TheTableAgreesWithEveryIrisWeightType)
{
    for (int i = 0; i < cpu::kWeightTypeCount; ++i) {
        auto type = static_cast<WeightType>(i);
        const cpu::WeightTypeInfo& info = cpu::weight_type_info(type);
        const GgmlTypeTraits* t = ggml_type_traits(info.ggml_type);
        ASSERT_NE(t, nullptr) << info.name;
        EXPECT_STREQ(t->name, info.name);
        EXPECT_EQ(t->block, info.block) << info.name;
        EXPECT_EQ(t->block_bytes, info.block_bytes) << info.name;
        EXPECT_EQ(cpu::weight_type_from_ggml(info.ggml_type), type);
    }
}

TEST(GgmlTypes, KnowsTheTypesIrisCannotComputeOnAndNotTheRemovedOnes)
{
    struct Known
    {
        uint32_t id;
        const char* name;
        int64_t block;
        size_t bytes;
    };
    for (Known k :
         {Known {9, "q8_1", 32, 36}, Known {15, "q8_K", 256, 292}, Known {16, "iq2_xxs", 256, 66},
          Known {19, "iq1_s", 256, 50}, Known {23, "iq4_xs", 256, 136}, Known {28, "f64", 1, 8},
          Known {29, "iq1_m", 256, 56}, Known {34, "tq1_0", 256, 54}, Known {35, "tq2_0", 256, 66},
          Known {39, "mxfp4", 32, 17}, Known {40, "nvfp4", 64, 36}, Known {42, "q2_0", 64, 18}}) {
        const GgmlTypeTraits* t = ggml_type_traits(k.id);
        ASSERT_NE(t, nullptr) << k.name;
        EXPECT_STREQ(t->name, k.name);
        EXPECT_EQ(t->block, k.block) << k.name;
        EXPECT_EQ(t->block_bytes, k.bytes) << k.name;
        EXPECT_FALSE(cpu::weight_type_from_ggml(k.id).has_value()) << k.name;
    }
    for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 43u, 1000u, 0xFFFFFFFFu})
        EXPECT_EQ(ggml_type_traits(removed), nullptr) << removed;
    EXPECT_EQ(ggml_type_name(12), "q4_K");
    EXPECT_EQ(ggml_type_name(77), "unknown type 77");
}

// =============================================================================================
// A file built from the spec

TEST(GgufFile, ReadsAHandBuiltFileWithEveryValueType)
{
    Bytes b;
    b.header(4, 19);
    b.key("k.u8", 0).u8(200);
    b.key("k.i8", 1).i8(-100);
    b.key("k.u16", 2).u16(60000);
    b.key("k.i16", 3).i16(-30000);
    b.key("k.u32", 4).u32(4000000000u);
    b.key("k.i32", 5).i32(-2000000000);
    b.key("k.f32", 6).f32(1.5f);
    b.key("k.bool", 7).u8(1);
    b.key("k.string", 8).str("h\xC3\xA9llo");
    b.key("k.u64", 10).u64(0xFEDCBA9876543210ull);
    b.key("k.i64", 11).i64(-0x123456789ABCDEFll);
    b.key("k.f64", 12).f64(-2.25);
    b.array_key("k.strings", 8, 4).str("<s>").str("").str("\xC4\xA0the").str("</s>");
    b.array_key("k.i32s", 5, 3).i32(1).i32(-2).i32(3);
    b.array_key("k.f32s", 6, 2).f32(0.5f).f32(-4.f);
    b.array_key("k.bools", 7, 3).u8(0).u8(1).u8(0);
    b.array_key("k.empty", 0, 0);
    b.array_key("k.u64s", 10, 2).u64(7).u64(0xFFFFFFFFFFFFFFFFull);
    b.key("general.alignment", 4).u32(32);
    // Tensors: offsets relative to the data section, each a multiple of 32.
    b.tensor("a.weight", {3, 2}, kTF32, 0); // 24 bytes
    b.tensor("b.q8", {64}, kTQ80, 32); // 2 blocks of 34: 68 bytes
    b.tensor("c.f16", {5, 1, 1}, kTF16, 128); // 10 bytes
    b.tensor("d.iq2", {256, 1, 1, 2}, kTIq2Xxs, 160); // 2 blocks of 66: 132 bytes
    const size_t header_end = b.size();
    b.pad(32);
    const size_t data_start = b.size();
    b.fill(24, 1).pad(32).fill(68, 2).pad(32).fill(10, 3).pad(32).fill(132, 4);
    const std::string bytes = b.str();

    TempDir dir;
    GgufFile f = open_bytes(dir, bytes);
    EXPECT_EQ(f.path(), dir.file("x.gguf"));
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.file_size(), bytes.size());
    EXPECT_EQ(f.data_offset(), data_start);
    EXPECT_GT(data_start, header_end);
    EXPECT_EQ(data_start % 32, 0u);

    const GgufMetadata& m = f.metadata();
    EXPECT_EQ(m.origin(), f.path());
    ASSERT_EQ(m.size(), 19u);
    std::vector<std::string> order;
    for (const auto& [k, v] : m.entries()) order.push_back(k);
    EXPECT_EQ(order,
              (std::vector<std::string> {"k.u8", "k.i8", "k.u16", "k.i16", "k.u32", "k.i32",
                                         "k.f32", "k.bool", "k.string", "k.u64", "k.i64", "k.f64",
                                         "k.strings", "k.i32s", "k.f32s", "k.bools", "k.empty",
                                         "k.u64s", "general.alignment"}));
    EXPECT_EQ(m.get("k.u8"), GgufValue::u8(200));
    EXPECT_EQ(m.get("k.i8"), GgufValue::i8(-100));
    EXPECT_EQ(m.get("k.u16"), GgufValue::u16(60000));
    EXPECT_EQ(m.get("k.i16"), GgufValue::i16(-30000));
    EXPECT_EQ(m.get("k.u32"), GgufValue::u32(4000000000u));
    EXPECT_EQ(m.get("k.i32"), GgufValue::i32(-2000000000));
    EXPECT_EQ(m.get("k.f32"), GgufValue::f32(1.5f));
    EXPECT_EQ(m.get("k.bool"), GgufValue::boolean(true));
    EXPECT_EQ(m.get("k.string"), GgufValue::string("h\xC3\xA9llo"));
    EXPECT_EQ(m.get("k.u64"), GgufValue::u64(0xFEDCBA9876543210ull));
    EXPECT_EQ(m.get("k.i64"), GgufValue::i64(-0x123456789ABCDEFll));
    EXPECT_EQ(m.get("k.f64"), GgufValue::f64(-2.25));
    EXPECT_EQ(m.get_u8("k.u8"), 200);
    EXPECT_EQ(m.get_i32("k.i8"), -100);
    EXPECT_EQ(m.get_u16("k.u16"), 60000);
    EXPECT_EQ(m.get_i64("k.i16"), -30000);
    EXPECT_EQ(m.get_u32("k.u32"), 4000000000u);
    EXPECT_EQ(m.get_i32("k.i32"), -2000000000);
    EXPECT_EQ(m.get_f32("k.f32"), 1.5f);
    EXPECT_TRUE(m.get_bool("k.bool"));
    EXPECT_EQ(m.get_string("k.string"), "h\xC3\xA9llo");
    EXPECT_EQ(m.get_u64("k.u64"), 0xFEDCBA9876543210ull);
    EXPECT_EQ(m.get_i64("k.i64"), -0x123456789ABCDEFll);
    EXPECT_EQ(m.get_f64("k.f64"), -2.25);
    EXPECT_EQ(m.get_string_array("k.strings"),
              (std::vector<std::string> {"<s>", "", "\xC4\xA0the", "</s>"}));
    EXPECT_EQ(m.get("k.strings").type_name(), "string[]");
    EXPECT_EQ(m.get_i32_array("k.i32s"), (std::vector<int32_t> {1, -2, 3}));
    EXPECT_EQ(m.get_i64_array("k.i32s"), (std::vector<int64_t> {1, -2, 3}));
    EXPECT_EQ(m.get_f32_array("k.f32s"), (std::vector<float> {0.5f, -4.f}));
    const GgufValue& bools = m.get("k.bools");
    EXPECT_EQ(bools, GgufValue::bool_array({false, true, false}));
    EXPECT_EQ(bools.size(), 3u);
    EXPECT_EQ(bools.as_bool(1), true);
    const GgufValue& empty = m.get("k.empty");
    EXPECT_TRUE(empty.is_array());
    EXPECT_EQ(empty.type(), GgufType::u8);
    EXPECT_EQ(empty.size(), 0u);
    const GgufValue& u64s = m.get("k.u64s");
    EXPECT_EQ(u64s.as_u64(1), 0xFFFFFFFFFFFFFFFFull);
    EXPECT_EQ(u64s.as_i64(1), std::nullopt); // does not fit
    EXPECT_EQ(m.get_u32("general.alignment"), 32u);

    ASSERT_EQ(f.tensors().size(), 4u);
    struct Want
    {
        const char* name;
        uint32_t type;
        std::optional<WeightType> wtype;
        std::vector<int64_t> ne;
        uint64_t offset;
        size_t nbytes;
        int seed;
    };
    const Want want[] = {
        {"a.weight", kTF32, WeightType::f32, {3, 2}, 0, 24, 1},
        {"b.q8", kTQ80, WeightType::q8_0, {64}, 32, 68, 2},
        {"c.f16", kTF16, WeightType::f16, {5, 1, 1}, 128, 10, 3},
        {"d.iq2", kTIq2Xxs, std::nullopt, {256, 1, 1, 2}, 160, 132, 4},
    };
    for (size_t i = 0; i < 4; ++i) {
        const GgufTensor& t = f.tensors()[i];
        const Want& w = want[i];
        EXPECT_EQ(t.name, w.name);
        EXPECT_EQ(t.ggml_type, w.type) << w.name;
        EXPECT_EQ(t.type, w.wtype) << w.name;
        EXPECT_EQ(t.ne, w.ne) << w.name;
        EXPECT_EQ(t.offset, data_start + w.offset) << w.name;
        ASSERT_EQ(t.nbytes, w.nbytes) << w.name;
        EXPECT_EQ(tensor_bytes(t), bytes.substr(t.offset, t.nbytes)) << w.name;
        EXPECT_EQ(tensor_bytes(t), Bytes().fill(w.nbytes, w.seed).str()) << w.name;
        EXPECT_EQ(f.find(w.name), &t);
    }
    EXPECT_EQ(f.get("a.weight").shape(), (std::vector<int64_t> {2, 3}));
    EXPECT_EQ(f.get("a.weight").rows(), 2);
    EXPECT_EQ(f.get("a.weight").row_length(), 3);
    EXPECT_EQ(f.get("d.iq2").numel(), 512);
    EXPECT_EQ(f.get("d.iq2").rows(), 2);
    EXPECT_EQ(f.weight_type(f.get("b.q8")), WeightType::q8_0);
    // A type Iris cannot compute on opens fine and is reported only when used.
    expect_error([&] { f.weight_type(f.get("d.iq2")); }, ErrorKind::unsupported,
                 {f.path(), "d.iq2", "iq2_xxs", "unsupported tensor type"});
    EXPECT_EQ(f.find("missing"), nullptr);
    expect_error([&] { f.get("missing"); }, ErrorKind::not_found, {f.path(), "missing"});

    // The same file as version 2 (the same layout) reads the same.
    std::string v2 = bytes;
    v2[4] = 2;
    GgufFile f2 = open_bytes(dir, v2, "v2.gguf");
    EXPECT_EQ(f2.version(), 2u);
    EXPECT_EQ(f2.tensors().size(), 4u);
    EXPECT_EQ(f2.metadata().get_string("k.string"), "h\xC3\xA9llo");

    // Still valid after a move.
    GgufFile moved = std::move(f2);
    EXPECT_EQ(tensor_bytes(moved.get("c.f16")), Bytes().fill(10, 3).str());
}

TEST(GgufFile, ReadsAFileWithoutTensorsOrMetadata)
{
    TempDir dir;
    // No tensors: the file may end right after the metadata, unpadded.
    Bytes b;
    b.header(0, 1).key("general.name", 8).str("x");
    GgufFile f = open_bytes(dir, b.str());
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_EQ(f.metadata().get_string("general.name"), "x");
    GgufFile g = open_bytes(dir, Bytes().header(0, 0).str(), "empty.gguf");
    EXPECT_EQ(g.metadata().size(), 0u);
}

TEST(GgufFile, AcceptsZeroSizedDimensionsAsLlamaCppDoes)
{
    // ne may be 0 (llama.cpp's reader only rejects negative dims): a tensor of no bytes.
    TempDir dir;
    Bytes b;
    b.header(2, 0).tensor("empty", {0, 5}, kTQ80, 0).tensor("t", {4}, kTF32, 0).pad(32).fill(16);
    GgufFile f = open_bytes(dir, b.str());
    EXPECT_EQ(f.get("empty").nbytes, 0u);
    EXPECT_EQ(f.get("empty").numel(), 0);
    EXPECT_EQ(f.get("empty").rows(), 5);
    EXPECT_EQ(f.get("t").nbytes, 16u);
}

TEST(GgufFile, AcceptsTheLargestNameAndAnyPowerOfTwoAlignment)
{
    TempDir dir;
    std::string name(63, 'n');
    GgufFile f = open_bytes(dir, one_tensor_file({4}, kTF32, 0, 16, name));
    EXPECT_EQ(f.tensors()[0].name, name);
    for (uint32_t a : {1u, 8u, 64u, 4096u}) {
        Bytes b;
        b.header(1, 1)
            .key("general.alignment", 4)
            .u32(a)
            .tensor("t", {4}, kTF32, 0)
            .pad(a)
            .fill(16);
        GgufFile g = open_bytes(dir, b.str(), "a.gguf");
        EXPECT_EQ(g.alignment(), a);
        EXPECT_EQ(g.data_offset() % a, 0u);
    }
}

// =============================================================================================
// Metadata accessors

TEST(GgufMetadata, IntegerGettersTakeAnyIntegerTypeWhoseValueFits)
{
    GgufMetadata m("file.gguf");
    m.set("u8", GgufValue::u8(7));
    m.set("i32", GgufValue::i32(24));
    m.set("neg", GgufValue::i32(-1));
    m.set("u64", GgufValue::u64(uint64_t(1) << 40));
    m.set("i64", GgufValue::i64(151936));
    m.set("f64", GgufValue::f64(0.25));
    m.set("s", GgufValue::string("x"));
    m.set("arr", GgufValue::array(std::vector<uint32_t> {1, 2, 4000000000u}));
    EXPECT_EQ(m.get_u32("u8"), 7u);
    EXPECT_EQ(m.get_u32("i32"), 24u);
    EXPECT_EQ(m.get_i32("i64"), 151936);
    EXPECT_EQ(m.get_u64("u64"), uint64_t(1) << 40);
    EXPECT_EQ(m.get_i64("neg"), -1);
    EXPECT_EQ(m.get_f32("f64"), 0.25f);
    EXPECT_EQ(m.opt_u32("u8"), 7u);
    EXPECT_EQ(m.opt_u32("absent"), std::nullopt);
    EXPECT_EQ(m.opt_string("absent"), std::nullopt);
    EXPECT_EQ(m.opt_string_array("absent"), nullptr);
    EXPECT_EQ(m.opt_f32_array("absent"), std::nullopt);
    EXPECT_EQ(m.get_i64_array("arr"), (std::vector<int64_t> {1, 2, 4000000000}));

    expect_error([&] { m.get_u32("neg"); }, ErrorKind::invalid_input,
                 {"file.gguf", "\"neg\"", "-1", "does not fit u32"});
    expect_error([&] { m.get_u32("u64"); }, ErrorKind::invalid_input,
                 {"\"u64\"", "1099511627776", "u64", "does not fit u32"});
    expect_error([&] { m.get_u8("i64"); }, ErrorKind::invalid_input, {"151936", "does not fit u8"});
    expect_error([&] { m.get_u32("s"); }, ErrorKind::invalid_input,
                 {"file.gguf", "\"s\"", "is string, expected u32"});
    expect_error([&] { m.get_u32("f64"); }, ErrorKind::invalid_input, {"is f64, expected u32"});
    expect_error([&] { m.get_u32("arr"); }, ErrorKind::invalid_input, {"is u32[], expected u32"});
    expect_error([&] { m.get_string("i32"); }, ErrorKind::invalid_input,
                 {"is i32, expected string"});
    expect_error([&] { m.get_f32("i32"); }, ErrorKind::invalid_input, {"is i32, expected f32"});
    expect_error([&] { m.get_bool("u8"); }, ErrorKind::invalid_input, {"is u8, expected bool"});
    expect_error([&] { m.get_string_array("arr"); }, ErrorKind::invalid_input,
                 {"\"arr\"", "is u32[], expected string[]"});
    expect_error([&] { m.get_i32_array("arr"); }, ErrorKind::invalid_input,
                 {"\"arr\"[2]", "4000000000", "does not fit i32"});
    expect_error([&] { m.get_f32_array("arr"); }, ErrorKind::invalid_input,
                 {"is u32[], expected f32[]"});
    expect_error([&] { m.get_i32_array("i32"); }, ErrorKind::invalid_input,
                 {"is i32, expected i32[]"});
    expect_error([&] { m.get_u32("absent"); }, ErrorKind::not_found, {"file.gguf", "\"absent\""});
    // opt_ variants throw the same for a present key of the wrong type.
    expect_error([&] { m.opt_u32("s"); }, ErrorKind::invalid_input, {"is string, expected u32"});
    expect_error(
        [&] {
            m.opt_i32("neg");
            (void)m.opt_u64("neg");
        },
        ErrorKind::invalid_input, {"does not fit u64"});
}

TEST(GgufMetadata, SetReplacesAValueInPlace)
{
    GgufMetadata m;
    m.set("a", GgufValue::u32(1));
    m.set("b", GgufValue::u32(2));
    m.set("a", GgufValue::string("one"));
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m.entries()[0].first, "a");
    EXPECT_EQ(m.get_string("a"), "one");
    EXPECT_EQ(m.entries()[1].first, "b");
}

TEST(GgufValue, BuildsArraysFromBytesAndRejectsWhatTheFormatCannotHold)
{
    GgufValue v = GgufValue::array_from_bytes(GgufType::u16, std::vector<uint8_t> {1, 0, 2, 1});
    EXPECT_EQ(v, GgufValue::array(std::vector<uint16_t> {1, 258}));
    EXPECT_EQ(v.type_name(), "u16[]");
    expect_error([] { GgufValue::array_from_bytes(GgufType::u16, std::vector<uint8_t> {1}); },
                 ErrorKind::invalid_argument, {"u16"});
    expect_error([] { GgufValue::array_from_bytes(GgufType::string, {}); },
                 ErrorKind::invalid_argument, {"string"});
    expect_error([] { GgufValue::array_from_bytes(GgufType::array, {}); },
                 ErrorKind::invalid_argument, {"array"});
    expect_error([] { GgufValue::array_from_bytes(GgufType::boolean, std::vector<uint8_t> {2}); },
                 ErrorKind::invalid_argument, {"bool"});
    EXPECT_EQ(GgufValue().type(), GgufType::u8);
    EXPECT_FALSE(GgufValue().is_array());
}

// =============================================================================================
// Writer

namespace {

uint64_t le_at(const std::string& s, size_t at, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
    return v;
}

// Every metadata type, set through the writer, in this order.
void set_every_type(GgufWriter& w)
{
    w.set_u8("t.u8", 255);
    w.set_i8("t.i8", -128);
    w.set_u16("t.u16", 65535);
    w.set_i16("t.i16", -32768);
    w.set_u32("t.u32", 0xFFFFFFFFu);
    w.set_i32("t.i32", std::numeric_limits<int32_t>::min());
    w.set_u64("t.u64", std::numeric_limits<uint64_t>::max());
    w.set_i64("t.i64", std::numeric_limits<int64_t>::min());
    w.set_f32("t.f32", -0.1f);
    w.set_f64("t.f64", 1e300);
    w.set_bool("t.bool", true);
    w.set_string("t.string", std::string("nul\0inside", 10));
    w.set_string_array("t.strings", {"a", "", std::string(1000, 'z')});
    std::vector<float> fs = {1.f, -2.f, INFINITY};
    w.set_f32_array("t.f32s", fs);
    std::vector<int32_t> is = {-1, 0, 1};
    w.set_i32_array("t.i32s", is);
    w.set("t.u8s", GgufValue::array(std::vector<uint8_t> {1, 2, 3}));
    w.set("t.i8s", GgufValue::array(std::vector<int8_t> {-1}));
    w.set("t.u16s", GgufValue::array(std::vector<uint16_t> {}));
    w.set("t.i16s", GgufValue::array(std::vector<int16_t> {-7, 7}));
    w.set("t.u32s", GgufValue::array(std::vector<uint32_t> {9}));
    w.set("t.u64s", GgufValue::array(std::vector<uint64_t> {1, 2}));
    w.set("t.i64s", GgufValue::array(std::vector<int64_t> {-3}));
    w.set("t.f64s", GgufValue::array(std::vector<double> {0.5, -0.5}));
    w.set("t.bools", GgufValue::bool_array({true, false, true}));
}

} // namespace

TEST(GgufWriter, RoundTripsMetadataOfEveryTypeInOrderAndTensorsOfSeveralTypes)
{
    TempDir dir;
    GgufWriter w;
    set_every_type(w);
    w.set_string("general.architecture", "qwen2");
    w.set_u32("t.u32", 5); // replaces in place: the position of the first set is kept

    // f32 [3 rows, 7 cols] as a view, an odd-length f16 vector owned, q8_0 and q4_K through
    // the WeightType overloads, and one tensor produced row by row at write time.
    std::vector<float> f32(21);
    for (size_t i = 0; i < f32.size(); ++i) f32[i] = 0.5f * static_cast<float>(i) - 3.f;
    w.add_tensor_view("f32.weight", WeightType::f32, {7, 3}, f32.data(), f32.size() * 4);
    w.add_tensor("f16.bias", kTF16, {5}, pattern_bytes(10, 1));
    const size_t q8_bytes = 3 * cpu::weight_row_bytes(WeightType::q8_0, 96);
    w.add_tensor("q8.weight", WeightType::q8_0, {96, 3}, pattern_bytes(q8_bytes, 2));
    const size_t q4k_row = cpu::weight_row_bytes(WeightType::q4_K, 512);
    std::vector<uint8_t> q4k = pattern_bytes(q4k_row * 2 * 3, 3);
    w.add_tensor_view("q4k.weight", WeightType::q4_K, {512, 2, 3}, q4k.data(), q4k.size());
    int produced = 0;
    w.add_tensor_stream("streamed.weight", kTQ40, {64, 5}, [&](const GgufWriter::Emit& emit) {
        ++produced;
        std::vector<uint8_t> all = pattern_bytes(5 * 36, 4);
        for (int r = 0; r < 5; ++r) emit(all.data() + 36 * r, 36);
    });
    EXPECT_EQ(w.tensor_count(), 5u);
    EXPECT_EQ(produced, 0); // only at write time

    std::vector<std::pair<float, std::string>> progress;
    std::string path = dir.file("rt.gguf");
    w.write(path, [&](float fraction, const char* what) { progress.emplace_back(fraction, what); });
    EXPECT_EQ(produced, 1);
    EXPECT_EQ(dir.listing(), (std::vector<std::string> {"rt.gguf"})); // no temporary left
    ASSERT_EQ(progress.size(), 6u);
    EXPECT_EQ(progress[0], (std::pair<float, std::string> {0.f, "f32.weight"}));
    EXPECT_EQ(progress[4].second, "streamed.weight");
    for (size_t i = 1; i < progress.size(); ++i)
        EXPECT_GE(progress[i].first, progress[i - 1].first);
    EXPECT_EQ(progress.back().first, 1.f);

    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    // Metadata: same order, same values.
    ASSERT_EQ(f.metadata().size(), w.metadata().size());
    for (size_t i = 0; i < w.metadata().size(); ++i) {
        EXPECT_EQ(f.metadata().entries()[i].first, w.metadata().entries()[i].first);
        EXPECT_EQ(f.metadata().entries()[i].second, w.metadata().entries()[i].second)
            << w.metadata().entries()[i].first;
    }
    EXPECT_EQ(f.metadata().entries()[4].first, "t.u32");
    EXPECT_EQ(f.metadata().get_u32("t.u32"), 5u);
    EXPECT_EQ(f.metadata().entries().back().first, "general.architecture");
    EXPECT_EQ(f.metadata().get_string("t.string"), std::string("nul\0inside", 10));
    EXPECT_EQ(f.metadata().get_u64("t.u64"), std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(f.metadata().get_i64("t.i64"), std::numeric_limits<int64_t>::min());
    EXPECT_TRUE(std::isinf(f.metadata().get_f32_array("t.f32s")[2]));

    // Tensors: in the order added, bytes intact.
    ASSERT_EQ(f.tensors().size(), 5u);
    const GgufTensor& a = f.tensors()[0];
    EXPECT_EQ(a.name, "f32.weight");
    EXPECT_EQ(a.type, WeightType::f32);
    EXPECT_EQ(a.ne, (std::vector<int64_t> {7, 3}));
    EXPECT_EQ(a.shape(), (std::vector<int64_t> {3, 7})); // the project's [rows, cols]
    ASSERT_EQ(a.nbytes, 84u);
    EXPECT_EQ(std::memcmp(a.data, f32.data(), 84), 0);
    EXPECT_EQ(f.tensors()[1].name, "f16.bias");
    EXPECT_EQ(tensor_bytes(f.tensors()[1]), pattern(10, 1));
    EXPECT_EQ(f.tensors()[2].type, WeightType::q8_0);
    EXPECT_EQ(f.tensors()[2].nbytes, q8_bytes);
    EXPECT_EQ(tensor_bytes(f.tensors()[2]), pattern(q8_bytes, 2));
    EXPECT_EQ(f.tensors()[3].type, WeightType::q4_K);
    EXPECT_EQ(f.tensors()[3].ne, (std::vector<int64_t> {512, 2, 3}));
    EXPECT_EQ(tensor_bytes(f.tensors()[3]), pattern(q4k.size(), 3));
    EXPECT_EQ(f.tensors()[4].type, WeightType::q4_0);
    EXPECT_EQ(tensor_bytes(f.tensors()[4]), pattern(5 * 36, 4));

    // Layout as the spec says: data section and every tensor at a multiple of 32, zeros
    // between them, the last tensor padded too.
    std::string bytes = read_bytes(path);
    EXPECT_EQ(bytes.substr(0, 4), "GGUF");
    EXPECT_EQ(le_at(bytes, 4, 4), 3u);
    EXPECT_EQ(le_at(bytes, 8, 8), 5u);
    EXPECT_EQ(le_at(bytes, 16, 8), w.metadata().size());
    EXPECT_EQ(f.data_offset() % 32, 0u);
    EXPECT_EQ(bytes.size() % 32, 0u);
    uint64_t expect_offset = f.data_offset();
    for (const GgufTensor& t : f.tensors()) {
        EXPECT_EQ(t.offset, expect_offset) << t.name; // contiguous, as llama.cpp's reader needs
        EXPECT_EQ(t.offset % 32, 0u) << t.name;
        size_t end = t.offset + t.nbytes, next = (end + 31) / 32 * 32;
        EXPECT_EQ(bytes.substr(end, next - end), std::string(next - end, '\0')) << t.name;
        expect_offset = next;
    }
    EXPECT_EQ(expect_offset, bytes.size());
}

TEST(GgufWriter, UsesGeneralAlignmentWhenSet)
{
    TempDir dir;
    GgufWriter w;
    w.set_u32("general.alignment", 128);
    w.add_tensor("a", kTF32, {3}, pattern_bytes(12, 1));
    w.add_tensor("b", kTBf16, {3}, pattern_bytes(6, 2));
    w.write(dir.file("a.gguf"));
    GgufFile f = GgufFile::open(dir.file("a.gguf"));
    EXPECT_EQ(f.alignment(), 128u);
    EXPECT_EQ(f.data_offset() % 128, 0u);
    EXPECT_EQ(f.get("b").offset, f.data_offset() + 128);
    EXPECT_EQ(f.get("b").type, WeightType::bf16);
    EXPECT_EQ(f.file_size() % 128, 0u);

    expect_error([&] { w.set_u32("general.alignment", 48); }, ErrorKind::invalid_argument,
                 {"general.alignment", "power of two"});
    expect_error([&] { w.set_u32("general.alignment", 0); }, ErrorKind::invalid_argument,
                 {"general.alignment"});
    expect_error([&] { w.set_u64("general.alignment", 32); }, ErrorKind::invalid_argument,
                 {"general.alignment", "u32"});
}

TEST(GgufWriter, WritesAFileWithoutTensors)
{
    TempDir dir;
    GgufWriter w;
    w.set_string("general.architecture", "clip");
    w.write(dir.file("m.gguf"));
    GgufFile f = GgufFile::open(dir.file("m.gguf"));
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_EQ(f.metadata().get_string("general.architecture"), "clip");
    GgufWriter().write(dir.file("empty.gguf"));
    EXPECT_EQ(GgufFile::open(dir.file("empty.gguf")).metadata().size(), 0u);
}

TEST(GgufWriter, ReplacesAnExistingFile)
{
    TempDir dir;
    std::string path = dir.file("r.gguf");
    write_bytes(path, "old contents");
    GgufWriter w;
    w.set_u32("v", 2);
    w.write(path);
    EXPECT_EQ(GgufFile::open(path).metadata().get_u32("v"), 2u);
    GgufWriter w2;
    w2.set_u32("v", 3);
    w2.write(path);
    EXPECT_EQ(GgufFile::open(path).metadata().get_u32("v"), 3u);
    EXPECT_EQ(dir.listing(), (std::vector<std::string> {"r.gguf"}));
}

TEST(GgufWriter, WritingIntoAMissingFolderIsAnIoErrorAndLeavesNothing)
{
    TempDir dir;
    std::string path = dir.file("no/such/folder/x.gguf");
    GgufWriter w;
    w.add_tensor("a", kTF32, {1}, pattern_bytes(4, 1));
    expect_error([&] { w.write(path); }, ErrorKind::io, {"no/such/folder/x.gguf.tmp-"});
    EXPECT_TRUE(dir.listing().empty());
    EXPECT_FALSE(fs::exists(path));
}

TEST(GgufWriter, AFailingProducerLeavesAnExistingFileUntouchedAndNoTemporary)
{
    TempDir dir;
    std::string path = dir.file("keep.gguf");
    write_bytes(path, "precious");
    {
        GgufWriter w;
        w.add_tensor("a", kTF32, {1}, pattern_bytes(4, 1));
        w.add_tensor_stream("b", kTF32, {4}, [](const GgufWriter::Emit& emit) {
            float x = 1.f;
            emit(&x, 4);
            throw Error(ErrorKind::cancelled, "stop");
        });
        expect_error([&] { w.write(path); }, ErrorKind::cancelled, {"stop"});
    }
    {
        GgufWriter w; // emits too little
        w.add_tensor_stream("short", kTF32, {4}, [](const GgufWriter::Emit& emit) {
            float x[3] = {};
            emit(x, sizeof x);
        });
        expect_error([&] { w.write(path); }, ErrorKind::invalid_argument, {"\"short\"", "12 of"});
    }
    {
        GgufWriter w; // emits too much
        w.add_tensor_stream("long", kTF32, {4}, [](const GgufWriter::Emit& emit) {
            float x[5] = {};
            emit(x, sizeof x);
        });
        expect_error([&] { w.write(path); }, ErrorKind::invalid_argument, {"\"long\"", "more"});
    }
    EXPECT_EQ(read_bytes(path), "precious");
    EXPECT_EQ(dir.listing(), (std::vector<std::string> {"keep.gguf"}));
}

TEST(GgufWriter, RejectsTensorsTheReaderWouldRejectNamingThem)
{
    GgufWriter w;
    w.add_tensor("ok", kTF32, {2}, pattern_bytes(8, 1));
    auto add = [&](const std::string& name, uint32_t type, std::vector<int64_t> ne, size_t n) {
        return [&w, name, type, ne, n] { w.add_tensor(name, type, ne, pattern_bytes(n, 1)); };
    };
    expect_error(add("ok", kTF32, {2}, 8), ErrorKind::invalid_argument, {"\"ok\"", "twice"});
    expect_error(add("", kTF32, {2}, 8), ErrorKind::invalid_argument, {"empty name"});
    expect_error(add(std::string(64, 'x'), kTF32, {2}, 8), ErrorKind::invalid_argument,
                 {"longer than 63"});
    expect_error(add("n", kTF32, {2}, 12), ErrorKind::invalid_argument,
                 {"\"n\"", "12 bytes given", "needs 8"});
    expect_error(add("n", kTQ80, {48}, 51), ErrorKind::invalid_argument,
                 {"\"n\"", "48", "q8_0 block of 32"});
    expect_error(add("n", kTF32, {}, 4), ErrorKind::invalid_argument, {"0 dimensions"});
    expect_error(add("n", kTF32, {1, 1, 1, 1, 1}, 4), ErrorKind::invalid_argument,
                 {"5 dimensions"});
    expect_error(add("n", kTF32, {-1}, 4), ErrorKind::invalid_argument, {"negative"});
    expect_error(add("n", 4, {1}, 4), ErrorKind::invalid_argument, {"unknown ggml type 4"});
    expect_error(add("n", kTF32, {int64_t(1) << 62, 8}, 4), ErrorKind::invalid_argument,
                 {"overflow"});
    expect_error([&] { w.add_tensor_view("v", kTF32, {1}, nullptr, 4); },
                 ErrorKind::invalid_argument, {"null data"});
    expect_error([&] { w.set_u32("", 1); }, ErrorKind::invalid_argument, {"empty key"});
    EXPECT_EQ(w.tensor_count(), 1u);
}

// =============================================================================================
// Rejections: one malformed field at a time

TEST(GgufFile, RejectsABadMagic)
{
    std::string bytes = one_tensor_file();
    bytes[0] = 'g';
    expect_open_error(bytes, {"bad magic \"gGUF\"", "not a GGUF file", "at byte 0"});
    expect_open_error("GGU", {"truncated", "magic"});
    expect_open_error("", {"truncated", "magic", "at byte 0"});
}

TEST(GgufFile, RejectsVersion1ByName)
{
    expect_open_error(Bytes().header(0, 0, 1).str(),
                      {"version 1 is no longer supported", "at byte 4"});
}

TEST(GgufFile, RejectsABigEndianFileByName)
{
    // A big-endian writer stores version 3 as 00 00 00 03.
    Bytes b;
    b.raw("GGUF").u32(0x03000000).raw(std::string(16, '\0'));
    expect_open_error(b.str(), {"big-endian", "byte-swapped", "at byte 4"});
}

TEST(GgufFile, RejectsAnUnknownVersion)
{
    expect_open_error(Bytes().header(0, 0, 4).str(), {"unsupported GGUF version 4"});
    expect_open_error(Bytes().header(0, 0, 0).str(), {"unsupported GGUF version 0"});
}

TEST(GgufFile, RejectsCountsBeyondTheCapsWithoutAllocating)
{
    auto t0 = std::chrono::steady_clock::now();
    expect_open_error(Bytes().header(0, uint64_t(1) << 60).str(),
                      {"metadata count 1152921504606846976", "limit of 1048576", "at byte 16"});
    expect_open_error(Bytes().header(~uint64_t(0), 0).str(),
                      {"tensor count 18446744073709551615", "limit of 65536", "at byte 8"});
    expect_open_error(Bytes().header(65537, 0).str(), {"tensor count 65537"});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(GgufFile, RejectsCountsThatCannotFitTheBytesLeft)
{
    // Under the caps, but each entry needs bytes the file does not have: fails before reserving.
    expect_open_error(Bytes().header(0, 1000).fill(100).str(),
                      {"1000 metadata entries", "cannot fit", "100 bytes left", "at byte 24"});
    expect_open_error(Bytes().header(60000, 0).fill(1000).str(),
                      {"60000 tensor infos", "cannot fit"});
}

TEST(GgufFile, RejectsStringLengthsBeyondTheBytesLeftOrTheCaps)
{
    // A key claiming 2^64-1 bytes.
    expect_open_error(
        Bytes().header(0, 1).u64(~uint64_t(0)).fill(20).str(),
        {"metadata key 0", "18446744073709551615 bytes long", "limit of 65535", "at byte 24"});
    // A key longer than the rest of the file.
    expect_open_error(Bytes().header(0, 1).u64(100).fill(20).str(),
                      {"truncated", "metadata key 0", "needs 100 bytes", "20 are left"});
    // A string value past the 1 GiB cap, and one past the end of the file.
    expect_open_error(Bytes().header(0, 1).key("s", 8).u64(uint64_t(1) << 40).fill(10).str(),
                      {"metadata \"s\"", "1099511627776 bytes long", "limit"});
    expect_open_error(Bytes().header(0, 1).key("s", 8).u64(11).fill(10).str(),
                      {"truncated", "metadata \"s\"", "needs 11 bytes"});
    // A tensor name past the end.
    expect_open_error(Bytes().header(1, 0).u64(50).fill(40).str(),
                      {"truncated", "name of tensor 0"});
}

TEST(GgufFile, RejectsArrayLengthsThatOverflowOrExceedTheBytesLeft)
{
    // 2^62 u32 elements: 2^62 x 4 wraps to 0 in 64 bits.
    expect_open_error(Bytes().header(0, 1).array_key("x", 4, uint64_t(1) << 62).str(),
                      {"metadata \"x\"", "array of 4611686018427387904 elements", "limit"});
    // 2^61 strings: 2^61 x 8 wraps too.
    expect_open_error(Bytes().header(0, 1).array_key("x", 8, uint64_t(1) << 61).fill(64).str(),
                      {"metadata \"x\"", "2305843009213693952 elements"});
    // Under the cap but past the end of the file.
    expect_open_error(Bytes().header(0, 1).array_key("x", 10, 1000).fill(64).str(),
                      {"truncated", "metadata \"x\"", "needs 8000 bytes", "64 are left"});
    expect_open_error(Bytes().header(0, 1).array_key("x", 8, 1000).fill(64).str(),
                      {"truncated", "metadata \"x\"", "1000 strings"});
}

TEST(GgufFile, RejectsAnUnknownValueType)
{
    expect_open_error(Bytes().header(0, 1).key("k", 13).u32(0).str(),
                      {"metadata \"k\"", "unknown value type 13", "at byte 33"});
    expect_open_error(Bytes().header(0, 1).key("k", 0xFFFFFFFF).u32(0).str(),
                      {"unknown value type 4294967295"});
    expect_open_error(Bytes().header(0, 1).array_key("k", 13, 1).u32(0).str(),
                      {"metadata \"k\"", "unknown value type 13"});
}

TEST(GgufFile, RejectsANestedArray)
{
    Bytes b;
    b.header(0, 1).array_key("k", 9, 1).u32(4).u64(1).u32(7);
    expect_open_error(b.str(), {"metadata \"k\"", "nested array", "not supported"});
}

TEST(GgufFile, RejectsADuplicateKey)
{
    Bytes b;
    b.header(0, 2).key("general.name", 8).str("a");
    const size_t second = b.size();
    b.key("general.name", 8).str("b");
    expect_open_error(
        b.str(), {"duplicate metadata key \"general.name\"", "at byte " + std::to_string(second)});
}

TEST(GgufFile, RejectsAnEmptyKeyAndABoolThatIsNeither0Nor1)
{
    expect_open_error(Bytes().header(0, 1).key("", 0).u8(1).fill(8).str(),
                      {"metadata key 0 is empty", "at byte 24"});
    expect_open_error(Bytes().header(0, 1).key("b", 7).u8(2).str(),
                      {"metadata \"b\"", "bool value 2"});
    expect_open_error(Bytes().header(0, 1).array_key("b", 7, 2).u8(1).u8(255).str(),
                      {"metadata \"b\"", "bool value 255"});
}

TEST(GgufFile, RejectsABadAlignment)
{
    for (uint32_t a : {0u, 3u, 48u, 0x80000001u}) {
        Bytes b;
        b.header(1, 1)
            .key("general.alignment", 4)
            .u32(a)
            .tensor("t", {4}, kTF32, 0)
            .pad(64)
            .fill(16);
        expect_open_error(
            b.str(),
            {"general.alignment " + std::to_string(a), "not a power of two", "at byte 53"});
    }
    Bytes b;
    b.header(0, 1).key("general.alignment", 5).i32(32);
    expect_open_error(b.str(), {"general.alignment is i32, expected u32"});
}

TEST(GgufFile, RejectsADuplicateTensorName)
{
    Bytes b;
    b.header(2, 0).tensor("t", {4}, kTF32, 0);
    const size_t second = b.size();
    b.tensor("t", {4}, kTF32, 32).pad(32).fill(48);
    expect_open_error(b.str(),
                      {"duplicate tensor name \"t\"", "at byte " + std::to_string(second)});
}

TEST(GgufFile, RejectsATensorNameLongerThanLlamaCppAllows)
{
    // The spec says at most 64 bytes; llama.cpp's reader needs room for a NUL: at most 63.
    expect_open_error(one_tensor_file({4}, kTF32, 0, 16, std::string(64, 'n')),
                      {"name of tensor 0", "64 bytes long", "limit of 63", "at byte 24"});
}

TEST(GgufFile, RejectsZeroOrMoreThanFourDimensions)
{
    expect_open_error(one_tensor_file({}),
                      {"tensor \"t\" has 0 dimensions", "1 to 4", "at byte 33"});
    expect_open_error(one_tensor_file({4, 1, 1, 1, 1}), {"tensor \"t\" has 5 dimensions"});
    Bytes b; // a huge count is refused before any dimension is read
    b.header(1, 0).str("t").u32(0xFFFFFFFF).fill(40);
    expect_open_error(b.str(), {"4294967295 dimensions"});
}

TEST(GgufFile, RejectsDimensionsWhoseProductOverflows)
{
    expect_open_error(one_tensor_file({uint64_t(1) << 32, uint64_t(1) << 32}),
                      {"tensor \"t\"", "{4294967296, 4294967296}", "overflow"});
    expect_open_error(one_tensor_file({uint64_t(1) << 62, 2}), {"tensor \"t\"", "overflow"});
    // Elements that fit but bytes that do not.
    expect_open_error(one_tensor_file({uint64_t(1) << 61, 2}, 28), {"tensor \"t\"", "overflow"});
    // A zero dimension makes an empty tensor, but the others must still multiply.
    expect_open_error(one_tensor_file({0, uint64_t(1) << 40, uint64_t(1) << 40}),
                      {"tensor \"t\"", "overflow"});
    // A dimension that is negative as llama.cpp's int64 reads it.
    expect_open_error(one_tensor_file({uint64_t(1) << 63}),
                      {"tensor \"t\": dimension 0 is 9223372036854775808", "too large"});
}

TEST(GgufFile, RejectsAnUnknownGgmlType)
{
    expect_open_error(one_tensor_file({4}, 4), {"tensor \"t\" has unknown ggml type 4"});
    expect_open_error(one_tensor_file({4}, 43), {"unknown ggml type 43"});
    expect_open_error(one_tensor_file({4}, 0xFFFFFFFF), {"unknown ggml type 4294967295"});
}

TEST(GgufFile, RejectsARowLengthThatIsNotAMultipleOfTheBlock)
{
    expect_open_error(one_tensor_file({100, 2}, kTQ4K, 0, 288),
                      {"tensor \"t\"", "ne[0] = 100", "q4_K block of 256"});
    expect_open_error(one_tensor_file({16}, kTMxfp4, 0, 17), {"mxfp4 block of 32"});
}

TEST(GgufFile, RejectsAMisalignedOffset)
{
    expect_open_error(one_tensor_file({4}, kTF32, 4, 32),
                      {"tensor \"t\"", "data offset 4", "alignment 32", "at byte 49"});
}

TEST(GgufFile, RejectsATensorPastTheEndOfTheFile)
{
    expect_open_error(one_tensor_file({4}, kTF32, 0, 15),
                      {"truncated", "tensor \"t\"", "16 bytes at data offset 0", "past the end"});
    expect_open_error(one_tensor_file({4}, kTF32, 32, 40), {"tensor \"t\"", "past the end"});
    // An aligned offset so large that offset + size wraps.
    expect_open_error(one_tensor_file({4}, kTF32, ~uint64_t(31), 16),
                      {"tensor \"t\"", "past the end"});
    // The data section itself starting past the end.
    Bytes b;
    b.header(1, 0).tensor("t", {1}, kTF32, 0);
    expect_open_error(b.str(), {"truncated", "data section would start at byte 64"});
}

TEST(GgufFile, RejectsOverlappingTensors)
{
    Bytes b;
    b.header(3, 0).tensor("a", {16}, kTF32, 0).tensor("b", {4}, kTF32, 64);
    const size_t third = b.size();
    b.tensor("c", {16}, kTF32, 32).pad(32).fill(96);
    expect_open_error(b.str(),
                      {"tensor \"c\"", "[32, 96)", "overlaps tensor \"a\"", "[0, 64)",
                       "at byte " + std::to_string(third)});
    Bytes same;
    same.header(2, 0).tensor("a", {4}, kTF32, 0).tensor("b", {4}, kTF32, 0).pad(32).fill(16);
    expect_open_error(same.str(), {"overlaps"});
}

TEST(GgufFile, ReportsAMissingFileAsNotFoundAndAFolderAsInvalid)
{
    TempDir dir;
    expect_error([&] { GgufFile::open(dir.file("absent.gguf")); }, ErrorKind::not_found,
                 {"absent.gguf"});
    expect_error([&] { GgufFile::open(dir.path().string()); }, ErrorKind::invalid_input,
                 {dir.path().string(), "not a regular file"});
}

// =============================================================================================
// Crash sweeps

TEST(GgufFile, EveryTruncationOfAValidFileGivesACleanError)
{
    std::string full = small_valid_file();
    ASSERT_GT(full.size(), 1024u);
    ASSERT_LT(full.size(), 4096u);
    TempDir dir;
    std::string path = dir.file("full.gguf");
    write_bytes(path, full);
    GgufFile f = GgufFile::open(path);
    ASSERT_EQ(f.tensors().size(), 5u);
    // The spec pads only between tensors: a file that ends right after its last tensor's data
    // is valid, so cutting only the trailing padding still opens.
    uint64_t data_end = 0;
    for (const GgufTensor& t : f.tensors())
        data_end = std::max<uint64_t>(data_end, t.offset + t.nbytes);
    ASSERT_LT(data_end, full.size()); // the writer padded the last tensor
    std::string cut = dir.file("cut.gguf");
    for (size_t len = 0; len < full.size(); ++len) {
        // From a file, and from a heap buffer of exactly len bytes, where AddressSanitizer
        // would see a read even one byte past the end.
        write_bytes(cut, full.substr(0, len));
        for (bool mapped : {true, false}) {
            const std::string origin = mapped ? cut : "memory";
            try {
                GgufFile g = mapped ? GgufFile::open(cut)
                                    : GgufFile::from_bytes(bytes_of(full.substr(0, len)), origin);
                EXPECT_GE(len, data_end) << "a file cut to " << len << " bytes was accepted";
                exercise(g);
            } catch (const Error& e) {
                ASSERT_LT(len, data_end) << len << ": " << e.what();
                ASSERT_EQ(e.kind(), ErrorKind::invalid_input) << len << ": " << e.what();
                ASSERT_EQ(std::string(e.what()).rfind(origin + ": ", 0), 0u) << e.what();
            }
        }
    }
}

TEST(GgufFile, SurvivesRandomByteFlipsOfAValidFile)
{
    // Every mutation either opens (and then every accessor works and every tensor byte is
    // readable) or gives an iris::Error.
    std::string full = small_valid_file();
    TempDir dir;
    std::string path = dir.file("m.gguf");
    const size_t header_size = GgufFile::from_bytes(bytes_of(full), "m").data_offset();
    std::mt19937 rng(5);
    int opened = 0;
    for (int i = 0; i < 2000; ++i) {
        std::string m = full;
        int flips = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < flips; ++k) {
            // Mostly in the header, where the parsing is.
            size_t at = rng() % 4 ? rng() % header_size : rng() % m.size();
            m[at] = rng() % 3 ? static_cast<char>(rng())
                              : static_cast<char>(m[at] ^ (1 << (rng() % 8)));
        }
        // In memory (exactly sized, for AddressSanitizer), and every tenth from a file.
        try {
            exercise(GgufFile::from_bytes(bytes_of(m), "m"));
            ++opened;
        } catch (const Error& e) {
            ASSERT_EQ(e.kind(), ErrorKind::invalid_input) << e.what();
        }
        if (i % 10 == 0) {
            write_bytes(path, m);
            try {
                exercise(GgufFile::open(path));
            } catch (const Error& e) {
                ASSERT_EQ(e.kind(), ErrorKind::invalid_input) << e.what();
            }
        }
    }
    // Flips in string contents and tensor data leave valid files: both paths were exercised.
    EXPECT_GT(opened, 100);
    EXPECT_LT(opened, 1900);
}

TEST(GgufFile, SurvivesRandomByteFlipsOfAHandBuiltFileWithEveryValueType)
{
    Bytes b;
    b.header(2, 6);
    b.key("a", 0).u8(1).key("b", 10).u64(5).key("c", 8).str("hello");
    b.array_key("d", 8, 3).str("x").str("yy").str("zzz");
    b.array_key("e", 6, 2).f32(1.f).f32(2.f);
    b.key("general.alignment", 4).u32(16);
    b.tensor("t0", {32, 2}, kTQ80, 0)
        .tensor("t1", {3}, kTF32, 80)
        .pad(16)
        .fill(68 * 2)
        .pad(16)
        .fill(12);
    const std::string full = b.str();
    ASSERT_EQ(GgufFile::from_bytes(bytes_of(full), "h").tensors().size(), 2u);
    std::mt19937 rng(11);
    int opened = 0;
    for (int i = 0; i < 2000; ++i) {
        std::string m = full;
        int flips = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < flips; ++k) m[rng() % m.size()] = static_cast<char>(rng());
        try {
            exercise(GgufFile::from_bytes(bytes_of(m), "h"));
            ++opened;
        } catch (const Error& e) {
            ASSERT_EQ(e.kind(), ErrorKind::invalid_input) << e.what();
        }
    }
    EXPECT_GT(opened, 100);
}

// =============================================================================================
// Structured fuzz: random valid files round-trip through writer and reader

TEST(GgufWriter, RandomValidFilesRoundTrip)
{
    TempDir dir;
    std::mt19937 rng(17);
    auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
    auto random_string = [&](size_t max_len) {
        std::string s(pick(static_cast<uint32_t>(max_len + 1)), '\0');
        for (char& c : s) c = static_cast<char>(rng());
        return s;
    };
    const GgufType scalar_types[]
        = {GgufType::u8,     GgufType::i8,  GgufType::u16, GgufType::i16,
           GgufType::u32,    GgufType::i32, GgufType::f32, GgufType::boolean,
           GgufType::string, GgufType::u64, GgufType::i64, GgufType::f64};
    std::vector<uint32_t> ggml_ids;
    for (uint32_t id = 0; id < 64; ++id)
        if (ggml_type_traits(id)) ggml_ids.push_back(id);

    for (int round = 0; round < 150; ++round) {
        GgufWriter w;
        const uint32_t alignment = 1u << (pick(8) + 1); // 2 .. 256
        if (round % 3) w.set_u32("general.alignment", alignment);
        const uint32_t use_alignment = round % 3 ? alignment : 32;
        const int n_kv = static_cast<int>(pick(12));
        for (int k = 0; k < n_kv; ++k) {
            const std::string key = iris::strfmt("k%d.", k) + random_string(6);
            const GgufType type = scalar_types[pick(12)];
            const bool array = pick(2);
            const size_t n = array ? pick(6) : 1;
            GgufValue v;
            if (type == GgufType::string) {
                std::vector<std::string> s;
                for (size_t i = 0; i < n; ++i) s.push_back(random_string(20));
                v = array ? GgufValue::string_array(s) : GgufValue::string(s[0]);
            } else if (type == GgufType::boolean) {
                std::vector<bool> bits;
                for (size_t i = 0; i < n; ++i) bits.push_back(pick(2));
                v = array ? GgufValue::bool_array(bits) : GgufValue::boolean(bits[0]);
            } else {
                std::vector<uint8_t> raw(n * gguf_type_size(type));
                for (uint8_t& x : raw) x = static_cast<uint8_t>(rng());
                v = GgufValue::array_from_bytes(type, raw);
                if (!array) { // a scalar of those bytes, through the typed factory
                    GgufValue a = v;
                    uint64_t bits = 0;
                    std::memcpy(&bits, raw.data(), raw.size());
                    switch (type) {
                    case GgufType::u8:
                        v = GgufValue::u8(static_cast<uint8_t>(bits));
                        break;
                    case GgufType::i8:
                        v = GgufValue::i8(static_cast<int8_t>(bits));
                        break;
                    case GgufType::u16:
                        v = GgufValue::u16(static_cast<uint16_t>(bits));
                        break;
                    case GgufType::i16:
                        v = GgufValue::i16(static_cast<int16_t>(bits));
                        break;
                    case GgufType::u32:
                        v = GgufValue::u32(static_cast<uint32_t>(bits));
                        break;
                    case GgufType::i32:
                        v = GgufValue::i32(static_cast<int32_t>(bits));
                        break;
                    case GgufType::u64:
                        v = GgufValue::u64(bits);
                        break;
                    case GgufType::i64:
                        v = GgufValue::i64(static_cast<int64_t>(bits));
                        break;
                    case GgufType::f32:
                        v = GgufValue::f32(std::bit_cast<float>(static_cast<uint32_t>(bits)));
                        break;
                    default:
                        v = GgufValue::f64(std::bit_cast<double>(bits));
                        break;
                    }
                    EXPECT_TRUE(std::equal(v.bytes().begin(), v.bytes().end(), a.bytes().begin()));
                }
            }
            w.set(key, v);
        }
        struct Want
        {
            std::string name;
            uint32_t type;
            std::vector<int64_t> ne;
            std::vector<uint8_t> bytes;
        };
        std::vector<Want> want;
        const int n_tensors = static_cast<int>(pick(6));
        for (int t = 0; t < n_tensors; ++t) {
            const uint32_t id = ggml_ids[pick(static_cast<uint32_t>(ggml_ids.size()))];
            const GgmlTypeTraits& tr = *ggml_type_traits(id);
            std::vector<int64_t> ne = {tr.block * (1 + pick(3))};
            const uint32_t dims = pick(4);
            for (uint32_t d = 0; d < dims; ++d) ne.push_back(pick(4)); // zero dims included
            int64_t numel = 1;
            for (int64_t d : ne) numel *= d;
            const size_t nbytes = static_cast<size_t>(numel / tr.block) * tr.block_bytes;
            Want x {iris::strfmt("t%d", t) + random_string(3), id, ne, pattern_bytes(nbytes, t)};
            switch (pick(3)) {
            case 0:
                w.add_tensor(x.name, id, ne, x.bytes);
                break;
            case 1:
                w.add_tensor_view(x.name, id, ne, x.bytes.data(), x.bytes.size());
                break;
            default: // produced at write time in pieces of 7 bytes
                w.add_tensor_stream(x.name, id, ne,
                                    [&want, index = want.size()](const GgufWriter::Emit& emit) {
                                        const std::vector<uint8_t>& b = want[index].bytes;
                                        for (size_t i = 0; i < b.size(); i += 7)
                                            emit(b.data() + i, std::min<size_t>(7, b.size() - i));
                                    });
                break;
            }
            // Moving keeps each vector's buffer, so the views above stay valid.
            want.push_back(std::move(x));
        }
        std::string path = dir.file("fuzz.gguf");
        w.write(path);
        const std::vector<Want>& keep = want;
        GgufFile f = GgufFile::open(path);
        EXPECT_EQ(f.alignment(), use_alignment);
        ASSERT_EQ(f.metadata().size(), w.metadata().size());
        for (size_t i = 0; i < w.metadata().size(); ++i) {
            EXPECT_EQ(f.metadata().entries()[i].first, w.metadata().entries()[i].first);
            EXPECT_EQ(f.metadata().entries()[i].second, w.metadata().entries()[i].second);
        }
        ASSERT_EQ(f.tensors().size(), keep.size());
        for (size_t i = 0; i < keep.size(); ++i) {
            const GgufTensor& t = f.tensors()[i];
            EXPECT_EQ(t.name, keep[i].name);
            EXPECT_EQ(t.ggml_type, keep[i].type);
            EXPECT_EQ(t.ne, keep[i].ne);
            EXPECT_EQ(t.offset % use_alignment, 0u);
            ASSERT_EQ(t.nbytes, keep[i].bytes.size());
            if (t.nbytes) {
                EXPECT_EQ(std::memcmp(t.data, keep[i].bytes.data(), t.nbytes), 0) << t.name;
            }
        }
        exercise(f);
    }
}
