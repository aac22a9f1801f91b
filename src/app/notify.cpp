#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>
#include <spdlog/spdlog.h>

#include <localdns/app/notify.hpp>
#include <localdns/dns/health.hpp>
#include <localdns/dns/wire.hpp>

namespace localdns::app {

namespace {

// libsystemd's functions, loaded the first time they are needed and only when
// NOTIFY_SOCKET is set: without a service manager to tell, the library and
// the libraries it needs (libgcrypt, liblzma, libzstd, ...) are never mapped.
struct Systemd {
  decltype(&::sd_notify) notify = nullptr;
  decltype(&::sd_watchdog_enabled) watchdog_enabled = nullptr;
};

Systemd load_systemd() {
  Systemd s;
  if (std::getenv("NOTIFY_SOCKET") == nullptr) return s;
  void* lib = ::dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = ::dlerror();
    spdlog::warn("cannot notify the service manager over NOTIFY_SOCKET: {}",
                 why != nullptr ? why : "libsystemd.so.0 not found");
    return s;
  }
  // The library stays loaded for the rest of the process.
  s.notify = reinterpret_cast<decltype(&::sd_notify)>(::dlsym(lib, "sd_notify"));
  s.watchdog_enabled =
      reinterpret_cast<decltype(&::sd_watchdog_enabled)>(::dlsym(lib, "sd_watchdog_enabled"));
  if (s.notify == nullptr || s.watchdog_enabled == nullptr) {
    spdlog::warn(
        "cannot notify the service manager over NOTIFY_SOCKET: libsystemd.so.0 lacks "
        "sd_notify or sd_watchdog_enabled");
    s = {};
  }
  return s;
}

// Loaded once, by whichever thread asks first.
const Systemd& systemd() {
  static const Systemd s = load_systemd();
  return s;
}

// sd_notify returns > 0 when sent, 0 without NOTIFY_SOCKET, < 0 (-errno) on error.
void send(const std::string& message, const char* what) {
  const auto notify = systemd().notify;
  if (notify == nullptr) return;
  int r = notify(0, message.c_str());
  if (r < 0) {
    spdlog::warn("cannot notify the service manager ({}) over NOTIFY_SOCKET: {}", what,
                 std::strerror(-r));
  } else if (r > 0) {
    spdlog::debug("notified the service manager: {}", what);
  }
}

}  // namespace

std::string ready_status(const config::Config& c, const std::string& node_backend) {
  std::string s = "serving on ";
  for (std::size_t i = 0; i < c.listen.size(); ++i)
    s += (i == 0 ? "" : ", ") + c.listen[i].to_string();
  for (const auto& g : c.forward) {
    if (std::find(g.zones.begin(), g.zones.end(), ".") == g.zones.end()) continue;
    s += "; forwarding . to ";
    const auto& servers = config::servers_of(c, g);
    for (std::size_t i = 0; i < servers.size(); ++i)
      s += (i == 0 ? "" : ", ") + servers[i].to_string();
  }
  if (!node_backend.empty()) s += "; node setup with " + node_backend + " rules";
  // One line: STATUS= ends at the newline.
  for (auto& ch : s)
    if (ch == '\n') ch = ' ';
  return s;
}

void notify_ready(const config::Config& c, const std::string& node_backend) {
  send("READY=1\nSTATUS=" + ready_status(c, node_backend), "READY=1");
}

void notify_stopping() {
  send("STOPPING=1\nSTATUS=shutting down", "STOPPING=1");
}

namespace {

// One UDP query for the health name; true on a NOERROR answer with our ID.
bool udp_answers(const config::Endpoint& ep, std::chrono::milliseconds timeout) {
  boost::asio::ip::udp::endpoint to(ep.address, ep.port);
  int fd = ::socket(to.protocol().family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  std::uint8_t q[512], r[512];
  auto id = static_cast<std::uint16_t>(::random());
  auto n = dns::build_health_query(id, dns::MutableBytes(q, sizeof q));
  bool ok = false;
  if (::connect(fd, to.data(), static_cast<socklen_t>(to.size())) == 0 &&
      ::send(fd, q, n, 0) == static_cast<ssize_t>(n)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      auto got = ::recv(fd, r, sizeof r, 0);
      ok = got > 0 && dns::is_health_answer(dns::Bytes(r, static_cast<std::size_t>(got)), id);
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace

bool listeners_answer(const std::vector<config::Endpoint>& listen,
                      std::chrono::milliseconds timeout) {
  for (const auto& ep : listen)
    if (!udp_answers(ep, timeout)) return false;
  return !listen.empty();
}

Watchdog::Watchdog(Listen listen, std::chrono::microseconds interval)
    : listen_(std::move(listen)), period_(std::max(interval / 4, std::chrono::microseconds(1000))) {
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::run() {
  const auto timeout =
      std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(period_ / 3),
                 std::chrono::milliseconds(1), std::chrono::milliseconds(500));
  bool failing = false;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; ++attempt)
      ok = listeners_answer(listen_(), timeout);
    if (ok) {
      systemd().notify(0, "WATCHDOG=1");
      if (failing) spdlog::info("watchdog: the listeners answer again");
    } else if (!failing) {
      spdlog::warn(
          "watchdog: a listen address does not answer over UDP; not telling systemd "
          "that localdns is alive");
    }
    failing = !ok;
    lock.lock();
    cv_.wait_for(lock, period_, [this] { return stop_; });
  }
}

std::unique_ptr<Watchdog> start_watchdog(Watchdog::Listen listen) {
  // Without NOTIFY_SOCKET (or libsystemd) no WATCHDOG=1 could be sent.
  const auto enabled = systemd().watchdog_enabled;
  std::uint64_t usec = 0;
  if (enabled == nullptr || enabled(0, &usec) <= 0 || usec == 0) return nullptr;
  spdlog::info("watchdog: every {} ms, as long as the listeners answer", usec / 4000);
  return std::make_unique<Watchdog>(std::move(listen), std::chrono::microseconds(usec));
}

}  // namespace localdns::app
