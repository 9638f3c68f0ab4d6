// GGUF reading (validated, memory-mapped) and writing (atomic, streaming).
//
// The file is untrusted input. The reader walks it with a cursor that checks every read
// against the bytes left, and every count the file states is capped and checked against the
// bytes it would need before anything is reserved for it, so a corrupt count fails fast
// instead of allocating. Tensor extents are checked with overflow-free arithmetic before any
// pointer into the data section is formed.
#include "model/gguf.h"
#include "core/atomic-file.h"
#include "model/mapped-file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

namespace iris::model {

// Values are stored and read as little-endian bytes with memcpy.
static_assert(std::endian::native == std::endian::little,
              "the GGUF code assumes a little-endian host");

namespace {

using ull = unsigned long long;

// ---------------------------------------------------------------------------------------------
// ggml types (ggml.c type_traits at commit 34af94cd; ids of removed types have no entry)

constexpr uint32_t kGgmlTypeCount = 43;

constexpr GgmlTypeTraits kNoType {nullptr, 0, 0};

constexpr GgmlTypeTraits kGgmlTypes[kGgmlTypeCount] = {
    {"f32", 1, 4}, // 0
    {"f16", 1, 2}, // 1
    {"q4_0", 32, 18}, // 2
    {"q4_1", 32, 20}, // 3
    kNoType, // 4: q4_2, removed
    kNoType, // 5: q4_3, removed
    {"q5_0", 32, 22}, // 6
    {"q5_1", 32, 24}, // 7
    {"q8_0", 32, 34}, // 8
    {"q8_1", 32, 36}, // 9
    {"q2_K", 256, 84}, // 10
    {"q3_K", 256, 110}, // 11
    {"q4_K", 256, 144}, // 12
    {"q5_K", 256, 176}, // 13
    {"q6_K", 256, 210}, // 14
    {"q8_K", 256, 292}, // 15
    {"iq2_xxs", 256, 66}, // 16
    {"iq2_xs", 256, 74}, // 17
    {"iq3_xxs", 256, 98}, // 18
    {"iq1_s", 256, 50}, // 19
    {"iq4_nl", 32, 18}, // 20
    {"iq3_s", 256, 110}, // 21
    {"iq2_s", 256, 82}, // 22
    {"iq4_xs", 256, 136}, // 23
    {"i8", 1, 1}, // 24
    {"i16", 1, 2}, // 25
    {"i32", 1, 4}, // 26
    {"i64", 1, 8}, // 27
    {"f64", 1, 8}, // 28
    {"iq1_m", 256, 56}, // 29
    {"bf16", 1, 2}, // 30
    kNoType, // 31: q4_0_4_4, removed from GGUF files
    kNoType, // 32: q4_0_4_8
    kNoType, // 33: q4_0_8_8
    {"tq1_0", 256, 54}, // 34
    {"tq2_0", 256, 66}, // 35
    kNoType, // 36: iq4_nl_4_4, removed
    kNoType, // 37: iq4_nl_4_8
    kNoType, // 38: iq4_nl_8_8
    {"mxfp4", 32, 17}, // 39
    {"nvfp4", 64, 36}, // 40
    {"q1_0", 128, 18}, // 41
    {"q2_0", 64, 18}, // 42
};

constexpr uint32_t kGgufMagic = 0x46554747; // "GGUF" read as a little-endian u32
constexpr uint32_t kGgufVersion = 3;

// Smallest encodings, to check a count against the bytes left before reserving for it:
// a key-value pair is a key of at least one byte (8 + 1), a type (4) and a 1-byte value; a
// tensor info is a name (8, may be empty), n_dims (4), one dimension (8), type (4), offset (8).
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

bool is_integer(GgufType t)
{
    switch (t) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::u16:
    case GgufType::i16:
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::u64:
    case GgufType::i64:
        return true;
    default:
        return false;
    }
}

bool is_power_of_two(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

uint64_t align_up(uint64_t v, uint64_t alignment)
{
    return (v + alignment - 1) / alignment * alignment;
}

// Shown in messages: printable ASCII as is, other bytes as \xNN, cut after `max` bytes.
std::string printable(std::string_view s, size_t max = 80)
{
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7F && c != '\\' && c != '"')
            out += static_cast<char>(c);
        else
            out += strfmt("\\x%02X", c);
    }
    if (s.size() > max) out += "...";
    return out;
}

std::string dims_text(const std::vector<int64_t>& ne)
{
    std::string s = "{";
    for (size_t i = 0; i < ne.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(ne[i]);
    }
    return s + "}";
}

// Bytes of a tensor of `type` and dims `ne`, or nullopt when they overflow. A zero dimension
// makes a 0-byte tensor (llama.cpp's reader accepts them too); the other dimensions must still
// multiply without overflow, so that element and row counts are always representable.
std::optional<uint64_t> tensor_bytes(const GgmlTypeTraits& type, const std::vector<int64_t>& ne)
{
    uint64_t n = 1;
    bool empty = false;
    for (int64_t d : ne) {
        if (d == 0)
            empty = true;
        else if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
            return std::nullopt;
    }
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    if (empty) return 0;
    uint64_t bytes;
    if (__builtin_mul_overflow(n / static_cast<uint64_t>(type.block), type.block_bytes, &bytes))
        return std::nullopt;
    if (bytes > std::numeric_limits<size_t>::max()) return std::nullopt;
    return bytes;
}

// ---------------------------------------------------------------------------------------------
// The reading cursor

