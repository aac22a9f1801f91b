// node-cache's rendering of node-local-dns's Corefile template, the kube-dns
// ConfigMap reader, and the translation into localdns's Config.
// tests/data/corefile/nodelocaldns.yaml.Corefile is the `Corefile` key of the
// node-local-dns ConfigMap in kubernetes/kubernetes
// cluster/addons/dns/nodelocaldns/nodelocaldns.yaml, verbatim.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
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

TEST_CASE("render() fills the template as node-cache does", "[corefile]") {
  std::string verbatim = slurp(data("nodelocaldns.yaml.Corefile"));
  SECTION("no kube-dns ConfigMap: the host's resolv.conf, the -localip list, no DNS server") {
    std::string r = render(verbatim, stock_subs(), {});
    CHECK(r.find("forward . /etc/resolv.conf\n") != std::string::npos);
    CHECK(r.find("forward . 10.100.0.20 {\n            force_tcp\n    }") != std::string::npos);
    CHECK(r.find("bind 169.254.20.10 10.96.0.10 \n") != std::string::npos);
    CHECK(r.find("health 169.254.20.10 10.96.0.10:8080\n") != std::string::npos);
    // What node-cache never fills stays: the installer's cluster domain.
    CHECK(leftover_placeholders(r) == std::vector<std::string>{"__PILLAR__DNS__DOMAIN__"});
    CHECK(r.size() > verbatim.size() - 200);
  }
  SECTION("the installed template (sed by the addon's instructions)") {
    std::string r = render(installed_template(), stock_subs(), {});
    CHECK(leftover_placeholders(r).empty());
    CHECK(r.find("cluster.local:53 {") == 0);
    CHECK(r.find("bind 169.254.20.10 10.96.0.10\n") != std::string::npos);
    CHECK(r.find("health 169.254.20.10:8080\n") != std::string::npos);
  }
  SECTION("upstreamNameservers: servers substituted; the TCP form becomes the UDP form") {
    KubeDns kube;
    kube.upstream_nameservers = {"8.8.8.8", "1.1.1.1:5353"};
    std::string r = render(installed_template(), stock_subs(), kube);
    CHECK(r.find("forward . 8.8.8.8 1.1.1.1:5353\n") != std::string::npos);
    CHECK(r.find("/etc/resolv.conf") == std::string::npos);
    // An older template forwarded upstream over TCP; node-cache swaps that exact text.
    std::string tcp =
        ".:53 {\n    errors\n    forward . __PILLAR__UPSTREAM__SERVERS__ {\n            "
        "force_tcp\n    }\n    cache 30\n}\n";
    CHECK(render(tcp, stock_subs(), kube) ==
          ".:53 {\n    errors\n    forward . 8.8.8.8 1.1.1.1:5353\n    cache 30\n}\n");
    // Without custom upstreams the TCP form stays, with the resolv.conf file.
    CHECK(render(tcp, stock_subs(), {}) ==
          ".:53 {\n    errors\n    forward . /etc/resolv.conf {\n            force_tcp\n    }\n    "
          "cache 30\n}\n");
  }
  SECTION("stub domains: one block each, UDP, on the DNS port, in file order") {
    KubeDns kube;
    kube.stub_domains = {{"acme.local", {"1.2.3.4"}},
                         {"corp.example", {"10.0.0.1", "10.0.0.2:54"}}};
    Substitutions subs = stock_subs();
    subs.dns_port = 5300;
    std::string r = render("__PILLAR__CLUSTER__DNS__ __PROMETHEUS__ENDPOINT__\n", subs, kube);
    CHECK(r ==
          "10.100.0.20 :9253\n"
          "\nacme.local:5300 {\n    errors\n    cache 30\n    bind 169.254.20.10 10.96.0.10\n    "
          "forward . 1.2.3.4\n}\n"
          "\ncorp.example:5300 {\n    errors\n    cache 30\n    bind 169.254.20.10 10.96.0.10\n    "
          "forward . 10.0.0.1 10.0.0.2:54\n}\n");
  }
}

