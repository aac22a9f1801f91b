// Listening sockets passed from one localdns to the next (upgrade handover):
// a set of file descriptors and a description of each, sent over a connected
// Unix stream socket with SCM_RIGHTS.
//
// A handover passes at most kMaxPassedFds in up to kMaxFrames frames of at
// most kMaxFds each. A frame: "LDNH", version (1 byte), how many frames follow
// it (1 byte: 0 for the last, so the first says how many in all), the count
// (2 bytes, at most kMaxFds), the length of the descriptions (4 bytes, network order),
// then per descriptor its kind (1 byte), the donor's worker index (2 bytes)
// and its endpoint as text (1 byte of length, at most kMaxEndpointText). The
// descriptors ride on the frame's first byte. Every size is checked before it
// is used, every read and write has a deadline (poll), and a receiver closes
// every descriptor it got when anything is wrong; the ones it keeps have
// O_CLOEXEC (MSG_CMSG_CLOEXEC).
//
// Thread-safety: free functions and value types; an FdPool is used by one
// thread at a time (the main thread, while it builds the listeners).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <string>
#include <vector>

namespace localdns::app {

// A file descriptor this object closes.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// What a passed socket is, so that the receiver can match it to a listener.
enum class FdKind : std::uint8_t {
  udp = 1,     // a worker's DNS UDP socket
  tcp = 2,     // a worker's DNS TCP listening socket
  http = 3,    // the metrics endpoint's listening socket
  health = 4,  // the health endpoint's listening socket
};
const char* to_string(FdKind k);

struct PassedFd {
  FdKind kind = FdKind::udp;
  std::uint16_t worker = 0;  // the donor's worker index (0 for http and health)
  std::string endpoint;      // util::Endpoint::to_string(), e.g. "127.0.0.1:53"
  UniqueFd fd;
};

inline constexpr std::uint8_t kFdFrameVersion = 1;
// Below the kernel's SCM_MAX_FD (253) per message.
inline constexpr std::size_t kMaxFds = 250;
inline constexpr std::size_t kMaxEndpointText = 64;
inline constexpr std::size_t kMaxFrames = 16;
inline constexpr std::size_t kMaxPassedFds = kMaxFrames * kMaxFds;

// Sends `fds` (their descriptors are not closed) with their descriptions in as
// few frames as they fit. An error (too many, an endpoint too long, the peer
// gone, the deadline, for all frames together)
// says what went wrong.
std::expected<void, std::string> send_fds(int sock, const std::vector<PassedFd>& fds,
                                          std::chrono::milliseconds timeout);

// Receives the frames of one send_fds (within `timeout` for all); on any error
// every descriptor received is closed.
std::expected<std::vector<PassedFd>, std::string> receive_fds(int sock,
                                                              std::chrono::milliseconds timeout);

// The sockets received in a handover, handed out to the listeners that match
// them (kind and endpoint); the ones no listener takes are closed with the pool.
class FdPool {
 public:
  explicit FdPool(std::vector<PassedFd> fds) : fds_(std::move(fds)) {}

  // The sockets of `kind` on `endpoint` for worker `worker` of `workers`: the
  // donor's sockets in the order of its workers, the j-th to worker
  // j % workers. So a new instance with fewer workers takes every socket (a
  // worker may get several: none is left unread), and one with more gets none
  // for its extra workers, which bind a socket of their own (SO_REUSEPORT).
  std::vector<UniqueFd> take(FdKind kind, const std::string& endpoint, unsigned worker,
                             unsigned workers);
  // The first socket of `kind` on `endpoint`, or an empty one.
  UniqueFd take_one(FdKind kind, const std::string& endpoint);

  std::size_t received() const { return fds_.size(); }
  std::size_t taken() const { return taken_; }
  // The sockets no listener took, as "kind endpoint" (to log them).
  std::vector<std::string> left() const;

 private:
  std::vector<PassedFd> fds_;
  std::size_t taken_ = 0;
};

}  // namespace localdns::app
