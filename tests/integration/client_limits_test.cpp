// Per-client limits and access through a real localdns process, its real
// UDP and TCP listeners and a real upstream (the fault-injecting one): the
// rate limit (REFUSED with EDE 0, or silence), cache hits exempt, the
// allow-list (REFUSED with EDE 18 to 127.0.0.2), the node's addresses
// exempt, the metrics, and a SIGHUP reload that changes the limits. Answers
// are decoded with ldns.
#include <arpa/inet.h>
#include <map>
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "reload_support.hpp"
// After the others: ldns's headers define names boost's headers use.
#include "ldns_records.hpp"

using namespace localdns::test;

namespace {

constexpr unsigned kNoError = 0, kRefused = 5;

struct Limits {
  std::string allow = "[]";
  unsigned qps = 0;
  unsigned burst = 0;
  std::string action = "refuse";
  bool exempt_cache_hits = true;
  bool exempt_node_addresses = false;  // the tests' clients are on loopback
  std::string log_level = "info";      // not a clients key
};

// One localdns (one worker, so one bucket table) forwarding "." to `up`.
struct Served {
  FakeUpstream up;
  TempDir dir;
  std::uint16_t port = free_port();
  std::uint16_t metrics_port = free_port();
  Endpoint ep{"127.0.0.1", port};
  std::string path = dir.file("localdns.yaml");
  std::unique_ptr<Daemon> d;

  explicit Served(const Limits& l) {
    write(l);
    d = std::make_unique<Daemon>(std::vector<std::string>{"--config", path, "--no-watch"},
                                 dir.file("log"));
    REQUIRE(d->wait_ready(ep, 10s));
  }
  void write(const Limits& l) {
    std::ostringstream y;
    y << "listen: [\"127.0.0.1:" << port << "\"]\n"
      << "threads: 1\n"
      << "log_level: " << l.log_level << "\n"
      << "metrics: \"127.0.0.1:" << metrics_port << "\"\n"
      << "health: off\n"
      << "control_socket: off\n"
      << "clients:\n"
      << "  allow: " << l.allow << "\n"
      << "  rate_limit: {qps: " << l.qps << ", burst: " << l.burst << ", action: " << l.action
      << ", exempt_cache_hits: " << (l.exempt_cache_hits ? "true" : "false")
      << ", exempt_node_addresses: " << (l.exempt_node_addresses ? "true" : "false") << "}\n"
      << "forward:\n"
      << "  - zones: [.]\n"
      << "    servers: [\"" << up.address() << "\"]\n"
      << "    transport: udp\n";
    replace_file(path, y.str());
  }
  double metric(const std::string& name, std::initializer_list<std::string> labels = {}) const {
    return localdns::test::metric(metrics_port, name, labels);
  }
};

// Sends one query per name at once from one UDP socket bound to `source`
// (so every query is in before the bucket gains a token: qps is 1 in these
// tests) and collects the replies until `wait` has passed; by index of name.
std::map<std::size_t, Message> ask_all(const Endpoint& ep, const std::vector<std::string>& names,
                                       std::chrono::milliseconds wait,
                                       const std::string& source = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in from{}, to{};
  from.sin_family = to.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  ::inet_pton(AF_INET, ep.address.c_str(), &to.sin_addr);
  to.sin_port = htons(ep.port);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto q = make_query(names[i], "A", {.id = static_cast<std::uint16_t>(100 + i), .edns = true});
    REQUIRE(::send(fd, q.data(), q.size(), 0) == static_cast<ssize_t>(q.size()));
  }
  std::map<std::size_t, Message> out;
  auto deadline = within(wait);
  while (std::chrono::steady_clock::now() < deadline && out.size() < names.size()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) != 1) continue;
    Packet buf(65535);
    auto n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 12) continue;
    buf.resize(static_cast<std::size_t>(n));
    std::size_t i = static_cast<std::size_t>(((buf[0] << 8) | buf[1]) - 100);
    auto m = decode_message(buf);
    REQUIRE(m.has_value());
    if (i < names.size()) out[i] = *m;
  }
  ::close(fd);
  return out;
}

std::vector<std::string> names(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back(prefix + std::to_string(i) + ".example");
  return out;
}

unsigned count_rcode(const std::map<std::size_t, Message>& replies, unsigned rcode) {
  unsigned n = 0;
  for (const auto& [i, m] : replies)
    n += m.rcode == rcode ? 1 : 0;
  return n;
}

const Ede kRateLimited{0, "rate limit exceeded"};
const Ede kProhibited{18, "client not in clients.allow"};

}  // namespace