TEST_CASE("the kube-dns ConfigMap directory is read and checked as node-cache does", "[corefile]") {
  TempDir dir;
  auto read = [&] { return read_kube_dns_dir(dir.path.string()); };
  SECTION("absent: nothing to apply") {
    auto k = read_kube_dns_dir((dir.path / "absent").string());
    REQUIRE(k);
    CHECK(k->stub_domains.empty());
    CHECK(k->upstream_nameservers.empty());
  }
  SECTION("valid files; others (federations, hidden) ignored") {
    dir.write("stubDomains",
              R"({"acme.local": ["1.2.3.4"], "corp.example": ["10.0.0.1:54", "fd00::53"]})");
    dir.write("upstreamNameservers", R"(["8.8.8.8", "[2001:db8::1]:53"])");
    dir.write("federations", "not json at all {");
    dir.write(".hidden", "{");
    auto k = read();
    INFO((k ? std::string() : all(k.error())));
    REQUIRE(k);
    REQUIRE(k->stub_domains.size() == 2);
    CHECK(k->stub_domains[0].first == "acme.local");
    CHECK(k->stub_domains[1].second == std::vector<std::string>{"10.0.0.1:54", "fd00::53"});
    CHECK(k->upstream_nameservers == std::vector<std::string>{"8.8.8.8", "[2001:db8::1]:53"});
  }
  SECTION("errors name the file and the line") {
    std::string p = dir.path.string();
    dir.write("stubDomains",
              "{\"acme.local\": [\"1.2.3.4\"],\n \"Bad_Domain\": [\"1.2.3.4\"],\n"
              " \"ok.example\": [\"tls://1.2.3.4\", \"ns.example\"]}");
    dir.write("upstreamNameservers", R"(["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"])");
    auto k = read();
    REQUIRE_FALSE(k);
    CHECK(k.error() ==
          Errors{p + "/stubDomains:2: invalid domain name: \"Bad_Domain\"",
                 p + "/stubDomains:3: invalid nameserver \"tls://1.2.3.4\" for the stub domain "
                     "\"ok.example\": expected IP or IP:port (localdns forwards plain DNS only)",
                 p + "/stubDomains:3: invalid nameserver \"ns.example\" for the stub domain "
                     "\"ok.example\": expected IP or IP:port (localdns forwards plain DNS only)",
                 p + "/upstreamNameservers:1: upstreamNameservers cannot have more than three "
                     "entries"});
    dir.write("stubDomains", "{\"a\": [\"1.2.3.4\"");
    dir.write("upstreamNameservers", "");
    k = read();
    REQUIRE_FALSE(k);
    REQUIRE(k.error().size() == 2);
    CHECK(k.error()[0].rfind(p + "/stubDomains:1: not valid JSON: ", 0) == 0);
    CHECK(k.error()[1] == p + "/upstreamNameservers: expected JSON, found nothing");
    dir.write("stubDomains", R"(["1.2.3.4"])");
    dir.write("upstreamNameservers", R"({"a": 1})");
    k = read();
    REQUIRE_FALSE(k);
    CHECK(k.error() ==
          Errors{p + "/stubDomains:1: expected a JSON map of domain to a list of servers",
                 p + "/upstreamNameservers:1: expected a JSON list of servers"});
    dir.write("upstreamNameservers", "[\"\xff\"]");
    dir.write("stubDomains", "{}");
    k = read();
    REQUIRE_FALSE(k);
    CHECK(k.error() == Errors{p + "/upstreamNameservers: not UTF-8 text"});
  }
  SECTION("a file where the directory should be") {
    dir.write("file", "x");
    auto k = read_kube_dns_dir((dir.path / "file").string());
    REQUIRE_FALSE(k);
    CHECK(k.error() == Errors{(dir.path / "file").string() +
                              ": the kube-dns ConfigMap path is not a directory"});
  }
}

