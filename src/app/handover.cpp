#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <localdns/app/handover.hpp>

namespace localdns::app {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kPeerClosed = "the peer closed the connection";

UniqueFd connect_unix(const std::string& path, std::string& error) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    error = path + ": path too long for a Unix socket";
    return {};
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + std::strerror(errno);
    return {};
  }
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = path + ": " + std::strerror(errno);
    return {};
  }
  return fd;
}

bool write_all(int fd, const std::string& text) {
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// One line (without its newline) within `timeout`, at most 256 bytes; checks
// `cancel` every 100 ms. An error says why there is none.
std::expected<std::string, std::string> read_line(int fd, std::chrono::milliseconds timeout,
                                                  const std::atomic<bool>* cancel) {
  auto deadline = Clock::now() + timeout;
  std::string line;
  while (true) {
    if (cancel != nullptr && cancel->load()) return std::unexpected("cancelled");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::unexpected("timed out");
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    if (rc < 0 && errno != EINTR)
      return std::unexpected(std::string("poll: ") + std::strerror(errno));
    if (rc <= 0) continue;
    char c = 0;
    ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return std::unexpected(std::string("recv: ") + std::strerror(errno));
    if (n == 0) return std::unexpected(kPeerClosed);
    if (c == '\n') return line;
    if (line.size() >= 256) return std::unexpected("line too long");
    line.push_back(c);
  }
}

// Until the peer closes `fd` (true) or `cancel` (false); discards what it sends.
bool wait_for_close(int fd, const std::atomic<bool>& cancel) {
  while (!cancel.load()) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, 100);
    if (rc < 0 && errno != EINTR) return true;
    if (rc <= 0) continue;
    char buf[64];
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
  return false;
}

pid_t peer_pid(int fd, uid_t* uid = nullptr) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return 0;
  if (uid != nullptr) *uid = cred.uid;
  return cred.pid;
}

}  // namespace

bool control_socket_live(const std::string& path) {
  std::string ignored;
  return static_cast<bool>(connect_unix(path, ignored));
}

std::expected<Takeover, std::string> request_handover(const std::string& path) {
  Takeover t;
  std::string error;
  t.conn = connect_unix(path, error);
  if (!t.conn) return std::unexpected(error);
  t.donor = peer_pid(t.conn.get());
  if (!write_all(t.conn.get(), std::string(kHandoverCommand) + "\n")) {
    return std::unexpected(path + ": cannot send the request: " + std::strerror(errno));
  }
  // An older localdns answers "error: unknown command": say that, not "bad magic".
  char first = 0;
  pollfd p{t.conn.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kFrameTimeout).count())) != 1) {
    return std::unexpected("the localdns on " + path + " (pid " + std::to_string(t.donor) +
                           ") did not answer in " + std::to_string(kFrameTimeout.count()) + " s");
  }
  if (::recv(t.conn.get(), &first, 1, MSG_PEEK | MSG_DONTWAIT) == 1 && first != 'L') {
    auto line = read_line(t.conn.get(), std::chrono::seconds(1), nullptr);
    return std::unexpected("the localdns on " + path + " (pid " + std::to_string(t.donor) +
                           ") answered: " + line.value_or(line.error()));
  }
  auto fds = receive_fds(t.conn.get(), kFrameTimeout);
  if (!fds) return std::unexpected("from the localdns on " + path + ": " + fds.error());
  t.pool = FdPool(std::move(*fds));
  return t;
}

std::expected<void, std::string> finish_handover(Takeover& t, std::chrono::milliseconds timeout) {
  const UniqueFd& conn = t.conn;
  if (!conn) return std::unexpected("no connection to the previous instance");
  if (!write_all(conn.get(), "taken\n")) {
    return std::unexpected(std::string("cannot say taken: ") + std::strerror(errno));
  }
  auto line = read_line(conn.get(), timeout, nullptr);
  if (!line) return std::unexpected(line.error());
  if (!line->starts_with("ok")) return std::unexpected("it answered: " + *line);
  return {};
}

HandoverDonor::HandoverDonor(Hooks hooks) : hooks_(std::move(hooks)) {}

HandoverDonor::~HandoverDonor() {
  cancel_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::string HandoverDonor::start(UniqueFd conn) {
  if (!conn) return std::string("error: handover: ") + std::strerror(errno) + "\n";
  std::lock_guard lock(mu_);
  if (busy_) return "error: handover: one is in progress or done already\n";
  uid_t uid = 0;
  pid_t pid = peer_pid(conn.get(), &uid);
  if (uid != ::geteuid()) {
    spdlog::warn("handover: refused: pid {} runs as uid {}, this localdns as {}", pid, uid,
                 ::geteuid());
    return "error: handover: both instances must run as the same user (uid " +
           std::to_string(::geteuid()) + ")\n";
  }
  busy_ = true;
  if (thread_.joinable()) thread_.join();  // a failed one, returning
  thread_ = std::thread([this, c = std::move(conn)]() mutable { run(std::move(c)); });
  return {};
}

void HandoverDonor::run(UniqueFd conn) {
  pid_t pid = peer_pid(conn.get());
  // From here on node setup is the successor's too: a SIGTERM now must not
  // tear it down.
  hooks_.on_request(pid);
  auto fds = hooks_.export_fds();
  spdlog::info("handover: pid {} asks for the listening sockets; passing {}", pid, fds.size());
  if (auto sent = send_fds(conn.get(), fds, kFrameTimeout); !sent) {
    spdlog::error("handover to pid {} failed: {}; serving on", pid, sent.error());
    hooks_.on_abort();
    std::lock_guard lock(mu_);
    busy_ = false;  // nothing was passed: another may try
    return;
  }
  fds.clear();  // our copies of the dup()s: the successor holds its own now
  auto taken = read_line(conn.get(), kTakenTimeout, &cancel_);
  if (!taken || *taken != "taken") {
    if (cancel_.load()) {
      spdlog::info("handover to pid {}: stopping before it took the sockets", pid);
      return;  // SIGTERM: leave node setup to the successor
    }
    spdlog::error("handover to pid {} failed: {}; serving on", pid,
                  taken ? "it said '" + *taken + "'" : taken.error());
    hooks_.on_abort();
    if (!taken && taken.error() == kPeerClosed) {
      std::lock_guard lock(mu_);
      busy_ = false;  // it is gone, and its copies with it: another may try
    }
    return;  // otherwise it may hold the sockets: no second handover from this one
  }
  handed_over_.store(true);
  spdlog::info("handover: pid {} serves on the sockets; finishing what is in flight", pid);
  auto started = Clock::now();
  bool finished = hooks_.hand_over(cancel_);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  write_all(conn.get(), finished ? "ok\n" : "ok unfinished\n");
  spdlog::info(
      "handover: handed over to pid {} ({} ms to finish what was in flight{}); idle until "
      "SIGTERM, node setup stays",
      pid, ms, finished ? "" : ", not all of it");
  // The successor holds the connection for its whole life. Should it die,
  // our paused UDP sockets would take a share of the flows unread: stop.
  if (wait_for_close(conn.get(), cancel_)) {
    spdlog::error(
        "handover: the successor pid {} exited; stopping so that its sockets leave the "
        "reuseport group",
        pid);
    hooks_.on_successor_exit();
  }
}

}  // namespace localdns::app
