// DNS over TCP from clients (RFC 7766): pipelined queries on one connection,
// answered as they complete (out of order), 2-byte length framing that may
// split anywhere, and what one client may cost:
//  - unanswered queries per connection (max_pipelined) and answer bytes not
//    yet written, per connection and for the whole process (reading pauses
//    past either; answers still owed then may add one largest message more,
//    past which a connection whose socket takes nothing more is closed; a
//    connection whose writes make no progress for write_timeout is closed);
//  - connections per client address, and for the whole process: past the
//    latter, the idlest connection is closed to make room for the newcomer;
//  - an idle timeout measured from the last complete query or delivered
//    answer, so trickled bytes of a query that never completes do not count.
// Lives on one worker's io_context; not thread-safe, except TcpClientBudget,
// which all workers of a server share.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/server/failure_streak.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/settings.hpp>
#include <localdns/util/endpoint.hpp>

namespace localdns::server {

class TcpListener;

// What the client TCP connections of one server share across workers: the
// counts behind the process-wide caps, and the listeners, so that room can
// be made on another worker. Taken only at accept and close, and by a
// connection's queue once it holds more than a few KiB.
class TcpClientBudget {
 public:
  std::atomic<unsigned> connections{0};      // counted connections, all workers
  std::atomic<std::size_t> queued_bytes{0};  // charged answer bytes, all workers

  // Counts one more connection from `source`; false when it holds `limit` already.
  bool add_source(const std::string& source, unsigned limit);
  void remove_source(const std::string& source);

  void enlist(TcpListener* l);
  void delist(TcpListener* l);
  // Asks the listener holding the most connections, other than `except`, to
  // close its idlest one; false when no other listener holds any.
  bool evict_elsewhere(const TcpListener* except);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, unsigned> per_source_;
  std::vector<TcpListener*> listeners_;
};

// Health probes of this process connect from a local endpoint they register
// here for the duration of the probe (a bound socket this process holds, so
// no client can present the same address and port). Listeners exempt such
// connections from every cap: the probe still goes through accept and the
// session like any client, so a wedged listener fails it, but no client can
// crowd it out.
class ProbeExemption {
 public:
  explicit ProbeExemption(const boost::asio::ip::tcp::endpoint& from);
  ~ProbeExemption();
  ProbeExemption(const ProbeExemption&) = delete;
  ProbeExemption& operator=(const ProbeExemption&) = delete;
  static bool covers(const boost::asio::ip::tcp::endpoint& peer);

 private:
  boost::asio::ip::tcp::endpoint from_;
};

class TcpSession : public std::enable_shared_from_this<TcpSession> {
 public:
  static constexpr std::size_t kMaxQuerySize = 4096;
  // Queued bytes up to this much are not charged to the process-wide total:
  // the common case (a reader taking its answers) never touches the shared counter.
  static constexpr std::size_t kUncharged = 4096;

  TcpSession(boost::asio::ip::tcp::socket sock, TcpListener& owner);
  ~TcpSession();
  const std::string& peer_address() const { return peer_; }
  TcpSession(const TcpSession&) = delete;
  TcpSession& operator=(const TcpSession&) = delete;

  void start();
  // An answer that completed after its query was read; queued in order of completion.
  void send_reply(dns::Bytes reply);
  void close();
  // Stops reading; closes once every answer still owed is written (or the
  // writes stall for write_timeout).
  void close_when_flushed();
  // Closes the first time nothing is owed, read or unread (TcpListener::release_when_idle).
  void release_when_idle();

  // For the listener: caps and eviction.
  bool exempt() const { return exempt_; }
  void set_exempt() { exempt_ = true; }
  bool counted() const { return counted_; }
  void set_counted() { counted_ = true; }
  bool busy() const { return pending_ > 0 || queued_ > 0; }
  std::chrono::steady_clock::time_point last_active() const { return last_active_; }

 private:
  void read();
  void on_read(boost::system::error_code ec, std::size_t n);
  void process_frames();
  void queue(dns::Bytes reply);
  void write();
  void on_written(boost::system::error_code ec, std::size_t n);
  bool room() const;  // may more answers be queued (more queries read)?
  // Would `add` more bytes take the queue more than one largest message past
  // max_queued_bytes, or the process past max_queued_bytes_total, while the
  // client's socket takes nothing more? Such a client is plainly not reading.
  bool overfull(std::size_t add);
  void set_queued(std::size_t q);
  void arm_timer();
  void on_timer();
  void release_if_idle();

