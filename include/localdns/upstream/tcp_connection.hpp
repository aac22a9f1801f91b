// Pipelined TCP connections to one upstream server (RFC 7766 6.2.1): many
// queries in flight per connection, answers matched by ID and question, in any
// order. TcpPool keeps a few per server and worker, opens them lazily, backs off
// after connect failures and retires them by age and query count.
//
// A TcpPool per server of a group, owned by that worker's Forwarder. A
// TcpConnection is owned by shared_ptr: its pool, the handlers of its own
// socket and timers, and (weakly) the attempts it carries. Both live on one
// worker's io_context and are touched only by its thread. Ages, idleness,
// backoff and write stalls are measured on the injected clock; query IDs come
// from the injected random source.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/dns/wire.hpp>
#include <localdns/upstream/pending_query.hpp>
#include <localdns/upstream/server_health.hpp>
#include <localdns/upstream/settings.hpp>
#include <localdns/util/clock.hpp>
#include <localdns/util/random.hpp>

namespace localdns::upstream {

class TcpPool;

inline constexpr std::size_t kMaxPendingPerConnection = 4096;
// Query bytes waiting to be written on one connection. Past it the connection
// takes no new query (and still counts against tcp.connections); a write that
// makes no progress for the group's timeout closes it (its queries are resent
// once, within their deadline).
inline constexpr std::size_t kMaxQueuedBytes = 64 * 1024;

// Errors of this host rather than of the server: out of descriptors, memory or
// buffers, a local firewall rule, no free source port. They are counted apart
// and never mark a server down.
bool is_local_error(const boost::system::error_code& ec);

// Why a connection closed, as its pool is told.
enum class CloseCause : std::uint8_t {
  Closed,         // by either side, or broken, after it was open
  ConnectFailed,  // refused, unreachable or timed out: the server's failure
  LocalError,     // an error of this host (is_local_error): not the server's
};
struct CloseInfo {
  CloseCause cause = CloseCause::Closed;
  bool was_open = false;  // it had connected (it counted in tcp_open)
};

class TcpConnection : public std::enable_shared_from_this<TcpConnection> {
 public:
  TcpConnection(boost::asio::io_context& ctx, TcpPool& pool);
  ~TcpConnection();
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  void connect(const boost::asio::ip::tcp::endpoint& ep, util::Duration timeout);
  // Queues `query` with a fresh ID (written into the query); `q` is told of
  // the answer or of the connection's loss.
  std::optional<std::uint16_t> send(std::shared_ptr<PendingQuery> q, dns::MutableBytes query);
  void cancel(std::uint16_t id);
  // Closes now; pending exchanges are told of the loss.
  void close();

  bool usable() const;
  // Past its age or query limit: takes no new query, closes once drained.
  bool retiring() const { return past_limits(); }
  std::size_t pending() const { return pending_.size(); }

 private:
  enum class State : std::uint8_t { Connecting, Open, Closed };

  void on_connect(boost::system::error_code ec);
  void start_write();
  void on_write(boost::system::error_code ec, std::size_t n);
  void arm_write_timer();
  void start_read();
  void on_read(boost::system::error_code ec, std::size_t n);
  bool process_frames();
  void fail(CloseCause cause);
  void maybe_retire();
  void arm_idle_timer();
  bool past_limits() const;

  boost::asio::ip::tcp::socket sock_;
  boost::asio::steady_timer timer_;        // connect timeout, then idle timeout
  boost::asio::steady_timer write_timer_;  // writes that make no progress
  TcpPool* pool_;
  const util::Clock& clock_;
  util::Random& random_;
  State state_ = State::Connecting;
  std::unordered_map<std::uint16_t, std::shared_ptr<PendingQuery>> pending_;
  std::vector<std::uint8_t> outbox_;
  std::vector<std::uint8_t> writing_;
  std::size_t written_ = 0;  // of writing_
  bool write_in_flight_ = false;
  bool write_timer_armed_ = false;
  util::TimePoint write_progress_;
  std::vector<std::uint8_t> rbuf_;
  std::size_t rlen_ = 0;
  util::TimePoint born_;
  util::TimePoint last_active_;
  std::uint32_t queries_ = 0;
};

class TcpPool {
 public:
  // `tcp` and `timeout` (connect timeout, write stall) are the group's.
  TcpPool(boost::asio::io_context& ctx, const TcpPoolSettings& tcp, util::Duration timeout,
          ServerHealth& health, const util::Clock& clock, util::Random& random);
  ~TcpPool();
  TcpPool(const TcpPool&) = delete;
  TcpPool& operator=(const TcpPool&) = delete;

  struct Sent {
    std::shared_ptr<TcpConnection> conn;
    std::uint16_t id;
  };
  // nullopt when no connection can take the query now: connect backoff, or
  // every connection full (queued bytes, pending queries) at tcp.connections.
  std::optional<Sent> send(std::shared_ptr<PendingQuery> q, dns::MutableBytes query);
  void close_all();

  // From TcpConnection.
  void on_connected();
  void on_closed(TcpConnection* conn, CloseInfo info);
  const TcpPoolSettings& settings() const { return tcp_; }
  util::Duration timeout() const { return timeout_; }
  const util::Clock& clock() const { return clock_; }
  util::Random& random() const { return random_; }
  // When the next connect may start (connect backoff); for tests.
  util::TimePoint next_connect() const { return next_connect_; }

 private:
  boost::asio::io_context& ctx_;
  const TcpPoolSettings tcp_;
  const util::Duration timeout_;
  ServerHealth& health_;
  const util::Clock& clock_;
  util::Random& random_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::vector<std::shared_ptr<TcpConnection>> conns_;
  util::SteadyClock::duration backoff_{};
  util::TimePoint next_connect_{};
  bool closed_ = false;  // close_all() ran: no new connection
};

}  // namespace localdns::upstream
