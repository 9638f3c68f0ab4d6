// Loads a local HTML file in headless Chromium and reports what the page did, through the
// DevTools protocol over a pipe (--remote-debugging-pipe): every request the page made beyond its
// own file, every console error, uncaught exception and error log entry (CSP violations among
// them), and a PNG screenshot. The browser's own background traffic (component updates) is not
// the page's and does not show here.
#pragma once

#include "core/core.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace iris::test {

struct PageReport
{
    bool loaded = false; // the load event fired
    bool screenshot = false; // the PNG was written
    std::vector<std::string> requests; // URLs beyond the page itself (data: URLs excluded)
    std::vector<std::string> errors; // console errors, exceptions, error log entries
    std::string failure; // why the harness could not finish
};

class Chromium
{
public:
    Chromium(const std::filesystem::path& profile)
    {
        int to[2], from[2];
        if (pipe(to) != 0 || pipe(from) != 0) return;
        pid_ = fork();
        if (pid_ == 0) {
            // The protocol wants the browser to read fd 3 and write fd 4.
            int r = fcntl(to[0], F_DUPFD, 10), w = fcntl(from[1], F_DUPFD, 10);
            dup2(r, 3);
            dup2(w, 4);
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            for (int fd = 5; fd < 256; ++fd) close(fd);
            std::string dir = "--user-data-dir=" + profile.string();
            execlp("chromium", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-background-networking", "--no-first-run", "--remote-debugging-pipe",
                   dir.c_str(), "about:blank", static_cast<char*>(nullptr));
            _exit(127);
        }
        close(to[0]);
        close(from[1]);
        out_ = to[1];
        in_ = from[0];
    }

    ~Chromium()
    {
        if (pid_ > 0) {
            send("Browser.close", {});
            for (int i = 0; i < 50; ++i) {
                if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
                    pid_ = -1;
                    break;
                }
                usleep(100'000);
            }
            if (pid_ > 0) {
                kill(pid_, SIGKILL);
                waitpid(pid_, nullptr, 0);
            }
        }
        if (out_ >= 0) close(out_);
        if (in_ >= 0) close(in_);
    }

    PageReport load(const std::filesystem::path& html, const std::filesystem::path& png,
                    int timeout_s = 60)
    {
        PageReport rep;
        deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
        if (pid_ <= 0) return fail(rep, "chromium could not be started");
        auto target = call("Target.createTarget", {{"url", "about:blank"}});
        if (!target) return fail(rep, "Target.createTarget got no answer");
        auto attached = call("Target.attachToTarget",
                             {{"targetId", (*target)["targetId"]}, {"flatten", true}});
        if (!attached) return fail(rep, "Target.attachToTarget got no answer");
        session_ = (*attached)["sessionId"].get<std::string>();
        for (const char* domain : {"Network.enable", "Runtime.enable", "Log.enable", "Page.enable"})
            if (!call(domain, json::object())) return fail(rep, std::string(domain) + " failed");
        call("Emulation.setDeviceMetricsOverride",
             {{"width", 1024}, {"height", 900}, {"deviceScaleFactor", 1}, {"mobile", false}});
        std::string url = "file://" + std::filesystem::absolute(html).string();
        if (!call("Page.navigate", {{"url", url}})) return fail(rep, "Page.navigate failed");
        // Events until the load event, then a moment more for late requests and errors.
        std::chrono::steady_clock::time_point settle {};
        while (true) {
            auto now = std::chrono::steady_clock::now();
            if (rep.loaded && now >= settle) break;
            if (now >= deadline_ || closed_) return fail(rep, "the page did not finish loading");
            auto msg = next(rep.loaded ? 50 : 1000);
            if (!msg) continue;
            observe(*msg, url, rep);
            if (!rep.loaded && (*msg).value("method", "") == "Page.loadEventFired") {
                rep.loaded = true;
                settle = std::chrono::steady_clock::now() + std::chrono::milliseconds(700);
            }
        }
        auto shot = call("Page.captureScreenshot", {{"format", "png"}}, &rep, url);
        if (!shot) return fail(rep, "Page.captureScreenshot failed");
        auto bytes = base64_decode((*shot)["data"].get<std::string>());
        std::ofstream(png, std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        rep.screenshot = std::filesystem::file_size(png) == bytes.size() && !bytes.empty();
        return rep;
    }

private:
    using json = nlohmann::json;

    static PageReport fail(PageReport& rep, std::string why)
    {
        rep.failure = std::move(why);
        return rep;
    }

    void send(const std::string& method, const json& params)
    {
        json msg = {{"id", ++id_}, {"method", method}, {"params", params}};
        if (!session_.empty() && method.find("Target.") != 0 && method.find("Browser.") != 0)
            msg["sessionId"] = session_;
        std::string text = msg.dump();
        text.push_back('\0');
        for (size_t done = 0; done < text.size();) {
            ssize_t n = write(out_, text.data() + done, text.size() - done);
            if (n <= 0) return;
            done += size_t(n);
        }
    }

    // The result of a command; events that arrive meanwhile are observed when rep is given.
    std::optional<json> call(const std::string& method, const json& params,
                             PageReport* rep = nullptr, const std::string& url = "")
    {
        send(method, params);
        int want = id_;
        while (!closed_ && std::chrono::steady_clock::now() < deadline_) {
            auto msg = next(1000);
            if (!msg) continue;
            if (msg->contains("id") && (*msg)["id"] == want) {
                if (msg->contains("error")) return std::nullopt;
                return (*msg)["result"];
            }
            if (rep) observe(*msg, url, *rep);
        }
        return std::nullopt;
    }

    std::optional<json> next(int timeout_ms)
    {
        while (true) {
            size_t end = buf_.find('\0');
            if (end != std::string::npos) {
                json msg = json::parse(buf_.substr(0, end), nullptr, false);
                buf_.erase(0, end + 1);
                if (msg.is_discarded()) continue;
                return msg;
            }
            pollfd p {in_, POLLIN, 0};
            if (poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
            char chunk[65536];
            ssize_t n = read(in_, chunk, sizeof chunk);
            if (n <= 0) {
                closed_ = true; // the browser is gone
                return std::nullopt;
            }
            buf_.append(chunk, size_t(n));
        }
    }

    static void observe(const json& msg, const std::string& url, PageReport& rep)
    {
        std::string method = msg.value("method", "");
        const json& p = msg.contains("params") ? msg["params"] : json::object();
        if (method == "Network.requestWillBeSent") {
            std::string u = p["request"].value("url", "");
            if (u != url && u.rfind("data:", 0) != 0) rep.requests.push_back(u);
        } else if (method == "Runtime.consoleAPICalled") {
            std::string type = p.value("type", "");
            if (type == "error" || type == "assert" || type == "warning") {
                std::string text = "console." + type + ":";
                for (const auto& a : p["args"]) text += " " + a.value("description", a.dump());
                rep.errors.push_back(text);
            }
        } else if (method == "Runtime.exceptionThrown") {
            const json& d = p["exceptionDetails"];
            std::string text = d.value("text", "exception");
            if (d.contains("exception")) text += " " + d["exception"].value("description", "");
            rep.errors.push_back(text);
        } else if (method == "Log.entryAdded") {
            const json& e = p["entry"];
            if (e.value("level", "") == "error") rep.errors.push_back(e.value("text", ""));
        }
    }

    pid_t pid_ = -1;
    int out_ = -1, in_ = -1;
    int id_ = 0;
    bool closed_ = false;
    std::string session_;
    std::string buf_;
    std::chrono::steady_clock::time_point deadline_ {};
};

} // namespace iris::test
