// The control socket behind `localdns ctl`: a Unix stream socket (mode 0600,
// so root only by default; never a network port). One command line per
// connection; the answer is text, or JSON when the line ends in " json".
//   stats | top names|nxdomain|clients N | flush [NAME] | dump | reload
// and "handover 1" (handover.hpp), which hands the connection to a
// HandoverDonor.
#pragma once

#include <chrono>
#include <deque>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/app/runtime.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

class ControlServer {
 public:
  // What a client of the socket may cost: connections at once (a newcomer
  // closes the oldest), bytes of one command line, and time per connection.
  static constexpr std::size_t kMaxConnections = 16;
  static constexpr std::size_t kMaxCommandBytes = 4096;
  static constexpr std::chrono::seconds kCommandTime{5};

  // Throws std::runtime_error when the socket cannot be created, or when a
  // live localdns already answers on `path` and `replace` is off. With
  // `replace` (this instance took over from that one), binds PATH.new.PID
  // and renames it over `path`, so that `localdns ctl` reaches this one.
  // The destructor unlinks `path` only while it is still this socket.
  // `reload` answers `reload` (empty: the command is unavailable); it runs
  // on the socket's thread, which the destructor joins. `handover` takes the
  // connection of a "handover 1" and returns "" or an error line for it.
  using ReloadFn = std::function<std::string()>;
  using HandoverFn = std::function<std::string(int fd)>;
  ControlServer(Runtime& server, node::NodeSetup* node, std::string path, ReloadFn reload = {},
                HandoverFn handover = {}, bool replace = false);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Runs one command line and returns the answer (exposed for tests).
  std::string execute(const std::string& line);

 private:
  struct Conn;
  void accept();
  void finish(std::uint64_t id);  // closes one connection
  void tick();
  std::string stats(bool json);
  std::string top(const std::string& kind, std::size_t n, bool json);
  std::string flush(const std::string& name, bool json);
  std::string dump(bool json);

  Runtime& server_;
  node::NodeSetup* node_;
  std::string path_;
  ReloadFn reload_;
  HandoverFn handover_;
  ino_t inode_ = 0;  // of the socket file bound, to unlink only our own
  std::chrono::steady_clock::time_point started_;
  boost::asio::io_context ctx_{1};
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer timer_;
  boost::asio::steady_timer retry_;  // after accept errors such as EMFILE
  bool accept_failing_ = false;
  std::map<std::uint64_t, std::shared_ptr<Conn>> conns_;  // oldest first
  std::uint64_t next_conn_ = 0;
  std::mutex mu_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> samples_;  // QPS
  std::thread thread_;
};

// Where a systemd unit with RuntimeDirectory=localdns puts the control socket
// (config/bare-metal.yaml's control_socket).
inline constexpr const char* kRuntimeDirControlSocket = "/run/localdns/localdns.sock";

// The sockets `localdns ctl` tries, in order: --socket PATH alone when given;
// else control_socket of --config FILE when given; else the default
// (/run/localdns.sock), then kRuntimeDirControlSocket. An unreadable config or
// a control socket that is off is an error naming the file.
std::expected<std::vector<std::string>, std::string> ctl_socket_candidates(
    const std::optional<std::string>& socket_flag, const std::optional<std::string>& config_path);

// `localdns ctl ARGS...`: sends the command, prints the answer; exit code.
int run_ctl(const std::vector<std::string>& args);

}  // namespace localdns::app
