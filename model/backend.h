// The backend seam (private to the model module): the memory and the operations the vision
// tower, the decoder and the KV cache run on, in the spirit of ggml's backend table. The
// networks call only this; `cpu_backend()` is the reference every other backend is tested
// against (tests/model/backend_ops_test.cpp).
//
// Memory. Every pointer an operation takes or returns is an address in the backend's memory
// (a device pointer for a GPU), unless its comment says host. Buffers are the only way to get
// such memory: alloc() for activations and the KV cache, wrap() for weights that live in host
// or memory-mapped memory (the CPU backend uses them in place; a device backend copies them
// once, at load), upload() / download() to cross. A Buffer frees what it owns when it goes;
// backends live as long as the process (they are never destroyed), so a buffer may outlive
// the model or cache that made it.
//
// Operations are queued in order on the backend and may run asynchronously: download() and
// synchronize() wait for everything queued before them. The CPU backend runs each at once on
// the default thread pool. Shapes use the conventions of model/cpu/ops.h: row-major, "[rows,
// cols]" names a contiguous buffer unless a row stride (ld) is given, weights are PyTorch's
// nn.Linear [out, in].
//
// Every operation is required: a backend that lacks a weight or cache type must still accept
// it, for instance by converting at wrap() time. The optional ones say so and have a default
// built from the required ones.
#pragma once

#include "model/cpu/quant.h"
#include "model/model.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace iris::model {

class Backend;

// A read-only weight matrix [rows, cols], row-major and contiguous, in its stored type
// (cpu/quant.h: f32, bf16, f16 or one of ggml's block formats), in backend memory.
struct WeightMatrix
{
    const void* data = nullptr;
    cpu::WeightType type = cpu::WeightType::f32;
    int64_t rows = 0, cols = 0;
    // BF16 products of many rows may round the activations to bf16 (--precision bf16).
    bool bf16_activations = false;

    explicit operator bool() const { return data != nullptr; }
    size_t row_bytes() const { return cpu::weight_row_bytes(type, cols); }
    size_t bytes() const { return size_t(rows) * row_bytes(); }
    const void* row(int64_t r) const
    {
        return static_cast<const char*>(data) + size_t(r) * row_bytes();
    }
    static WeightMatrix f32(const float* data, int64_t rows, int64_t cols)
    {
        return {data, cpu::WeightType::f32, rows, cols, false};
    }
};

// How an SKVQ row is coded (ops.h: skvq_format).
struct SkvqFormat
{
    int bits = 2; // bits per stored code: 2, 4 or 8
    int levels = 4; // codes 0..levels-1: 2^bits, or 3 for the 1.5-bit ternary format
    int group = 32; // channels per group
};

// A run of consecutive cached tokens whose keys and values are each stored in one KvType (a
// block of the paged KV cache). Per KV head h, n_tokens rows of kv_row_bytes(type, D) bytes:
// keys from k + h·k_head_stride, values from v + h·v_head_stride.
// SKVQ runs (k_type / v_type skvq) hold rows in their stored channel order: perm [n_kv, D]
// says which channel each stored position holds, and fmt how the row is coded. The run list
// is host memory; k, v and the perms point into the backend's.
struct KvRun
{
    const uint8_t* k = nullptr;
    const uint8_t* v = nullptr;
    size_t k_head_stride = 0, v_head_stride = 0;
    int64_t n_tokens = 0;
    KvType k_type = KvType::f32, v_type = KvType::f32;
    const int32_t* k_perm = nullptr; // skvq only
    const int32_t* v_perm = nullptr;
    SkvqFormat k_fmt, v_fmt;
};

// Memory on a backend: owned (alloc, or wrap on a device) or a view of host memory (the CPU
// backend's wrap). Move-only.
class Buffer
{
public:
    Buffer() = default;
    Buffer(Buffer&& o) noexcept { *this = std::move(o); }
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { reset(); }

    void* data() const { return data_; }
    template<typename T> T* as() const { return static_cast<T*>(data_); }
    size_t size() const { return size_; }
    // Whether the host may read and write data() directly.
    bool host() const { return host_; }
    explicit operator bool() const { return data_ != nullptr; }
    void reset();

private:
    friend class Backend;
    Backend* owner_ = nullptr; // null: a view, nothing to free
    void* data_ = nullptr;
    size_t size_ = 0;
    bool host_ = true;
};

