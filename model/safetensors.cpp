// Safetensors reading (validated, memory-mapped) and writing (atomic), plus bf16/f16 conversion.
//
// The header is untrusted input. It is parsed with a strict SAX handler that accepts only the
// shape of a safetensors header (an object of tensor entries plus `__metadata__`), so nothing
// is allocated for structure a valid header cannot have, and every count is capped while
// parsing. Offsets are checked against the mapped size before any pointer is formed.
#include "core/atomic-file.h"
#include "model/mapped-file.h"
#include "model/model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>

namespace iris::model {

namespace {

// Same cap as the reference implementation (safetensors/src/tensor.rs, MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderSize = 100'000'000;
// A real checkpoint has a few thousand tensors; 100k dummy entries is a known CPU/memory attack.
constexpr size_t kMaxTensors = 65'536;
constexpr size_t kMaxMetadataEntries = 65'536;
constexpr size_t kMaxDims = 8;

// ---------------------------------------------------------------------------------------------
// Dtypes

struct DTypeName
{
    const char* name;
    std::optional<DType> dtype; // nullopt: a valid safetensors dtype this build does not load
};

constexpr DTypeName kAllDtypes[] = {
    {"F32", DType::f32},       {"F16", DType::f16},       {"BF16", DType::bf16},
    {"I32", DType::i32},       {"I64", DType::i64},       {"F64", std::nullopt},
    {"I8", std::nullopt},      {"U8", DType::u8},         {"I16", std::nullopt},
    {"U16", std::nullopt},     {"U32", std::nullopt},     {"U64", std::nullopt},
    {"BOOL", std::nullopt},    {"F8_E4M3", std::nullopt}, {"F8_E5M2", std::nullopt},
    {"F8_E8M0", std::nullopt}, {"F4", std::nullopt},      {"F6_E2M3", std::nullopt},
    {"F6_E3M2", std::nullopt}, {"C64", std::nullopt},
};

// ---------------------------------------------------------------------------------------------
// Checked arithmetic

bool mul_overflows(uint64_t a, uint64_t b, uint64_t& out)
{
    return __builtin_mul_overflow(a, b, &out);
}

// ---------------------------------------------------------------------------------------------
// UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). Returns the
// offset of the first bad byte, or npos.
size_t find_invalid_utf8(const uint8_t* s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF; // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; ++k)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Header parsing

struct RawEntry
{
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    size_t n_offsets = 0;
};

// Accepts exactly: { "<tensor>": {"dtype": str, "shape": [uint...], "data_offsets": [uint, uint]},
// "__metadata__": {str: str, ...} }. The first violation stops the parse with a message.
class HeaderSax
{
public:
    using json = nlohmann::json;

    std::vector<RawEntry> entries;
    std::map<std::string, std::string> metadata;
    std::string error; // set when a handler returned false
    bool unsupported = false; // error is about depth or counts we refuse, not bad JSON

    bool null() { return scalar("null"); }
    bool boolean(bool) { return scalar("a boolean"); }
    bool number_integer(json::number_integer_t v)
    {
        if (v < 0) return fail_value("a negative number");
        return number(static_cast<uint64_t>(v));
    }
    bool number_unsigned(json::number_unsigned_t v) { return number(v); }
    bool number_float(json::number_float_t, const json::string_t&)
    {
        return fail_value("a non-integer number");
    }
    bool binary(json::binary_t&) { return scalar("binary data"); }

    bool string(json::string_t& s)
    {
        if (state_ == State::entry_value && key_ == Key::dtype) {
            cur_.dtype = std::move(s);
            state_ = State::entry;
            return true;
        }
        if (state_ == State::metadata_value) {
            metadata.emplace(std::move(meta_key_), std::move(s));
            state_ = State::metadata;
            return true;
        }
        return scalar("a string");
    }

    bool start_object(std::size_t)
    {
        switch (state_) {
        case State::start:
            state_ = State::top;
            return true;
        case State::top_value:
            if (in_metadata_key_) {
                state_ = State::metadata;
            } else {
                state_ = State::entry;
            }
            return true;
        default:
            return fail_value("an object");
        }
    }

    bool key(json::string_t& k)
    {
        if (state_ == State::top) {
            if (!top_keys_.insert(k).second)
                return fail("duplicate key \"" + k + "\" in the header");
            if (k == "__metadata__") {
                in_metadata_key_ = true;
            } else {
                in_metadata_key_ = false;
                if (entries.size() >= kMaxTensors) {
                    unsupported = true;
                    return fail(strfmt("more than %zu tensors in the header", kMaxTensors));
                }
                cur_ = RawEntry {};
                cur_.name = std::move(k);
            }
            state_ = State::top_value;
            return true;
        }
        if (state_ == State::entry) {
            bool* seen;
            if (k == "dtype") {
                key_ = Key::dtype;
                seen = &cur_.has_dtype;
            } else if (k == "shape") {
                key_ = Key::shape;
                seen = &cur_.has_shape;
            } else if (k == "data_offsets") {
                key_ = Key::offsets;
                seen = &cur_.has_offsets;
            } else {
                return fail("tensor \"" + cur_.name + "\" has an unknown field \"" + k + "\"");
            }
            if (*seen)
                return fail("tensor \"" + cur_.name + "\" has a duplicate field \"" + k + "\"");
            *seen = true;
            state_ = State::entry_value;
            return true;
        }
        if (state_ == State::metadata) {
            if (metadata.count(k) != 0) return fail("duplicate __metadata__ key \"" + k + "\"");
            if (metadata.size() >= kMaxMetadataEntries) {
                unsupported = true;
                return fail(strfmt("more than %zu __metadata__ entries", kMaxMetadataEntries));
            }
            meta_key_ = std::move(k);
            state_ = State::metadata_value;
            return true;
        }
        return fail("unexpected key \"" + k + "\"");
    }

    bool end_object()
    {
        switch (state_) {
        case State::top:
            state_ = State::done;
            return true;
        case State::metadata:
            state_ = State::top;
            return true;
        case State::entry:
            if (!cur_.has_dtype || !cur_.has_shape || !cur_.has_offsets) {
                const char* missing = !cur_.has_dtype ? "dtype"
                    : !cur_.has_shape                 ? "shape"
                                                      : "data_offsets";
                return fail("tensor \"" + cur_.name + "\" has no \"" + missing + "\" field");
            }
            entries.push_back(std::move(cur_));
            state_ = State::top;
            return true;
        default:
            return fail("unexpected end of object");
        }
    }

    bool start_array(std::size_t)
    {
        if (state_ == State::entry_value && (key_ == Key::shape || key_ == Key::offsets)) {
            state_ = key_ == Key::shape ? State::shape : State::offsets;
            return true;
        }
        return fail_value("an array");
    }

    bool end_array()
    {
        if (state_ == State::shape) {
            state_ = State::entry;
            return true;
        }
        if (state_ == State::offsets) {
            if (cur_.n_offsets != 2)
                return fail("tensor \"" + cur_.name + "\": data_offsets must have 2 elements");
            state_ = State::entry;
            return true;
        }
        return fail("unexpected end of array");
    }

    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception& ex)
    {
        // nlohmann's message already says "syntax error while parsing ... at line/column".
        std::string what = ex.what();
        error = strfmt("invalid JSON in the header at byte %zu: %s", position, what.c_str());
        return false;
    }

private:
    enum class State {
        start, // before the top-level object
        top, // inside the top-level object, expecting a key or its end
        top_value, // after a top-level key
        entry, // inside a tensor entry, expecting a key or its end
        entry_value, // after a tensor entry key
        shape, // inside "shape": [...]
        offsets, // inside "data_offsets": [...]
        metadata, // inside "__metadata__", expecting a key or its end
        metadata_value, // after a metadata key
        done,
    };
    enum class Key { dtype, shape, offsets };

    bool number(uint64_t v)
    {
        if (state_ == State::shape) {
            if (cur_.shape.size() >= kMaxDims)
                return fail(strfmt("tensor \"%s\" has more than %zu dimensions", cur_.name.c_str(),
                                   kMaxDims));
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                return fail("tensor \"" + cur_.name + "\" has a dimension that is too large");
            cur_.shape.push_back(static_cast<int64_t>(v));
            return true;
        }
        if (state_ == State::offsets) {
            if (cur_.n_offsets >= 2)
                return fail("tensor \"" + cur_.name + "\": data_offsets must have 2 elements");
            (cur_.n_offsets == 0 ? cur_.begin : cur_.end) = v;
            ++cur_.n_offsets;
            return true;
        }
        return fail_value("a number");
    }

    bool scalar(const char* what) { return fail_value(what); }

    // Describes what was expected where the unexpected value appeared.
    bool fail_value(const std::string& what)
    {
        switch (state_) {
        case State::start:
            return fail("the header is " + what + ", not a JSON object");
        case State::top_value:
            if (in_metadata_key_) return fail("__metadata__ must be an object, not " + what);
            return fail("tensor \"" + cur_.name + "\" must be an object, not " + what);
        case State::entry_value:
            if (key_ == Key::dtype)
                return fail("tensor \"" + cur_.name + "\": dtype must be a string, not " + what);
            if (key_ == Key::shape)
                return fail("tensor \"" + cur_.name + "\": shape must be an array, not " + what);
            return fail("tensor \"" + cur_.name + "\": data_offsets must be an array, not " + what);
        case State::shape:
            return fail("tensor \"" + cur_.name + "\": shape must hold non-negative integers, not "
                        + what);
        case State::offsets:
            return fail("tensor \"" + cur_.name
                        + "\": data_offsets must hold non-negative integers, not " + what);
        case State::metadata_value:
            return fail("__metadata__ value of \"" + meta_key_ + "\" must be a string, not "
                        + what);
        default:
            return fail("unexpected " + what);
        }
    }

    bool fail(std::string message)
    {
        if (error.empty()) error = std::move(message);
        return false;
    }

    State state_ = State::start;
    Key key_ = Key::dtype;
    bool in_metadata_key_ = false;
    RawEntry cur_;
    std::string meta_key_;
    std::set<std::string, std::less<>> top_keys_;
};

} // namespace

// =============================================================================================
// Dtypes and conversions

size_t dtype_size(DType dtype)
{
    switch (dtype) {
    case DType::f32:
        return 4;
    case DType::f16:
        return 2;
    case DType::bf16:
        return 2;
    case DType::i32:
        return 4;
    case DType::i64:
        return 8;
    case DType::u8:
        return 1;
    }
    throw Error(ErrorKind::invalid_argument, "dtype_size: unknown dtype");
}

const char* dtype_name(DType dtype)
{
    switch (dtype) {
    case DType::f32:
        return "F32";
    case DType::f16:
        return "F16";
    case DType::bf16:
        return "BF16";
    case DType::i32:
        return "I32";
    case DType::i64:
        return "I64";
    case DType::u8:
        return "U8";
    }
    return "?";
}

float bf16_to_f32(uint16_t v)
{
    return std::bit_cast<float>(static_cast<uint32_t>(v) << 16);
}

uint16_t f32_to_bf16(float v)
{
    uint32_t bits = std::bit_cast<uint32_t>(v);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) // NaN: keep sign and top payload, force quiet
        return static_cast<uint16_t>((bits >> 16) | 0x0040u);
    // Round to nearest even; a carry out of the mantissa correctly rounds up to the next
    // exponent (or to Inf).
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t v)
{
    uint32_t sign = static_cast<uint32_t>(v & 0x8000u) << 16;
    uint32_t exp = (v >> 10) & 0x1Fu;
    uint32_t mant = v & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13); // Inf or NaN (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        // Subnormal: value = mant * 2^-24, exact in f32.
        float f = static_cast<float>(mant) * 0x1p-24f;
        bits = sign | std::bit_cast<uint32_t>(f);
    }
    return std::bit_cast<float>(bits);
}

