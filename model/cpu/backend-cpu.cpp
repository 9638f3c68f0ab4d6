// The CPU backend: the seam of model/backend.h over ops.h's kernels. Memory is the host's, so
// wrap() is a view and upload/download are copies.
#include "model/backend.h"
#include "model/cpu/ops.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace iris::model {

Buffer& Buffer::operator=(Buffer&& o) noexcept
{
    if (this != &o) {
        reset();
        owner_ = std::exchange(o.owner_, nullptr);
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        host_ = std::exchange(o.host_, true);
    }
    return *this;
}

void Buffer::reset()
{
    if (owner_) owner_->free(data_, size_);
    owner_ = nullptr;
    data_ = nullptr;
    size_ = 0;
    host_ = true;
}

Buffer Backend::make_buffer(void* data, size_t bytes, bool owned, bool host)
{
    Buffer b;
    b.owner_ = owned ? this : nullptr;
    b.data_ = data;
    b.size_ = bytes;
    b.host_ = host;
    return b;
}

int64_t Backend::argmax(const float* x, int64_t n)
{
    std::vector<float> host(size_t(std::max<int64_t>(n, 0)));
    download(host.data(), x, host.size() * sizeof(float));
    return std::max_element(host.begin(), host.end()) - host.begin();
}

namespace {

struct CpuWorkspace final : Workspace
{
    std::vector<std::vector<float>> per_thread; // attention_causal's chunks

    size_t bytes() const override
    {
        size_t total = 0;
        for (const auto& b : per_thread) total += b.capacity() * sizeof(float);
        return total;
    }
};

class CpuBackend final : public Backend
{
public:
    std::string_view name() const override { return "cpu"; }

    Buffer alloc(size_t bytes) override
    {
        const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
        void* p = std::aligned_alloc(64, rounded);
        if (!p)
            throw Error(ErrorKind::resource,
                        strfmt("out of memory allocating %.1f MB", double(bytes) / 1e6));
        return make_buffer(p, bytes, true, true);
    }
    Buffer wrap(const void* host, size_t bytes) override
    {
        return make_buffer(const_cast<void*>(host), bytes, false, true);
    }
    void upload(void* dst, const void* src, size_t bytes) override
    {
        if (bytes) std::memcpy(dst, src, bytes);
    }
    void download(void* dst, const void* src, size_t bytes) override
    {
        if (bytes) std::memcpy(dst, src, bytes);
    }
    void copy_rows(void* dst, size_t dst_ld, const void* src, size_t src_ld, size_t row_bytes,
                   int64_t n_rows) override
    {
        for (int64_t i = 0; i < n_rows; ++i)
            std::memmove(static_cast<char*>(dst) + size_t(i) * dst_ld,
                         static_cast<const char*>(src) + size_t(i) * src_ld, row_bytes);
    }
    std::unique_ptr<Workspace> workspace() override { return std::make_unique<CpuWorkspace>(); }

