// The FAISS index over entry embeddings, and its file.
//
// Why IndexIVFFlat throughout: FAISS 1.7's IndexIDMap cannot filter by id (for time ranges) and
// IndexHNSW cannot remove vectors; IVF does both. With one list it is an exact flat index,
// which is what a store below ivf_threshold entries gets. On reaching the threshold the lists
// are trained once (k-means on the embeddings stored then) and kept: a list only grows as the
// store does, so at 1M entries and 512 lists a search with nprobe 16 scans about 31k vectors
// (~3% of the store) instead of all of them (see bench/memory_bench.cpp).
//
// FAISS keeps the lists, trains them, removes from them and writes them; the scan is ours.
// Debian builds FAISS for baseline x86-64, where its distance loops are scalar, while this file
// is compiled for x86-64-v3 (cmake/iris.cmake) and the dot product below vectorizes with AVX2:
// several times faster. Owning the scan also makes the time filter a plain check of the
// entry's span, kept by id in memory and in the file; a narrow range scans every list, so it
// is exact rather than limited to the lists nearest the query.
//
// The file is written whole and replaced by rename; a header with a CRC-32 of everything after
// it is checked before FAISS reads a byte, so a torn, truncated or foreign file is rejected
// rather than parsed.
#include "memory/memory-impl.h"

#include <faiss/IndexFlat.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace iris::memory {