TEST_CASE("client limits: over the rate a client gets REFUSED with EDE 0, cache hits exempt",
          "[integration][client-limits]") {
  Served s(Limits{.qps = 1, .burst = 5});
  auto asked = names("r", 12);
  auto replies = ask_all(s.ep, asked, 2s);
  REQUIRE(replies.size() == asked.size());  // every query answered
  // The burst of 5 (6 if a second passed between first and last), the rest refused.
  unsigned ok = count_rcode(replies, kNoError), refused = count_rcode(replies, kRefused);
  INFO("answered " << ok << ", refused " << refused);
  CHECK(ok >= 5);
  CHECK(ok <= 6);
  CHECK(ok + refused == asked.size());
  for (const auto& [i, m] : replies) {
    if (m.rcode == kRefused) CHECK(m.ede == std::vector<Ede>{kRateLimited});
    if (m.rcode == kNoError) CHECK(m.ede.empty());
  }
  // The upstream saw exactly the queries that were let through.
  CHECK(s.up.queries() == ok);

  // Over TCP the same client, with its bucket empty, is refused too.
  auto tcp = tcp_query(s.ep, make_query("tcp-r.example", "A", {.edns = true}), 3000ms);
  REQUIRE(tcp.has_value());
  auto tm = decode_message(*tcp);
  REQUIRE(tm.has_value());
  CHECK(tm->rcode == kRefused);
  CHECK(tm->ede == std::vector<Ede>{kRateLimited});

  // Cache hits do not count: every answered name answers again, at once.
  std::vector<std::string> cached;
  for (const auto& [i, m] : replies)
    if (m.rcode == kNoError) cached.push_back(asked[i]);
  auto again = ask_all(s.ep, cached, 2s);
  CHECK(again.size() == cached.size());
  CHECK(count_rcode(again, kNoError) == cached.size());
  CHECK(s.up.queries() == ok);

  // Another client address has a bucket of its own.
  auto other = ask_all(s.ep, names("o", 3), 2s, "127.0.0.2");
  CHECK(count_rcode(other, kNoError) == 3);

  CHECK(wait_until(within(3s), [&] {
    return s.metric("localdns_client_refused_total", {"reason=\"rate_limited\""}) == refused + 1;
  }));
  CHECK(s.metric("localdns_client_refused_total", {"reason=\"not_allowed\""}) == 0);
  CHECK(s.metric("localdns_client_dropped_total") == 0);
  CHECK(s.metric("localdns_client_limit_table_evictions_total") == 0);
  CHECK(s.metric("coredns_dns_responses_total", {"rcode=\"REFUSED\""}) == refused + 1);
}

TEST_CASE("client limits: without exempt_cache_hits every query counts",
          "[integration][client-limits]") {
  Served s(Limits{.qps = 1, .burst = 3, .exempt_cache_hits = false});
  auto first = ask_all(s.ep, {"hit.example"}, 2s);
  REQUIRE(count_rcode(first, kNoError) == 1);
  // The same cached name five times: two more tokens, then REFUSED.
  auto replies = ask_all(s.ep, std::vector<std::string>(5, "hit.example"), 2s);
  // Same name, same ID base: tell the replies apart by index only.
  unsigned ok = count_rcode(replies, kNoError);
  CHECK(ok >= 2);
  CHECK(ok <= 3);
  CHECK(count_rcode(replies, kRefused) == replies.size() - ok);
  CHECK(s.up.queries_for("hit.example.") == 1);  // answered from the cache, yet counted
}

TEST_CASE("client limits: with action drop only the excess queries go unanswered",
          "[integration][client-limits]") {
  Served s(Limits{.qps = 1, .burst = 3, .action = "drop"});
  auto asked = names("d", 8);
  auto replies = ask_all(s.ep, asked, 1500ms);
  unsigned ok = count_rcode(replies, kNoError);
  INFO("answered " << ok << " of " << asked.size());
  CHECK(ok >= 3);
  CHECK(ok <= 4);
  CHECK(replies.size() == ok);  // nothing else came back: no REFUSED, silence
  CHECK(s.up.queries() == ok);
  CHECK(wait_until(within(3s), [&] {
    return s.metric("localdns_client_dropped_total") == static_cast<double>(asked.size() - ok);
  }));
  CHECK(s.metric("localdns_client_refused_total", {"reason=\"rate_limited\""}) == 0);
  // A cached name still answers while the bucket is empty.
  std::vector<std::string> cached;
  for (const auto& [i, m] : replies)
    cached.push_back(asked[i]);
  CHECK(count_rcode(ask_all(s.ep, cached, 2s), kNoError) == cached.size());
}

TEST_CASE("client limits: the node's addresses are exempt by default",
          "[integration][client-limits]") {
  Served s(Limits{.qps = 1, .burst = 2, .exempt_node_addresses = true});
  // 127.0.0.1 is loopback, and 127.0.0.2 too: both are the node's own.
  CHECK(count_rcode(ask_all(s.ep, names("n", 10), 2s), kNoError) == 10);
  CHECK(count_rcode(ask_all(s.ep, names("m", 10), 2s, "127.0.0.2"), kNoError) == 10);
  CHECK(s.up.queries() == 20);
  CHECK(s.metric("localdns_client_refused_total", {"reason=\"rate_limited\""}) == 0);
}