// Per-caller scratch of an operation that needs some (attention): one per KV cache, so that
// caches used from different threads never share it.
class Workspace
{
public:
    virtual ~Workspace() = default;
    virtual size_t bytes() const = 0;
};

class Backend
{
public:
    virtual ~Backend() = default;
    virtual std::string_view name() const = 0;

    // --- Memory -------------------------------------------------------------------------------
    // `bytes` of backend memory, 64-byte aligned, uninitialised. Throws Error(resource) when
    // the backend has no room.
    virtual Buffer alloc(size_t bytes) = 0;
    // Host memory (owned elsewhere, alive as long as the buffer) as backend memory.
    virtual Buffer wrap(const void* host, size_t bytes) = 0;
    virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
    virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
    // Rows of `row_bytes` from src (stride src_ld bytes) to dst (stride dst_ld), both in
    // backend memory.
    virtual void copy_rows(void* dst, size_t dst_ld, const void* src, size_t src_ld,
                           size_t row_bytes, int64_t n_rows)
        = 0;
    void copy(void* dst, const void* src, size_t bytes) { copy_rows(dst, 0, src, 0, bytes, 1); }
    // Waits for every queued operation (optional; the CPU backend has none queued).
    virtual void synchronize() { }
    virtual std::unique_ptr<Workspace> workspace() = 0;

    // --- Products ------------------------------------------------------------------------------
    // y[m, w.rows] (row stride ldy) = x[m, w.cols] (row stride ldx) · wᵀ + bias (may be null),
    // for every weight type. Up to kExactRows rows, each row of y has the bits it has when
    // multiplied alone, so that the sequences of a batched step do not change each other's
    // tokens (backend_ops_test checks it).
    static constexpr int64_t kExactRows = 8;
    // The rows up to which that holds for this weight: kExactRows, or more where the backend's
    // kernel sums each row the same way whatever the number of rows.
    virtual int64_t exact_rows(const WeightMatrix& w) const
    {
        (void)w;
        return kExactRows;
    }
    virtual void linear(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w,
                        const float* bias, float* y, int64_t ldy)
        = 0;
    void linear(const float* x, int64_t m, const WeightMatrix& w, const float* bias, float* y)
    {
        linear(x, m, w.cols, w, bias, y, w.rows);
    }
    // out[i, :] = rows ids[i] (host) of the table, as f32 (an embedding lookup).
    virtual void get_rows(const WeightMatrix& table, std::span<const int32_t> ids, float* out) = 0;