uint16_t f32_to_f16(float v)
{
    // After F. Giesen's float_to_half_fast3_rtne (public domain).
    uint32_t f = std::bit_cast<uint32_t>(v);
    const uint32_t sign = f & 0x80000000u;
    f ^= sign;
    uint16_t out;
    if (f >= (127u + 16u) << 23) { // >= 65536, Inf or NaN
        if (f > 0x7F800000u)
            out = static_cast<uint16_t>(0x7E00u | ((f >> 13) & 0x3FFu));
        else
            out = 0x7C00u;
    } else if (f < 113u << 23) { // below the smallest normal half: subnormal or zero
        // Adding 0.5 aligns the 10 mantissa bits at the bottom; the FPU rounds to nearest even.
        const uint32_t magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
        float sum = std::bit_cast<float>(f) + std::bit_cast<float>(magic);
        out = static_cast<uint16_t>(std::bit_cast<uint32_t>(sum) - magic);
    } else {
        uint32_t mant_odd = (f >> 13) & 1u;
        f += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu; // rebias, add rounding bias
        f += mant_odd;
        out = static_cast<uint16_t>(f >> 13); // a carry into the exponent yields Inf correctly
    }
    return static_cast<uint16_t>(out | (sign >> 16));
}

// =============================================================================================
// TensorInfo

