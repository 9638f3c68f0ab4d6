// The CUDA backend: the seam of model/backend.h on one GPU. Memory is the device's (wrap()
// copies), every operation is queued on the backend's one stream, and a recursive mutex makes
// each call's queueing atomic, so callers on several threads (one KV cache each) may share the
// backend and its scratch: work on one stream runs in the order it was queued, so scratch is
// reused safely from one call to the next.
//
// Products. f32 weights go straight to cublasSgemm. Every other type is dequantized on the
// device (bit for bit cpu::dequantize_row) into an f32 panel of at most kPanelValues and then
// multiplied with cublasSgemm: cuBLAS has no GEMM of f16/bf16 weights with f32 activations, and
// rounding the activations would change what the CPU computes. Up to kMatvecMaxRows rows take
// a matrix-vector kernel instead that reads each weight once. BF16 weights marked
// bf16_activations meet activations rounded to bf16 in cublasGemmEx (f32 accumulation), as the
// CPU's vdpbf16ps path. cuBLAS runs in its default math mode: no TF32.
#include "model/cuda/backend-cuda.h"

#include "core/core.h"
#include "model/cpu/ops.h"
#include "model/cuda/kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace iris::model {

namespace {

using cpu::WeightType;
using cuda::KvCode;

static_assert(int(KvCode::f32) == int(KvType::f32) && int(KvCode::f16) == int(KvType::f16)
              && int(KvCode::q8) == int(KvType::q8) && int(KvCode::q4) == int(KvType::q4)
              && int(KvCode::skvq) == int(KvType::skvq));

// Values of a dequantized weight panel (64 MiB of f32): large enough for full-rate SGEMMs,
// small enough to sit beside the model.
constexpr int64_t kPanelValues = int64_t(16) << 20;

[[noreturn]] void fail(cudaError_t e, const char* what)
{
    cudaGetLastError(); // clear a non-sticky error, so the next call does not report it again
    const ErrorKind kind = e == cudaErrorMemoryAllocation ? ErrorKind::resource
        : e == cudaErrorNoKernelImageForDevice || e == cudaErrorUnsupportedPtxVersion
            || e == cudaErrorInsufficientDriver
        ? ErrorKind::unsupported
        : ErrorKind::internal;
    throw Error(kind, strfmt("CUDA: %s: %s", what, cudaGetErrorString(e)));
}

void check(cudaError_t e, const char* what)
{
    if (e != cudaSuccess) fail(e, what);
}

void check(cublasStatus_t s, const char* what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return;
    throw Error(s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorKind::resource : ErrorKind::internal,
                strfmt("cuBLAS: %s: %s", what, cublasGetStatusString(s)));
}

// cuBLAS takes int sizes.
int to_int(int64_t v, const char* what)
{
    if (v < 0 || v > INT_MAX)
        throw Error(
            ErrorKind::unsupported,
            strfmt("CUDA: %s of %lld does not fit cuBLAS's int", what, static_cast<long long>(v)));
    return int(v);
}

cuda::DeviceMatrix device_matrix(const WeightMatrix& w)
{
    return {w.data, w.type, w.rows, w.cols, w.row_bytes()};
}

size_t kv_side_bytes(KvType type, const SkvqFormat& fmt, int head_dim)
{
    return type == KvType::skvq ? cpu::skvq_row_bytes(fmt, head_dim)
                                : cpu::kv_row_bytes(type, head_dim);
}

// attention_causal's scratch: the attended keys and values as f32 [n_kv, n_keys, D] and the
// run list on the device.
struct CudaWorkspace final : Workspace
{
    Buffer keys, values, runs;
    size_t bytes() const override { return keys.size() + values.size() + runs.size(); }
};

class CudaBackend final : public Backend
{
public:
    explicit CudaBackend(int device)
        : device_(device)
        , name_(strfmt("cuda:%d", device))
    {
        check(cudaSetDevice(device), "cudaSetDevice");
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
        check(cublasCreate(&blas_), "cublasCreate");
        check(cublasSetStream(blas_, stream_), "cublasSetStream");
        check(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    }

    std::string_view name() const override { return name_; }

    // --- Memory ----------------------------------------------------------------------------------

    Buffer alloc(size_t bytes) override
    {
        auto lock = enter();
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1)); // 256-byte aligned
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            throw Error(ErrorKind::resource,
                        strfmt("%s: out of device memory allocating %.1f MB", name_.c_str(),
                               double(bytes) / 1e6));
        }
        check(e, "cudaMalloc");
        return make_buffer(p, bytes, true, false);
    }
    Buffer wrap(const void* host, size_t bytes) override
    {
        Buffer b = alloc(bytes);
        upload(b.data(), host, bytes);
        return b;
    }
    // From pageable memory (all the project passes) the copy has taken the bytes when the call
    // returns, so the host may reuse them at once.
    void upload(void* dst, const void* src, size_t bytes) override
    {
        if (!bytes) return;
        auto lock = enter();
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "upload");
    }
    void download(void* dst, const void* src, size_t bytes) override
    {
        if (!bytes) return;
        auto lock = enter();
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "download");
        check(cudaStreamSynchronize(stream_), "download");
    }
    void copy_rows(void* dst, size_t dst_ld, const void* src, size_t src_ld, size_t row_bytes,
                   int64_t n_rows) override
    {
        if (n_rows <= 0 || row_bytes == 0) return;
        auto lock = enter();
        if (n_rows == 1) {
            check(cudaMemcpyAsync(dst, src, row_bytes, cudaMemcpyDeviceToDevice, stream_),
                  "copy_rows");
        } else if (dst_ld >= row_bytes && src_ld >= row_bytes) {
            check(cudaMemcpy2DAsync(dst, dst_ld, src, src_ld, row_bytes, size_t(n_rows),
                                    cudaMemcpyDeviceToDevice, stream_),
                  "copy_rows");
        } else {
            for (int64_t i = 0; i < n_rows; ++i)
                check(cudaMemcpyAsync(static_cast<char*>(dst) + size_t(i) * dst_ld,
                                      static_cast<const char*>(src) + size_t(i) * src_ld, row_bytes,
                                      cudaMemcpyDeviceToDevice, stream_),
                      "copy_rows");
        }
    }
    void synchronize() override
    {
        auto lock = enter();
        check(cudaStreamSynchronize(stream_), "synchronize");
    }
    std::unique_ptr<Workspace> workspace() override { return std::make_unique<CudaWorkspace>(); }

    // --- Products --------------------------------------------------------------------------------

    void linear(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, const float* bias,
                float* y, int64_t ldy) override
    {
        if (m <= 0 || w.rows <= 0) return;
        auto lock = enter();
        const int64_t n = w.rows, k = w.cols;
        const cuda::DeviceMatrix dm = device_matrix(w);
        if (m <= cuda::kMatvecMaxRows) {
            // Every type, f32 too: each row gets the bits it gets alone (Backend::kExactRows),
            // which cuBLAS, choosing its kernel by shape, does not promise.
            check(cuda::matvec(x, m, ldx, dm, bias, y, ldy, stream_), "matvec");
            return; // bias included
        } else if (w.type == WeightType::f32) {
            sgemm(static_cast<const float*>(w.data), n, x, m, ldx, k, y, ldy);
        } else if (w.type == WeightType::bf16 && w.bf16_activations) {
            uint16_t* xb = grow<uint16_t>(*this, activations_, size_t(m * k));
            check(cuda::round_to_bf16(x, m, k, ldx, xb, stream_), "round_to_bf16");
            const float one = 1.f, zero = 0.f;
            const int kk = to_int(std::max<int64_t>(k, 1), "k");
            check(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, to_int(n, "n"), to_int(m, "m"),
                               to_int(k, "k"), &one, w.data, CUDA_R_16BF, kk, xb, CUDA_R_16BF, kk,
                               &zero, y, CUDA_R_32F, to_int(ldy, "ldy"), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT),
                  "cublasGemmEx");
        } else {
            const int64_t panel = std::clamp<int64_t>(kPanelValues / std::max<int64_t>(k, 1), 1, n);
            float* wf = grow<float>(*this, panel_, size_t(panel * k));
            for (int64_t r0 = 0; r0 < n; r0 += panel) {
                const int64_t r1 = std::min(n, r0 + panel);
                check(cuda::dequantize_rows(dm, r0, r1, wf, stream_), "dequantize_rows");
                sgemm(wf, r1 - r0, x, m, ldx, k, y + r0, ldy);
            }
        }
        if (bias) check(cuda::add_bias(y, m, n, ldy, bias, stream_), "add_bias");
    }
    void get_rows(const WeightMatrix& table, std::span<const int32_t> ids, float* out) override
    {
        if (ids.empty()) return;
        for (int32_t id : ids)
            if (id < 0 || id >= table.rows)
                throw Error(ErrorKind::invalid_argument,
                            strfmt("get_rows: row %d of a table of %lld rows", int(id),
                                   static_cast<long long>(table.rows)));
        auto lock = enter();
        int32_t* dev = grow<int32_t>(*this, ids_, ids.size());
        check(cudaMemcpyAsync(dev, ids.data(), ids.size_bytes(), cudaMemcpyHostToDevice, stream_),
              "get_rows");
        check(cuda::get_rows(device_matrix(table), dev, int64_t(ids.size()), out, stream_),
              "get_rows");
    }

    // --- Normalisation and element-wise ops ------------------------------------------------------

    void layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma,
                    const float* beta, float eps, float* y) override
    {
        auto lock = enter();
        check(cuda::layer_norm(x, rows, cols, gamma, beta, eps, y, stream_), "layer_norm");
    }
    void rms_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, float eps,
                  float* y) override
    {
        auto lock = enter();
        check(cuda::rms_norm(x, rows, cols, gamma, eps, y, stream_), "rms_norm");
    }
    void gelu_erf(float* x, int64_t n) override
    {
        auto lock = enter();
        check(cuda::gelu_erf(x, n, stream_), "gelu_erf");
    }
    void silu_mul(const float* gate, const float* up, float* out, int64_t n) override
    {
        auto lock = enter();
        check(cuda::silu_mul(gate, up, out, n, stream_), "silu_mul");
    }
    void add_rows(float* x, const float* y, const float* scale, int64_t rows, int64_t cols) override
    {
        auto lock = enter();
        check(cuda::add_rows(x, y, scale, rows, cols, stream_), "add_rows");
    }

    // --- Rotary position embedding ---------------------------------------------------------------

    void rope_tables(int64_t pos0, int64_t n, double base, int head_dim, float pos_scale,
                     float* cos_out, float* sin_out) override
    {
        const int half = head_dim / 2;
        if (n <= 0 || half <= 0) return;
        // The inverse frequencies as the CPU computes them (torch's fp32 steps), on the host.
        std::vector<float> inv_freq(static_cast<size_t>(half));
        cpu::rope_inv_freq(head_dim, base, inv_freq.data());
        auto lock = enter();
        float* dev = grow<float>(*this, inv_freq_, size_t(half));
        check(cudaMemcpyAsync(dev, inv_freq.data(), size_t(half) * sizeof(float),
                              cudaMemcpyHostToDevice, stream_),
              "rope_tables");
        check(cuda::rope_tables(pos0, n, dev, half, pos_scale, cos_out, sin_out, stream_),
              "rope_tables");
    }
    void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
              const float* cos_tab, const float* sin_tab, bool pairs) override
    {
        auto lock = enter();
        check(cuda::rope(x, n_tokens, n_heads, head_dim, ld, cos_tab, sin_tab, pairs, stream_),
              "rope");
    }

    // --- Attention -------------------------------------------------------------------------------

    void attention_full(const float* qkv, int64_t n_seq, int64_t n_tok, int n_heads, int head_dim,
                        float scale, float* out) override
    {
        if (n_seq <= 0 || n_tok <= 0 || n_heads <= 0) return;
        check_head_dim(head_dim, "attention_full");
        const int64_t width = int64_t(n_heads) * head_dim;
        cuda::AttendArgs a {};
        a.q = qkv;
        a.ldq = 3 * width;
        a.k = qkv + width;
        a.v = qkv + 2 * width;
        a.ld_kv = 3 * width;
        a.kv_head_stride = head_dim;
        a.kv_seq_stride = n_tok * 3 * width;
        a.out = out;
        a.ld_out = width;
        a.n_seq = n_seq;
        a.n_tok = n_tok;
        a.n_keys = n_tok;
        a.causal = false;
        a.n_heads = n_heads;
        a.group = 1;
        a.d = head_dim;
        a.scale = scale;
        auto lock = enter();
        check(cuda::attend(a, stream_), "attention_full");
    }
    void attention_causal(const float* q, int64_t ldq, int64_t n_new, int64_t n_past, int n_heads,
                          int n_kv_heads, int head_dim, std::span<const KvRun> runs, float scale,
                          float* out, Workspace& ws) override
    {
        if (n_new <= 0 || n_heads <= 0) return;
        check_head_dim(head_dim, "attention_causal");
        if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
            throw Error(
                ErrorKind::invalid_argument,
                strfmt("attention_causal: %d query heads over %d KV heads", n_heads, n_kv_heads));
        auto* cws = dynamic_cast<CudaWorkspace*>(&ws);
        if (!cws)
            throw Error(
                ErrorKind::invalid_argument,
                strfmt("attention_causal: a workspace of another backend on %s", name_.c_str()));
        // The runs that hold keys 0..n_keys, the last one cut at n_keys; later ones are ignored.
        const int64_t n_keys = n_past + n_new;
        std::vector<cuda::RunDesc> descs;
        int64_t key0 = 0;
        for (const KvRun& r : runs) {
            if (key0 >= n_keys) break;
            if (r.n_tokens <= 0) continue;
            cuda::RunDesc d {};
            d.k = r.k;
            d.v = r.v;
            d.k_head_stride = r.k_head_stride;
            d.v_head_stride = r.v_head_stride;
            d.k_row_bytes = kv_side_bytes(r.k_type, r.k_fmt, head_dim);
            d.v_row_bytes = kv_side_bytes(r.v_type, r.v_fmt, head_dim);
            d.k_perm = r.k_perm;
            d.v_perm = r.v_perm;
            d.key0 = key0;
            d.n_tokens = std::min(r.n_tokens, n_keys - key0);
            d.k_type = KvCode(int(r.k_type));
            d.v_type = KvCode(int(r.v_type));
            d.k_bits = r.k_fmt.bits;
            d.k_group = r.k_fmt.group;
            d.v_bits = r.v_fmt.bits;
            d.v_group = r.v_fmt.group;
            if ((r.k_type == KvType::skvq && !r.k_perm) || (r.v_type == KvType::skvq && !r.v_perm))
                throw Error(ErrorKind::invalid_argument,
                            "attention_causal: an SKVQ run without its channel order");
            descs.push_back(d);
            key0 += d.n_tokens;
        }
        if (key0 < n_keys)
            throw Error(ErrorKind::invalid_argument,
                        strfmt("attention_causal: the runs hold %lld of the %lld tokens attended",
                               static_cast<long long>(key0), static_cast<long long>(n_keys)));
        const size_t kv_values = size_t(n_kv_heads) * size_t(n_keys) * size_t(head_dim);
        auto lock = enter();
        auto* dev_runs = grow<cuda::RunDesc>(*this, cws->runs, descs.size());
        check(cudaMemcpyAsync(dev_runs, descs.data(), descs.size() * sizeof(cuda::RunDesc),
                              cudaMemcpyHostToDevice, stream_),
              "attention_causal");
        float* keys = grow<float>(*this, cws->keys, kv_values);
        float* values = grow<float>(*this, cws->values, kv_values);
        check(cuda::dequantize_runs(dev_runs, int(descs.size()), n_keys, n_kv_heads, head_dim,
                                    cpu::kv_group_size(head_dim), keys, values, stream_),
              "attention_causal");
        cuda::AttendArgs a {};
        a.q = q;
        a.ldq = ldq;
        a.k = keys;
        a.v = values;
        a.ld_kv = head_dim;
        a.kv_head_stride = n_keys * head_dim;
        a.kv_seq_stride = 0;
        a.out = out;
        a.ld_out = int64_t(n_heads) * head_dim;
        a.n_seq = 1;
        a.n_tok = n_new;
        a.n_keys = n_keys;
        a.n_past = n_past;
        a.causal = true;
        a.n_heads = n_heads;
        a.group = n_heads / n_kv_heads;
        a.d = head_dim;
        a.scale = scale;
        check(cuda::attend(a, stream_), "attention_causal");
    }

    // --- KV cache rows ---------------------------------------------------------------------------

    void kv_store(KvType type, const float* src, int64_t n_rows, int64_t src_ld, int head_dim,
                  uint8_t* dst, size_t dst_ld) override
    {
        if (type == KvType::skvq)
            throw Error(ErrorKind::invalid_argument, "kv_store: skvq rows need their format");
        auto lock = enter();
        check(cuda::kv_store(KvCode(int(type)), src, n_rows, src_ld, head_dim,
                             cpu::kv_group_size(head_dim), dst, dst_ld, stream_),
              "kv_store");
    }
    void skvq_store(const SkvqFormat& fmt, const float* src, int64_t n_rows, int64_t src_ld,
                    int head_dim, const int32_t* perm, int64_t perm_ld, const float* clip,
                    int64_t clip_ld, uint8_t* dst, size_t dst_ld) override
    {
        if (fmt.group <= 0 || head_dim % fmt.group != 0 || fmt.group * fmt.bits % 8 != 0)
            throw Error(ErrorKind::invalid_argument,
                        strfmt("skvq_store: groups of %d channels at %d bits for head_dim %d",
                               fmt.group, fmt.bits, head_dim));
        auto lock = enter();
        check(cuda::skvq_store(fmt.bits, fmt.levels, fmt.group, src, n_rows, src_ld, head_dim, perm,
                               perm_ld, clip, clip_ld, dst, dst_ld, stream_),
              "skvq_store");
    }

    // --- Vision ----------------------------------------------------------------------------------

    void im2col_patches(const float* pixels, int64_t n, int c, int s, int p,
                        float* patches) override
    {
        auto lock = enter();
        check(cuda::im2col_patches(pixels, n, c, s, p, patches, stream_), "im2col_patches");
    }
    void bicubic_resize(const float* src, int64_t c, int ih, int iw, int oh, int ow,
                        float* dst) override
    {
        auto lock = enter();
        if (ih == oh && iw == ow) {
            const size_t bytes = size_t(c) * size_t(ih) * size_t(iw) * sizeof(float);
            if (bytes)
                check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
                      "bicubic_resize");
            return;
        }
        check(cuda::bicubic_resize(src, c, ih, iw, oh, ow, dst, stream_), "bicubic_resize");
    }
    void pixel_shuffle(const float* x, int64_t n, int h, int w, int c, int r, bool v2,
                       float* out) override
    {
        auto lock = enter();
        check(cuda::pixel_shuffle(x, n, h, w, c, r, v2, out, stream_), "pixel_shuffle");
    }

    // --- Sampling helpers ------------------------------------------------------------------------

    int64_t argmax(const float* x, int64_t n) override
    {
        if (n <= 0) return 0;
        auto lock = enter();
        int64_t* dev = grow<int64_t>(*this, argmax_, 1);
        check(cuda::argmax(x, n, dev, stream_), "argmax");
        int64_t index = 0;
        check(cudaMemcpyAsync(&index, dev, sizeof index, cudaMemcpyDeviceToHost, stream_),
              "argmax");
        check(cudaStreamSynchronize(stream_), "argmax");
        return index;
    }

