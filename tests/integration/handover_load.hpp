// Continuous DNS load for the handover tests: UDP senders at a fixed rate and
// pipelined TCP clients on persistent connections, hits and misses, each
// query's answer matched by ID and timed. A query is lost when no answer came,
// or when its TCP connection closed before the answer; a client whose idle
// connection was closed by the server (nothing asked) reconnects without loss.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "dns_client.hpp"

namespace localdns::test {

struct LoadTotals {
  std::uint64_t sent = 0, answered = 0, lost = 0, late = 0, servfail = 0;
  std::uint64_t tcp_sent = 0, tcp_lost = 0, reconnects = 0;
  std::chrono::microseconds max_latency{0};
  void add(const LoadTotals& o) {
    sent += o.sent;
    answered += o.answered;
    lost += o.lost;
    late += o.late;
    servfail += o.servfail;
    tcp_sent += o.tcp_sent;
    tcp_lost += o.tcp_lost;
    reconnects += o.reconnects;
    max_latency = std::max(max_latency, o.max_latency);
  }
  std::string text() const {
    return "sent " + std::to_string(sent) + " (tcp " + std::to_string(tcp_sent) + "), answered " +
           std::to_string(answered) + ", lost " + std::to_string(lost) + " (tcp " +
           std::to_string(tcp_lost) + "), later than 1 s " + std::to_string(late) + ", SERVFAIL " +
           std::to_string(servfail) + ", tcp reconnects " + std::to_string(reconnects) +
           ", max latency " + std::to_string(max_latency.count() / 1000) + " ms";
  }
};

class HandoverLoad {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kHits = 50;

  // The name of query `i` of client `c`: one in 20 a miss of the fast zone,
  // one in `slow` a miss of the slow one, the rest hits (hit_name, asked before).
  static std::string name(unsigned c, std::uint64_t i, unsigned slow = 50) {
    if (i % 20 == 0) return "m" + std::to_string(c) + "-" + std::to_string(i) + ".load.test";
    if (i % slow == 1) return "s" + std::to_string(c) + "-" + std::to_string(i) + ".slow.test";
    return hit_name(i % kHits);
  }
  static std::string hit_name(std::size_t k) { return "h" + std::to_string(k) + ".load.test"; }

  HandoverLoad(std::uint16_t port, unsigned udp_clients, unsigned udp_qps, unsigned tcp_clients)
      : port_(port), totals_(udp_clients + tcp_clients) {
    for (unsigned c = 0; c < udp_clients; ++c)
      threads_.emplace_back([this, c, udp_qps] { udp_client(c, udp_qps, totals_[c]); });
    for (unsigned c = 0; c < tcp_clients; ++c)
      threads_.emplace_back(
          [this, c, udp_clients] { tcp_client(100 + c, totals_[udp_clients + c]); });
  }
  ~HandoverLoad() { finish(); }

  // Stops sending, waits for the last answers (at most 1.5 s), returns the sums.
  LoadTotals finish() {
    stop_.store(true);
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    LoadTotals sum;
    for (const auto& t : totals_)
      sum.add(t);
    return sum;
  }

 private:
  sockaddr_in target() const {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port_);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
  }