int64_t TensorInfo::numel() const
{
    uint64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0 || mul_overflows(n, static_cast<uint64_t>(d), n)
            || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            throw Error(ErrorKind::invalid_argument,
                        "tensor \"" + name + "\": shape is negative or overflows");
    }
    return static_cast<int64_t>(n);
}

namespace {

// Checks that a TensorInfo's buffer really holds numel elements of its dtype.
size_t checked_count(const TensorInfo& t)
{
    uint64_t n = static_cast<uint64_t>(t.numel());
    uint64_t bytes;
    if (mul_overflows(n, dtype_size(t.dtype), bytes) || bytes != t.nbytes
        || (t.nbytes != 0 && t.data == nullptr))
        throw Error(ErrorKind::invalid_argument,
                    strfmt("tensor \"%s\": %zu bytes of data do not match its %s shape",
                           t.name.c_str(), t.nbytes, dtype_name(t.dtype)));
    return static_cast<size_t>(n);
}

template<typename T> T load(const uint8_t* p)
{
    T v;
    std::memcpy(&v, p, sizeof v); // the data need not be aligned
    return v;
}

} // namespace

std::vector<float> TensorInfo::to_f32() const
{
    size_t n = checked_count(*this);
    std::vector<float> out(n);
    switch (dtype) {
    case DType::f32:
        if (n) std::memcpy(out.data(), data, n * sizeof(float));
        break;
    case DType::bf16:
        for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load<uint16_t>(data + 2 * i));
        break;
    case DType::f16:
        for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load<uint16_t>(data + 2 * i));
        break;
    default:
        throw Error(
            ErrorKind::unsupported,
            strfmt("tensor \"%s\" is %s, not a float tensor", name.c_str(), dtype_name(dtype)));
    }
    return out;
}