    // --- Normalisation and element-wise ops; y may alias x ------------------------------------
    // LayerNorm over the last dim (biased variance, as torch.nn.LayerNorm); beta may be null.
    virtual void layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma,
                            const float* beta, float eps, float* y)
        = 0;
    // y = x · rsqrt(mean(x²) + eps) · gamma.
    virtual void rms_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, float eps,
                          float* y)
        = 0;
    // x = 0.5·x·(1 + erf(x/√2)) over n values.
    virtual void gelu_erf(float* x, int64_t n) = 0;
    // out = silu(gate) · up over n values; out may alias gate or up.
    virtual void silu_mul(const float* gate, const float* up, float* out, int64_t n) = 0;
    // x[r, c] += y[r, c] (scale null) or scale[c] · y[r, c]; x, y [rows, cols].
    virtual void add_rows(float* x, const float* y, const float* scale, int64_t rows, int64_t cols)
        = 0;

    // --- Rotary position embedding (HF rotate_half layout; ops.h: rope_*) ------------------------
    // cos/sin tables [n, D/2] for positions pos0..pos0+n-1 scaled by 1/pos_scale, with the
    // inverse frequencies of `base` (host inputs, backend outputs).
    virtual void rope_tables(int64_t pos0, int64_t n, double base, int head_dim, float pos_scale,
                             float* cos_out, float* sin_out)
        = 0;
    // Rotates x [n_tokens, n_heads, D] (row stride ld) in place; pairs: ggml's channel order.
    virtual void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
                      const float* cos_tab, const float* sin_tab, bool pairs)
        = 0;

    // --- Attention -------------------------------------------------------------------------------
    // Bidirectional attention of n_seq sequences of n_tok tokens (InternViT): qkv
    // [n_seq·n_tok, 3·n_heads·D] -> out [n_seq·n_tok, n_heads·D].
    virtual void attention_full(const float* qkv, int64_t n_seq, int64_t n_tok, int n_heads,
                                int head_dim, float scale, float* out)
        = 0;
    // Causal GQA attention of n_new queries at positions n_past.. over the cached tokens the
    // runs hold, for every KV type (ops.h: attention_causal).
    virtual void attention_causal(const float* q, int64_t ldq, int64_t n_new, int64_t n_past,
                                  int n_heads, int n_kv_heads, int head_dim,
                                  std::span<const KvRun> runs, float scale, float* out,
                                  Workspace& ws)
        = 0;

    // --- KV cache rows (ops.h: kv_quantize_row, skvq_quantize_row) -------------------------------
    // n_rows rows of head_dim values (src stride src_ld floats) into rows of `type` (dst stride
    // dst_ld bytes); f32 copies.
    virtual void kv_store(KvType type, const float* src, int64_t n_rows, int64_t src_ld,
                          int head_dim, uint8_t* dst, size_t dst_ld)
        = 0;
    // The same into SKVQ rows; row i uses perm + i·perm_ld and clip + i·clip_ld.
    virtual void skvq_store(const SkvqFormat& fmt, const float* src, int64_t n_rows, int64_t src_ld,
                            int head_dim, const int32_t* perm, int64_t perm_ld, const float* clip,
                            int64_t clip_ld, uint8_t* dst, size_t dst_ld)
        = 0;

    // --- Vision ----------------------------------------------------------------------------------
    // im2col of a stride-p, kernel-p convolution: pixels [n, c, s, s] -> [n·(s/p)², c·p·p].
    virtual void im2col_patches(const float* pixels, int64_t n, int c, int s, int p, float* patches)
        = 0;
    // torch's bicubic interpolate (align_corners=False) of src [c, ih, iw] to dst [c, oh, ow].
    virtual void bicubic_resize(const float* src, int64_t c, int ih, int iw, int oh, int ow,
                                float* dst)
        = 0;
    // InternVL's pixel shuffle and flatten: x [n, h, w, c] -> out [n, (h/r)·(w/r), r·r·c].
    virtual void pixel_shuffle(const float* x, int64_t n, int h, int w, int c, int r, bool v2,
                               float* out)
        = 0;

    // --- Sampling helpers -----------------------------------------------------------------------
    // The index of the largest of x[0, n) (the first on a tie), to the host (optional).
    virtual int64_t argmax(const float* x, int64_t n);

protected:
    friend class Buffer;
    // Hands out memory the backend allocated; free() gets it back.
    Buffer make_buffer(void* data, size_t bytes, bool owned, bool host);
    virtual void free(void* data, size_t bytes) = 0;
};

// The CPU backend (model/cpu/backend-cpu.cpp): ops.h's kernels on the default thread pool,
// host memory, weights used in place.
Backend& cpu_backend();
// Every backend this build has and this machine can run, the CPU's first.
std::vector<Backend*> available_backends();
// The backend of a device name (LoadOptions::device): "cpu", "cuda" (= "cuda:0"), "cuda:N", or
// "" for $IRIS_DEVICE, else the CPU. Error(invalid_argument) for a name of no known kind,
// Error(unsupported) for a CUDA device in a build without the CUDA backend, Error(not_found) for a
// GPU this machine lacks; each message lists the devices there are.
Backend& device_backend(std::string_view device);

// Grows `buf` on `backend` to hold at least n values of T (contents not kept) and returns it:
// scratch that is reused from one forward to the next.
template<typename T> T* grow(Backend& backend, Buffer& buf, size_t n)
{
    if (buf.size() < n * sizeof(T)) buf = backend.alloc(n * sizeof(T));
    return buf.as<T>();
}

} // namespace iris::model
