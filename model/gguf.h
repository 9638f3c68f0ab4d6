// GGUF files (private to the model module): a validated, memory-mapped reader and an atomic,
// streaming writer of llama.cpp's weight format (GGUF versions 2 and 3, little-endian).
//
//   auto f = GgufFile::open("model.gguf");                      // validated, mmapped
//   uint32_t layers = f.metadata().get_u32("qwen2.block_count"); // any integer type that fits
//   const auto& tokens = f.metadata().get_string_array("tokenizer.ggml.tokens");
//   const GgufTensor& t = f.get("blk.0.attn_q.weight");          // ne = {cols, rows}
//   cpu::WeightType type = f.weight_type(t);                     // throws if Iris cannot use it
//
//   GgufWriter w;
//   w.set_string("general.architecture", "qwen2");
//   w.add_tensor_view("token_embd.weight", cpu::WeightType::q8_0, {896, 151936}, p, n);
//   w.write("out.gguf");                                          // temporary, fsync, rename
//
// Shapes: GGUF lists dimensions innermost first. ne[0] is the row length (the contiguous
// dimension), so a 2-D weight of the project's [rows, cols] has ne = {cols, rows};
// GgufTensor::shape() gives the outermost-first order the safetensors side uses.
//
// Every failure on bad input is an Error(invalid_input) "<path>: <what> at byte <offset>".
// Thread safety: an opened GgufFile is immutable and may be shared between threads.
#pragma once

#include "core/core.h"
#include "model/cpu/quant.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iris::model {

// =============================================================================================
// ggml tensor types

// Every GGML_TYPE_* a GGUF file may hold, including those Iris cannot compute on (iq*, q8_1,
// tq*, mxfp4, ...): the reader needs their sizes to validate any real file.
struct GgmlTypeTraits
{
    const char* name; // ggml's spelling: "f32", "q4_K", "iq2_xxs"
    int64_t block; // values per block
    size_t block_bytes; // bytes per block
};

// nullptr for an id that is unknown or whose support llama.cpp removed (4, 5, 31-33, 36-38).
const GgmlTypeTraits* ggml_type_traits(uint32_t ggml_type);
// "q4_K", or "unknown type 77".
std::string ggml_type_name(uint32_t ggml_type);

// =============================================================================================
// Metadata values

// The value types of GGUF metadata, numbered as in the file.
enum class GgufType : uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12,
};

const char* gguf_type_name(GgufType type); // "u8", ..., "bool", "string", "array"
// Bytes of one element of a fixed-size type; 0 for string and array.
size_t gguf_type_size(GgufType type);

// A typed metadata value: a scalar or a one-level array of a scalar or string type (nested
// arrays are not supported: no file llama.cpp writes for Qwen2 / InternLM2 / InternVL has them).
class GgufValue
{
public:
    GgufValue() = default; // the u8 0

    static GgufValue u8(uint8_t v);
    static GgufValue i8(int8_t v);
    static GgufValue u16(uint16_t v);
    static GgufValue i16(int16_t v);
    static GgufValue u32(uint32_t v);
    static GgufValue i32(int32_t v);
    static GgufValue u64(uint64_t v);
    static GgufValue i64(int64_t v);
    static GgufValue f32(float v);
    static GgufValue f64(double v);
    static GgufValue boolean(bool v);
    static GgufValue string(std::string v);

    static GgufValue array(std::span<const uint8_t> v);
    static GgufValue array(std::span<const int8_t> v);
    static GgufValue array(std::span<const uint16_t> v);
    static GgufValue array(std::span<const int16_t> v);
    static GgufValue array(std::span<const uint32_t> v);
    static GgufValue array(std::span<const int32_t> v);
    static GgufValue array(std::span<const uint64_t> v);
    static GgufValue array(std::span<const int64_t> v);
    static GgufValue array(std::span<const float> v);
    static GgufValue array(std::span<const double> v);
    static GgufValue bool_array(const std::vector<bool>& v);
    static GgufValue string_array(std::vector<std::string> v);
    // An array of a fixed-size type from its little-endian bytes (bool elements must be 0 or
    // 1). Throws Error(invalid_argument) for string / array types or a partial element.
    static GgufValue array_from_bytes(GgufType type, std::span<const uint8_t> bytes);

