// node-cache's rendering of node-local-dns's Corefile template, the kube-dns
// ConfigMap reader, and the translation into localdns's Config.
// tests/data/corefile/nodelocaldns.yaml.Corefile is the `Corefile` key of the
// node-local-dns ConfigMap in kubernetes/kubernetes
// cluster/addons/dns/nodelocaldns/nodelocaldns.yaml, verbatim.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/config/corefile.hpp>
#include <localdns/config/loader.hpp>

using namespace localdns::config;
using namespace localdns::config::corefile;
using namespace std::chrono_literals;

namespace {

std::string all(const std::vector<std::string>& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream b;
  b << f.rdbuf();
  return b.str();
}

std::string data(const std::string& name) {
  return std::string(LOCALDNS_SOURCE_DIR) + "/tests/data/corefile/" + name;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
}

// What the addon's install instructions do in iptables mode (sed).
std::string installed_template() {
  std::string t = slurp(data("nodelocaldns.yaml.Corefile"));
  replace_all(t, "__PILLAR__LOCAL__DNS__", "169.254.20.10");
  replace_all(t, "__PILLAR__DNS__DOMAIN__", "cluster.local");
  replace_all(t, "__PILLAR__DNS__SERVER__", "10.96.0.10");
  return t;
}

Substitutions stock_subs() {
  Substitutions s;
  s.local_ips = {"169.254.20.10", "10.96.0.10"};
  s.cluster_dns = "10.100.0.20";  // kube-dns-upstream's ClusterIP
  return s;
}

Endpoint ep(const char* text) {
  auto a = boost::asio::ip::make_address(text);
  return Endpoint{a, 53};
}

Endpoint ep(const char* text, std::uint16_t port) {
  return Endpoint{boost::asio::ip::make_address(text), port};
}

Translation must_translate(const std::string& text, TranslateOptions opts = {}) {
  auto t = translate(text, opts);
  INFO(text);
  if (!t) FAIL(all(t.error()));
  return *t;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/localdns-corefile-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
  }
};

}  // namespace

TEST_CASE("the official template, installed and rendered, translates", "[corefile]") {
  std::string rendered = render(installed_template(), stock_subs(), {});
  auto t = must_translate(rendered);
  const Config& c = t.config;
  INFO(all(t.warnings));
  CHECK(validate(c).empty());
  CHECK(c.listen == std::vector<Endpoint>{ep("169.254.20.10"), ep("10.96.0.10")});
  REQUIRE(c.forward.size() == 4);
  const char* zones[] = {"cluster.local.", "in-addr.arpa.", "ip6.arpa.", "."};
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& g = c.forward[i];
    CHECK(g.zones == std::vector<std::string>{zones[i]});
    CHECK(g.policy == Policy::Random);
    CHECK(g.fail_threshold == 2);
    CHECK(g.probe_interval == 500ms);
    CHECK(g.tcp.idle_timeout == 10s);
    CHECK(g.cache.max_ttl == std::optional<Duration>(30s));
    if (i < 3) {
      CHECK(g.transport == Transport::Tcp);
      CHECK(g.servers == std::vector<Endpoint>{ep("10.100.0.20")});
      CHECK_FALSE(g.servers_from_resolv_conf);
    } else {
      CHECK(g.transport == Transport::PreferUdp);
      CHECK(g.servers.empty());
      CHECK(g.servers_from_resolv_conf);
    }
  }
  CHECK(c.forward[0].cache.denial_max_ttl == std::optional<Duration>(5s));
  CHECK(c.forward[1].cache.denial_max_ttl == std::optional<Duration>(30s));
  CHECK(c.resolv_conf == "/etc/resolv.conf");
  CHECK(c.cache.enabled);
  CHECK(c.cache.max_entries == 4 * (9984 + 9984));
  CHECK(c.cache.min_ttl == 5s);
  CHECK(c.health.enabled);
  CHECK(c.health.listen == std::optional<Endpoint>(ep("169.254.20.10", 8080)));
  CHECK(c.metrics.enabled);
  CHECK(c.metrics.listen == std::optional<Endpoint>(ep("0.0.0.0", 9253)));
  CHECK(c.query_log_sample == 0);
  const std::vector<std::string> expected = {
      "Corefile:13: prometheus 0.0.0.0:9253: every address, as CoreDNS listens; localdns never "
      "does so by default: give an address to narrow it",
      "cache: CoreDNS keeps one cache per server block (4 caches: 19968 + 19968 + 19968 + 19968 "
      "entries); localdns shares one cache of cache.max_entries 79872 (and cache.max_bytes "
      "67108864) across all zones",
      "cache: CoreDNS raises negative-answer TTLs below the denial MINTTL (default 5s); localdns "
      "keeps the shorter TTL the SOA gives",
      "cache: CoreDNS caches SERVFAIL answers (servfail, default 5s); localdns never caches "
      "SERVFAIL",
      "cache: CoreDNS prefetches only with prefetch; localdns refreshes entries asked at least "
      "cache.prefetch_hits 2 times in the last cache.prefetch_percent 10% of their lifetime "
      "(cache.prefetch_hits: 0 turns it off)",
      "directive reload at Corefile:7, Corefile:19, Corefile:30, Corefile:41 is not carried over: "
      "localdns reads the Corefile once, at start: restart it to apply a change",
      "directive loop at Corefile:8, Corefile:20, Corefile:31, Corefile:42 is not carried over: "
      "localdns has no run-time loop probe; at start it refuses a group that forwards to one of "
      "its own listen addresses",
  };
  CHECK(t.warnings == expected);
}