  boost::asio::ip::tcp::socket sock_;
  bool v6_ = false;     // the client's address family, for the metrics
  std::string peer_;    // the client's address, for ctl top, the query log and the caps
  ClientAddress addr_;  // the same, for the client limits
  boost::asio::steady_timer timer_;  // idle and write-progress checks
  TcpListener* owner_;
  std::vector<std::uint8_t> rbuf_;
  std::size_t rlen_ = 0;
  std::vector<std::uint8_t> outbox_;
  std::vector<std::uint8_t> writing_;
  std::size_t written_ = 0;  // of writing_
  std::size_t queued_ = 0;   // outbox_ plus what is left of writing_
  std::size_t charged_ = 0;  // of queued_, counted in the budget's queued_bytes
  bool writing_now_ = false;
  bool reading_ = false;
  bool closed_ = false;
  bool in_process_ = false;  // guards against re-entry from synchronous completions
  bool peer_done_ = false;   // client half-closed (or we are closing): finish answers, then close
  bool exempt_ = false;      // a health probe of this process: no caps
  bool counted_ = false;     // counted in the connection caps
  bool release_ = false;     // handed over: close once idle
  unsigned pending_ = 0;     // queries read but not answered yet
  // Last complete query read or queue written out; trickled bytes do not count.
  std::chrono::steady_clock::time_point last_active_;
  std::chrono::steady_clock::time_point last_progress_;  // of the writes, while queued_ > 0
};

// Opens, binds (SO_REUSEPORT) and listens; throws std::system_error naming
// the address on failure.
boost::asio::ip::tcp::acceptor open_tcp_acceptor(boost::asio::io_context& ctx,
                                                 const util::Endpoint& ep);
// Takes over `fd`, a listening TCP socket bound to `ep` that another process
// passed (upgrade handover); closes it and throws std::system_error otherwise.
boost::asio::ip::tcp::acceptor adopt_tcp_acceptor(boost::asio::io_context& ctx,
                                                  const util::Endpoint& ep, int fd);

class TcpListener {
 public:
  // The pause before accepting again after an accept failed.
  static constexpr std::chrono::milliseconds kAcceptRetry{100};

  TcpListener(boost::asio::io_context& ctx, const util::Endpoint& ep, const TcpClientLimits& limits,
              QueryHandler& handler, TcpClientBudget& budget);
  // On a listening socket already open (open_tcp_acceptor or adopt_tcp_acceptor).
  TcpListener(boost::asio::ip::tcp::acceptor acceptor, const TcpClientLimits& limits,
              QueryHandler& handler, TcpClientBudget& budget);
  // The listening socket, for a handover to dup(); -1 once closed.
  int native_fd() { return acceptor_.is_open() ? acceptor_.native_handle() : -1; }
  ~TcpListener();
  void start();
  // What stop() does with the client connections already open.
  enum class Sessions {
    keep,   // they may still ask and be answered (the first step of shutdown)
    close,  // closed at once
  };
  // Stops accepting; Sessions::close closes every client connection too.
  void stop(Sessions sessions);
  // Stops accepting and lets each connection close after its answers are
  // written (TcpSession::close_when_flushed); `done` runs once none is left,
  // perhaps before this returns. stop() forgets `done`.
  void drain(std::function<void()> done);
  // After a handover: stops accepting (the successor accepts on the same
  // socket) and closes each connection the first time it is idle: every
  // query read answered and written, no partial query, nothing unread in the
  // kernel. Reading goes on until then, so a query the client sent before
  // the close is answered. `done` as for drain().
  void release_when_idle(std::function<void()> done);

  QueryHandler& handler() { return handler_; }
  const TcpClientLimits& limits() const { return limits_; }
  TcpClientBudget& budget() { return budget_; }
  dns::MutableBytes scratch() { return {scratch_.get(), dns::kMaxMessageSize}; }
  void on_session_closed(TcpSession* s);

  // For TcpClientBudget: connections held here (any thread), and an eviction
  // request (posted to this listener's context).
  unsigned session_count() const { return session_count_.load(std::memory_order_relaxed); }
  void post_evict();

 private:
  // Stops accepting, then `how` on every connection (drain, release_when_idle).
  void close_sessions(std::function<void()> done, void (TcpSession::*how)());
  void accept();
  void admit(boost::asio::ip::tcp::socket sock);
  bool evict_idlest();  // closes the idlest counted session here; false when none

  boost::asio::ip::tcp::acceptor acceptor_;
  const TcpClientLimits& limits_;
  QueryHandler& handler_;
  TcpClientBudget& budget_;
  std::unordered_map<TcpSession*, std::shared_ptr<TcpSession>> sessions_;
  std::atomic<unsigned> session_count_{0};
  boost::asio::steady_timer retry_;  // after accept errors such as EMFILE
  FailureStreak streak_;             // accept errors in a row, for the log
  // Immediate replies, before framing: kMaxMessageSize bytes, not cleared,
  // so only the pages a reply was written to are backed.
  std::unique_ptr<std::uint8_t[]> scratch_;
  std::function<void()> drained_;  // set while draining
  bool stopped_ = false;
};

}  // namespace localdns::server