std::vector<int64_t> TensorInfo::to_i64() const
{
    size_t n = checked_count(*this);
    std::vector<int64_t> out(n);
    switch (dtype) {
    case DType::i64:
        if (n) std::memcpy(out.data(), data, n * sizeof(int64_t));
        break;
    case DType::i32:
        for (size_t i = 0; i < n; ++i) out[i] = load<int32_t>(data + 4 * i);
        break;
    default:
        throw Error(
            ErrorKind::unsupported,
            strfmt("tensor \"%s\" is %s, not an integer tensor", name.c_str(), dtype_name(dtype)));
    }
    return out;
}

// =============================================================================================
// SafeTensors

struct SafeTensors::Impl
{
    std::string path;
    MappedFile map;
    std::vector<TensorInfo> tensors;
    std::map<std::string, size_t, std::less<>> by_name;
    std::map<std::string, std::string> metadata;
};

SafeTensors::SafeTensors() = default;
SafeTensors::SafeTensors(SafeTensors&&) noexcept = default;
SafeTensors& SafeTensors::operator=(SafeTensors&&) noexcept = default;
SafeTensors::~SafeTensors() = default;

SafeTensors SafeTensors::open(const std::string& path)
{
    auto bad = [&](const std::string& what) {
        return Error(ErrorKind::invalid_input, path + ": " + what);
    };

    SafeTensors st;
    st.impl_ = std::make_unique<Impl>();
    Impl& im = *st.impl_;
    im.path = path;

    im.map = MappedFile::open(path);
    const uint64_t file_size = im.map.size();
    if (file_size < 8)
        throw bad(strfmt("file is %llu bytes, shorter than the 8-byte header length",
                         static_cast<unsigned long long>(file_size)));
    const uint8_t* bytes = im.map.data();

    // Header length: little-endian u64.
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    if (n > kMaxHeaderSize)
        throw bad(strfmt("header length %llu exceeds the %llu-byte limit",
                         static_cast<unsigned long long>(n),
                         static_cast<unsigned long long>(kMaxHeaderSize)));
    if (n > file_size - 8)
        throw bad(strfmt("header length %llu runs past the end of the %llu-byte file",
                         static_cast<unsigned long long>(n),
                         static_cast<unsigned long long>(file_size)));
    const uint8_t* header = bytes + 8;
    const size_t header_len = static_cast<size_t>(n);
    if (size_t at = find_invalid_utf8(header, header_len); at != std::string::npos)
        throw bad(strfmt("header is not valid UTF-8 (byte %zu)", at));

    HeaderSax sax;
    bool ok = false;
    try {
        ok = nlohmann::json::sax_parse(header, header + header_len, &sax,
                                       nlohmann::json::input_format_t::json, /*strict=*/true);
    } catch (const std::exception& e) { // allocation failures or library exceptions
        throw bad(std::string("cannot parse the header: ") + e.what());
    }
    if (!ok) {
        throw Error(sax.unsupported ? ErrorKind::resource : ErrorKind::invalid_input,
                    path + ": " + (sax.error.empty() ? "invalid header" : sax.error));
    }

    // Check every entry's size before any pointer into the data section is formed.
    const uint64_t data_size = file_size - 8 - n;
    const uint8_t* data = header + header_len;
    struct Span
    {
        uint64_t begin, end;
        size_t index;
    };
    std::vector<Span> spans;
    spans.reserve(sax.entries.size());
    im.tensors.reserve(sax.entries.size());
    for (RawEntry& e : sax.entries) {
        const DTypeName* dn = nullptr;
        for (const DTypeName& d : kAllDtypes)
            if (e.dtype == d.name) dn = &d;
        if (!dn) throw bad("tensor \"" + e.name + "\" has an unknown dtype \"" + e.dtype + "\"");
        if (!dn->dtype)
            throw Error(ErrorKind::unsupported,
                        path + ": tensor \"" + e.name + "\" has dtype " + e.dtype
                            + ", which is not supported");
        const DType dtype = *dn->dtype;
        uint64_t bytes_needed = dtype_size(dtype);
        for (int64_t d : e.shape)
            if (mul_overflows(bytes_needed, static_cast<uint64_t>(d), bytes_needed))
                throw bad("tensor \"" + e.name + "\": shape x dtype size overflows");
        if (e.end < e.begin)
            throw bad(strfmt("tensor \"%s\": data_offsets [%llu, %llu] end before they begin",
                             e.name.c_str(), static_cast<unsigned long long>(e.begin),
                             static_cast<unsigned long long>(e.end)));
        if (e.end - e.begin != bytes_needed)
            throw bad(strfmt("tensor \"%s\": data_offsets span %llu bytes but its %s shape needs "
                             "%llu",
                             e.name.c_str(), static_cast<unsigned long long>(e.end - e.begin),
                             e.dtype.c_str(), static_cast<unsigned long long>(bytes_needed)));
        if (e.end > data_size)
            throw bad(strfmt("tensor \"%s\": data_offsets end %llu is past the %llu-byte data "
                             "section",
                             e.name.c_str(), static_cast<unsigned long long>(e.end),
                             static_cast<unsigned long long>(data_size)));
        spans.push_back({e.begin, e.end, spans.size()});
        TensorInfo t;
        t.name = std::move(e.name);
        t.dtype = dtype;
        t.shape = std::move(e.shape);
        t.nbytes = static_cast<size_t>(bytes_needed);
        t.data = data + e.begin;
        im.tensors.push_back(std::move(t));
    }

    // The data section must be covered exactly: no gaps, no overlaps, nothing left over.
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t expected = 0;
    for (const Span& s : spans) {
        const std::string& name = im.tensors[s.index].name;
        if (s.begin < expected)
            throw bad(strfmt("tensor \"%s\": data_offsets [%llu, %llu] overlap the previous tensor",
                             name.c_str(), static_cast<unsigned long long>(s.begin),
                             static_cast<unsigned long long>(s.end)));
        if (s.begin > expected)
            throw bad(strfmt("tensor \"%s\": data_offsets [%llu, %llu] leave a gap after byte %llu",
                             name.c_str(), static_cast<unsigned long long>(s.begin),
                             static_cast<unsigned long long>(s.end),
                             static_cast<unsigned long long>(expected)));
        expected = s.end;
    }
    if (expected != data_size)
        throw bad(strfmt("tensors cover %llu bytes but the data section holds %llu",
                         static_cast<unsigned long long>(expected),
                         static_cast<unsigned long long>(data_size)));

    // File order: by data offset.
    std::vector<TensorInfo> ordered;
    ordered.reserve(spans.size());
    for (const Span& s : spans) ordered.push_back(std::move(im.tensors[s.index]));
    im.tensors = std::move(ordered);
    for (size_t i = 0; i < im.tensors.size(); ++i) im.by_name.emplace(im.tensors[i].name, i);
    im.metadata = std::move(sax.metadata);
    return st;
}

