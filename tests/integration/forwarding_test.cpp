// Forwarding through localdns to a real authoritative server (Knot DNS).
#include <catch2/catch.hpp>

#include "ask.hpp"
#include "fake_upstream.hpp"
#include "instance.hpp"
#include "knot_server.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

TEST_CASE("answers from Knot DNS through every transport pair", "[integration][knot]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  auto upstream = GENERATE(Transport::Tcp, Transport::Udp, Transport::PreferUdp);
  bool client_tcp = GENERATE(false, true);
  INFO("upstream " << config::to_string(upstream) << ", client over "
                   << (client_tcp ? "tcp" : "udp"));
  Instance ld({group({"cluster.local"}, {knot.address()}, upstream)});

  auto r = ask(ld.endpoint(), "kube-dns.kube-system.svc.cluster.local", "A",
               {.tcp = client_tcp, .query = {.id = 0x5151}});
  REQUIRE(r.ok);
  CHECK(r.id == 0x5151);
  CHECK(r.rcode == "NOERROR");
  CHECK(r.aa);  // Knot is authoritative; localdns passes the bit on unchanged
  CHECK(r.answers == std::vector<std::string>{"10.96.0.10"});
  CHECK_FALSE(r.has_opt);

  auto aaaa = ask(ld.endpoint(), "dual.default.svc.cluster.local", "AAAA",
                  {.tcp = client_tcp, .query = {.edns = true}});
  CHECK(aaaa.answers == std::vector<std::string>{"fd00::20"});
  CHECK(aaaa.has_opt);

  auto nx = ask(ld.endpoint(), "missing.default.svc.cluster.local", "A", {.tcp = client_tcp});
  CHECK(nx.rcode == "NXDOMAIN");
  CHECK(nx.authority == 1);  // the SOA, for negative caching downstream

  auto wild = ask(ld.endpoint(), "anything.wild.cluster.local", "A", {.tcp = client_tcp});
  CHECK(wild.answers == std::vector<std::string>{"10.1.2.3"});
}

TEST_CASE("the question comes back exactly as the client wrote it", "[integration][knot]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  Instance ld({group({"cluster.local"}, {knot.address()}, Transport::Tcp)});
  auto r = ask(ld.endpoint(), "KuBe-DnS.kube-SYSTEM.svc.Cluster.Local", "A");
  CHECK(r.qname == "KuBe-DnS.kube-SYSTEM.svc.Cluster.Local.");
  CHECK(r.answers == std::vector<std::string>{"10.96.0.10"});
}

TEST_CASE("large answers: TC=1 over UDP, complete over TCP", "[integration][knot]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  Instance ld({group({"cluster.local"}, {knot.address()}, Transport::PreferUdp)});
  const std::string name = "big.default.svc.cluster.local";

  auto plain = ask(ld.endpoint(), name, "TXT");
  CHECK(plain.tc);
  CHECK(plain.answers.empty());
  CHECK(plain.size <= 512);

  auto edns = ask(ld.endpoint(), name, "TXT", {.query = {.edns = true, .udp_size = 4096}});
  CHECK(edns.tc);  // about 2 KB: over localdns's 1232-byte UDP limit
  CHECK(edns.size <= 1232);

  auto tcp = ask(ld.endpoint(), name, "TXT", {.tcp = true});
  CHECK_FALSE(tcp.tc);
  CHECK(tcp.answers.size() == 10);
  CHECK(ld.server().stats().truncated == 2);
}

TEST_CASE("zones route to their own upstream groups", "[integration][knot]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  FakeUpstream root;
  Instance ld(
      {group({"cluster.local", "in-addr.arpa", "ip6.arpa"}, {knot.address()}, Transport::Tcp),
       group({"."}, {root.address()}, Transport::Udp)});
  auto cluster = ask(ld.endpoint(), "api.default.svc.cluster.local", "A");
  CHECK(cluster.answers == std::vector<std::string>{"10.96.0.1"});
  auto outside = ask(ld.endpoint(), "example.org", "A");
  CHECK(outside.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(root.queries() == 1);
  CHECK(root.queries_for("example.org.") == 1);
}

TEST_CASE("names outside every zone are REFUSED", "[integration]") {
  FakeUpstream up;
  Instance ld({group({"cluster.local"}, {up.address()}, Transport::Udp)});
  auto r = ask(ld.endpoint(), "example.org", "A", {.query = {.edns = true}});
  CHECK(r.rcode == "REFUSED");
  CHECK(r.has_opt);
  CHECK(up.queries() == 0);
}

TEST_CASE("IPv6 listeners answer over UDP and TCP", "[integration]") {
  FakeUpstream up;
  config::Config c;
  c.threads = 2;
  c.forward = {group({"."}, {up.address()}, Transport::Udp)};
  Endpoint ep{"::1", free_port()};
  c.listen = {{boost::asio::ip::make_address("::1"), ep.port},
              {boost::asio::ip::make_address("127.0.0.1"), ep.port}};
  app::Runtime server(c);
  server.start();
  auto udp = ask(ep, "v6.example", "A", {.query = {.id = 61}});
  CHECK(udp.id == 61);
  CHECK(udp.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  auto tcp = ask(ep, "v6tcp.example", "A", {.tcp = true, .query = {.id = 62}});
  CHECK(tcp.id == 62);
  CHECK(tcp.rcode == "NOERROR");
  auto v4 = ask({"127.0.0.1", ep.port}, "v4.example");
  CHECK(v4.rcode == "NOERROR");
  server.stop();
}
