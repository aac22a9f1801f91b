// One upstream resolution: a question sent to the servers of a group, one
// attempt at a time, until a usable answer, the attempt budget or the deadline.
// Owned by shared_ptr: the TCP connection or UDP receive handler of the current
// attempt and its timer hold it. Lives on one worker's io_context; not thread-safe.
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

#include <localdns/config/config.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/upstream/server_health.hpp>

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

class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(Forwarder& fwd, const Request& req, Completion done, InFlightTicket ticket);
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  void start();

  // From the TCP connection carrying the current attempt. `rv` is null when
  // the frame with our ID did not parse or did not match the question.
  void on_tcp_answer(const TcpConnection* conn, dns::Bytes msg, const dns::ResponseView* rv);
  void on_tcp_lost(const TcpConnection* conn);

  const dns::Question& question() const { return asked_; }

 private:
  enum class Wire : std::uint8_t { Udp, Tcp };

  void next_attempt();
  void send_udp();
  void send_tcp();
  void arm_timer();
  void on_timeout(std::uint32_t gen);
  void on_udp_receive(std::uint32_t gen, boost::system::error_code ec, std::size_t n);
  void handle_answer(dns::Bytes msg, const dns::ResponseView& rv);
  void fail_attempt(bool count_against_server);
  void cancel_attempt();
  void finish(Status status, dns::Bytes answer = {}, const dns::ResponseView* rv = nullptr);
  ServerHealth& health() const;

  std::chrono::steady_clock::time_point attempt_start_{};
  Forwarder& fwd_;
  const config::UpstreamGroup& cfg_;
  InFlightTicket ticket_;
  Completion done_;
  std::array<std::uint8_t, dns::kHeaderSize + dns::kMaxNameSize + 4 + dns::kOptRecordSize> query_{};
  std::size_t query_len_ = 0;
  dns::Question asked_;
  int pinned_server_ = -1;

  std::chrono::steady_clock::time_point deadline_;
  boost::asio::steady_timer timer_;
  std::uint64_t tried_mask_ = 0;
  unsigned attempts_used_ = 0;
  std::uint32_t gen_ = 0;  // invalidates callbacks of earlier attempts
  Status last_failure_ = Status::Failed;
  bool finished_ = false;
  bool reconnect_used_ = false;

  // Current attempt.
  int server_ = -1;
  Wire wire_ = Wire::Udp;
  std::uint16_t id_ = 0;
  std::optional<boost::asio::ip::udp::socket> udp_;
  std::vector<std::uint8_t> udp_buf_;
  std::weak_ptr<TcpConnection> conn_;
  // Best non-final answer (SERVFAIL/REFUSED) kept while other servers are tried.
  std::vector<std::uint8_t> fallback_;
};

}  // namespace localdns::upstream