protected:
    // Queued work may still use the memory: wait for it. Errors cannot leave a destructor, and
    // a failed free leaks at worst.
    void free(void* data, size_t) override
    {
        std::lock_guard lock(mutex_);
        if (cudaSetDevice(device_) != cudaSuccess || cudaStreamSynchronize(stream_) != cudaSuccess
            || cudaFree(data) != cudaSuccess)
            cudaGetLastError();
    }

private:
    // Every call: the queue to itself, and this backend's device current on the calling thread.
    std::unique_lock<std::recursive_mutex> enter()
    {
        std::unique_lock lock(mutex_);
        check(cudaSetDevice(device_), "cudaSetDevice");
        return lock;
    }

    void check_head_dim(int head_dim, const char* op) const
    {
        if (head_dim <= 0 || head_dim > cuda::kAttendMaxHeadDim)
            throw Error(ErrorKind::unsupported,
                        strfmt("%s on CUDA: head_dim %d (at most %d)", op, head_dim,
                               cuda::kAttendMaxHeadDim));
    }

    // y[m, n] (stride ldy) = x[m, k] (stride ldx) · w[n, k]ᵀ. In cuBLAS's column-major terms
    // yᵀ [n, m] = wᵀᵀ · xᵀ, with w read as the column-major [k, n] it is.
    void sgemm(const float* w, int64_t n, const float* x, int64_t m, int64_t ldx, int64_t k,
               float* y, int64_t ldy)
    {
        const float one = 1.f, zero = 0.f;
        check(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, to_int(n, "n"), to_int(m, "m"),
                          to_int(k, "k"), &one, w, to_int(std::max<int64_t>(k, 1), "k"), x,
                          to_int(std::max<int64_t>(ldx, 1), "ldx"), &zero, y, to_int(ldy, "ldy")),
              "cublasSgemm");
    }

    const int device_;
    const std::string name_;
    std::recursive_mutex mutex_;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    // Scratch of single calls, reused (stream order keeps one call's use before the next's).
    Buffer panel_, activations_, ids_, inv_freq_, argmax_;
};

} // namespace

int cuda_device_count()
{
    static const int count = [] {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        return n;
    }();
    return count;
}

Backend& cuda_backend(int device)
{
    const int count = cuda_device_count();
    if (device < 0 || device >= count)
        throw Error(ErrorKind::invalid_argument,
                    strfmt("cuda:%d: this machine has %d CUDA device%s", device, count,
                           count == 1 ? "" : "s"));
    static std::mutex mutex;
    // Never destroyed: buffers may outlive main().
    static auto* made = new std::vector<CudaBackend*>(size_t(count), nullptr);
    std::lock_guard lock(mutex);
    CudaBackend*& backend = (*made)[size_t(device)];
    if (!backend) backend = new CudaBackend(device);
    return *backend;
}

} // namespace iris::model
