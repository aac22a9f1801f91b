// Metrics, health, readiness and the control socket against a running
// localdns, with Knot DNS and the fault-injecting upstream.
#include <cstdio>

#include <catch2/catch.hpp>

#include <localdns/app/control.hpp>
#include <localdns/app/health.hpp>
#include <localdns/app/metrics.hpp>
#include <localdns/config/loader.hpp>

#include "ask.hpp"
#include "endpoints.hpp"
#include "fake_upstream.hpp"
#include "http_get.hpp"
#include "instance.hpp"
#include "knot_server.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("metrics move by exactly the queries sent", "[integration][metrics]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  Instance ld({group({"cluster.local"}, {knot.address()}, Transport::Tcp)});
  auto port = free_port();
  app::MetricsEndpoint metrics(ld.server(), nullptr, loopback(port));
  app::HealthEndpoint health(ld.server(), nullptr, loopback(free_port()));

  const std::vector<std::string> names = {
      "api.default.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local",
      "dual.default.svc.cluster.local", "missing.default.svc.cluster.local"};
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      bool tcp = round == 1 && i == 0;  // one query over TCP
      ask(ld.endpoint(), names[i], "A", {.tcp = tcp});
    }
  }
  ask(ld.endpoint(), "api.default.svc.cluster.local", "AAAA");  // NODATA, a miss
  // The health check's own queries are not counted.
  REQUIRE(health.respond("/health").status == 200);

  auto [status, text] = http_get(port, "/metrics");
  REQUIRE(status == 200);
  INFO(text.substr(0, 3000));
  const std::string zone = "zone=\"cluster.local.\"";
  CHECK(metric_sum(text, "coredns_dns_requests_total") == 9);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {zone, "type=\"A\""}) == 8);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"type=\"AAAA\""}) == 1);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"proto=\"tcp\""}) == 1);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"family=\"1\""}) == 9);
  CHECK(metric_sum(text, "coredns_dns_responses_total", {"rcode=\"NOERROR\""}) == 7);
  CHECK(metric_sum(text, "coredns_dns_responses_total", {"rcode=\"NXDOMAIN\""}) == 2);
  CHECK(metric_sum(text, "coredns_dns_request_duration_seconds_count", {zone}) == 9);
  CHECK(metric_sum(text, "coredns_dns_response_size_bytes_count", {"proto=\"udp\""}) == 8);
  CHECK(metric_sum(text, "coredns_cache_hits_total") == 4);
  CHECK(metric_sum(text, "coredns_cache_misses_total") == 5);
  const std::string to = "to=\"" + knot.address() + "\"";
  CHECK(metric_sum(text, "coredns_forward_requests_total", {to}) == 5);
  CHECK(metric_sum(text, "coredns_forward_responses_total", {to, "rcode=\"NOERROR\""}) == 4);
  CHECK(metric_sum(text, "coredns_forward_responses_total", {to, "rcode=\"NXDOMAIN\""}) == 1);
  CHECK(metric_sum(text, "coredns_forward_request_duration_seconds_count", {to}) == 5);
  CHECK(metric_sum(text, "localdns_upstream_tcp_connects_total", {to}) >= 1);
  CHECK(metric_sum(text, "localdns_upstream_tcp_connections", {to}) >= 1);
  CHECK(metric_sum(text, "localdns_build_info", {"version=\"" LOCALDNS_VERSION "\""}) == 1);
  CHECK(text.find("# TYPE coredns_dns_request_duration_seconds histogram") != std::string::npos);
  CHECK(http_get(port, "/other").first == 404);
}

TEST_CASE("readiness waits for an upstream answer but health does not", "[integration][health]") {
  FakeUpstream up;
  up.set({.mode = Behaviour::Mode::Drop});
  auto g = group({"."}, {up.address()}, Transport::Udp);
  g.timeout = std::chrono::milliseconds(200);
  g.attempts = 1;
  Instance ld({g});
  auto port = free_port();
  app::HealthEndpoint health(ld.server(), nullptr, loopback(port));

  auto [s1, b1] = http_get(port, "/ready");
  CHECK(s1 == 503);
  CHECK(b1 == "no upstream of zone . has answered yet\n");
  CHECK(http_get(port, "/health").first == 200);  // the data path works without an upstream

  CHECK(ask(ld.endpoint(), "dropped.example").rcode == "SERVFAIL");
  CHECK(http_get(port, "/ready").first == 503);

  up.set({});
  CHECK(ask(ld.endpoint(), "answered.example").rcode == "NOERROR");
  auto [s2, b2] = http_get(port, "/ready");
  CHECK(s2 == 200);
  CHECK(b2 == "OK\n");
  CHECK(http_get(port, "/health").first == 200);

  ld.stop();
  auto [s3, b3] = http_get(port, "/health");
  CHECK(s3 == 503);
  CHECK(http_get(port, "/ready").first == 503);
}

