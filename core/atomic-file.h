// Writing a whole file atomically: the bytes go to a temporary beside the target, which is
// renamed over it, so a crash or a failure never leaves a partial file under the final name.
// Used by the model writers (safetensors, GGUF), the memory export and the command line's outputs.
#pragma once

#include "core/core.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <string>
#include <unistd.h>

namespace iris {

// The temporary being written, as write_file_atomically hands it to its caller.
class TempFile
{
public:
    TempFile(int fd, const std::string& path)
        : fd_(fd)
        , path_(path)
    { }

    // Writes all n bytes, retrying short and interrupted writes; Error(io) naming the file.
    void write(const void* p, size_t n) const
    {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        while (n > 0) {
            ssize_t w = ::write(fd_, b, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                throw Error(ErrorKind::io, "cannot write " + path_ + ": " + std::strerror(errno));
            }
            b += w;
            n -= static_cast<size_t>(w);
        }
    }

    const std::string& path() const { return path_; }

private:
    int fd_;
    const std::string& path_;
};

namespace detail {

// A name for the temporary file that another writer (thread or process) is unlikely to pick;
// O_EXCL settles the rest.
inline std::string temp_suffix()
{
    static std::atomic<uint64_t> counter {0};
    uint64_t x = counter.fetch_add(1) * 0x9E3779B97F4A7C15ull
        ^ static_cast<uint64_t>(::getpid()) << 32
        ^ static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    // splitmix64 finaliser
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string s = ".tmp-";
    for (int i = 0; i < 6; ++i) {
        s += alphabet[x % 62];
        x /= 62;
    }
    return s;
}

} // namespace detail

// Whether write_file_atomically makes the file durable itself. Many small files (an export's
// key frames) are written unsynced and made durable together by one sync_filesystem().
enum class Sync { each_file, later };

// Creates <path>.tmp-XXXXXX beside path, lets `write` fill it, then fsyncs (Sync::each_file),
// closes and renames it over path, and fsyncs the folder so that the rename itself is durable.
// If `write` or any step up to the rename throws, the temporary is removed and an existing file
// at path is untouched. The system's refusals are Error(io) naming the file; what `write` throws
// passes through unchanged.
inline void write_file_atomically(const std::string& path,
                                  const std::function<void(const TempFile&)>& write,
                                  Sync sync = Sync::each_file)
{
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
        tmp = path + detail::temp_suffix();
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            throw Error(ErrorKind::io, "cannot create " + tmp + ": " + std::strerror(errno));
    }
    if (fd < 0) throw Error(ErrorKind::io, "cannot create a temporary file for " + path);
    try {
        write(TempFile(fd, tmp));
        if (sync == Sync::each_file && ::fsync(fd) != 0)
            throw Error(ErrorKind::io, "cannot sync " + tmp + ": " + std::strerror(errno));
        int rc = ::close(fd);
        fd = -1;
        if (rc != 0)
            throw Error(ErrorKind::io, "cannot close " + tmp + ": " + std::strerror(errno));
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            throw Error(ErrorKind::io,
                        "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
    } catch (...) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (sync == Sync::later) return;
    size_t slash = path.find_last_of('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int rc = ::fsync(dfd);
        int err = errno;
        ::close(dfd);
        if (rc != 0 && err != EINVAL) // some filesystems cannot sync directories
            throw Error(ErrorKind::io, "cannot sync folder " + dir + ": " + std::strerror(err));
    }
}

// Makes everything written to the filesystem holding `path` durable (syncfs); Error(io) naming
// the path.
inline void sync_filesystem(const std::string& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    const int rc = fd < 0 ? -1 : ::syncfs(fd);
    const int err = errno;
    if (fd >= 0) ::close(fd);
    if (rc != 0) throw Error(ErrorKind::io, "cannot sync " + path + ": " + std::strerror(err));
}

} // namespace iris