class Cursor
{
public:
    Cursor(const uint8_t* data, uint64_t size, const std::string& path)
        : data_(data)
        , size_(size)
        , path_(path)
    { }

    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }
    void seek(uint64_t pos) { pos_ = pos; } // callers check pos <= size

    [[noreturn]] void fail(const std::string& what, uint64_t at) const
    {
        throw Error(ErrorKind::invalid_input,
                    strfmt("%s: %s at byte %llu", path_.c_str(), what.c_str(), ull(at)));
    }

    void need(uint64_t n, const std::string& what) const
    {
        if (n > left())
            fail(strfmt("truncated file: %s needs %llu bytes but %llu are left", what.c_str(),
                        ull(n), ull(left())),
                 pos_);
    }

    template<typename T> T read(const std::string& what)
    {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    // A length-prefixed string of at most max_len bytes, viewed in the mapping.
    std::string_view string(const std::string& what, uint64_t max_len)
    {
        const uint64_t at = pos_;
        uint64_t n = read<uint64_t>("the length of " + what);
        if (n > max_len)
            fail(strfmt("%s is %llu bytes long, more than the limit of %llu", what.c_str(), ull(n),
                        ull(max_len)),
                 at);
        need(n, what);
        std::string_view s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
        pos_ += n;
        return s;
    }

    const uint8_t* here() const { return data_ + pos_; }
    void skip(uint64_t n) { pos_ += n; } // after need(n)

private:
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    const std::string& path_;
};

// ---------------------------------------------------------------------------------------------
// Writing helpers

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n)
{
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
}

template<typename T> void put(std::vector<uint8_t>& out, T v)
{
    put_bytes(out, &v, sizeof v);
}

void put_string(std::vector<uint8_t>& out, std::string_view s)
{
    put<uint64_t>(out, s.size());
    put_bytes(out, s.data(), s.size());
}

// Writes to a file in chunks of up to 1 MiB.
class BufferedFile
{
public:
    explicit BufferedFile(const TempFile& file)
        : file_(file)
    {
        buf_.reserve(kBuffer);
    }

    void write(const void* p, size_t n)
    {
        if (n == 0) return; // p may be null
        const uint8_t* b = static_cast<const uint8_t*>(p);
        if (buf_.size() + n <= kBuffer) {
            buf_.insert(buf_.end(), b, b + n);
            return;
        }
        flush();
        if (n >= kBuffer)
            file_.write(b, n);
        else
            buf_.insert(buf_.end(), b, b + n);
    }

    void zeros(size_t n)
    {
        static const uint8_t zero[256] = {};
        while (n > 0) {
            size_t k = std::min(n, sizeof zero);
            write(zero, k);
            n -= k;
        }
    }

    void flush()
    {
        file_.write(buf_.data(), buf_.size());
        buf_.clear();
    }

private:
    static constexpr size_t kBuffer = size_t(1) << 20;

    const TempFile& file_;
    std::vector<uint8_t> buf_;
};

} // namespace

// =============================================================================================
// ggml types

const GgmlTypeTraits* ggml_type_traits(uint32_t ggml_type)
{
    if (ggml_type >= kGgmlTypeCount || kGgmlTypes[ggml_type].name == nullptr) return nullptr;
    return &kGgmlTypes[ggml_type];
}

std::string ggml_type_name(uint32_t ggml_type)
{
    if (const GgmlTypeTraits* t = ggml_type_traits(ggml_type)) return t->name;
    return strfmt("unknown type %u", ggml_type);
}

// =============================================================================================
// GgufValue

const char* gguf_type_name(GgufType type)
{
    switch (type) {
    case GgufType::u8:
        return "u8";
    case GgufType::i8:
        return "i8";
    case GgufType::u16:
        return "u16";
    case GgufType::i16:
        return "i16";
    case GgufType::u32:
        return "u32";
    case GgufType::i32:
        return "i32";
    case GgufType::f32:
        return "f32";
    case GgufType::boolean:
        return "bool";
    case GgufType::string:
        return "string";
    case GgufType::array:
        return "array";
    case GgufType::u64:
        return "u64";
    case GgufType::i64:
        return "i64";
    case GgufType::f64:
        return "f64";
    }
    return "unknown";
}

size_t gguf_type_size(GgufType type)
{
    switch (type) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
        return 1;
    case GgufType::u16:
    case GgufType::i16:
        return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
        return 4;
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
        return 8;
    case GgufType::string:
    case GgufType::array:
        return 0;
    }
    return 0;
}

// Builds values from the inside: for the typed factories and for the reader.
struct GgufValueBuilder
{
    template<typename T> static GgufValue scalar(GgufType type, T v)
    {
        GgufValue out;
        out.type_ = type;
        out.bytes_.resize(sizeof(T));
        std::memcpy(out.bytes_.data(), &v, sizeof(T));
        return out;
    }

    template<typename T> static GgufValue array(GgufType type, std::span<const T> v)
    {
        return GgufValue::array_from_bytes(
            type, {reinterpret_cast<const uint8_t*>(v.data()), v.size_bytes()});
    }

    static GgufValue read(Cursor& c, GgufType type, bool array, uint64_t n, const std::string& key,
                          uint64_t type_at);
};

GgufValue GgufValue::u8(uint8_t v)
{
    return GgufValueBuilder::scalar(GgufType::u8, v);
}
GgufValue GgufValue::i8(int8_t v)
{
    return GgufValueBuilder::scalar(GgufType::i8, v);
}
GgufValue GgufValue::u16(uint16_t v)
{
    return GgufValueBuilder::scalar(GgufType::u16, v);
}
GgufValue GgufValue::i16(int16_t v)
{
    return GgufValueBuilder::scalar(GgufType::i16, v);
}
GgufValue GgufValue::u32(uint32_t v)
{
    return GgufValueBuilder::scalar(GgufType::u32, v);
}
GgufValue GgufValue::i32(int32_t v)
{
    return GgufValueBuilder::scalar(GgufType::i32, v);
}
GgufValue GgufValue::u64(uint64_t v)
{
    return GgufValueBuilder::scalar(GgufType::u64, v);
}
GgufValue GgufValue::i64(int64_t v)
{
    return GgufValueBuilder::scalar(GgufType::i64, v);
}
GgufValue GgufValue::f32(float v)
{
    return GgufValueBuilder::scalar(GgufType::f32, v);
}
GgufValue GgufValue::f64(double v)
{
    return GgufValueBuilder::scalar(GgufType::f64, v);
}
GgufValue GgufValue::array(std::span<const uint8_t> v)
{
    return GgufValueBuilder::array(GgufType::u8, v);
}
GgufValue GgufValue::array(std::span<const int8_t> v)
{
    return GgufValueBuilder::array(GgufType::i8, v);
}
GgufValue GgufValue::array(std::span<const uint16_t> v)
{
    return GgufValueBuilder::array(GgufType::u16, v);
}
GgufValue GgufValue::array(std::span<const int16_t> v)
{
    return GgufValueBuilder::array(GgufType::i16, v);
}
GgufValue GgufValue::array(std::span<const uint32_t> v)
{
    return GgufValueBuilder::array(GgufType::u32, v);
}
GgufValue GgufValue::array(std::span<const int32_t> v)
{
    return GgufValueBuilder::array(GgufType::i32, v);
}
GgufValue GgufValue::array(std::span<const uint64_t> v)
{
    return GgufValueBuilder::array(GgufType::u64, v);
}
GgufValue GgufValue::array(std::span<const int64_t> v)
{
    return GgufValueBuilder::array(GgufType::i64, v);
}
GgufValue GgufValue::array(std::span<const float> v)
{
    return GgufValueBuilder::array(GgufType::f32, v);
}
GgufValue GgufValue::array(std::span<const double> v)
{
    return GgufValueBuilder::array(GgufType::f64, v);
}

