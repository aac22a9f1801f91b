// One upstream resolution: a question sent to the servers of a group, one
// attempt at a time, until a usable answer, the attempt budget or the deadline.
//
// Owned by shared_ptr: the TCP connection or UDP receive handler of the
// current attempts and its timer hold it; the forwarder tracks it (by raw
// pointer) until it finishes. Lives on one worker's io_context and is touched
// only by its thread. Deadlines are computed on the forwarder's clock (timers
// wait in real time for the difference); query IDs come from its random source.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <localdns/dns/builder.hpp>
#include <localdns/upstream/group_state.hpp>
#include <localdns/upstream/pending_query.hpp>
#include <localdns/upstream/settings.hpp>
#include <localdns/util/clock.hpp>
#include <localdns/util/random.hpp>

namespace localdns::upstream {

class Forwarder;
class TcpConnection;

enum class Status : std::uint8_t {
  Ok,          // `answer` holds a validated upstream response
  Timeout,     // every attempt timed out or the deadline passed
  Failed,      // servers unreachable or answers unusable
  Overloaded,  // the group's in-flight cap was reached; nothing was sent
};

struct Result {
  Status status = Status::Failed;
  dns::Bytes answer;
  const dns::ResponseView* view = nullptr;
};

// Called exactly once, possibly before resolve() returns.
using Completion = std::move_only_function<void(const Result&)>;

struct Request {
  dns::Question question;
  bool rd = true;
  bool cd = false;
  bool do_bit = false;
  int pinned_server = -1;  // >= 0: only this server, one attempt (health probes)
};

class Exchange final : public PendingQuery, public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(Forwarder& fwd, const Request& req, Completion done, InFlightTicket ticket);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  void start();
  // Ends the exchange now with Failed (or a SERVFAIL/REFUSED kept from an
  // earlier server): the forwarder is stopping.
  void abort();
  // Ends the exchange without running its completion: the forwarder is being
  // destroyed without a shutdown().
  void detach();

  // PendingQuery: from a TCP connection carrying one of our attempts,
  // identified by the ID it gave the query. `rv` is null when the frame did
  // not parse; a frame for another question is not passed on.
  void on_tcp_answer(const TcpConnection* conn, std::uint16_t id, dns::Bytes msg,
                     const dns::ResponseView* rv) override;
  void on_tcp_lost(const TcpConnection* conn, std::uint16_t id) override;
  const dns::Question& question() const override { return asked_; }

 private:
  enum class Wire : std::uint8_t { Udp, Tcp };
  // Whether a failed attempt counts against its server's health.
  enum class Blame : std::uint8_t { Server, NotServer };

  // One query sent to one server. An attempt whose time is up stays open
  // (its socket or its pending TCP query) so that a late answer still counts,
  // until the exchange finishes: at most `attempts` open per exchange.
  struct Attempt {
    int server = -1;
    Wire wire = Wire::Udp;
    std::uint16_t id = 0;
    std::optional<boost::asio::ip::udp::socket> udp;
    std::vector<std::uint8_t> buf;
    std::weak_ptr<TcpConnection> conn;
    util::TimePoint sent;
    bool reconnect_used = false;
    bool late = false;  // timed out; its answer is still taken
    bool open = true;
  };

  unsigned budget() const;
  void advance();
  void next_attempt();
  void send_udp(std::size_t i);
  void send_tcp(std::size_t i);
  void arm_timer();
  void on_timer(std::uint32_t gen);
  void on_udp_receive(std::size_t i, boost::system::error_code ec, std::size_t n);
  void handle_answer(std::size_t i, dns::Bytes msg, const dns::ResponseView& rv);
  void attempt_failed(std::size_t i, Blame blame, Status status);
  void local_error(std::size_t i);
  void close_attempt(Attempt& a);
  Attempt* find_tcp(const TcpConnection* conn, std::uint16_t id, std::size_t& index);
  void conclude();
  void finish(Status status, dns::Bytes answer = {}, const dns::ResponseView* rv = nullptr);

  Forwarder& fwd_;
  const GroupSettings& settings_;
  const util::Clock& clock_;
  util::Random& random_;
  InFlightTicket ticket_;
  Completion done_;
  std::array<std::uint8_t, dns::kHeaderSize + dns::kMaxNameSize + 4 + dns::kOptRecordSize> query_{};
  std::size_t query_len_ = 0;
  dns::Question asked_;
  int pinned_server_ = -1;

  // One deadline for the whole exchange (timeout x attempts), whatever path
  // it takes; the timer wakes at the current attempt's end or at the deadline.
  util::TimePoint deadline_;
  util::TimePoint attempt_end_;
  boost::asio::steady_timer timer_;
  std::uint32_t timer_gen_ = 0;
  std::uint64_t tried_mask_ = 0;
  Status last_failure_ = Status::Failed;
  bool finished_ = false;

  std::vector<std::unique_ptr<Attempt>> attempts_;
  int current_ = -1;  // the attempt whose time is not up yet, if any
  // Best non-final answer (SERVFAIL/REFUSED) kept while other servers are tried.
  std::vector<std::uint8_t> fallback_;
};

}  // namespace localdns::upstream