namespace {

static_assert(std::endian::native == std::endian::little, "index files are little-endian");

constexpr char kFileMagic[8] = {'I', 'R', 'I', 'S', 'V', 'E', 'C', '1'};
constexpr uint32_t kFileVersion = 1;

struct FileHeader
{
    char magic[8];
    uint32_t version;
    uint32_t dim;
    uint64_t store_id;
    int64_t n_entries;
    int64_t max_id;
    uint64_t payload_bytes; // the rest of the file: n_entries spans, then FAISS's bytes
    uint32_t payload_crc32;
    uint32_t header_crc32; // of the bytes above
};
static_assert(sizeof(FileHeader) == 56);

struct SpanRecord
{
    int64_t id;
    int64_t start_us;
    int64_t end_us;
};

// A removed or unused id ends before any range starts, so it overlaps none; it keeps a start
// time no later than the next id's, so that starts stay sorted in a time-ordered store.
TimeSpan dead_span(int64_t start_us)
{
    return {start_us, kTimeMin};
}

bool live(const TimeSpan& s)
{
    return s.end_us != kTimeMin; // Store::add accepts no entry that ends then
}

// A span's length, saturated: one from far before 1970 to far after overflows int64_t.
int64_t length_us(const TimeSpan& s)
{
    int64_t r;
    return __builtin_sub_overflow(s.end_us, s.start_us, &r) ? kTimeMax : r;
}

// Independent partial sums let the compiler vectorize the loop (a single running sum would
// have to be added in order).
float dot(const float* a, const float* b, int dim)
{
    float acc[16] = {};
    int i = 0;
    for (; i + 16 <= dim; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
    float sum = 0;
    for (; i < dim; ++i) sum += a[i] * b[i];
    for (float x : acc) sum += x;
    return sum;
}

// Streams FAISS's output to a file descriptor through a buffer, with a running CRC-32.
struct FdWriter : faiss::IOWriter
{
    int fd;
    std::vector<uint8_t> buf;
    uint64_t n_bytes = 0;
    uint32_t crc = 0;
    explicit FdWriter(int f)
        : fd(f)
    {
        buf.reserve(1 << 20);
    }
    size_t operator()(const void* ptr, size_t size, size_t nitems) override
    {
        const auto* p = static_cast<const uint8_t*>(ptr);
        size_t n = size * nitems;
        crc = crc32_of_more(crc, p, n);
        n_bytes += n;
        if (buf.size() + n > buf.capacity()) flush();
        if (n >= buf.capacity())
            write_all(p, n);
        else
            buf.insert(buf.end(), p, p + n);
        return nitems;
    }
    void flush()
    {
        write_all(buf.data(), buf.size());
        buf.clear();
    }
    void write_all(const uint8_t* p, size_t n)
    {
        while (n > 0) {
            ssize_t w = ::write(fd, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) throw Error(ErrorKind::io, std::string("write: ") + std::strerror(errno));
            p += w;
            n -= size_t(w);
        }
    }
};

// FAISS reads from a mapped file that has already passed its checksum.
struct SpanReader : faiss::IOReader
{
    std::span<const uint8_t> data;
    size_t pos = 0;
    size_t operator()(void* ptr, size_t size, size_t nitems) override
    {
        if (size == 0) return nitems;
        size_t n = std::min(nitems, (data.size() - pos) / size);
        if (n == 0) return 0; // FAISS reads an empty vector into its null data()
        std::memcpy(ptr, data.data() + pos, n * size);
        pos += n * size;
        return n;
    }
};

struct Fd
{
    int fd = -1;
    ~Fd()
    {
        if (fd >= 0) ::close(fd);
    }
};

struct Mapping
{
    void* p = MAP_FAILED;
    size_t n = 0;
    ~Mapping()
    {
        if (p != MAP_FAILED) ::munmap(p, n);
    }
};

[[noreturn]] void io_fail(const std::string& what, const std::string& path)
{
    throw Error(ErrorKind::io, what + " " + path + ": " + std::strerror(errno));
}

[[noreturn]] void bad_file(const std::string& path, const std::string& why)
{
    throw Error(ErrorKind::invalid_input, "index file " + path + " " + why);
}

} // namespace

VectorIndex::VectorIndex(int dim, const IndexParams& params)
    : dim_(dim)
    , params_(params)
{
    reset_ivf(1);
}

VectorIndex::VectorIndex(VectorIndex&&) noexcept = default;
VectorIndex& VectorIndex::operator=(VectorIndex&&) noexcept = default;
VectorIndex::~VectorIndex() = default;

int64_t VectorIndex::size() const
{
    return ivf_->ntotal;
}

int VectorIndex::nlist() const
{
    return int(ivf_->nlist);
}

void VectorIndex::reset_ivf(int nlist)
{
    auto quantizer = std::make_unique<faiss::IndexFlatIP>(dim_);
    ivf_ = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), dim_, size_t(nlist),
                                                 faiss::METRIC_INNER_PRODUCT);
    ivf_->own_fields = true;
    quantizer.release();
    // Ten k-means rounds place the centroids about as well as FAISS's default 25 for the
    // purpose of routing searches, in less than half the time.
    ivf_->cp.niter = 10;
    if (nlist == 1) {
        // One list needs no training: every vector goes to the one (zero) centroid.
        std::vector<float> zero(size_t(dim_), 0.0f);
        ivf_->quantizer->add(1, zero.data());
        ivf_->is_trained = true;
    }
}

void VectorIndex::train(int64_t n, const float* x)
{
    if (size() != 0) throw Error(ErrorKind::internal, "index: train on a non-empty index");
    int nlist = params_.ivf_nlist;
    if (n < nlist) return; // too few to train: stay exact
    reset_ivf(nlist);
    ivf_->train(n, x);
}

void VectorIndex::train_from_lists()
{
    auto t0 = std::chrono::steady_clock::now();
    const faiss::InvertedLists* lists = ivf_->invlists;
    int64_t n = int64_t(lists->list_size(0));
    std::vector<float> x(size_t(n) * size_t(dim_));
    std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(n));
    {
        faiss::InvertedLists::ScopedCodes codes(lists, 0);
        faiss::InvertedLists::ScopedIds list_ids(lists, 0);
        std::memcpy(x.data(), codes.get(), x.size() * sizeof(float));
        std::memcpy(ids.data(), list_ids.get(), ids.size() * sizeof(ids[0]));
    }
    std::unique_ptr<faiss::IndexIVFFlat> flat = std::move(ivf_);
    try {
        reset_ivf(params_.ivf_nlist);
        ivf_->train(n, x.data());
        ivf_->add_with_ids(n, x.data(), ids.data());
    } catch (...) {
        ivf_ = std::move(flat); // keep searching exactly rather than lose the vectors
        throw;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    IRIS_LOG_INFO("memory: index trained %d IVF lists on %lld embeddings in %.1f s",
                  params_.ivf_nlist, (long long)n, s);
}