TEST_CASE("client limits: an address outside clients.allow gets REFUSED with EDE 18",
          "[integration][client-limits]") {
  Served s(Limits{.allow = "[127.0.0.1/32, \"fd00::/8\"]"});
  // Allowed: answered.
  CHECK(answer(s.ep, "in.example") == FakeUpstream::answer_address());
  // 127.0.0.2 over UDP and TCP: REFUSED, Prohibited; the upstream never asked.
  auto udp = ask_all(s.ep, {"out.example"}, 2s, "127.0.0.2");
  REQUIRE(udp.size() == 1);
  CHECK(udp.begin()->second.rcode == kRefused);
  CHECK(udp.begin()->second.ede == std::vector<Ede>{kProhibited});
  auto tcp =
      tcp_query(s.ep, make_query("out-tcp.example", "A", {.edns = true}), 3000ms, "127.0.0.2");
  REQUIRE(tcp.has_value());
  auto tm = decode_message(*tcp);
  REQUIRE(tm.has_value());
  CHECK(tm->rcode == kRefused);
  CHECK(tm->ede == std::vector<Ede>{kProhibited});
  // Not even a cached name: the allow-list comes before the cache.
  auto cached = ask_all(s.ep, {"in.example"}, 2s, "127.0.0.2");
  REQUIRE(cached.size() == 1);
  CHECK(cached.begin()->second.rcode == kRefused);
  // Without EDNS the REFUSED has no OPT, so no EDE.
  auto plain = udp_query(s.ep, make_query("plain.example", "A"), 3000ms, "127.0.0.2");
  REQUIRE(plain.has_value());
  CHECK(decode(*plain).rcode == "REFUSED");
  CHECK(s.up.queries_for("out.example.") == 0);
  CHECK(s.up.queries_for("out-tcp.example.") == 0);
  CHECK(s.up.queries_for("plain.example.") == 0);
  CHECK(s.up.queries() == 1);
  CHECK(wait_until(within(3s), [&] {
    return s.metric("localdns_client_refused_total", {"reason=\"not_allowed\""}) == 4;
  }));
}

TEST_CASE("client limits: a SIGHUP reload changes the rate and the allow-list",
          "[integration][client-limits][reload]") {
  Limits l{.qps = 1, .burst = 2};
  Served s(l);
  auto before = ask_all(s.ep, names("a", 6), 2s);
  unsigned ok = count_rcode(before, kNoError);
  CHECK(ok >= 2);
  CHECK(ok <= 3);
  auto reloaded = [&](double n) {
    return wait_until(
        within(5s), [&] { return reloads(s.metrics_port, "success") >= n; }, 20ms);
  };
  // A higher rate: 30 new names at once all go through.
  l.qps = 1000;
  l.burst = 1000;
  s.write(l);
  s.d->signal(SIGHUP);
  REQUIRE(reloaded(1));
  auto after = ask_all(s.ep, names("b", 30), 3s);
  CHECK(count_rcode(after, kNoError) == 30);
  // Back to a low rate (the buckets start full: 2 more, then REFUSED).
  l.qps = 1;
  l.burst = 2;
  s.write(l);
  s.d->signal(SIGHUP);
  REQUIRE(reloaded(2));
  // (A short wait: the bucket must not refill before the next step.)
  auto low = ask_all(s.ep, names("c", 6), 300ms);
  CHECK(count_rcode(low, kNoError) <= 3);
  CHECK(count_rcode(low, kRefused) >= 3);
  // A reload that changes no clients key keeps the buckets: this one is
  // still empty, so at most the token refilled since (1 per second) goes
  // through, not a fresh burst of 2.
  l.log_level = "debug";
  s.write(l);
  s.d->signal(SIGHUP);
  REQUIRE(reloaded(3));
  auto kept = ask_all(s.ep, names("d", 4), 300ms);
  CHECK(count_rcode(kept, kNoError) <= 1);
  CHECK(count_rcode(kept, kRefused) >= 3);
  // An allow-list that leaves 127.0.0.1 out.
  l.allow = "[10.0.0.0/8]";
  s.write(l);
  s.d->signal(SIGHUP);
  REQUIRE(reloaded(4));
  auto out = ask_all(s.ep, {"a0.example"}, 2s);  // cached, still refused
  REQUIRE(out.size() == 1);
  CHECK(out.begin()->second.rcode == kRefused);
  CHECK(out.begin()->second.ede == std::vector<Ede>{kProhibited});
  CHECK(reloads(s.metrics_port, "failure") == 0);
}
