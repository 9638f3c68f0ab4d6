// Headless Chromium driven through the DevTools protocol over a pipe (--remote-debugging-pipe):
// load() opens a local HTML file and reports what the page did, open() opens a page to drive
// with eval() and wait_for(). Either way every request the page made beyond its own URL (a
// WebSocket too), every console error, uncaught exception and error log entry (CSP violations
// among them) is recorded, and screenshot() writes a PNG. The browser's own background traffic
// (component updates) is not the page's and does not show here.
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
    using json = nlohmann::json;

    // extra_flags: e.g. the fake camera and microphone of a test.
    explicit Chromium(const std::filesystem::path& profile,
                      std::vector<std::string> extra_flags = {})
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
            std::vector<std::string> args = {"chromium",
                                             "--headless",
                                             "--no-sandbox",
                                             "--disable-gpu",
                                             "--no-first-run",
                                             "--disable-background-networking",
                                             "--remote-debugging-pipe",
                                             "--user-data-dir=" + profile.string()};
            args.insert(args.end(), extra_flags.begin(), extra_flags.end());
            args.push_back("about:blank");
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            execvp("chromium", argv.data());
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

    // Loads a local HTML file, waits for it to settle and writes a screenshot.
    PageReport load(const std::filesystem::path& html, const std::filesystem::path& png,
                    int timeout_s = 60)
    {
        if (open("file://" + std::filesystem::absolute(html).string(), timeout_s)) screenshot(png);
        return report_;
    }

    // Opens url in a new tab and waits for its load event and a moment more; false (with
    // report().failure) if it could not. Later calls share the deadline of timeout_s.
    bool open(const std::string& url, int timeout_s = 60)
    {
        deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
        url_ = url;
        report_.loaded = false;
        if (pid_ <= 0) return fail("chromium could not be started");
        auto target = call("Target.createTarget", {{"url", "about:blank"}});
        if (!target) return fail("Target.createTarget got no answer");
        auto attached = call("Target.attachToTarget",
                             {{"targetId", (*target)["targetId"]}, {"flatten", true}});
        if (!attached) return fail("Target.attachToTarget got no answer");
        session_ = (*attached)["sessionId"].get<std::string>();
        for (const char* domain : {"Network.enable", "Runtime.enable", "Log.enable", "Page.enable"})
            if (!call(domain, json::object())) return fail(std::string(domain) + " failed");
        call("Emulation.setDeviceMetricsOverride",
             {{"width", 1024}, {"height", 900}, {"deviceScaleFactor", 1}, {"mobile", false}});
        if (!call("Page.navigate", {{"url", url}})) return fail("Page.navigate failed");
        // Events until the load event, then a moment more for late requests and errors.
        std::chrono::steady_clock::time_point settle {};
        while (true) {
            auto now = std::chrono::steady_clock::now();
            if (report_.loaded && now >= settle) return true;
            if (now >= deadline_ || closed_) return fail("the page did not finish loading");
            auto msg = next(report_.loaded ? 50 : 1000);
            if (!msg) continue;
            observe(*msg);
            if (!report_.loaded && (*msg).value("method", "") == "Page.loadEventFired") {
                report_.loaded = true;
                settle = std::chrono::steady_clock::now() + std::chrono::milliseconds(700);
            }
        }
    }

    // The value of a JavaScript expression in the page (a promise is awaited); nullopt if it
    // threw (recorded as an error) or the browser did not answer.
    std::optional<json> eval(const std::string& expression)
    {
        auto r
            = call("Runtime.evaluate",
                   {{"expression", expression}, {"awaitPromise", true}, {"returnByValue", true}});
        if (!r) return std::nullopt;
        if (r->contains("exceptionDetails")) {
            report_.errors.push_back("eval: " + (*r)["exceptionDetails"].dump());
            return std::nullopt;
        }
        return (*r)["result"].value("value", json());
    }

    // Polls a JavaScript condition every 200 ms until it is true; false after timeout_s.
    bool wait_for(const std::string& condition, int timeout_s)
    {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
        while (std::chrono::steady_clock::now() < until && !closed_) {
            auto v = eval("!!(" + condition + ")");
            if (v && *v == true) return true;
            auto pause = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
            while (std::chrono::steady_clock::now() < pause)
                if (auto msg = next(50)) observe(*msg);
        }
        return false;
    }

    // Chooses a file for the <input type=file> that selector names, as a user would.
    bool set_file(const std::string& selector, const std::filesystem::path& file)
    {
        auto doc = call("DOM.getDocument", json::object());
        if (!doc) return false;
        auto node = call("DOM.querySelector",
                         {{"nodeId", (*doc)["root"]["nodeId"]}, {"selector", selector}});
        return node && (*node)["nodeId"] != 0
            && call("DOM.setFileInputFiles",
                    {{"files", {std::filesystem::absolute(file).string()}},
                     {"nodeId", (*node)["nodeId"]}});
    }

    bool screenshot(const std::filesystem::path& png)
    {
        auto shot = call("Page.captureScreenshot", {{"format", "png"}});
        if (!shot) return fail("Page.captureScreenshot failed");
        auto bytes = base64_decode((*shot)["data"].get<std::string>());
        std::ofstream(png, std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        report_.screenshot = std::filesystem::file_size(png) == bytes.size() && !bytes.empty();
        return report_.screenshot;
    }

    // What the page did so far.
    const PageReport& report() const { return report_; }
    void forget_errors() { report_.errors.clear(); }

private:
    bool fail(std::string why)
    {
        report_.failure = std::move(why);
        return false;
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

    // The result of a command; events that arrive meanwhile are observed.
    std::optional<json> call(const std::string& method, const json& params)
    {
        send(method, params);
        int want = id_;
        // Past a page's loading deadline, a command still has half a minute.
        const auto until
            = std::max(deadline_, std::chrono::steady_clock::now() + std::chrono::seconds(30));
        while (!closed_ && std::chrono::steady_clock::now() < until) {
            auto msg = next(1000);
            if (!msg) continue;
            if (msg->contains("id") && (*msg)["id"] == want) {
                if (msg->contains("error")) return std::nullopt;
                return (*msg)["result"];
            }
            observe(*msg);
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

    void observe(const json& msg)
    {
        PageReport& rep = report_;
        std::string method = msg.value("method", "");
        const json& p = msg.contains("params") ? msg["params"] : json::object();
        if (method == "Network.requestWillBeSent") {
            std::string u = p["request"].value("url", "");
            if (u != url_ && u.rfind("data:", 0) != 0) rep.requests.push_back(u);
        } else if (method == "Network.webSocketCreated") {
            rep.requests.push_back(p.value("url", ""));
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
    std::string url_;
    std::string buf_;
    PageReport report_;
    std::chrono::steady_clock::time_point deadline_ {};
};

} // namespace iris::test