void VectorIndex::add(int64_t n, const float* x, const int64_t* ids, const TimeSpan* spans)
{
    if (n <= 0) return;
    auto [bottom, top] = std::minmax_element(ids, ids + n);
    if (*bottom < 1 || *top > kMaxEntryId) // spans_ holds every id up to the highest
        throw Error(ErrorKind::invalid_input,
                    strfmt("index: entry id %lld is out of range (1 to %lld)",
                           (long long)(*bottom < 1 ? *bottom : *top), (long long)kMaxEntryId));
    if (size_t(*top) >= spans_.size()) spans_.resize(size_t(*top) + 1, dead_span(last_start_us_));
    ivf_->add_with_ids(n, x, ids);
    for (int64_t i = 0; i < n; ++i) {
        spans_[size_t(ids[i])] = spans[i];
        max_span_us_ = std::max(max_span_us_, length_us(spans[i]));
        note_order(ids[i], spans[i].start_us);
    }
    if (nlist() == 1 && params_.ivf_nlist > 1 && size() >= params_.ivf_threshold)
        train_from_lists();
}

void VectorIndex::note_order(int64_t id, int64_t start_us)
{
    // Ids only grow, so comparing with the newest id's start is enough; a removal may leave
    // this false where it could be true again, which costs speed, never correctness.
    if (id >= top_id_) {
        time_ordered_ = time_ordered_ && start_us >= last_start_us_;
        last_start_us_ = start_us;
        top_id_ = id;
    }
}

bool VectorIndex::remove(int64_t id)
{
    faiss::Index::idx_t key = id;
    faiss::IDSelectorArray one(1, &key);
    if (ivf_->remove_ids(one) == 0) return false;
    spans_[size_t(id)].end_us = kTimeMin;
    return true;
}

std::vector<ScoredId> VectorIndex::search(const float* q, int k, int64_t from_us, int64_t to_us,
                                          bool exhaustive) const
{
    std::vector<ScoredId> best; // a min-heap on score while scanning
    if (k <= 0) return best;
    const size_t nlist = ivf_->nlist;
    std::vector<size_t> probe;
    if (exhaustive || nlist <= size_t(params_.ivf_nprobe)) {
        for (size_t l = 0; l < nlist; ++l) probe.push_back(l);
    } else {
        const float* centroids = static_cast<const faiss::IndexFlatIP*>(ivf_->quantizer)->get_xb();
        std::vector<std::pair<float, size_t>> near(nlist);
        for (size_t l = 0; l < nlist; ++l)
            near[l] = {dot(q, centroids + l * size_t(dim_), dim_), l};
        size_t n_probe = size_t(params_.ivf_nprobe);
        std::partial_sort(near.begin(), near.begin() + ptrdiff_t(n_probe), near.end(),
                          std::greater<>());
        for (size_t i = 0; i < n_probe; ++i) probe.push_back(near[i].second);
    }

    const bool filtered = from_us != kTimeMin || to_us != kTimeMax;
    // Ids outside [lo, hi] are out of range without a look at their (scattered) spans.
    const auto [lo, hi] = id_range(from_us, to_us);
    auto worse = [](const ScoredId& a, const ScoredId& b) { return a.score > b.score; };
    const faiss::InvertedLists* lists = ivf_->invlists;
    for (size_t l : probe) {
        size_t n = lists->list_size(l);
        if (n == 0) continue;
        faiss::InvertedLists::ScopedCodes codes(lists, l);
        faiss::InvertedLists::ScopedIds ids(lists, l);
        const auto* x = reinterpret_cast<const float*>(codes.get());
        for (size_t j = 0; j < n; ++j) {
            int64_t id = ids[j];
            if (filtered) {
                if (id < lo || id > hi) continue;
                const TimeSpan& s = spans_[size_t(id)];
                if (s.end_us < from_us || s.start_us > to_us) continue;
            }
            float score = dot(q, x + j * size_t(dim_), dim_);
            if (best.size() < size_t(k)) {
                best.push_back({id, score});
                std::push_heap(best.begin(), best.end(), worse);
            } else if (score > best.front().score) {
                std::pop_heap(best.begin(), best.end(), worse);
                best.back() = {id, score};
                std::push_heap(best.begin(), best.end(), worse);
            }
        }
    }
    std::sort_heap(best.begin(), best.end(), worse); // best first
    return best;
}

