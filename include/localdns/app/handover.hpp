// Upgrade handover between two localdns on one node (README.md, "Upgrades"),
// over the control socket:
//   successor: "handover 1\n"
//   donor:     frames (fd_passing.hpp) with a dup() of every listening socket
//              (each worker's UDP and TCP sockets, the metrics and health ones)
//   successor: serves on them (and binds its own control socket), "taken\n"
//   donor:     stops reading and accepting, finishes what is in flight,
//              "ok\n"; then stays idle until SIGTERM.
// The successor keeps the connection open for its whole life: when it closes
// before the donor's SIGTERM (the successor died), the donor shuts down, so
// that its paused sockets leave the SO_REUSEPORT group.
// Both hold the same sockets, so the datagrams queued on a UDP socket and the
// connections in a TCP accept queue stay there for whichever reads first:
// nothing is lost when the donor stops, as it would be by closing a
// SO_REUSEPORT socket.
//
// Thread-safety: the successor's functions run on the main thread at start;
// a HandoverDonor runs each handover on a thread of its own, started from the
// control socket's thread, its hooks called there.
#pragma once

#include <atomic>
#include <chrono>
#include <expected>
#include <functional>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

#include <localdns/app/fd_passing.hpp>

namespace localdns::app {

inline constexpr const char* kHandoverCommand = "handover 1";
// How long the successor waits for the frame, and the donor for "taken".
inline constexpr std::chrono::seconds kFrameTimeout{5};
inline constexpr std::chrono::seconds kTakenTimeout{30};

// Does a process answer on the Unix socket `path` (a connect succeeds)?
bool control_socket_live(const std::string& path);

// The successor's side.
struct Takeover {
  UniqueFd conn;  // to the donor: held open while this instance runs
  pid_t donor = 0;
  FdPool pool{{}};
  std::size_t adopted = 0;  // of the pool's sockets, taken by listeners
};

// Asks the localdns answering on `path` for its sockets.
std::expected<Takeover, std::string> request_handover(const std::string& path);
// Says "taken" and waits, at most `timeout`, for the donor's "ok" (it has
// finished what it had in flight). Keeps the connection: closing it (at exit)
// tells the donor to stop.
std::expected<void, std::string> finish_handover(Takeover& t, std::chrono::milliseconds timeout);

// The donor's side: one handover at a time.
class HandoverDonor {
 public:
  struct Hooks {
    // A dup() of every listening socket.
    std::function<std::vector<PassedFd>()> export_fds;
    // A handover to `successor` began: node setup is not the donor's to tear
    // down any more, nor its configuration to reload.
    std::function<void(pid_t successor)> on_request;
    // It failed before the successor took the sockets: the donor serves alone again.
    std::function<void()> on_abort;
    // The successor serves: stop reading and accepting, finish what is in
    // flight (until done or `cancel`); true when everything finished.
    std::function<bool(const std::atomic<bool>& cancel)> hand_over;
    // After hand_over: the successor closed the connection (it exited) before
    // this instance was stopped. Start the normal shutdown.
    std::function<void()> on_successor_exit;
  };
  explicit HandoverDonor(Hooks hooks);
  // Cancels a handover in progress or the watch on its successor (their
  // waits end within 100 ms) and joins.
  ~HandoverDonor();
  HandoverDonor(const HandoverDonor&) = delete;
  HandoverDonor& operator=(const HandoverDonor&) = delete;

  // Takes the connection on which "handover 1" arrived and runs the handover
  // on its own thread. An error line for the connection when it cannot
  // (another handover runs, or ran: the sockets are gone).
  std::string start(UniqueFd conn);
  bool handed_over() const { return handed_over_.load(); }

 private:
  void run(UniqueFd conn);

  Hooks hooks_;
  std::mutex mu_;
  bool busy_ = false;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> handed_over_{false};
  std::thread thread_;
};

}  // namespace localdns::app