const std::string& SafeTensors::path() const
{
    return impl_->path;
}
const std::vector<TensorInfo>& SafeTensors::tensors() const
{
    return impl_->tensors;
}
const std::map<std::string, std::string>& SafeTensors::metadata() const
{
    return impl_->metadata;
}

const TensorInfo* SafeTensors::find(std::string_view name) const
{
    auto it = impl_->by_name.find(name);
    return it == impl_->by_name.end() ? nullptr : &impl_->tensors[it->second];
}

const TensorInfo& SafeTensors::get(std::string_view name) const
{
    if (const TensorInfo* t = find(name)) return *t;
    throw Error(ErrorKind::not_found,
                impl_->path + ": no tensor named \"" + std::string(name) + "\"");
}

// =============================================================================================
// SafeTensorsWriter

void SafeTensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            const void* data, size_t nbytes)
{
    if (name.empty() || name == "__metadata__")
        throw Error(ErrorKind::invalid_argument,
                    "SafeTensorsWriter: invalid tensor name \"" + name + "\"");
    for (const Entry& e : entries_)
        if (e.name == name)
            throw Error(ErrorKind::invalid_argument,
                        "SafeTensorsWriter: tensor \"" + name + "\" added twice");
    if (shape.size() > kMaxDims)
        throw Error(ErrorKind::invalid_argument,
                    "SafeTensorsWriter: tensor \"" + name + "\" has too many dimensions");
    TensorInfo probe;
    probe.name = name;
    probe.dtype = dtype;
    probe.shape = shape;
    probe.nbytes = nbytes;
    probe.data = static_cast<const uint8_t*>(data);
    checked_count(probe); // shape x dtype must match nbytes
    Entry e {name, dtype, std::move(shape), {}};
    if (nbytes) e.bytes.assign(probe.data, probe.data + nbytes);
    entries_.push_back(std::move(e));
}

void SafeTensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape,
                                std::span<const float> values)
{
    add(name, DType::f32, std::move(shape), values.data(), values.size_bytes());
}

void SafeTensorsWriter::add_i64(const std::string& name, std::vector<int64_t> shape,
                                std::span<const int64_t> values)
{
    add(name, DType::i64, std::move(shape), values.data(), values.size_bytes());
}

void SafeTensorsWriter::set_metadata(const std::string& key, const std::string& value)
{
    metadata_[key] = value;
}

namespace {

std::string json_string(const std::string& s)
{
    try {
        return nlohmann::json(s).dump();
    } catch (const nlohmann::json::exception&) {
        throw Error(ErrorKind::invalid_argument,
                    "SafeTensorsWriter: name or metadata is not valid UTF-8: " + s);
    }
}

} // namespace

void SafeTensorsWriter::write(const std::string& path) const
{
    // Layout like the official writer: sorted by name, data contiguous in that order.
    std::vector<const Entry*> sorted;
    for (const Entry& e : entries_) sorted.push_back(&e);
    std::sort(sorted.begin(), sorted.end(),
              [](const Entry* a, const Entry* b) { return a->name < b->name; });

    std::string header = "{";
    bool first = true;
    if (!metadata_.empty()) {
        header += "\"__metadata__\":{";
        bool first_meta = true;
        for (const auto& [k, v] : metadata_) {
            if (!first_meta) header += ',';
            first_meta = false;
            header += json_string(k) + ':' + json_string(v);
        }
        header += '}';
        first = false;
    }
    uint64_t offset = 0;
    for (const Entry* e : sorted) {
        if (!first) header += ',';
        first = false;
        header += json_string(e->name) + ":{\"dtype\":\"" + dtype_name(e->dtype) + "\",\"shape\":[";
        for (size_t i = 0; i < e->shape.size(); ++i) {
            if (i) header += ',';
            header += std::to_string(e->shape[i]);
        }
        header += "],\"data_offsets\":[" + std::to_string(offset) + ',';
        offset += e->bytes.size();
        header += std::to_string(offset) + "]}";
    }
    header += '}';
    header.append((8 - header.size() % 8) % 8, ' '); // keeps the data section 8-byte aligned
    if (header.size() > kMaxHeaderSize)
        throw Error(ErrorKind::invalid_argument, path + ": header would exceed the size limit");

    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(header.size() >> (8 * i));

    write_file_atomically(path, [&](const TempFile& file) {
        file.write(len, sizeof len);
        file.write(header.data(), header.size());
        for (const Entry* e : sorted) file.write(e->bytes.data(), e->bytes.size());
    });
}

} // namespace iris::model