TEST_CASE("the template with stub domains and custom upstreams", "[corefile]") {
  TempDir dir;
  dir.write("stubDomains", R"({"acme.local": ["1.2.3.4", "1.2.3.5:5353"]})");
  dir.write("upstreamNameservers", R"(["8.8.8.8", "8.8.4.4"])");
  auto kube = read_kube_dns_dir(dir.path.string());
  REQUIRE(kube);
  auto t = must_translate(render(installed_template(), stock_subs(), *kube));
  const Config& c = t.config;
  CHECK(validate(c).empty());
  REQUIRE(c.forward.size() == 5);
  const auto& root = c.forward[3];
  CHECK(root.zones == std::vector<std::string>{"."});
  CHECK(root.servers == std::vector<Endpoint>{ep("8.8.8.8"), ep("8.8.4.4")});
  CHECK_FALSE(root.servers_from_resolv_conf);
  CHECK(root.transport == Transport::PreferUdp);
  const auto& stub = c.forward[4];
  CHECK(stub.zones == std::vector<std::string>{"acme.local."});
  CHECK(stub.servers == std::vector<Endpoint>{ep("1.2.3.4"), ep("1.2.3.5", 5353)});
  CHECK(stub.transport == Transport::PreferUdp);
  CHECK(stub.policy == Policy::Random);
  CHECK(stub.cache.max_ttl == std::optional<Duration>(30s));
  CHECK(stub.cache.denial_max_ttl == std::optional<Duration>(30s));
  CHECK(c.cache.max_entries == 5 * (9984 + 9984));
  CHECK(t.warnings.size() == 7);
  CHECK(t.warnings[1].find("(5 caches: ") != std::string::npos);
}

TEST_CASE("extra plugins are named with their lines; what carries over does", "[corefile]") {
  std::string text = installed_template();
  replace_all(text, "    prometheus :9253\n    health 169.254.20.10:8080\n",
              "    prometheus 169.254.20.10:9253\n    health 169.254.20.10:8080\n    hosts {\n"
              "      10.0.0.5 db.cluster.local\n      fallthrough\n    }\n    rewrite name "
              "a.cluster.local b.cluster.local\n    log\n");
  auto t = must_translate(render(text, stock_subs(), {}));
  CHECK(validate(t.config).empty());
  CHECK(t.config.metrics.listen == std::optional<Endpoint>(ep("169.254.20.10", 9253)));
  CHECK(t.config.query_log_sample == 1);
  const std::vector<std::string> tail(t.warnings.end() - 4, t.warnings.end());
  CHECK(tail == std::vector<std::string>{
                    "directive reload at Corefile:7, Corefile:25, Corefile:36, Corefile:47 is not "
                    "carried over: localdns reads the Corefile once, at start: restart it to "
                    "apply a change",
                    "directive loop at Corefile:8, Corefile:26, Corefile:37, Corefile:48 is not "
                    "carried over: localdns has no run-time loop probe; at start it refuses a "
                    "group that forwards to one of its own listen addresses",
                    "directive hosts at Corefile:15 is not carried over: localdns only caches and "
                    "forwards: queries this plugin would answer are forwarded instead",
                    "directive rewrite at Corefile:19 is not carried over: localdns only caches "
                    "and forwards: queries this plugin would answer are forwarded instead"});
  CHECK(std::find(t.warnings.begin(), t.warnings.end(),
                  "log: localdns logs the queries of every zone, not only those of the server "
                  "blocks that have log") != t.warnings.end());
  // The metrics address is explicit now: no "every address" line.
  for (const auto& w : t.warnings)
    CHECK(w.find("every address") == std::string::npos);
}