    GgufType type() const { return type_; } // of the elements, for an array
    bool is_array() const { return array_; }
    size_t size() const; // elements: 1 for a scalar
    std::string type_name() const; // "u32", "string", "i32[]"

    // Element i (0 for a scalar) converted without loss, or nullopt when the type differs or
    // the value does not fit: as_i64 / as_u64 take any integer type, as_f64 f32 or f64.
    std::optional<int64_t> as_i64(size_t i = 0) const;
    std::optional<uint64_t> as_u64(size_t i = 0) const;
    std::optional<double> as_f64(size_t i = 0) const;
    std::optional<bool> as_bool(size_t i = 0) const;
    const std::string* as_string(size_t i = 0) const; // nullptr unless a string (array)
    const std::vector<std::string>& strings() const; // the string elements; empty otherwise
    std::span<const uint8_t> bytes() const; // little-endian elements of a fixed-size type

    bool operator==(const GgufValue&) const = default;

private:
    friend struct GgufValueBuilder; // the reader's access (gguf.cpp)
    GgufType type_ = GgufType::u8;
    bool array_ = false;
    std::vector<uint8_t> bytes_ = std::vector<uint8_t>(1, 0);
    std::vector<std::string> strings_;
};

// Metadata in file (or insertion) order with a lookup by key. The typed getters throw
// Error(not_found) naming the origin and key when the key is missing, and Error(invalid_input)
// naming the key, the expected and the actual type when the value has another type or does
// not fit; the opt_ variants return nullopt for a missing key and throw the same otherwise.
// Integer getters accept any integer type whose value fits (converters write u32 for most
// counts, other writers i32 or u64); float getters accept f32 and f64.
class GgufMetadata
{
public:
    explicit GgufMetadata(std::string origin = "GGUF metadata");

    const std::string& origin() const { return origin_; } // the file path, in messages
    size_t size() const { return entries_.size(); }
    const std::vector<std::pair<std::string, GgufValue>>& entries() const { return entries_; }
    const GgufValue* find(std::string_view key) const;
    const GgufValue& get(std::string_view key) const; // throws Error(not_found)
    // Replaces the value of an existing key in place (its position is kept), else appends.
    void set(const std::string& key, GgufValue value);

    uint8_t get_u8(std::string_view key) const;
    uint16_t get_u16(std::string_view key) const;
    uint32_t get_u32(std::string_view key) const;
    uint64_t get_u64(std::string_view key) const;
    int32_t get_i32(std::string_view key) const;
    int64_t get_i64(std::string_view key) const;
    float get_f32(std::string_view key) const;
    double get_f64(std::string_view key) const;
    bool get_bool(std::string_view key) const;
    const std::string& get_string(std::string_view key) const;
    const std::vector<std::string>& get_string_array(std::string_view key) const;
    std::vector<int32_t> get_i32_array(std::string_view key) const;
    std::vector<int64_t> get_i64_array(std::string_view key) const;
    std::vector<float> get_f32_array(std::string_view key) const;

    std::optional<uint32_t> opt_u32(std::string_view key) const;
    std::optional<uint64_t> opt_u64(std::string_view key) const;
    std::optional<int32_t> opt_i32(std::string_view key) const;
    std::optional<int64_t> opt_i64(std::string_view key) const;
    std::optional<float> opt_f32(std::string_view key) const;
    std::optional<bool> opt_bool(std::string_view key) const;
    std::optional<std::string> opt_string(std::string_view key) const;
    const std::vector<std::string>* opt_string_array(std::string_view key) const;
    std::optional<std::vector<int32_t>> opt_i32_array(std::string_view key) const;
    std::optional<std::vector<float>> opt_f32_array(std::string_view key) const;

private:
    std::string origin_;
    std::vector<std::pair<std::string, GgufValue>> entries_;
    std::map<std::string, size_t, std::less<>> index_;
};

