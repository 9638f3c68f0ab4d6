// Starts the real `iris serve` on a free loopback port for black-box tests, and talks to it.
#pragma once

#include "tests/server/bytes.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace iris::test {

// A running `iris serve`. The constructor waits for its "listening on" line; the destructor
// stops it with SIGTERM and expects a clean exit.
class Served
{
public:
    explicit Served(std::vector<std::string> args)
    {
        std::signal(SIGPIPE, SIG_IGN); // a test writing to a connection the server closed
        static int counter = 0;
        log_ = std::filesystem::temp_directory_path()
            / ("iris-serve-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".log");
        std::vector<std::string> argv_s = {IRIS_BINARY, "serve", "--port", "0", "--threads", "1"};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_s) argv.push_back(a.data());
        argv.push_back(nullptr);
        int out[2];
        if (pipe(out) != 0) return;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_addclose(&fa, out[0]);
        posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
        posix_spawn_file_actions_destroy(&fa);
        close(out[1]);
        out_ = out[0];
        // The first line says where it listens; a server that fails to start closes stdout.
        std::string line;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
            pollfd p {out_, POLLIN, 0};
            if (poll(&p, 1, 200) <= 0) continue;
            char c;
            if (read(out_, &c, 1) != 1) break;
            if (c == '\n') break;
            line += c;
        }
        banner_ = line;
        auto at = line.find("http://");
        if (at != std::string::npos) port_ = std::atoi(line.c_str() + line.rfind(':') + 1);
    }

    ~Served()
    {
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            int st = 0;
            waitpid(pid_, &st, 0);
            EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
                << "iris serve did not exit cleanly:\n"
                << log();
        }
        if (out_ >= 0) close(out_);
        std::error_code ec;
        std::filesystem::remove(log_, ec);
    }

    Served(const Served&) = delete;
    Served& operator=(const Served&) = delete;

    bool ok() const { return port_ > 0; }
    pid_t pid() const { return pid_; }
    int port() const { return port_; }
    const std::string& banner() const { return banner_; }
    std::string log() const { return read_file(log_); }
    bool alive() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }
    // Waits for the process to end by itself; its exit status, or -1.
    int wait_exit()
    {
        int st = 0;
        waitpid(pid_, &st, 0);
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }

    httplib::Client client(int timeout_s = 60) const
    {
        httplib::Client c("127.0.0.1", port_);
        c.set_read_timeout(timeout_s);
        c.set_write_timeout(timeout_s);
        return c;
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    int port_ = -1;
    std::string banner_;
    std::filesystem::path log_;
};

inline std::string sample(const std::string& name)
{
    return read_file(std::filesystem::path(IRIS_SOURCE_DIR) / "resources/samples" / name);
}

inline std::string data_url(const std::string& png_bytes, const char* type = "image/png")
{
    return std::string("data:") + type + ";base64," + base64(png_bytes);
}

// A one-message chat request with an image and a question.
inline nlohmann::json image_chat(const std::string& image_bytes, const std::string& question)
{
    return {{"model", "iris-demo"},
            {"messages",
             {{{"role", "user"},
               {"content",
                {{{"type", "image_url"}, {"image_url", {{"url", data_url(image_bytes)}}}},
                 {{"type", "text"}, {"text", question}}}}}}}};
}

} // namespace iris::test
