// node-cache's rendering of node-local-dns's Corefile template, the kube-dns
// ConfigMap reader, and the translation into localdns's Config.
// tests/data/corefile/nodelocaldns.yaml.Corefile is the `Corefile` key of the
// node-local-dns ConfigMap in kubernetes/kubernetes
// cluster/addons/dns/nodelocaldns/nodelocaldns.yaml, verbatim.
#include <algorithm>
#include <random>

#include <catch2/catch.hpp>

#include "corefile_helpers.hpp"

using namespace corefile_test;
using namespace std::chrono_literals;

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
      "localdns reloads when the Corefile changes and on SIGHUP, by itself",
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
                     "\"ok.example\": expected IP or IP:port (node-cache refuses host names and "
                     "tls:// too)",
                 p + "/stubDomains:3: invalid nameserver \"ns.example\" for the stub domain "
                     "\"ok.example\": expected IP or IP:port (node-cache refuses host names and "
                     "tls:// too)",
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
                    "carried over: localdns reloads when the Corefile changes and on SIGHUP, "
                    "by itself",
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