GgufValue GgufValue::boolean(bool v)
{
    GgufValue out;
    out.type_ = GgufType::boolean;
    out.bytes_ = {static_cast<uint8_t>(v ? 1 : 0)};
    return out;
}

GgufValue GgufValue::string(std::string v)
{
    GgufValue out;
    out.type_ = GgufType::string;
    out.bytes_.clear();
    out.strings_.push_back(std::move(v));
    return out;
}

GgufValue GgufValue::bool_array(const std::vector<bool>& v)
{
    GgufValue out;
    out.type_ = GgufType::boolean;
    out.array_ = true;
    out.bytes_.assign(v.begin(), v.end());
    return out;
}

GgufValue GgufValue::string_array(std::vector<std::string> v)
{
    GgufValue out;
    out.type_ = GgufType::string;
    out.array_ = true;
    out.bytes_.clear();
    out.strings_ = std::move(v);
    return out;
}

GgufValue GgufValue::array_from_bytes(GgufType type, std::span<const uint8_t> bytes)
{
    const size_t size = gguf_type_size(type);
    if (size == 0)
        throw Error(
            ErrorKind::invalid_argument,
            strfmt("GgufValue: an array of %s cannot be built from bytes", gguf_type_name(type)));
    if (bytes.size() % size != 0)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("GgufValue: %zu bytes are not a whole number of %s elements",
                           bytes.size(), gguf_type_name(type)));
    if (type == GgufType::boolean)
        for (uint8_t b : bytes)
            if (b > 1)
                throw Error(ErrorKind::invalid_argument,
                            strfmt("GgufValue: bool element %u is not 0 or 1", b));
    GgufValue out;
    out.type_ = type;
    out.array_ = true;
    out.bytes_.assign(bytes.begin(), bytes.end());
    return out;
}

size_t GgufValue::size() const
{
    if (type_ == GgufType::string) return strings_.size();
    return bytes_.size() / gguf_type_size(type_);
}

std::string GgufValue::type_name() const
{
    return std::string(gguf_type_name(type_)) + (array_ ? "[]" : "");
}

std::optional<int64_t> GgufValue::as_i64(size_t i) const
{
    if (!is_integer(type_) || i >= size()) return std::nullopt;
    const uint8_t* p = bytes_.data() + i * gguf_type_size(type_);
    auto load = [p]<typename T>(T) {
        T v;
        std::memcpy(&v, p, sizeof v);
        return v;
    };
    switch (type_) {
    case GgufType::u8:
        return load(uint8_t {});
    case GgufType::i8:
        return load(int8_t {});
    case GgufType::u16:
        return load(uint16_t {});
    case GgufType::i16:
        return load(int16_t {});
    case GgufType::u32:
        return load(uint32_t {});
    case GgufType::i32:
        return load(int32_t {});
    case GgufType::i64:
        return load(int64_t {});
    case GgufType::u64: {
        uint64_t v = load(uint64_t {});
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
        return static_cast<int64_t>(v);
    }
    default:
        return std::nullopt;
    }
}

std::optional<uint64_t> GgufValue::as_u64(size_t i) const
{
    if (type_ == GgufType::u64 && i < size()) {
        uint64_t v;
        std::memcpy(&v, bytes_.data() + 8 * i, 8);
        return v;
    }
    std::optional<int64_t> v = as_i64(i);
    if (!v || *v < 0) return std::nullopt;
    return static_cast<uint64_t>(*v);
}

std::optional<double> GgufValue::as_f64(size_t i) const
{
    if (i >= size()) return std::nullopt;
    if (type_ == GgufType::f32) {
        float v;
        std::memcpy(&v, bytes_.data() + 4 * i, 4);
        return v;
    }
    if (type_ == GgufType::f64) {
        double v;
        std::memcpy(&v, bytes_.data() + 8 * i, 8);
        return v;
    }
    return std::nullopt;
}

std::optional<bool> GgufValue::as_bool(size_t i) const
{
    if (type_ != GgufType::boolean || i >= size()) return std::nullopt;
    return bytes_[i] != 0;
}

const std::string* GgufValue::as_string(size_t i) const
{
    if (type_ != GgufType::string || i >= strings_.size()) return nullptr;
    return &strings_[i];
}

const std::vector<std::string>& GgufValue::strings() const
{
    return strings_;
}

std::span<const uint8_t> GgufValue::bytes() const
{
    return bytes_;
}

// =============================================================================================
// GgufMetadata

namespace {

template<typename T> std::optional<T> int_as(const GgufValue& v, size_t i)
{
    if constexpr (std::is_signed_v<T>) {
        std::optional<int64_t> x = v.as_i64(i);
        if (!x || *x < std::numeric_limits<T>::min() || *x > std::numeric_limits<T>::max())
            return std::nullopt;
        return static_cast<T>(*x);
    } else {
        std::optional<uint64_t> x = v.as_u64(i);
        if (!x || *x > std::numeric_limits<T>::max()) return std::nullopt;
        return static_cast<T>(*x);
    }
}

// The element as written, for messages.
std::string value_text(const GgufValue& v, size_t i)
{
    if (auto s = v.as_i64(i)) return std::to_string(*s);
    if (auto u = v.as_u64(i)) return std::to_string(*u);
    if (auto f = v.as_f64(i)) return strfmt("%g", *f);
    return "?";
}

template<typename T> constexpr const char* int_name()
{
    if constexpr (std::is_same_v<T, uint8_t>) return "u8";
    if constexpr (std::is_same_v<T, uint16_t>) return "u16";
    if constexpr (std::is_same_v<T, uint32_t>) return "u32";
    if constexpr (std::is_same_v<T, uint64_t>) return "u64";
    if constexpr (std::is_same_v<T, int32_t>) return "i32";
    return "i64";
}

} // namespace