  static void record(LoadTotals& t, const std::uint8_t* reply, Clock::time_point sent) {
    ++t.answered;
    if ((reply[3] & 0x0f) == 2) ++t.servfail;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent);
    t.max_latency = std::max(t.max_latency, us);
    if (us > std::chrono::seconds(1)) ++t.late;
  }

  void udp_client(unsigned c, unsigned qps, LoadTotals& t) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int size = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    auto to = target();
    std::vector<Clock::time_point> sent_at(65536);
    std::vector<bool> done(65536, false);
    auto start = Clock::now();
    std::uint64_t i = 0;
    std::uint8_t buf[4096];
    auto receive = [&] {
      while (true) {
        auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 12) return;
        std::uint16_t id = static_cast<std::uint16_t>((buf[0] << 8) | buf[1]);
        if (id >= i || done[id]) continue;
        done[id] = true;
        record(t, buf, sent_at[id]);
      }
    };
    while (!stop_.load() && i < 65536) {
      auto due = static_cast<std::uint64_t>(
          std::chrono::duration<double>(Clock::now() - start).count() * qps);
      for (; i < due && i < 65536; ++i) {
        QueryOptions o;
        o.id = static_cast<std::uint16_t>(i);
        auto q = make_query(name(c, i), "A", o);
        sent_at[i] = Clock::now();
        if (::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
            static_cast<ssize_t>(q.size())) {
          ++t.sent;
        } else {
          done[i] = true;  // never left this host: not the server's loss
        }
      }
      receive();
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 1);  // pacing: wake for answers or the next millisecond's queries
    }
    auto tail = Clock::now() + std::chrono::milliseconds(1500);
    while (t.answered < t.sent && Clock::now() < tail) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 10);
      receive();
    }
    t.lost += t.sent - t.answered;
    ::close(fd);
  }

  // Batches of kPipeline queries on one connection, all sent before any
  // answer is read; a reconnect when the server closed it.
  void tcp_client(unsigned c, LoadTotals& t) {
    constexpr unsigned kPipeline = 5;
    std::uint64_t i = 0;
    int fd = -1;
    std::vector<std::uint8_t> in;
    while (!stop_.load() && i + kPipeline < 65536) {
      if (fd >= 0 && closed_by_peer(fd)) {
        ::close(fd);  // closed while idle: allowed (RFC 7766), nothing lost
        fd = -1;
      }
      if (fd < 0) {
        fd = connect_tcp();
        if (fd < 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          continue;
        }
        ++t.reconnects;
      }
      std::vector<Clock::time_point> sent_at;
      std::vector<std::uint8_t> out;
      std::uint64_t first = i;
      for (unsigned k = 0; k < kPipeline; ++k, ++i) {
        QueryOptions o;
        o.id = static_cast<std::uint16_t>(i);
        // Fewer slow misses than UDP: each holds its whole batch.
        auto q = make_query(name(c, i, 400), "A", o);
        out.push_back(static_cast<std::uint8_t>(q.size() >> 8));
        out.push_back(static_cast<std::uint8_t>(q.size()));
        out.insert(out.end(), q.begin(), q.end());
        sent_at.push_back(Clock::now());
      }
      t.sent += kPipeline;
      t.tcp_sent += kPipeline;
      unsigned answered = 0;
      if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size())) {
        answered = read_answers(fd, first, kPipeline, sent_at, t);
      }
      if (answered < kPipeline) {
        t.lost += kPipeline - answered;
        t.tcp_lost += kPipeline - answered;
        ::close(fd);
        fd = -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // pacing between batches
    }
    if (fd >= 0) ::close(fd);
  }

  unsigned read_answers(int fd, std::uint64_t first, unsigned n,
                        const std::vector<Clock::time_point>& sent_at, LoadTotals& t) {
    std::vector<std::uint8_t> buf;
    std::vector<bool> got(n, false);
    unsigned answered = 0;
    auto deadline = Clock::now() + std::chrono::seconds(2);
    std::uint8_t chunk[8192];
    while (answered < n && Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      auto r = ::recv(fd, chunk, sizeof chunk, 0);
      if (r <= 0) return answered;  // closed (or reset) before every answer came
      buf.insert(buf.end(), chunk, chunk + r);
      while (buf.size() >= 2 && buf.size() >= 2u + ((buf[0] << 8) | buf[1])) {
        std::size_t len = (buf[0] << 8) | buf[1];
        if (len >= 12) {
          std::uint16_t id = static_cast<std::uint16_t>((buf[2] << 8) | buf[3]);
          std::uint64_t k = id - static_cast<std::uint16_t>(first);
          if (k < n && !got[k]) {
            got[k] = true;
            ++answered;
            record(t, buf.data() + 2, sent_at[k]);
          }
        }
        buf.erase(buf.begin(), buf.begin() + static_cast<long>(2 + len));
      }
    }
    return answered;
  }

  static bool closed_by_peer(int fd) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char c;
    return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
  }

  int connect_tcp() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto to = target();
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  std::uint16_t port_;
  std::atomic<bool> stop_{false};
  std::vector<LoadTotals> totals_;  // one per client, written by its thread only
  std::vector<std::thread> threads_;
};

}  // namespace localdns::test
