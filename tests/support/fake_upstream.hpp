// A fault-injecting DNS upstream for tests: UDP and TCP on one loopback port,
// answering every name with a synthetic record, or misbehaving on demand
// (delays, drops, SERVFAIL, truncation, TCP closed mid-stream, answers out of
// order). Runs on its own thread; behaviour setters and counters are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace localdns::test {

struct Behaviour {
  enum class Mode { Answer, Drop, ServFail, Refused } mode = Mode::Answer;
  std::chrono::milliseconds delay{0};
  bool truncate_udp = false;       // UDP answers carry TC=1 and no records
  unsigned close_tcp_after = 0;    // close the first connection when its Nth query arrives
  unsigned reset_tcp_after = 0;    // reset (RST) every connection when its Nth query arrives
  unsigned reverse_tcp_batch = 0;  // hold TCP answers until N are due, send them reversed
  bool spoof_first = false;     // over UDP, first send an answer with a wrong ID (A 198.51.100.66)
  bool spoof_question = false;  // over UDP, first send an answer with the right ID for another
                                // name (A 198.51.100.77)
  bool drop_tcp = false;        // TCP queries are read and counted, never answered
  bool tcp_no_read = false;     // TCP connections are accepted and never read from
  bool tcp_stale_answer = false;   // over TCP, first answer the connection's previous question
                                   // (A 198.51.100.88) with this query's ID: a late answer whose
                                   // ID was reused
  std::string drop_prefix{};       // queries for names starting with it are never answered
  std::uint32_t answer_ttl = 300;  // TTL of the synthetic A and TXT records
  // Names (lower case, trailing dot) ending in one of these get NXDOMAIN
  // with an SOA, like those starting with "nx".
  std::vector<std::string> nx_suffixes{};
  // Per-name delays: a name ending in the first matching suffix is answered
  // after its delay instead of `delay` ("." matches every name).
  std::vector<std::pair<std::string, std::chrono::milliseconds>> name_delays{};
};

// A query as it reached the upstream.
struct SeenQuery {
  std::chrono::steady_clock::time_point at;  // when it arrived
  bool tcp = false;
  std::uint16_t source_port = 0;
  std::vector<std::uint8_t> packet;
};

class FakeUpstream {
 public:
  FakeUpstream();  // binds 127.0.0.1 on a free port, starts its thread
  ~FakeUpstream();

  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void set(const Behaviour& b);

  unsigned udp_queries() const { return udp_queries_; }
  unsigned tcp_queries() const { return tcp_queries_; }
  unsigned queries() const { return udp_queries_ + tcp_queries_; }
  unsigned tcp_connections() const { return tcp_connections_; }
  unsigned max_open_tcp_connections() const { return max_open_tcp_; }
  unsigned open_tcp_connections() const { return open_tcp_; }
  // Counted for the first kMaxNames distinct names only (a long soak asks millions).
  unsigned queries_for(const std::string& lower_name) const;
  static constexpr std::size_t kMaxNames = 100000;
  unsigned queries_without_rd() const { return no_rd_; }
  // The first 1000 queries received, in order.
  // (Their names: dns_client's question_of, or name_of below.)
  std::vector<SeenQuery> seen_queries() const;

  // The synthetic answer: A 192.0.2.1 (TTL answer_ttl, 300) for any name; TXT answers of
  // about 3000 bytes; NXDOMAIN with an SOA for names starting with "nx".
  static std::string answer_address() { return "192.0.2.1"; }
  // The question's name of a query seen: lower case, trailing dot.
  static std::string name_of(const SeenQuery& q);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  std::atomic<unsigned> udp_queries_{0};
  std::atomic<unsigned> tcp_queries_{0};
  std::atomic<unsigned> tcp_connections_{0};
  std::atomic<unsigned> open_tcp_{0};
  std::atomic<unsigned> max_open_tcp_{0};
  std::atomic<unsigned> no_rd_{0};
  mutable std::mutex mu_;
  std::map<std::string, unsigned> per_name_;
  Behaviour behaviour_;
  std::vector<SeenQuery> seen_;

  friend struct Impl;
  Behaviour behaviour() const;
  void count(const std::string& name, bool tcp, bool rd = true);
  void record(bool tcp, std::uint16_t source_port, const std::vector<std::uint8_t>& q);
  unsigned tcp_opened();  // returns the connection's number, from 1
  void tcp_closed() { --open_tcp_; }
};

}  // namespace localdns::test
