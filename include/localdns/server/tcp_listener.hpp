// DNS over TCP from clients (RFC 7766): pipelined queries on one connection,
// answered as they complete (out of order), 2-byte length framing that may
// split anywhere, an idle timeout, and caps on connections and on unanswered
// queries per connection. Lives on one worker's io_context; not thread-safe,
// except the process-wide connection count, which is atomic.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/config/config.hpp>
#include <localdns/server/query_handler.hpp>

namespace localdns::server {

class TcpListener;

class TcpSession : public std::enable_shared_from_this<TcpSession> {
 public:
  static constexpr std::size_t kMaxQuerySize = 4096;

  TcpSession(boost::asio::ip::tcp::socket sock, TcpListener& owner);
  ~TcpSession();
  const std::string& peer_address() const { return peer_; }
  TcpSession(const TcpSession&) = delete;
  TcpSession& operator=(const TcpSession&) = delete;

  void start();
  // An answer that completed after its query was read; queued in order of completion.
  void send_reply(dns::Bytes reply);
  void close();
  // Reads no further queries; closes once every query read is answered and
  // every reply written (or at once when nothing is outstanding).
  void close_after_flush();

 private:
  void read();
  void on_read(boost::system::error_code ec, std::size_t n);
  void process_frames();
  void queue(dns::Bytes reply);
  void write();
  void arm_idle();

  boost::asio::ip::tcp::socket sock_;
  bool v6_ = false;   // the client's address family, for the metrics
  std::string peer_;  // the client's address, for ctl top and the query log
  boost::asio::steady_timer idle_;
  TcpListener* owner_;
  std::vector<std::uint8_t> rbuf_;
  std::size_t rlen_ = 0;
  std::vector<std::uint8_t> outbox_;
  std::vector<std::uint8_t> writing_;
  bool writing_now_ = false;
  bool reading_ = false;
  bool closed_ = false;
  bool in_process_ = false;  // guards against re-entry from synchronous completions
  bool peer_done_ = false;   // client half-closed: finish answers, then close
  unsigned pending_ = 0;     // queries read but not answered yet
  std::chrono::steady_clock::time_point last_active_;
};

class TcpListener {
 public:
  TcpListener(boost::asio::io_context& ctx, const config::Endpoint& ep,
              const config::TcpClientConfig& cfg, QueryHandler& handler,
              std::atomic<unsigned>& open_connections);
  ~TcpListener();
  void start();
  // Stops accepting; with `close_sessions`, closes every client connection too.
  void stop(bool close_sessions);
  // Stops accepting and lets each connection close after its answers are
  // written (TcpSession::close_after_flush); `done` runs once none is left,
  // perhaps before this returns. stop() forgets `done`.
  void drain(std::function<void()> done);

  QueryHandler& handler() { return handler_; }
  const config::TcpClientConfig& config() const { return cfg_; }
  dns::MutableBytes scratch() { return scratch_; }
  void on_session_closed(TcpSession* s);

 private:
  void accept();

  boost::asio::ip::tcp::acceptor acceptor_;
  const config::TcpClientConfig& cfg_;
  QueryHandler& handler_;
  std::atomic<unsigned>& open_connections_;
  std::unordered_map<TcpSession*, std::shared_ptr<TcpSession>> sessions_;
  boost::asio::steady_timer retry_;    // after accept errors such as EMFILE
  std::vector<std::uint8_t> scratch_;  // immediate replies, before framing
  std::function<void()> drained_;      // set while draining
  bool stopped_ = false;
};

}  // namespace localdns::server