// =============================================================================================
// Reading

// A tensor of a GGUF file. `data` points into the mapped file and stays valid as long as the
// GgufFile lives; it is aligned to GgufFile::alignment() (32 unless the file says otherwise).
struct GgufTensor
{
    std::string name;
    uint32_t ggml_type = 0;
    std::optional<cpu::WeightType> type; // nullopt: a valid ggml type Iris cannot compute on
    // GGUF order: ne[0] innermost (the row length); 1 to 4 entries, each >= 0 (a 0 makes an
    // empty tensor, which llama.cpp's reader accepts too).
    std::vector<int64_t> ne;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    uint64_t offset = 0; // of data from the start of the file

    int64_t numel() const;
    int64_t row_length() const { return ne[0]; }
    int64_t rows() const; // ne[1]·ne[2]·ne[3]
    std::vector<int64_t> shape() const; // outermost first: {ne[n-1], ..., ne[0]}
};

// One GGUF file, memory-mapped read-only. open() validates everything before it allocates
// from a number the file controls: magic, version (2 or 3; 1 and byte-swapped big-endian files
// are rejected by name), the counts against caps and against the bytes left, every string and
// array length, value types, duplicate keys, general.alignment (a u32 power of two), tensor
// names (unique, at most 63 bytes as llama.cpp's reader requires), 1 to 4 dimensions whose
// product does not overflow, known ggml types, ne[0] a multiple of the block, aligned offsets,
// every tensor inside the file and no two overlapping. Tensors of types Iris cannot compute on
// are accepted; weight_type() reports them when they are used.
class GgufFile
{
public:
    static GgufFile open(const std::string& path);
    // The same validation of bytes held in memory (an embedded file, or tests under
    // AddressSanitizer, which sees reads past a heap buffer but not past a mapping); `origin`
    // stands for the path in messages. Tensor data is then aligned relative to bytes.data().
    static GgufFile from_bytes(std::vector<uint8_t> bytes, const std::string& origin);
    GgufFile(GgufFile&&) noexcept;
    GgufFile& operator=(GgufFile&&) noexcept;
    ~GgufFile();

    const std::string& path() const;
    uint32_t version() const;
    size_t alignment() const;
    uint64_t file_size() const;
    uint64_t data_offset() const; // where the data section starts
    const GgufMetadata& metadata() const;
    const std::vector<GgufTensor>& tensors() const; // in file order
    const GgufTensor* find(std::string_view name) const;
    const GgufTensor& get(std::string_view name) const; // throws Error(not_found) naming the file
    // The tensor's Iris type; Error(unsupported) naming the file, tensor and ggml type if none.
    cpu::WeightType weight_type(const GgufTensor& t) const;

private:
    GgufFile();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Caps the reader enforces (the writer refuses to exceed them too).
constexpr uint64_t kGgufMaxTensors = uint64_t(1) << 16;
constexpr uint64_t kGgufMaxKv = uint64_t(1) << 20;
constexpr uint64_t kGgufMaxArray = uint64_t(1) << 24; // elements of one metadata array
constexpr uint64_t kGgufMaxString = uint64_t(1) << 30; // bytes of one metadata string
constexpr uint64_t kGgufMaxKey = 65535; // bytes of a key, as the spec says
constexpr uint64_t kGgufMaxName = 63; // bytes of a tensor name (llama.cpp: < GGML_MAX_NAME)
constexpr uint32_t kGgufDefaultAlignment = 32;

// =============================================================================================
// Writing

// Writes a GGUF v3 file: metadata in insertion order, tensors in the order added, each at an
// offset aligned to general.alignment (32 unless set) and zero-padded to it. Tensor bytes are
// never copied by the writer unless the caller hands them over: add_tensor_view() keeps a
// pointer (valid until write() returns), add_tensor() takes ownership, add_tensor_stream()
// produces the bytes at write time, so a quantizer can write tensor by tensor.
class GgufWriter
{
public:
    // Receives the bytes of one tensor in order, in pieces of any size.
    using Emit = std::function<void(const void* data, size_t n)>;
    // Called once at write time; must emit exactly the tensor's nbytes.
    using Producer = std::function<void(const Emit& emit)>;
    // The fraction of tensor bytes written in [0, 1] and the tensor being written.
    using Progress = std::function<void(float fraction, const char* what)>;

