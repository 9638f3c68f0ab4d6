// A read-only memory mapping of a whole file (private to the model module), shared by the
// safetensors and GGUF readers. open() only maps: validating the contents is the reader's job.
#pragma once

#include "core/core.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace iris::model {

// Unmapped on destruction. If another process truncates the file while it is mapped, reading
// the lost pages raises SIGBUS: weight files are treated as immutable.
class MappedFile
{
public:
    MappedFile() = default;
    MappedFile(MappedFile&& o) noexcept
        : base_(std::exchange(o.base_, nullptr))
        , size_(std::exchange(o.size_, 0))
    { }
    MappedFile& operator=(MappedFile&& o) noexcept
    {
        if (this != &o) {
            unmap();
            base_ = std::exchange(o.base_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() { unmap(); }

    // Throws Error(not_found) for a missing file, Error(io) when the system refuses,
    // Error(invalid_input) for something that is not a regular file, Error(resource) for a file
    // larger than the address space. An empty file gives an empty mapping (mmap refuses
    // length 0), so the caller reports it as too short like any other truncation.
    static MappedFile open(const std::string& path)
    {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            throw Error(err == ENOENT ? ErrorKind::not_found : ErrorKind::io,
                        "cannot open " + path + ": " + std::strerror(err));
        }
        struct stat sb;
        if (::fstat(fd, &sb) != 0) {
            int err = errno;
            ::close(fd);
            throw Error(ErrorKind::io, "cannot stat " + path + ": " + std::strerror(err));
        }
        if (!S_ISREG(sb.st_mode)) {
            ::close(fd);
            throw Error(ErrorKind::invalid_input, path + ": not a regular file");
        }
        const uint64_t file_size = static_cast<uint64_t>(sb.st_size);
        if (file_size > std::numeric_limits<size_t>::max()) {
            ::close(fd);
            throw Error(ErrorKind::resource, path + ": file too large to map");
        }
        MappedFile m;
        if (file_size == 0) {
            ::close(fd);
            return m;
        }
        void* base = ::mmap(nullptr, static_cast<size_t>(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
        int map_err = errno;
        ::close(fd); // the mapping keeps the file alive
        if (base == MAP_FAILED)
            throw Error(ErrorKind::io, "cannot map " + path + ": " + std::strerror(map_err));
        m.base_ = base;
        m.size_ = static_cast<size_t>(file_size);
        return m;
    }

    const uint8_t* data() const { return static_cast<const uint8_t*>(base_); }
    size_t size() const { return size_; }

private:
    void unmap()
    {
        if (base_) ::munmap(base_, size_);
        base_ = nullptr;
        size_ = 0;
    }

    void* base_ = nullptr;
    size_t size_ = 0;
};

} // namespace iris::model
