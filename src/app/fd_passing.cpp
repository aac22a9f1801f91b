#include <algorithm>
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <span>
#include <sys/socket.h>
#include <unistd.h>

#include <localdns/app/fd_passing.hpp>

namespace localdns::app {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMagic[4] = {'L', 'D', 'N', 'H'};
constexpr std::size_t kHeader = 12;  // magic, version, reserved, count, length
constexpr std::size_t kMaxDescription = 1 + 2 + 1 + kMaxEndpointText;
constexpr std::size_t kMaxPayload = kMaxFds * kMaxDescription;

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// Waits until `sock` is ready for `events` or the deadline passes.
std::expected<void, std::string> wait_ready(int sock, short events, Clock::time_point deadline) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::unexpected("timed out");
    pollfd p{sock, events, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 1000)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return std::unexpected(errno_text("poll"));
    if (rc == 0) continue;
    if (p.revents & (events | POLLHUP | POLLERR)) return {};
  }
}

void put_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
std::uint16_t get_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
std::uint32_t get_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

bool known_kind(std::uint8_t k) {
  return k >= static_cast<std::uint8_t>(FdKind::udp) &&
         k <= static_cast<std::uint8_t>(FdKind::health);
}

// Reads exactly `len` bytes into `out`, keeping every descriptor that comes
// with them in `fds` (so the caller closes them on error).
std::expected<void, std::string> read_exact(int sock, std::uint8_t* out, std::size_t len,
                                            std::vector<UniqueFd>& fds,
                                            Clock::time_point deadline) {
  std::size_t have = 0;
  // Room for every descriptor a frame may carry, and then some: a sender with
  // more gets MSG_CTRUNC, an error.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFds + 8))];
  while (have < len) {
    if (auto r = wait_ready(sock, POLLIN, deadline); !r) return r;
    iovec iov{out + have, len - have};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (n < 0) return std::unexpected(errno_text("recvmsg"));
    for (auto* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      return std::unexpected("more descriptors than a frame may carry (" + std::to_string(kMaxFds) +
                             ")");
    }
    if (n == 0) {
      return std::unexpected("the peer closed the connection after " + std::to_string(have) +
                             " of " + std::to_string(len) + " bytes");
    }
    have += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

const char* to_string(FdKind k) {
  switch (k) {
    case FdKind::udp:
      return "udp";
    case FdKind::tcp:
      return "tcp";
    case FdKind::http:
      return "http";
    case FdKind::health:
      return "health";
  }
  return "unknown";
}

namespace {

// One frame with `fds` (at most kMaxFds), `following` frames after it.
std::expected<void, std::string> send_frame(int sock, std::span<const PassedFd> fds,
                                            std::uint8_t following, Clock::time_point deadline) {
  std::vector<std::uint8_t> frame(kHeader);
  for (const auto& f : fds) {
    if (f.endpoint.size() > kMaxEndpointText) {
      return std::unexpected("endpoint '" + f.endpoint.substr(0, kMaxEndpointText) +
                             "...' is longer than " + std::to_string(kMaxEndpointText) + " bytes");
    }
    if (f.fd.get() < 0) return std::unexpected("no descriptor for " + f.endpoint);
    std::uint8_t d[4];
    d[0] = static_cast<std::uint8_t>(f.kind);
    put_u16(d + 1, f.worker);
    d[3] = static_cast<std::uint8_t>(f.endpoint.size());
    frame.insert(frame.end(), d, d + 4);
    frame.insert(frame.end(), f.endpoint.begin(), f.endpoint.end());
  }
  std::memcpy(frame.data(), kMagic, 4);
  frame[4] = kFdFrameVersion;
  frame[5] = following;
  put_u16(frame.data() + 6, static_cast<std::uint16_t>(fds.size()));
  put_u32(frame.data() + 8, static_cast<std::uint32_t>(frame.size() - kHeader));

  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  std::size_t sent = 0;
  while (sent < frame.size()) {
    if (auto r = wait_ready(sock, POLLOUT, deadline); !r) return r;
    iovec iov{frame.data() + sent, frame.size() - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (sent == 0 && !fds.empty()) {
      // The descriptors go with the first byte, once.
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      auto* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      for (std::size_t i = 0; i < fds.size(); ++i) {
        int fd = fds[i].fd.get();
        std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof fd);
      }
    }
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (n < 0) return std::unexpected(errno_text("sendmsg"));
    sent += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

std::expected<void, std::string> send_fds(int sock, const std::vector<PassedFd>& fds,
                                          std::chrono::milliseconds timeout) {
  if (fds.size() > kMaxPassedFds) {
    return std::unexpected(std::to_string(fds.size()) + " descriptors, more than the " +
                           std::to_string(kMaxPassedFds) + " a handover may pass");
  }
  auto deadline = Clock::now() + timeout;
  std::size_t frames = std::max<std::size_t>(1, (fds.size() + kMaxFds - 1) / kMaxFds);
  std::span<const PassedFd> all(fds);
  for (std::size_t i = 0; i < frames; ++i) {
    auto chunk = all.subspan(i * kMaxFds, std::min(kMaxFds, fds.size() - i * kMaxFds));
    auto following = static_cast<std::uint8_t>(frames - 1 - i);
    if (auto r = send_frame(sock, chunk, following, deadline); !r) return r;
  }
  return {};
}

namespace {

// One frame, appended to `out`; `following` says how many come after it.
std::expected<void, std::string> receive_frame(int sock, Clock::time_point deadline,
                                               std::vector<PassedFd>& out, std::size_t& following) {
  std::vector<UniqueFd> got;  // every descriptor received: closed on any error
  std::uint8_t header[kHeader];
  if (auto r = read_exact(sock, header, kHeader, got, deadline); !r)
    return std::unexpected(r.error());
  if (std::memcmp(header, kMagic, 4) != 0) return std::unexpected("not a handover frame (magic)");
  if (header[4] != kFdFrameVersion) {
    return std::unexpected("handover frame version " + std::to_string(header[4]) + ", expected " +
                           std::to_string(kFdFrameVersion));
  }
  following = header[5];
  std::size_t count = get_u16(header + 6);
  std::size_t length = get_u32(header + 8);
  if (count > kMaxFds) {
    return std::unexpected("frame announces " + std::to_string(count) + " descriptors, more than " +
                           std::to_string(kMaxFds));
  }
  if (length > kMaxPayload || length < 4 * count) {
    return std::unexpected("frame descriptions of " + std::to_string(length) +
                           " bytes do not fit " + std::to_string(count) + " descriptors");
  }
  std::vector<std::uint8_t> payload(length);
  if (auto r = read_exact(sock, payload.data(), length, got, deadline); !r) {
    return std::unexpected(r.error());
  }
  if (got.size() != count) {
    return std::unexpected("frame announces " + std::to_string(count) + " descriptors but " +
                           std::to_string(got.size()) + " came with it");
  }
  std::vector<PassedFd> descs;
  std::size_t at = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (at + 4 > length)
      return std::unexpected("frame description " + std::to_string(i) + " cut short");
    const auto* d = payload.data() + at;
    if (!known_kind(d[0])) {
      return std::unexpected("frame description " + std::to_string(i) + ": unknown kind " +
                             std::to_string(d[0]));
    }
    std::size_t text = d[3];
    if (text > kMaxEndpointText || at + 4 + text > length) {
      return std::unexpected("frame description " + std::to_string(i) + ": endpoint cut short");
    }
    PassedFd f;
    f.kind = static_cast<FdKind>(d[0]);
    f.worker = get_u16(d + 1);
    f.endpoint.assign(reinterpret_cast<const char*>(d + 4), text);
    descs.push_back(std::move(f));
    at += 4 + text;
  }
  if (at != length)
    return std::unexpected("frame has " + std::to_string(length - at) + " bytes too many");
  for (std::size_t i = 0; i < count; ++i) {
    descs[i].fd = std::move(got[i]);
    out.push_back(std::move(descs[i]));
  }
  return {};
}

}  // namespace

std::expected<std::vector<PassedFd>, std::string> receive_fds(int sock,
                                                              std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::vector<PassedFd> out;  // closed on any error, with every frame's descriptors
  std::size_t following = 0;
  if (auto r = receive_frame(sock, deadline, out, following); !r) return std::unexpected(r.error());
  if (following >= kMaxFrames) {
    return std::unexpected("frame announces " + std::to_string(following) +
                           " more frames, more than " + std::to_string(kMaxFrames - 1));
  }
  for (std::size_t left = following; left > 0; --left) {
    std::size_t next = 0;
    if (auto r = receive_frame(sock, deadline, out, next); !r) return std::unexpected(r.error());
    if (next != left - 1) {
      return std::unexpected("frame says " + std::to_string(next) + " more follow, expected " +
                             std::to_string(left - 1));
    }
  }
  return out;
}

std::vector<UniqueFd> FdPool::take(FdKind kind, const std::string& endpoint, unsigned worker,
                                   unsigned workers) {
  std::vector<PassedFd*> match;
  for (auto& f : fds_)  // taken ones too: the positions must not shift between workers
    if (f.kind == kind && f.endpoint == endpoint) match.push_back(&f);
  std::stable_sort(match.begin(), match.end(),
                   [](const PassedFd* a, const PassedFd* b) { return a->worker < b->worker; });
  std::vector<UniqueFd> out;
  for (std::size_t j = worker; workers != 0 && j < match.size(); j += workers) {
    if (!match[j]->fd) continue;
    out.push_back(std::move(match[j]->fd));
    ++taken_;
  }
  return out;
}

UniqueFd FdPool::take_one(FdKind kind, const std::string& endpoint) {
  for (auto& f : fds_) {
    if (f.kind == kind && f.endpoint == endpoint && f.fd) {
      ++taken_;
      return std::move(f.fd);
    }
  }
  return {};
}

std::vector<std::string> FdPool::left() const {
  std::vector<std::string> out;
  for (const auto& f : fds_)
    if (f.fd) out.push_back(std::string(to_string(f.kind)) + " " + f.endpoint);
  return out;
}

}  // namespace localdns::app