TEST_CASE("forward's properties map to the group's keys", "[corefile]") {
  auto t = must_translate(R"(example.org:1053 EXAMPLE.net. {
    bind 127.0.0.1 ::1
    forward . dns://10.0.0.1 10.0.0.2:5353 [fd00::1]:53 {
        prefer_udp
        max_concurrent 1000
        expire 20s
        max_fails 5
        health_check 250ms
        policy round_robin
        max_connect_attempts 3
        read_timeout 1s
        max_age 5m
        except skip.example.org
    }
    cache 60
}
.:1053 {
    bind 127.0.0.1
    forward . /run/resolv.upstream {
        policy sequential
        force_tcp
        prefer_udp
    }
}
)");
  const Config& c = t.config;
  CHECK(validate(c).empty());
  // EXAMPLE.net. has no port: 53, as CoreDNS's -dns.port default.
  CHECK(c.listen ==
        std::vector<Endpoint>{ep("127.0.0.1", 1053), ep("::1", 1053), ep("127.0.0.1"), ep("::1")});
  REQUIRE(c.forward.size() == 2);
  const auto& g = c.forward[0];
  CHECK(g.zones == std::vector<std::string>{"example.org.", "example.net."});
  CHECK(g.servers == std::vector<Endpoint>{ep("10.0.0.1"), ep("10.0.0.2", 5353), ep("fd00::1")});
  CHECK(g.transport == Transport::PreferUdp);
  CHECK(g.max_in_flight == 1000);
  CHECK(g.tcp.idle_timeout == 20s);
  CHECK(g.fail_threshold == 5);
  CHECK(g.probe_interval == 250ms);
  CHECK(g.policy == Policy::RoundRobin);
  CHECK(g.attempts == 3);
  CHECK(g.timeout == 1s);
  CHECK(g.tcp.max_age == 5min);
  CHECK(g.cache.max_ttl == std::optional<Duration>(60s));
  const auto& root = c.forward[1];
  CHECK(root.servers_from_resolv_conf);
  CHECK(root.transport == Transport::Tcp);  // force_tcp wins, as in CoreDNS
  CHECK(root.policy == Policy::Sequential);
  CHECK(c.resolv_conf == "/run/resolv.upstream");
  CHECK(std::find(t.warnings.begin(), t.warnings.end(),
                  "localdns serves every zone on every listen address: the server blocks listen "
                  "on different addresses or ports (Corefile:1, Corefile:17)") != t.warnings.end());
  CHECK(std::find(t.warnings.begin(), t.warnings.end(),
                  "directive forward except at Corefile:13 is not carried over: localdns forwards "
                  "every name under the group's zones") != t.warnings.end());
  CHECK(std::find(t.warnings.begin(), t.warnings.end(),
                  "Corefile:1: server block 'example.org:1053 EXAMPLE.net.' has no bind") ==
        t.warnings.end());
  CHECK(std::find(t.warnings.begin(), t.warnings.end(),
                  "Corefile:17: server block '.:1053' has no cache: CoreDNS does not cache its "
                  "zones; localdns caches every answer it forwards") != t.warnings.end());
}

TEST_CASE("forward FROM narrows the group to a subzone", "[corefile]") {
  auto t = must_translate(
      ". {\n  bind 127.0.0.1\n  forward corp.example 10.0.0.1\n"
      "  forward . 10.0.0.2\n  cache\n}\n");
  REQUIRE(t.config.forward.size() == 2);
  CHECK(t.config.forward[0].zones == std::vector<std::string>{"corp.example."});
  CHECK(t.config.forward[1].zones == std::vector<std::string>{"."});
  auto none = must_translate("a.example {\n  bind 127.0.0.1\n  forward b.example 10.0.0.1\n}\n");
  CHECK(none.config.forward.empty());
  CHECK(none.warnings[0] ==
        "Corefile:3: forward b.example. matches no zone of its server block: "
        "no query reaches it; skipped");
  CHECK(none.warnings[1] ==
        "Corefile:1: zone a.example. has no forward in its server block: "
        "localdns sends its queries to the group of the closest enclosing "
        "zone, or answers REFUSED");
}