GgufMetadata::GgufMetadata(std::string origin)
    : origin_(std::move(origin))
{ }

const GgufValue* GgufMetadata::find(std::string_view key) const
{
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const GgufValue& GgufMetadata::get(std::string_view key) const
{
    if (const GgufValue* v = find(key)) return *v;
    throw Error(ErrorKind::not_found,
                origin_ + ": no metadata key \"" + printable(key, 200) + "\"");
}

void GgufMetadata::set(const std::string& key, GgufValue value)
{
    auto it = index_.find(key);
    if (it != index_.end()) {
        entries_[it->second].second = std::move(value);
        return;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(key, std::move(value));
}

namespace {

[[noreturn]] void wrong_type(const std::string& origin, std::string_view key, const GgufValue& v,
                             const char* expected)
{
    throw Error(ErrorKind::invalid_input,
                strfmt("%s: metadata \"%s\" is %s, expected %s", origin.c_str(),
                       printable(key, 200).c_str(), v.type_name().c_str(), expected));
}

template<typename T> T get_int(const std::string& origin, std::string_view key, const GgufValue& v)
{
    const char* name = int_name<T>();
    if (v.is_array() || !is_integer(v.type())) wrong_type(origin, key, v, name);
    std::optional<T> x = int_as<T>(v, 0);
    if (!x)
        throw Error(ErrorKind::invalid_input,
                    strfmt("%s: metadata \"%s\" = %s (%s) does not fit %s", origin.c_str(),
                           printable(key, 200).c_str(), value_text(v, 0).c_str(),
                           v.type_name().c_str(), name));
    return *x;
}

template<typename T>
std::vector<T> get_int_array(const std::string& origin, std::string_view key, const GgufValue& v)
{
    const char* name = int_name<T>();
    if (!v.is_array() || !is_integer(v.type()))
        wrong_type(origin, key, v, (std::string(name) + "[]").c_str());
    std::vector<T> out(v.size());
    for (size_t i = 0; i < out.size(); ++i) {
        std::optional<T> x = int_as<T>(v, i);
        if (!x)
            throw Error(ErrorKind::invalid_input,
                        strfmt("%s: metadata \"%s\"[%zu] = %s (%s) does not fit %s", origin.c_str(),
                               printable(key, 200).c_str(), i, value_text(v, i).c_str(),
                               v.type_name().c_str(), name));
        out[i] = *x;
    }
    return out;
}

double get_float(const std::string& origin, std::string_view key, const GgufValue& v,
                 const char* expected)
{
    std::optional<double> x = v.is_array() ? std::nullopt : v.as_f64(0);
    if (!x) wrong_type(origin, key, v, expected);
    return *x;
}

bool get_bool_value(const std::string& origin, std::string_view key, const GgufValue& v)
{
    std::optional<bool> x = v.is_array() ? std::nullopt : v.as_bool(0);
    if (!x) wrong_type(origin, key, v, "bool");
    return *x;
}

const std::string& get_string_value(const std::string& origin, std::string_view key,
                                    const GgufValue& v)
{
    const std::string* s = v.is_array() ? nullptr : v.as_string(0);
    if (!s) wrong_type(origin, key, v, "string");
    return *s;
}

const std::vector<std::string>& get_strings(const std::string& origin, std::string_view key,
                                            const GgufValue& v)
{
    if (!v.is_array() || v.type() != GgufType::string) wrong_type(origin, key, v, "string[]");
    return v.strings();
}

std::vector<float> get_floats(const std::string& origin, std::string_view key, const GgufValue& v)
{
    if (!v.is_array() || (v.type() != GgufType::f32 && v.type() != GgufType::f64))
        wrong_type(origin, key, v, "f32[]");
    std::vector<float> out(v.size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(*v.as_f64(i));
    return out;
}

} // namespace

uint8_t GgufMetadata::get_u8(std::string_view key) const
{
    return get_int<uint8_t>(origin_, key, get(key));
}
uint16_t GgufMetadata::get_u16(std::string_view key) const
{
    return get_int<uint16_t>(origin_, key, get(key));
}
uint32_t GgufMetadata::get_u32(std::string_view key) const
{
    return get_int<uint32_t>(origin_, key, get(key));
}
uint64_t GgufMetadata::get_u64(std::string_view key) const
{
    return get_int<uint64_t>(origin_, key, get(key));
}
int32_t GgufMetadata::get_i32(std::string_view key) const
{
    return get_int<int32_t>(origin_, key, get(key));
}
int64_t GgufMetadata::get_i64(std::string_view key) const
{
    return get_int<int64_t>(origin_, key, get(key));
}
float GgufMetadata::get_f32(std::string_view key) const
{
    return static_cast<float>(get_float(origin_, key, get(key), "f32"));
}
double GgufMetadata::get_f64(std::string_view key) const
{
    return get_float(origin_, key, get(key), "f64");
}
bool GgufMetadata::get_bool(std::string_view key) const
{
    return get_bool_value(origin_, key, get(key));
}
const std::string& GgufMetadata::get_string(std::string_view key) const
{
    return get_string_value(origin_, key, get(key));
}
const std::vector<std::string>& GgufMetadata::get_string_array(std::string_view key) const
{
    return get_strings(origin_, key, get(key));
}
std::vector<int32_t> GgufMetadata::get_i32_array(std::string_view key) const
{
    return get_int_array<int32_t>(origin_, key, get(key));
}
std::vector<int64_t> GgufMetadata::get_i64_array(std::string_view key) const
{
    return get_int_array<int64_t>(origin_, key, get(key));
}
std::vector<float> GgufMetadata::get_f32_array(std::string_view key) const
{
    return get_floats(origin_, key, get(key));
}

std::optional<uint32_t> GgufMetadata::opt_u32(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_int<uint32_t>(origin_, key, *v);
}
std::optional<uint64_t> GgufMetadata::opt_u64(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_int<uint64_t>(origin_, key, *v);
}
std::optional<int32_t> GgufMetadata::opt_i32(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_int<int32_t>(origin_, key, *v);
}
std::optional<int64_t> GgufMetadata::opt_i64(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_int<int64_t>(origin_, key, *v);
}
std::optional<float> GgufMetadata::opt_f32(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return static_cast<float>(get_float(origin_, key, *v, "f32"));
}
std::optional<bool> GgufMetadata::opt_bool(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_bool_value(origin_, key, *v);
}
std::optional<std::string> GgufMetadata::opt_string(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_string_value(origin_, key, *v);
}
const std::vector<std::string>* GgufMetadata::opt_string_array(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return nullptr;
    return &get_strings(origin_, key, *v);
}
std::optional<std::vector<int32_t>> GgufMetadata::opt_i32_array(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_int_array<int32_t>(origin_, key, *v);
}
std::optional<std::vector<float>> GgufMetadata::opt_f32_array(std::string_view key) const
{
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return get_floats(origin_, key, *v);
}

// =============================================================================================
// GgufTensor

int64_t GgufTensor::numel() const
{
    int64_t n = 1;
    for (int64_t d : ne) n *= d; // the reader checked that the product fits
    return n;
}

int64_t GgufTensor::rows() const
{
    int64_t n = 1;
    for (size_t i = 1; i < ne.size(); ++i) n *= ne[i];
    return n;
}

std::vector<int64_t> GgufTensor::shape() const
{
    return std::vector<int64_t>(ne.rbegin(), ne.rend());
}

// =============================================================================================
// GgufFile

struct GgufFile::Impl
{
    std::string path;
    MappedFile map; // the file, or
    std::vector<uint8_t> owned; // the bytes given to from_bytes
    const uint8_t* base = nullptr;
    uint64_t size = 0;

    // Validates the bytes (kept alive by map or owned) and fills in the rest.
    void parse(const std::string& origin, const uint8_t* bytes, uint64_t n_bytes);
    uint32_t version = 0;
    size_t alignment = kGgufDefaultAlignment;
    uint64_t data_offset = 0;
    GgufMetadata metadata;
    std::vector<GgufTensor> tensors;
    std::map<std::string, size_t, std::less<>> by_name;
};

GgufFile::GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

// One metadata value of `type` (an array of n of them if `array`) at the cursor.
GgufValue GgufValueBuilder::read(Cursor& c, GgufType type, bool array, uint64_t n,
                                 const std::string& key, uint64_t type_at)
{
    const std::string what = "metadata \"" + printable(key) + "\"";
    if (array && type == GgufType::array)
        c.fail(what + " is a nested array (an array of arrays), which is not supported", type_at);
    if (static_cast<uint32_t>(type) > static_cast<uint32_t>(GgufType::f64))
        c.fail(strfmt("%s has unknown value type %u", what.c_str(), static_cast<uint32_t>(type)),
               type_at);
    if (array && n > kGgufMaxArray)
        c.fail(strfmt("%s is an array of %llu elements, more than the limit of %llu", what.c_str(),
                      ull(n), ull(kGgufMaxArray)),
               type_at);

    GgufValue v;
    v.type_ = type;
    v.array_ = array;
    if (type == GgufType::string) {
        v.bytes_.clear();
        // Each string needs at least its 8-byte length: check before reserving.
        uint64_t min_bytes;
        if (__builtin_mul_overflow(n, uint64_t(8), &min_bytes) || min_bytes > c.left())
            c.fail(strfmt("truncated file: %s, an array of %llu strings, needs at least %llu "
                          "bytes but %llu are left",
                          what.c_str(), ull(n), ull(n * 8), ull(c.left())),
                   c.pos());
        v.strings_.reserve(static_cast<size_t>(n));
        const std::string elem = array ? "an element of " + what : what;
        for (uint64_t i = 0; i < n; ++i) v.strings_.emplace_back(c.string(elem, kGgufMaxString));
        return v;
    }
    const uint64_t size = gguf_type_size(type);
    uint64_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        c.fail(strfmt("%s: %llu elements of %llu bytes overflow", what.c_str(), ull(n), ull(size)),
               c.pos());
    c.need(bytes, what);
    const uint8_t* p = c.here();
    if (type == GgufType::boolean)
        for (uint64_t i = 0; i < bytes; ++i)
            if (p[i] > 1)
                c.fail(strfmt("%s: bool value %u is neither 0 nor 1", what.c_str(), p[i]),
                       c.pos() + i);
    v.bytes_.assign(p, p + bytes);
    c.skip(bytes);
    return v;
}

GgufFile GgufFile::open(const std::string& path)
{
    GgufFile f;
    f.impl_ = std::make_unique<Impl>();
    f.impl_->map = MappedFile::open(path);
    f.impl_->parse(path, f.impl_->map.data(), f.impl_->map.size());
    return f;
}

GgufFile GgufFile::from_bytes(std::vector<uint8_t> bytes, const std::string& origin)
{
    GgufFile f;
    f.impl_ = std::make_unique<Impl>();
    f.impl_->owned = std::move(bytes);
    f.impl_->parse(origin, f.impl_->owned.data(), f.impl_->owned.size());
    return f;
}

void GgufFile::Impl::parse(const std::string& origin, const uint8_t* bytes, uint64_t n_bytes)
{
    Impl& im = *this;
    im.path = origin;
    im.base = bytes;
    im.size = n_bytes;
    im.metadata = GgufMetadata(path);
    const uint64_t file_size = size;
    Cursor c(base, file_size, path);

    // Header: magic, version, tensor count, metadata count.
    c.need(4, "the magic \"GGUF\"");
    const uint32_t magic = c.read<uint32_t>("the magic");
    if (magic != kGgufMagic) {
        char m[4];
        std::memcpy(m, &magic, 4);
        c.fail("bad magic \"" + printable(std::string_view(m, 4)) + "\", not a GGUF file", 0);
    }
    const uint32_t ver = c.read<uint32_t>("the version");
    if (ver == 1) c.fail("GGUF version 1 is no longer supported (only versions 2 and 3 are)", 4);
    if (ver != 2 && ver != 3) {
        const uint32_t swapped = __builtin_bswap32(ver);
        if (swapped == 2 || swapped == 3)
            c.fail(strfmt("version field 0x%08X is byte-swapped: a big-endian GGUF file, which "
                          "is not supported",
                          ver),
                   4);
        c.fail(strfmt("unsupported GGUF version %u (only versions 2 and 3 are supported)", ver), 4);
    }
    im.version = ver;
    const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
    const uint64_t n_kv = c.read<uint64_t>("the metadata count");
    if (n_tensors > kGgufMaxTensors)
        c.fail(strfmt("tensor count %llu exceeds the limit of %llu", ull(n_tensors),
                      ull(kGgufMaxTensors)),
               8);
    if (n_kv > kGgufMaxKv)
        c.fail(strfmt("metadata count %llu exceeds the limit of %llu", ull(n_kv), ull(kGgufMaxKv)),
               16);
    // Both are capped, so this cannot overflow.
    if (n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes > c.left())
        c.fail(strfmt("truncated file: %llu metadata entries and %llu tensor infos cannot fit in "
                      "the %llu bytes left",
                      ull(n_kv), ull(n_tensors), ull(c.left())),
               c.pos());

    // Metadata.
    std::optional<uint64_t> alignment_at;
    for (uint64_t i = 0; i < n_kv; ++i) {
        const uint64_t key_at = c.pos();
        std::string key(c.string(strfmt("metadata key %llu", ull(i)), kGgufMaxKey));
        if (key.empty()) c.fail(strfmt("metadata key %llu is empty", ull(i)), key_at);
        if (im.metadata.find(key))
            c.fail("duplicate metadata key \"" + printable(key) + "\"", key_at);
        const uint64_t type_at = c.pos();
        uint32_t type = c.read<uint32_t>("the value type of \"" + printable(key) + "\"");
        bool array = false;
        uint64_t n = 1;
        uint64_t elem_at = type_at;
        if (type == static_cast<uint32_t>(GgufType::array)) {
            array = true;
            elem_at = c.pos();
            type = c.read<uint32_t>("the element type of \"" + printable(key) + "\"");
            n = c.read<uint64_t>("the length of array \"" + printable(key) + "\"");
        }
        if (key == "general.alignment") alignment_at = c.pos();
        GgufValue v
            = GgufValueBuilder::read(c, static_cast<GgufType>(type), array, n, key, elem_at);
        im.metadata.set(key, std::move(v));
    }
    if (const GgufValue* a = im.metadata.find("general.alignment")) {
        if (a->is_array() || a->type() != GgufType::u32)
            c.fail("general.alignment is " + a->type_name() + ", expected u32", *alignment_at);
        const uint64_t value = *a->as_u64();
        if (!is_power_of_two(value))
            c.fail(strfmt("general.alignment %llu is not a power of two", ull(value)),
                   *alignment_at);
        im.alignment = static_cast<size_t>(value);
    }
    const uint64_t align = im.alignment;

    // Tensor infos.
    struct Extent
    {
        uint64_t offset, nbytes, info_at;
        size_t index;
    };
    std::vector<Extent> extents;
    extents.reserve(static_cast<size_t>(n_tensors));
    im.tensors.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const uint64_t info_at = c.pos();
        GgufTensor t;
        t.name = std::string(c.string(strfmt("the name of tensor %llu", ull(i)), kGgufMaxName));
        const std::string what = "tensor \"" + printable(t.name) + "\"";
        if (im.by_name.count(t.name))
            c.fail("duplicate tensor name \"" + printable(t.name) + "\"", info_at);
        const uint64_t dims_at = c.pos();
        const uint32_t n_dims = c.read<uint32_t>("the dimension count of " + what);
        if (n_dims < 1 || n_dims > 4)
            c.fail(strfmt("%s has %u dimensions; 1 to 4 are allowed", what.c_str(), n_dims),
                   dims_at);
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t at = c.pos();
            uint64_t v = c.read<uint64_t>(strfmt("dimension %u of %s", d, what.c_str()));
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                c.fail(strfmt("%s: dimension %u is %llu, too large", what.c_str(), d, ull(v)), at);
            t.ne.push_back(static_cast<int64_t>(v));
        }
        const uint64_t type_at = c.pos();
        t.ggml_type = c.read<uint32_t>("the type of " + what);
        const GgmlTypeTraits* traits = ggml_type_traits(t.ggml_type);
        if (!traits)
            c.fail(strfmt("%s has unknown ggml type %u", what.c_str(), t.ggml_type), type_at);
        if (t.ne[0] % traits->block != 0)
            c.fail(strfmt("%s: row length ne[0] = %lld is not a multiple of the %s block of %lld",
                          what.c_str(), static_cast<long long>(t.ne[0]), traits->name,
                          static_cast<long long>(traits->block)),
                   dims_at);
        std::optional<uint64_t> nbytes = tensor_bytes(*traits, t.ne);
        if (!nbytes)
            c.fail(strfmt("%s: dimensions %s of %s overflow the tensor size", what.c_str(),
                          dims_text(t.ne).c_str(), traits->name),
                   dims_at);
        const uint64_t offset_at = c.pos();
        const uint64_t offset = c.read<uint64_t>("the data offset of " + what);
        if (offset % align != 0)
            c.fail(strfmt("%s: data offset %llu is not a multiple of the alignment %llu",
                          what.c_str(), ull(offset), ull(align)),
                   offset_at);
        t.type = cpu::weight_type_from_ggml(t.ggml_type);
        t.nbytes = static_cast<size_t>(*nbytes);
        extents.push_back({offset, *nbytes, info_at, im.tensors.size()});
        im.by_name.emplace(t.name, im.tensors.size());
        im.tensors.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment (a file without tensors
    // needs none, as for llama.cpp's reader). Its last tensor need not be padded.
    const uint64_t data_start = n_tensors > 0 ? align_up(c.pos(), align) : c.pos();
    if (data_start > file_size)
        c.fail(strfmt("truncated file: the data section would start at byte %llu, past the end "
                      "of the %llu-byte file",
                      ull(data_start), ull(file_size)),
               c.pos());
    im.data_offset = data_start;
    const uint64_t data_size = file_size - data_start;
    for (const Extent& e : extents) {
        GgufTensor& t = im.tensors[e.index];
        if (e.offset > data_size || e.nbytes > data_size - e.offset)
            c.fail(strfmt("truncated file: tensor \"%s\" (%llu bytes at data offset %llu) runs "
                          "past the end of the %llu-byte file",
                          printable(t.name).c_str(), ull(e.nbytes), ull(e.offset), ull(file_size)),
                   e.info_at);
        t.offset = data_start + e.offset;
        t.data = im.base + t.offset;
    }
    std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
        return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
    });
    const Extent* prev = nullptr;
    for (const Extent& e : extents) {
        if (e.nbytes == 0) continue; // an empty tensor overlaps nothing
        if (prev && e.offset < prev->offset + prev->nbytes)
            c.fail(strfmt("tensor \"%s\" (data bytes [%llu, %llu)) overlaps tensor \"%s\" "
                          "([%llu, %llu))",
                          printable(im.tensors[e.index].name).c_str(), ull(e.offset),
                          ull(e.offset + e.nbytes), printable(im.tensors[prev->index].name).c_str(),
                          ull(prev->offset), ull(prev->offset + prev->nbytes)),
                   e.info_at);
        prev = &e;
    }
}

const std::string& GgufFile::path() const
{
    return impl_->path;
}
uint32_t GgufFile::version() const
{
    return impl_->version;
}
size_t GgufFile::alignment() const
{
    return impl_->alignment;
}
uint64_t GgufFile::file_size() const
{
    return impl_->size;
}
uint64_t GgufFile::data_offset() const
{
    return impl_->data_offset;
}
const GgufMetadata& GgufFile::metadata() const
{
    return impl_->metadata;
}
const std::vector<GgufTensor>& GgufFile::tensors() const
{
    return impl_->tensors;
}

const GgufTensor* GgufFile::find(std::string_view name) const
{
    auto it = impl_->by_name.find(name);
    return it == impl_->by_name.end() ? nullptr : &impl_->tensors[it->second];
}

const GgufTensor& GgufFile::get(std::string_view name) const
{
    if (const GgufTensor* t = find(name)) return *t;
    throw Error(ErrorKind::not_found,
                impl_->path + ": no tensor named \"" + printable(name, 200) + "\"");
}

cpu::WeightType GgufFile::weight_type(const GgufTensor& t) const
{
    if (t.type) return *t.type;
    std::string usable;
    for (int i = 0; i < cpu::kWeightTypeCount; ++i) {
        if (i) usable += ", ";
        usable += cpu::weight_type_name(static_cast<cpu::WeightType>(i));
    }
    throw Error(ErrorKind::unsupported,
                strfmt("%s: tensor \"%s\" has ggml type %s, an unsupported tensor type (Iris "
                       "computes on %s)",
                       impl_->path.c_str(), printable(t.name).c_str(),
                       ggml_type_name(t.ggml_type).c_str(), usable.c_str()));
}

// =============================================================================================
// GgufWriter

GgufWriter::GgufWriter()
    : meta_("GgufWriter")
{ }

void GgufWriter::set(const std::string& key, GgufValue value)
{
    auto bad = [&](const std::string& what) {
        return Error(ErrorKind::invalid_argument,
                     "GgufWriter: metadata \"" + printable(key) + "\": " + what);
    };
    if (key.empty()) throw bad("empty key");
    if (key.size() > kGgufMaxKey) throw bad(strfmt("key longer than %llu bytes", ull(kGgufMaxKey)));
    if (value.is_array() && value.size() > kGgufMaxArray)
        throw bad(strfmt("array of more than %llu elements", ull(kGgufMaxArray)));
    for (const std::string& s : value.strings())
        if (s.size() > kGgufMaxString)
            throw bad(strfmt("string longer than %llu bytes", ull(kGgufMaxString)));
    if (key == "general.alignment") {
        std::optional<uint64_t> a = value.as_u64();
        if (value.is_array() || value.type() != GgufType::u32 || !is_power_of_two(*a))
            throw bad("must be a u32 power of two");
    }
    if (!meta_.find(key) && meta_.size() >= kGgufMaxKv)
        throw bad(strfmt("more than %llu metadata entries", ull(kGgufMaxKv)));
    meta_.set(key, std::move(value));
}

void GgufWriter::set_string(const std::string& key, std::string v)
{
    set(key, GgufValue::string(std::move(v)));
}
void GgufWriter::set_string_array(const std::string& key, std::vector<std::string> v)
{
    set(key, GgufValue::string_array(std::move(v)));
}
void GgufWriter::set_f32_array(const std::string& key, std::span<const float> v)
{
    set(key, GgufValue::array(v));
}
void GgufWriter::set_i32_array(const std::string& key, std::span<const int32_t> v)
{
    set(key, GgufValue::array(v));
}

GgufWriter::Tensor& GgufWriter::add(const std::string& name, uint32_t ggml_type,
                                    std::vector<int64_t> ne, std::optional<size_t> nbytes)
{
    auto bad = [&](const std::string& what) {
        return Error(ErrorKind::invalid_argument,
                     "GgufWriter: tensor \"" + printable(name) + "\": " + what);
    };
    if (name.empty()) throw bad("empty name");
    if (name.size() > kGgufMaxName)
        throw bad(strfmt("name longer than %llu bytes", ull(kGgufMaxName)));
    if (by_name_.count(name)) throw bad("added twice");
    if (tensors_.size() >= kGgufMaxTensors)
        throw bad(strfmt("more than %llu tensors", ull(kGgufMaxTensors)));
    if (ne.empty() || ne.size() > 4)
        throw bad(strfmt("%zu dimensions; 1 to 4 are allowed", ne.size()));
    for (int64_t d : ne)
        if (d < 0) throw bad("negative dimension in " + dims_text(ne));
    const GgmlTypeTraits* traits = ggml_type_traits(ggml_type);
    if (!traits) throw bad(strfmt("unknown ggml type %u", ggml_type));
    if (ne[0] % traits->block != 0)
        throw bad(strfmt("row length %lld is not a multiple of the %s block of %lld",
                         static_cast<long long>(ne[0]), traits->name,
                         static_cast<long long>(traits->block)));
    std::optional<uint64_t> need = tensor_bytes(*traits, ne);
    if (!need) throw bad("dimensions " + dims_text(ne) + " overflow the tensor size");
    if (nbytes && *need != *nbytes)
        throw bad(strfmt("%zu bytes given, but %s %s needs %llu", *nbytes, traits->name,
                         dims_text(ne).c_str(), ull(*need)));
    by_name_.emplace(name, tensors_.size());
    tensors_.push_back(
        {name, ggml_type, std::move(ne), static_cast<size_t>(*need), nullptr, {}, {}});
    return tensors_.back();
}

void GgufWriter::add_tensor_view(const std::string& name, uint32_t ggml_type,
                                 std::vector<int64_t> ne, const void* data, size_t nbytes)
{
    if (!data && nbytes)
        throw Error(ErrorKind::invalid_argument,
                    "GgufWriter: tensor \"" + printable(name) + "\": null data");
    add(name, ggml_type, std::move(ne), nbytes).view = static_cast<const uint8_t*>(data);
}

void GgufWriter::add_tensor_view(const std::string& name, cpu::WeightType type,
                                 std::vector<int64_t> ne, const void* data, size_t nbytes)
{
    add_tensor_view(name, cpu::weight_type_info(type).ggml_type, std::move(ne), data, nbytes);
}

void GgufWriter::add_tensor(const std::string& name, uint32_t ggml_type, std::vector<int64_t> ne,
                            std::vector<uint8_t> bytes)
{
    const size_t n = bytes.size();
    add(name, ggml_type, std::move(ne), n).owned = std::move(bytes);
}

void GgufWriter::add_tensor(const std::string& name, cpu::WeightType type, std::vector<int64_t> ne,
                            std::vector<uint8_t> bytes)
{
    add_tensor(name, cpu::weight_type_info(type).ggml_type, std::move(ne), std::move(bytes));
}

void GgufWriter::add_tensor_stream(const std::string& name, uint32_t ggml_type,
                                   std::vector<int64_t> ne, Producer producer)
{
    if (!producer)
        throw Error(ErrorKind::invalid_argument,
                    "GgufWriter: tensor \"" + printable(name) + "\": no producer");
    // The size follows from the type and dims.
    add(name, ggml_type, std::move(ne), std::nullopt).producer = std::move(producer);
}

void GgufWriter::add_tensor_stream(const std::string& name, cpu::WeightType type,
                                   std::vector<int64_t> ne, Producer producer)
{
    add_tensor_stream(name, cpu::weight_type_info(type).ggml_type, std::move(ne),
                      std::move(producer));
}

void GgufWriter::write(const std::string& path, const Progress& progress) const
{
    const uint64_t alignment = meta_.opt_u32("general.alignment").value_or(kGgufDefaultAlignment);

    // Header, metadata and tensor infos, with each tensor at the next aligned offset.
    std::vector<uint8_t> head;
    put<uint32_t>(head, kGgufMagic);
    put<uint32_t>(head, kGgufVersion);
    put<uint64_t>(head, tensors_.size());
    put<uint64_t>(head, meta_.size());
    for (const auto& [key, v] : meta_.entries()) {
        put_string(head, key);
        if (v.is_array()) {
            put<uint32_t>(head, static_cast<uint32_t>(GgufType::array));
            put<uint32_t>(head, static_cast<uint32_t>(v.type()));
            put<uint64_t>(head, v.size());
        } else {
            put<uint32_t>(head, static_cast<uint32_t>(v.type()));
        }
        if (v.type() == GgufType::string)
            for (const std::string& s : v.strings()) put_string(head, s);
        else
            put_bytes(head, v.bytes().data(), v.bytes().size());
    }
    uint64_t offset = 0, total = 0;
    for (const Tensor& t : tensors_) {
        put_string(head, t.name);
        put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
        for (int64_t d : t.ne) put<uint64_t>(head, static_cast<uint64_t>(d));
        put<uint32_t>(head, t.ggml_type);
        put<uint64_t>(head, offset);
        offset += align_up(t.nbytes, alignment);
        total += t.nbytes;
    }
    head.resize(align_up(head.size(), alignment), 0);

    // Buffered, so that producers may emit row by row.
    write_file_atomically(path, [&](const TempFile& file) {
        BufferedFile out(file);
        out.write(head.data(), head.size());
        uint64_t done = 0;
        for (const Tensor& t : tensors_) {
            if (progress)
                progress(total ? float(double(done) / double(total)) : 0.f, t.name.c_str());
            if (t.producer) {
                size_t emitted = 0;
                Emit emit = [&](const void* p, size_t n) {
                    if (n > t.nbytes - emitted)
                        throw Error(ErrorKind::invalid_argument,
                                    strfmt("GgufWriter: tensor \"%s\": the producer emitted more "
                                           "than its %zu bytes",
                                           printable(t.name).c_str(), t.nbytes));
                    out.write(p, n);
                    emitted += n;
                };
                t.producer(emit);
                if (emitted != t.nbytes)
                    throw Error(ErrorKind::invalid_argument,
                                strfmt("GgufWriter: tensor \"%s\": the producer emitted %zu of "
                                       "its %zu bytes",
                                       printable(t.name).c_str(), emitted, t.nbytes));
            } else {
                out.write(t.view ? t.view : t.owned.data(), t.nbytes);
            }
            out.zeros(static_cast<size_t>(align_up(t.nbytes, alignment) - t.nbytes));
            done += t.nbytes;
        }
        out.flush();
    });
    if (progress) progress(1.f, path.c_str());
}

} // namespace iris::model
