#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <system_error>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <localdns/app/config_watch.hpp>

namespace localdns::app {

namespace {
using Clock = std::chrono::steady_clock;
constexpr std::uint32_t kMask =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB;
}  // namespace

WatchedDir watch_file(const std::string& path) {
  std::filesystem::path p(path);
  auto dir = p.parent_path().string();
  return {dir.empty() ? "." : dir, {p.filename().string()}};
}

bool ConfigWatcher::relevant(const WatchedDir& w, const std::string& name) {
  if (w.names.empty() || name == "..data") return true;
  return std::find(w.names.begin(), w.names.end(), name) != w.names.end();
}

ConfigWatcher::ConfigWatcher(std::vector<WatchedDir> dirs, std::function<void()> on_change,
                             std::chrono::milliseconds debounce)
    : dirs_(std::move(dirs)), on_change_(std::move(on_change)), debounce_(debounce) {
  inotify_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_ < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_ < 0) {
    int err = errno;
    ::close(inotify_);
    throw std::system_error(err, std::generic_category(), "eventfd");
  }
  for (const auto& d : dirs_) {
    int wd = ::inotify_add_watch(inotify_, d.dir.c_str(), kMask | IN_ONLYDIR);
    if (wd < 0) {
      spdlog::warn("reload: cannot watch {}: {}; SIGHUP or `localdns ctl reload` still reload",
                   d.dir, std::strerror(errno));
    }
    wds_.push_back(wd);
  }
  thread_ = std::thread([this] { run(); });
}

ConfigWatcher::~ConfigWatcher() {
  std::uint64_t one = 1;
  (void)!::write(wake_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::close(wake_);
  ::close(inotify_);
}

void ConfigWatcher::run() {
  // Events are read into one fixed buffer; the only other state is when to call.
  alignas(inotify_event) std::array<char, 4096> buf{};
  bool pending = false;  // an event counted; call at `due`
  Clock::time_point first{}, due{};
  for (;;) {
    int timeout = -1;
    if (pending) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now());
      timeout = static_cast<int>(std::max<std::int64_t>(0, left.count()));
    }
    pollfd fds[2] = {{inotify_, POLLIN, 0}, {wake_, POLLIN, 0}};
    int n = ::poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) {
      spdlog::error("reload: watching the configuration failed: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if (n > 0 && (fds[0].revents & POLLIN)) {
      for (;;) {
        ssize_t len = ::read(inotify_, buf.data(), buf.size());
        if (len <= 0) break;
        for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(inotify_event)) <= len;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf.data() + at);
          at += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
          auto it = std::find(wds_.begin(), wds_.end(), ev->wd);
          if (it == wds_.end() || ev->len == 0) continue;
          const auto& w = dirs_[static_cast<std::size_t>(it - wds_.begin())];
          if (!relevant(w, std::string(ev->name))) continue;
          auto now = Clock::now();
          if (!pending) first = now;
          pending = true;
          due = std::min(now + debounce_, first + 5 * debounce_);
        }
      }
    }
    if (pending && Clock::now() >= due) {
      pending = false;
      on_change_();
    }
  }
}

}  // namespace localdns::app