TEST_CASE("cache's properties map to the cache keys", "[corefile]") {
  auto t = must_translate(R"(a.example {
    bind 127.0.0.1
    forward . 10.0.0.1
    cache 300 {
        success 5000 600 2
        denial 1000 60 0
        prefetch 3 1m 20%
        serve_stale 2h verify
        servfail 0
    }
}
b.example {
    bind 127.0.0.1
    forward . 10.0.0.2
    cache {
        success 100 3600 2
        denial 100 1800 0
        prefetch 3 20%
        servfail 0
        serve_stale
    }
}
)");
  const Config& c = t.config;
  CHECK(validate(c).empty());
  CHECK(c.cache.max_entries == 5000 + 1000 + 100 + 100);
  CHECK(c.cache.min_ttl == 2s);
  CHECK(c.cache.prefetch_hits == 3);
  CHECK(c.cache.prefetch_percent == 20);
  const auto& a = c.forward[0].cache;
  CHECK(a.max_ttl == std::optional<Duration>(600s));
  CHECK(a.denial_max_ttl == std::optional<Duration>(60s));
  CHECK(a.serve_stale == 2h);
  const auto& b = c.forward[1].cache;
  CHECK_FALSE(b.max_ttl.has_value());  // CoreDNS's 3600 s is localdns's global default
  CHECK_FALSE(b.denial_max_ttl.has_value());
  CHECK(b.serve_stale == 1h);
  const std::vector<std::string> expected = {
      "cache: CoreDNS keeps one cache per server block (2 caches: 6000 + 200 entries); localdns "
      "shares one cache of cache.max_entries 6200 (and cache.max_bytes 67108864) across all zones",
      "cache: serve_stale immediate (CoreDNS's default mode) answers from an expired entry while "
      "refreshing it; localdns serves an expired entry only when every upstream attempt fails "
      "(as serve_stale verify)",
      "directive cache prefetch at Corefile:7 is not carried over: localdns's prefetch has no "
      "DURATION: it counts hits over the entry's lifetime",
  };
  CHECK(t.warnings == expected);

  auto off = must_translate(". {\n  bind 127.0.0.1\n  forward . 10.0.0.1\n}\n");
  CHECK_FALSE(off.config.cache.enabled);  // no cache plugin anywhere: CoreDNS caches nothing
  CHECK(off.warnings.empty());
  auto dis = must_translate(
      ". {\n  bind 127.0.0.1\n  forward . 10.0.0.1\n  cache {\n"
      "    disable denial\n    keepttl\n  }\n}\n");
  CHECK(dis.config.cache.max_entries == 9984);
  CHECK(std::find(dis.warnings.begin(), dis.warnings.end(),
                  "cache: disable success|denial is not carried over: localdns caches both kinds "
                  "of answer in every zone") != dis.warnings.end());
}

TEST_CASE("health, prometheus and log", "[corefile]") {
  auto t = must_translate(
      ". {\n  bind fd00::10\n  forward . fd00::53\n  health :8081 {\n"
      "    lameduck 5s\n  }\n  prometheus\n}\n");
  const Config& c = t.config;
  CHECK(c.health.listen == std::optional<Endpoint>(ep("::", 8081)));
  CHECK(c.metrics.listen == std::optional<Endpoint>(ep("127.0.0.1", 9153)));  // localhost:9153
  CHECK(t.warnings == std::vector<std::string>{
                          "Corefile:4: health [::]:8081: every address, as CoreDNS listens; "
                          "localdns never does so by default: give an address to narrow it",
                          "directive health lameduck at Corefile:5 is not carried over: localdns "
                          "stops at once on SIGTERM after answering what is in flight "
                          "(shutdown_grace); it does not keep serving for the lameduck period"});
  auto none = must_translate(". {\n  bind 127.0.0.1\n  forward . 10.0.0.1\n  cache\n}\n");
  CHECK_FALSE(none.config.health.enabled);
  CHECK_FALSE(none.config.metrics.enabled);
  auto two = must_translate(
      "a {\n  bind 127.0.0.1\n  forward . 10.0.0.1\n  prometheus "
      "127.0.0.1:9253\n}\nb {\n  bind 127.0.0.1\n  forward . 10.0.0.1\n"
      "  prometheus 127.0.0.2:9253\n}\n");
  CHECK(two.config.metrics.listen == std::optional<Endpoint>(ep("127.0.0.1", 9253)));
  CHECK(two.warnings[0] ==
        "Corefile:9: prometheus 127.0.0.2:9253: localdns has one prometheus "
        "endpoint; 127.0.0.1:9253 from Corefile:4 is used");
}