    int64_t exact_rows(const WeightMatrix& w) const override { return cpu::exact_rows(w); }
    void linear(const float* x, int64_t m, int64_t ldx, const WeightMatrix& w, const float* bias,
                float* y, int64_t ldy) override
    {
        cpu::linear(x, m, ldx, w, bias, y, ldy);
    }
    void get_rows(const WeightMatrix& table, std::span<const int32_t> ids, float* out) override
    {
        for (size_t i = 0; i < ids.size(); ++i)
            cpu::widen_rows(table, ids[i], ids[i] + 1, out + i * size_t(table.cols));
    }
    void layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma,
                    const float* beta, float eps, float* y) override
    {
        cpu::layer_norm(x, rows, cols, gamma, beta, eps, y);
    }
    void rms_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, float eps,
                  float* y) override
    {
        cpu::rms_norm(x, rows, cols, gamma, eps, y);
    }
    void gelu_erf(float* x, int64_t n) override { cpu::gelu_erf(x, n); }
    void silu_mul(const float* gate, const float* up, float* out, int64_t n) override
    {
        cpu::silu_mul(gate, up, out, n);
    }
    void add_rows(float* x, const float* y, const float* scale, int64_t rows, int64_t cols) override
    {
        cpu::add_rows(x, y, scale, rows, cols);
    }
    void rope_tables(int64_t pos0, int64_t n, double base, int head_dim, float pos_scale,
                     float* cos_out, float* sin_out) override
    {
        // Kept per thread, so that a decode step allocates nothing.
        thread_local std::vector<float> inv_freq;
        thread_local std::vector<int64_t> pos;
        inv_freq.resize(static_cast<size_t>(head_dim / 2));
        pos.resize(static_cast<size_t>(n));
        cpu::rope_inv_freq(head_dim, base, inv_freq.data());
        for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = pos0 + i;
        cpu::rope_tables(pos.data(), n, inv_freq.data(), head_dim, pos_scale, cos_out, sin_out);
    }
    void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int64_t ld,
              const float* cos_tab, const float* sin_tab, bool pairs) override
    {
        cpu::rope_apply(x, n_tokens, n_heads, head_dim, ld, cos_tab, sin_tab, pairs);
    }
    void attention_full(const float* qkv, int64_t n_seq, int64_t n_tok, int n_heads, int head_dim,
                        float scale, float* out) override
    {
        cpu::attention_full(qkv, n_seq, n_tok, n_heads, head_dim, scale, out);
    }
    void attention_causal(const float* q, int64_t ldq, int64_t n_new, int64_t n_past, int n_heads,
                          int n_kv_heads, int head_dim, std::span<const KvRun> runs, float scale,
                          float* out, Workspace& ws) override
    {
        cpu::attention_causal(q, ldq, n_new, n_past, n_heads, n_kv_heads, head_dim, runs, scale,
                              out, static_cast<CpuWorkspace&>(ws).per_thread);
    }
    void kv_store(KvType type, const float* src, int64_t n_rows, int64_t src_ld, int head_dim,
                  uint8_t* dst, size_t dst_ld) override
    {
        for (int64_t i = 0; i < n_rows; ++i)
            cpu::kv_quantize_row(type, src + i * src_ld, head_dim, dst + size_t(i) * dst_ld);
    }
    void skvq_store(const SkvqFormat& fmt, const float* src, int64_t n_rows, int64_t src_ld,
                    int head_dim, const int32_t* perm, int64_t perm_ld, const float* clip,
                    int64_t clip_ld, uint8_t* dst, size_t dst_ld) override
    {
        for (int64_t i = 0; i < n_rows; ++i)
            cpu::skvq_quantize_row(fmt, src + i * src_ld, head_dim,
                                   perm ? perm + i * perm_ld : nullptr,
                                   clip ? clip + i * clip_ld : nullptr, dst + size_t(i) * dst_ld);
    }
    void im2col_patches(const float* pixels, int64_t n, int c, int s, int p,
                        float* patches) override
    {
        cpu::im2col_patches(pixels, n, c, s, p, patches);
    }
    void bicubic_resize(const float* src, int64_t c, int ih, int iw, int oh, int ow,
                        float* dst) override
    {
        cpu::bicubic_resize(src, c, ih, iw, oh, ow, dst);
    }
    void pixel_shuffle(const float* x, int64_t n, int h, int w, int c, int r, bool v2,
                       float* out) override
    {
        cpu::pixel_shuffle(x, n, h, w, c, r, v2, out);
    }
    int64_t argmax(const float* x, int64_t n) override
    {
        return n <= 0 ? 0 : std::max_element(x, x + n) - x;
    }

protected:
    void free(void* data, size_t) override { std::free(data); }
};

} // namespace

Backend& cpu_backend()
{
    static CpuBackend* backend = new CpuBackend; // never destroyed: buffers may outlive main()
    return *backend;
}

} // namespace iris::model