std::pair<int64_t, int64_t> VectorIndex::id_range(int64_t from_us, int64_t to_us) const
{
    if (!time_ordered_ || (from_us == kTimeMin && to_us == kTimeMax))
        return {0, int64_t(spans_.size()) - 1};
    // Starts are sorted by id: the overlapping entries start in [from - max_span, to].
    int64_t start_lo = from_us;
    if (__builtin_sub_overflow(from_us, max_span_us_, &start_lo)) start_lo = kTimeMin;
    auto first = std::partition_point(spans_.begin(), spans_.end(),
                                      [&](const TimeSpan& s) { return s.start_us < start_lo; });
    auto last = std::partition_point(first, spans_.end(),
                                     [&](const TimeSpan& s) { return s.start_us <= to_us; });
    return {first - spans_.begin(), (last - spans_.begin()) - 1};
}

void VectorIndex::save(const std::string& path, uint64_t store_id) const
{
    std::string tmp = path + ".tmp";
    Fd file {::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (file.fd < 0) io_fail("cannot create", tmp);
    try {
        FileHeader h {};
        std::memcpy(h.magic, kFileMagic, sizeof kFileMagic);
        h.version = kFileVersion;
        h.dim = uint32_t(dim_);
        h.store_id = store_id;
        FdWriter w(file.fd);
        w.write_all(reinterpret_cast<const uint8_t*>(&h), sizeof h); // rewritten below
        for (size_t id = 0; id < spans_.size(); ++id) {
            if (!live(spans_[id])) continue;
            SpanRecord r {int64_t(id), spans_[id].start_us, spans_[id].end_us};
            w(&r, sizeof r, 1);
            h.n_entries++;
            h.max_id = int64_t(id);
        }
        if (h.n_entries != size())
            throw Error(ErrorKind::internal,
                        strfmt("index: %lld spans for %lld vectors", (long long)h.n_entries,
                               (long long)size()));
        faiss::write_index(ivf_.get(), &w);
        w.flush();
        h.payload_bytes = w.n_bytes;
        h.payload_crc32 = w.crc;
        h.header_crc32 = crc32_of(&h, offsetof(FileHeader, header_crc32));
        if (::pwrite(file.fd, &h, sizeof h, 0) != ssize_t(sizeof h)) io_fail("cannot write", tmp);
        if (::fsync(file.fd) != 0) io_fail("cannot sync", tmp);
    } catch (const Error&) {
        ::unlink(tmp.c_str());
        throw;
    } catch (const std::exception& e) { // FAISS reports a short write as FaissException
        ::unlink(tmp.c_str());
        throw Error(ErrorKind::io, "cannot write " + tmp + ": " + e.what());
    }
    // rename() cannot replace a folder; one that took the index's name holds nothing of ours.
    std::error_code ec;
    if (std::filesystem::is_directory(std::filesystem::symlink_status(path, ec)))
        std::filesystem::remove_all(path, ec);
    if (::rename(tmp.c_str(), path.c_str()) != 0) io_fail("cannot rename " + tmp + " to", path);
    // The rename is durable only once the directory entry is.
    std::string dir = path.substr(0, path.find_last_of('/'));
    Fd d {::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (d.fd < 0 || ::fsync(d.fd) != 0) io_fail("cannot sync directory", dir);
}

VectorIndex VectorIndex::load(const std::string& path, int dim, const IndexParams& params,
                              IndexStamp& stamp)
{
    Fd file {::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (file.fd < 0) {
        if (errno == ENOENT)
            throw Error(ErrorKind::not_found, "index file " + path + " is missing");
        io_fail("cannot open", path);
    }
    struct stat st
    {
    };
    if (::fstat(file.fd, &st) != 0) io_fail("cannot stat", path);
    // A folder (or device) in its place is as unusable as a corrupt file: rebuilt, not fatal.
    if (!S_ISREG(st.st_mode)) bad_file(path, "is not a regular file");
    size_t size = size_t(st.st_size);
    if (size < sizeof(FileHeader)) bad_file(path, strfmt("is truncated (%zu bytes)", size));
    Mapping map;
    map.n = size;
    map.p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd, 0);
    if (map.p == MAP_FAILED) io_fail("cannot map", path);
    ::madvise(map.p, size, MADV_SEQUENTIAL);
    const auto* bytes = static_cast<const uint8_t*>(map.p);

    FileHeader h;
    std::memcpy(&h, bytes, sizeof h);
    if (std::memcmp(h.magic, kFileMagic, sizeof kFileMagic) != 0)
        bad_file(path, "is not an Iris index file");
    if (h.header_crc32 != crc32_of(&h, offsetof(FileHeader, header_crc32)))
        bad_file(path, "has a corrupt header");
    if (h.version != kFileVersion) bad_file(path, strfmt("has version %u", h.version));
    if (int(h.dim) != dim) bad_file(path, strfmt("holds %u-dim vectors, not %d", h.dim, dim));
    if (size - sizeof h != h.payload_bytes)
        bad_file(path,
                 strfmt("is %zu bytes, its header says %llu", size,
                        (unsigned long long)(h.payload_bytes + sizeof h)));
    std::span<const uint8_t> payload(bytes + sizeof h, h.payload_bytes);
    if (crc32_of(payload.data(), payload.size()) != h.payload_crc32)
        bad_file(path, "fails its checksum");
    size_t spans_bytes = size_t(h.n_entries) * sizeof(SpanRecord);
    if (h.n_entries < 0 || spans_bytes > payload.size() || h.max_id < h.n_entries
        || h.max_id > kMaxEntryId)
        bad_file(path, "has a bad entry count");

    VectorIndex index(dim, params);
    index.spans_.assign(size_t(h.max_id) + 1, dead_span(kTimeMin));
    for (int64_t i = 0; i < h.n_entries; ++i) {
        SpanRecord r;
        std::memcpy(&r, payload.data() + size_t(i) * sizeof r, sizeof r);
        if (r.id <= 0 || r.id > h.max_id || r.start_us > r.end_us)
            bad_file(path, "has a bad time span");
        index.spans_[size_t(r.id)] = {r.start_us, r.end_us};
        index.max_span_us_ = std::max(index.max_span_us_, length_us({r.start_us, r.end_us}));
        index.note_order(r.id, r.start_us);
    }
    for (size_t id = 1; id < index.spans_.size(); ++id)
        if (!live(index.spans_[id])) index.spans_[id].start_us = index.spans_[id - 1].start_us;
    SpanReader reader;
    reader.data = payload.subspan(spans_bytes);
    std::unique_ptr<faiss::Index> read;
    try {
        read.reset(faiss::read_index(&reader));
    } catch (const std::exception& e) {
        bad_file(path, std::string("cannot be read by FAISS: ") + e.what());
    }
    auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(read.get());
    if (!ivf || ivf->metric_type != faiss::METRIC_INNER_PRODUCT || ivf->d != dim
        || ivf->ntotal != h.n_entries || !ivf->is_trained
        || !dynamic_cast<const faiss::IndexFlatIP*>(ivf->quantizer)
        || !dynamic_cast<const faiss::ArrayInvertedLists*>(ivf->invlists))
        bad_file(path, "holds a different kind of FAISS index");
    read.release();
    index.ivf_.reset(ivf);
    stamp = {h.store_id, h.n_entries, h.max_id};
    return index;
}

} // namespace iris::memory