TEST_CASE("a server block without bind adds no listen address", "[corefile]") {
  auto t = must_translate(".:53 {\n  forward . 10.0.0.1\n  cache 30\n}\n");
  CHECK(t.config.listen.empty());
  CHECK(t.warnings[0] ==
        "Corefile:1: server block '.:53' has no bind: CoreDNS listens on every address (port "
        "53); localdns never listens on a wildcard address, so this block adds no listen address "
        "(give bind, -localip or --listen)");
  CHECK_FALSE(validate(t.config).empty());
  // Listen addresses from the flags complete it.
  Config c = t.config;
  c.node.local_addresses = {boost::asio::ip::make_address("169.254.20.10")};
  add_local_addresses_to_listen(c);
  CHECK(validate(c).empty());
}

TEST_CASE("what localdns cannot do is an error naming the file, line and directive", "[corefile]") {
  auto error_of = [](const std::string& text) {
    auto t = translate(text, {});
    INFO(text);
    REQUIRE_FALSE(t);
    return all(t.error());
  };
  CHECK(error_of(". {\n  bind 0.0.0.0\n  forward . 1.1.1.1\n}\n") ==
        "Corefile:2: bind: 0.0.0.0 is a wildcard address: localdns listens on each address it is "
        "given, so that replies leave from the address the client asked; list them\n");
  CHECK(error_of(". {\n  bind eth0\n}\n") ==
        "Corefile:2: bind: 'eth0' is not an IP address: localdns binds addresses, not interface "
        "names\n");
  CHECK(error_of(". {\n  bind 127.0.0.1 {\n    except 127.0.0.2\n  }\n}\n") ==
        "Corefile:3: except: bind's except is not supported: list the addresses to bind\n");
  CHECK(error_of(". {\n  forward . tls://1.1.1.1 {\n    tls_servername x\n  }\n}\n") ==
        "Corefile:2: forward: tls://1.1.1.1: DNS over TLS is not supported; localdns forwards "
        "plain DNS only, and sending these queries in clear text must be a decision, not a "
        "translation\nCorefile:3: tls_servername: DNS over TLS is not supported; localdns "
        "forwards plain DNS only\n");
  CHECK(error_of(". {\n  forward . 1.1.1.1 {\n    policy fastest\n    bogus\n  }\n}\n") ==
        "Corefile:3: policy: expected random, round_robin or sequential, got 'fastest'\n"
        "Corefile:4: bogus: unknown forward property\n");
  CHECK(error_of(". {\n  forward . 1.1.1.1 {\n    health_check 10ms\n    expire soon\n  }\n}\n") ==
        "Corefile:3: health_check: health_check 10ms is outside localdns's range 100ms to 3600s\n"
        "Corefile:4: expire: 'soon' is not a duration (like 500ms, 5s or 1m)\n");
  CHECK(error_of(". {\n  forward . 1.1.1.1 /etc/resolv.conf\n}\n") ==
        "Corefile:2: forward: localdns cannot mix a resolv.conf file and addresses in one group\n");
  CHECK(error_of(". {\n  forward . nameserver\n}\n") ==
        "Corefile:2: forward: 'nameserver' is not an IP address, IP:PORT or resolv.conf file\n");
  CHECK(error_of("a {\n  forward . 1.1.1.1\n}\nb {\n  forward . /etc/a.conf\n}\nc {\n  forward "
                 ". /etc/b.conf\n}\n") ==
        "Corefile:8: forward: localdns reads one resolv.conf file (resolv_conf); Corefile:5 "
        "already uses /etc/a.conf\n");
  CHECK(error_of("a.example {\n}\nA.EXAMPLE.:53 {\n}\n") ==
        "Corefile:3: server block 'A.EXAMPLE.:53': zone a.example. is also served by the block at "
        "Corefile:1; localdns has one set of listeners, so each zone is routed once\n");
  CHECK(error_of("grpc://.:53 {\n}\n") ==
        "Corefile:1: server block 'grpc://.:53': transport grpc:// is not supported: localdns "
        "serves plain DNS (dns://)\n");
  CHECK(error_of("10.0.0.0/8 {\n}\n") ==
        "Corefile:1: server block '10.0.0.0/8': '10.0.0.0/8': network keys (reverse zones from a "
        "CIDR) are not supported; write the in-addr.arpa or ip6.arpa zone\n");
  CHECK(error_of(".:99999 {\n}\n") ==
        "Corefile:1: server block '.:99999': '.:99999': the port must be a number from 1 to "
        "65535\n");
  CHECK(error_of(". {\n  cache 30\n  cache 60\n  forward . 1.1.1.1 {\n    max_concurrent 0\n  "
                 "}\n}\n") ==
        "Corefile:3: cache: given twice in one server block\n"
        "Corefile:5: max_concurrent: '0' must be a number from 1 to 1000000\n");
  CHECK(error_of(". {\n  cache {\n    success many\n    prefetch 1 5%\n    serve_stale 1h "
                 "sometimes\n    unknown\n  }\n}\n") ==
        "Corefile:3: success: 'many' must be a number from 1 to 100000000\n"
        "Corefile:4: prefetch: percentage '5%' must be from 10% to 90%\n"
        "Corefile:5: serve_stale: expected immediate or verify, got 'sometimes'\n"
        "Corefile:6: unknown: unknown cache property\n");
  // The verbatim template rendered with two local addresses: health gets two
  // words, which CoreDNS refuses too, and the installer's placeholder is left.
  std::string verbatim = render(slurp(data("nodelocaldns.yaml.Corefile")), stock_subs(), {});
  CHECK(error_of(verbatim) ==
        "Corefile:1: __PILLAR__DNS__DOMAIN__ is an installer placeholder: replace it first (for "
        "__PILLAR__DNS__DOMAIN__, the cluster domain)\n");
  std::string domain = verbatim;
  replace_all(domain, "__PILLAR__DNS__DOMAIN__", "cluster.local");
  CHECK(error_of(domain) == "Corefile:14: health: takes one address\n");
  CHECK(error_of(". {\n  forward . __PILLAR__CLUSTER__DNS__\n}\n") ==
        "Corefile:2: forward: __PILLAR__CLUSTER__DNS__ is a placeholder node-cache fills in: "
        "render the template first\n");
  CHECK(error_of(". {\n  forward . 1.1.1.1 {\n    max_fails __PILLAR__X__\n  }\n}\n") ==
        "Corefile:3: max_fails: __PILLAR__X__ is a placeholder node-cache fills in: render the "
        "template first\n");
  CHECK(error_of("") == "Corefile:1: the Corefile has no server block\n");
}

