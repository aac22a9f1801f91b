// The Corefile translation, directive by directive, and its errors.
#include <algorithm>
#include <random>

#include <catch2/catch.hpp>

#include "corefile_helpers.hpp"

using namespace corefile_test;
using namespace std::chrono_literals;

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