    GgufWriter();

    // Throws Error(invalid_argument) for an empty or over-long key, and for a general.alignment
    // that is not a u32 power of two.
    void set(const std::string& key, GgufValue value);
    void set_u8(const std::string& key, uint8_t v) { set(key, GgufValue::u8(v)); }
    void set_i8(const std::string& key, int8_t v) { set(key, GgufValue::i8(v)); }
    void set_u16(const std::string& key, uint16_t v) { set(key, GgufValue::u16(v)); }
    void set_i16(const std::string& key, int16_t v) { set(key, GgufValue::i16(v)); }
    void set_u32(const std::string& key, uint32_t v) { set(key, GgufValue::u32(v)); }
    void set_i32(const std::string& key, int32_t v) { set(key, GgufValue::i32(v)); }
    void set_u64(const std::string& key, uint64_t v) { set(key, GgufValue::u64(v)); }
    void set_i64(const std::string& key, int64_t v) { set(key, GgufValue::i64(v)); }
    void set_f32(const std::string& key, float v) { set(key, GgufValue::f32(v)); }
    void set_f64(const std::string& key, double v) { set(key, GgufValue::f64(v)); }
    void set_bool(const std::string& key, bool v) { set(key, GgufValue::boolean(v)); }
    void set_string(const std::string& key, std::string v);
    void set_string_array(const std::string& key, std::vector<std::string> v);
    void set_f32_array(const std::string& key, std::span<const float> v);
    void set_i32_array(const std::string& key, std::span<const int32_t> v);
    const GgufMetadata& metadata() const { return meta_; }

    // Each throws Error(invalid_argument) naming the tensor for an empty, over-long or repeated
    // name, no or more than 4 dimensions, a negative dimension, a product that overflows, an
    // unknown ggml type, ne[0] not a multiple of the block, or nbytes that differ from what
    // the type and dims need.
    void add_tensor_view(const std::string& name, uint32_t ggml_type, std::vector<int64_t> ne,
                         const void* data, size_t nbytes);
    void add_tensor_view(const std::string& name, cpu::WeightType type, std::vector<int64_t> ne,
                         const void* data, size_t nbytes);
    void add_tensor(const std::string& name, uint32_t ggml_type, std::vector<int64_t> ne,
                    std::vector<uint8_t> bytes);
    void add_tensor(const std::string& name, cpu::WeightType type, std::vector<int64_t> ne,
                    std::vector<uint8_t> bytes);
    void add_tensor_stream(const std::string& name, uint32_t ggml_type, std::vector<int64_t> ne,
                           Producer producer);
    void add_tensor_stream(const std::string& name, cpu::WeightType type, std::vector<int64_t> ne,
                           Producer producer);
    size_t tensor_count() const { return tensors_.size(); }

    // Writes <path>.tmp-XXXXXX in the same folder, fsyncs and renames it over path. On any
    // failure (Error(io) from the system, a producer that throws or emits the wrong number of
    // bytes) the temporary is removed, nothing is left under path and an existing file there
    // is untouched.
    void write(const std::string& path, const Progress& progress = {}) const;

private:
    struct Tensor
    {
        std::string name;
        uint32_t ggml_type;
        std::vector<int64_t> ne;
        size_t nbytes;
        const uint8_t* view = nullptr;
        std::vector<uint8_t> owned;
        Producer producer;
    };
    // nbytes: what the caller gives, checked against type and dims; nullopt: computed.
    Tensor& add(const std::string& name, uint32_t ggml_type, std::vector<int64_t> ne,
                std::optional<size_t> nbytes);

    GgufMetadata meta_;
    std::vector<Tensor> tensors_;
    std::map<std::string, size_t, std::less<>> by_name_;
};

} // namespace iris::model