TEST_CASE("the template as installed for kube-proxy's IPVS mode", "[corefile]") {
  // The addon's instructions: no DNS server address, the cluster DNS filled in at install.
  std::string t = slurp(data("nodelocaldns.yaml.Corefile"));
  replace_all(t, "__PILLAR__LOCAL__DNS__", "169.254.20.10");
  replace_all(t, "__PILLAR__DNS__DOMAIN__", "cluster.local");
  replace_all(t, "__PILLAR__DNS__SERVER__", "");
  replace_all(t, "__PILLAR__CLUSTER__DNS__", "10.96.0.10");
  Substitutions subs;
  subs.local_ips = {"169.254.20.10"};
  auto tr = must_translate(render(t, subs, {}));
  CHECK(validate(tr.config).empty());
  CHECK(tr.config.listen == std::vector<Endpoint>{ep("169.254.20.10")});
  CHECK(tr.config.forward[0].servers == std::vector<Endpoint>{ep("10.96.0.10")});
  CHECK(tr.warnings.size() == 7);
}

TEST_CASE("translate_file resolves imports next to the Corefile", "[corefile]") {
  TempDir dir;
  dir.write("Corefile", ". {\n  import common\n  forward . 10.0.0.1\n}\n");
  dir.write("common", "bind 127.0.0.1\ncache 30\n");
  auto t = translate_file((dir.path / "Corefile").string());
  REQUIRE(t);
  CHECK(t->config.listen == std::vector<Endpoint>{ep("127.0.0.1")});
  CHECK(t->config.forward[0].cache.max_ttl == std::optional<Duration>(30s));
  // With only the file's name as the source, imports resolve next to it too.
  TranslateOptions named;
  named.source = (dir.path / "Corefile").string();
  auto by_name = translate(". {\n  import common\n  forward . 10.0.0.1\n}\n", named);
  REQUIRE(by_name);
  CHECK(by_name->config.listen == std::vector<Endpoint>{ep("127.0.0.1")});
  auto missing = translate_file((dir.path / "nope").string());
  REQUIRE_FALSE(missing);
  CHECK(missing.error() == Errors{(dir.path / "nope").string() + ": cannot open the Corefile"});
  dir.write("bad", ". {\n  forward . 0.0.0.0 {\n");
  auto bad = translate_file((dir.path / "bad").string());
  REQUIRE_FALSE(bad);
  CHECK(bad.error() == Errors{(dir.path / "bad").string() + ":2: '{' is never closed"});
}