TEST_CASE("ctl top ranks a planted heavy hitter first", "[integration][ctl]") {
  FakeUpstream up;
  config::Config c;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  c.top_sample = 4;
  Instance ld(c);
  auto path = temp_socket();
  app::ControlServer ctl(ld.server(), nullptr, path);
  // 3,000 names asked once each; one name asked 600 times among them.
  for (int i = 0; i < 3000; ++i) {
    ask(ld.endpoint(), "name" + std::to_string(i) + ".example");
    if (i % 5 == 0) ask(ld.endpoint(), "heavy.example");
  }
  for (int i = 0; i < 160; ++i)
    ask(ld.endpoint(), "nxwhat.example.com.team1.svc.cluster.local");

  auto top = ctl.execute("top names 3\n");
  INFO(top);
  auto first = top.substr(top.find('\n') + 1);
  first = first.substr(0, first.find('\n'));
  CHECK(first.ends_with("\theavy.example."));
  // Estimated from a 1-in-4 sample of 600: sd about 42.
  long count = std::stol(first.substr(0, first.find('\t')));
  CHECK(count > 400);
  CHECK(count < 800);

  auto nx = ctl.execute("top nxdomain 1 json");
  INFO(nx);
  CHECK(nx.find("\"key\":\"nxwhat.example.com [search team1.svc.cluster.local]\"") !=
        std::string::npos);
  auto clients = ctl.execute("top clients 1");
  CHECK(clients.find("\t127.0.0.1\n") != std::string::npos);

  auto stats = ctl.execute("stats json");
  INFO(stats);
  CHECK(stats.find("\"queries\":3760") != std::string::npos);
  CHECK(stats.find("\"to\":\"" + up.address() + "\"") != std::string::npos);
}

TEST_CASE("ctl flushes one name or the whole cache, and dumps entries", "[integration][ctl]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  Instance ld({group({"cluster.local"}, {knot.address()}, Transport::Tcp)});
  auto path = temp_socket();
  app::ControlServer ctl(ld.server(), nullptr, path);
  const std::string keep = "api.default.svc.cluster.local", drop = "dual.default.svc.cluster.local";
  ask(ld.endpoint(), keep);
  ask(ld.endpoint(), drop);
  ask(ld.endpoint(), drop, "AAAA");
  auto dump = ctl.execute("dump");
  INFO(dump);
  CHECK(dump.find(keep + ". A NOERROR 30 ") != std::string::npos);
  CHECK(dump.find(drop + ". AAAA NOERROR ") != std::string::npos);

  CHECK(ctl.execute("flush DUAL.default.svc.cluster.local") ==
        "flushed 2 entries for DUAL.default.svc.cluster.local\n");
  dump = ctl.execute("dump");
  CHECK(dump.find(drop) == std::string::npos);
  CHECK(dump.find(keep) != std::string::npos);
  auto hits = ld.server().stats().cache_hits;
  ask(ld.endpoint(), drop);
  CHECK(ld.server().stats().cache_hits == hits);  // asked upstream again

  CHECK(ctl.execute("flush json") == "{\"flushed\":2}\n");  // keep and drop A
  CHECK(ld.server().cache_stats().entries == 0);
  CHECK(ctl.execute("flush bad..name").starts_with("error:"));
  CHECK(ctl.execute("frobnicate").starts_with("error: unknown command"));

  // The command-line client, over the socket.
  std::string cmd = std::string(LOCALDNS_BINARY) + " ctl --socket " + path + " stats";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p))
    out += buf;
  CHECK(::pclose(p) == 0);
  CHECK(out.find("queries     4") != std::string::npos);
}

TEST_CASE("a second control server never takes a live socket", "[integration][ctl]") {
  FakeUpstream up;
  Instance ld({group({"."}, {up.address()}, Transport::Udp)});
  auto path = temp_socket();
  app::ControlServer first(ld.server(), nullptr, path);
  CHECK_THROWS_WITH(app::ControlServer(ld.server(), nullptr, path),
                    Catch::Contains("in use by another running localdns"));
  CHECK(first.execute("stats").find("queries") != std::string::npos);
}

// ---- Label bytes in logs and `ctl` output, and the metrics zone label ----

TEST_CASE("the zone label is the zone's name with one trailing dot", "[integration][metrics]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  FakeUpstream up;
  // Through the loader, as the binary reads it.
  auto c = config::load_config_text(
      "forward:\n"
      "  - zones: [cluster.local]\n"
      "    servers: [\"" +
          knot.address() +
          "\"]\n"
          "    transport: tcp\n"
          "  - zones: [.]\n"
          "    servers: [\"" +
          up.address() +
          "\"]\n"
          "    transport: udp\n",
      "zones.yaml");
  REQUIRE(c.has_value());
  Instance ld(*c);
  auto port = free_port();
  app::MetricsEndpoint metrics(ld.server(), nullptr, loopback(port));
  ask(ld.endpoint(), "api.default.svc.cluster.local");
  ask(ld.endpoint(), "www.example");
  ask(ld.endpoint(), "www.example");
  auto [status, text] = http_get(port, "/metrics");
  REQUIRE(status == 200);
  INFO(text.substr(0, 3000));
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"zone=\"cluster.local.\""}) == 1);
  CHECK(metric_sum(text, "coredns_dns_requests_total", {"zone=\".\""}) == 2);
  CHECK(metric_sum(text, "coredns_dns_responses_total", {"zone=\".\""}) == 2);
  CHECK(text.find("..\"") == std::string::npos);  // no label ends in two dots
}