TEST_CASE("README lists the official template's warnings as they are", "[corefile][docs]") {
  std::ifstream f(std::string(LOCALDNS_SOURCE_DIR) + "/README.md");
  std::string line;
  bool section = false, block = false, found = false;
  std::vector<std::string> listed;
  while (std::getline(f, line)) {
    if (line.starts_with("## ")) section = line == "## Migrating from node-local-dns: the Corefile";
    if (!section) continue;
    if (line.starts_with("For the official template")) found = true;
    if (found && line == "```") {
      if (block) break;
      block = true;
      continue;
    }
    if (block) listed.push_back(line);
  }
  REQUIRE(found);
  auto t = must_translate(render(installed_template(), stock_subs(), {}));
  CHECK(listed == t.warnings);
}

TEST_CASE("mutated Corefiles translate or fail with located errors, never crash", "[corefile]") {
  // The syntax has its own libFuzzer target; this runs the translation (which
  // needs the rest of localdns) over deterministic mutations of real inputs.
  std::vector<std::string> seeds = {render(installed_template(), stock_subs(), {})};
  for (const char* f : {"snippets", "nobraces", "official"}) {
    seeds.push_back(slurp(std::string(LOCALDNS_SOURCE_DIR) + "/tests/fuzz/corpus_corefile/" + f));
  }
  const std::string alphabet = " \n{}\"#:.,/\\$%()0123456789abcxyz_-[]";
  std::mt19937 rng(12345);
  TranslateOptions opts;
  opts.allow_file_imports = false;
  int translated = 0, failed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = seeds[i % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      std::size_t pos = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text[pos] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          text.erase(pos, 1 + rng() % 8);
          break;
        default:
          text.insert(pos, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    auto t = translate(text, opts);
    if (t) {
      ++translated;
      continue;
    }
    ++failed;
    for (const auto& e : t.error()) {
      INFO(text);
      CHECK(e.rfind("Corefile:", 0) == 0);
    }
  }
  CHECK(translated > 100);
  CHECK(failed > 100);
}
