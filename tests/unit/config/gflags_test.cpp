// node-cache's and CoreDNS's flags in Go's flag syntax, next to localdns's own.
#include <catch2/catch.hpp>

#include <localdns/config/cli.hpp>

using namespace localdns::config;

namespace {
std::expected<CliOptions, std::string> parse(std::vector<std::string_view> args) {
  return parse_cli(args);
}
}  // namespace

TEST_CASE("Go flags take one dash or two, and a separate or inline value", "[config][gflags]") {
  for (auto args : std::vector<std::vector<std::string_view>>{
           {"-localip", "169.254.20.10,10.96.0.10", "-upstreamsvc", "kube-dns-upstream"},
           {"--localip", "169.254.20.10,10.96.0.10", "--upstreamsvc=kube-dns-upstream"},
           {"-localip=169.254.20.10,10.96.0.10", "--upstreamsvc", "kube-dns-upstream"}}) {
    auto o = parse(args);
    REQUIRE(o.has_value());
    CHECK(o->local_ips == std::vector<std::string>{"169.254.20.10", "10.96.0.10"});
    CHECK(o->node_cache.upstream_svc == "kube-dns-upstream");
    CHECK(o->node_cache.used);
  }
  // A value is the next argument whatever it looks like, as in Go.
  auto o = parse({"-interfacename", "-odd", "-conf", "/etc/Corefile", "-pidfile", "/tmp/p"});
  REQUIRE(o.has_value());
  CHECK(o->interface_name == "-odd");
  CHECK(o->node_cache.conf == "/etc/Corefile");
  CHECK(o->node_cache.pidfile == "/tmp/p");
  CHECK(o->node_cache.used);  // -interfacename is node-cache's
  // CoreDNS's flags alone are not node-cache mode.
  CHECK_FALSE(parse({"-conf", "/etc/Corefile", "-pidfile", "/tmp/p"})->node_cache.used);
  CHECK_THAT(parse({"-localip"}).error(), Catch::Contains("flag needs an argument: -localip"));
}

TEST_CASE("Go booleans: -flag or -flag=BOOL, never the next argument", "[config][gflags]") {
  auto o = parse({"-setupiptables=false", "--setupinterface=F", "-skipteardown"});
  REQUIRE(o.has_value());
  CHECK(o->setup_rules == false);
  CHECK(o->setup_interface == false);
  CHECK(o->skip_teardown == true);
  for (auto t : {"1", "t", "T", "true", "TRUE", "True"}) {
    std::string a = std::string("-setupiptables=") + t;
    CHECK(parse({a})->setup_rules == true);
  }
  for (auto f : {"0", "f", "F", "false", "FALSE", "False"}) {
    std::string a = std::string("-setupiptables=") + f;
    CHECK(parse({a})->setup_rules == false);
  }
  // "-skipteardown false": the bool takes no value, and "false" is no flag.
  auto next = parse({"-skipteardown", "false"});
  REQUIRE_FALSE(next.has_value());
  CHECK_THAT(next.error(), Catch::Contains("unexpected argument 'false'"));
  CHECK_THAT(parse({"-setupiptables=yes"}).error(),
             Catch::Contains("invalid boolean value \"yes\" for -setupiptables"));
}

TEST_CASE("syncinterval: a bare number is seconds, else a Go duration", "[config][gflags]") {
  CHECK(parse({"-syncinterval", "60"})->sync_interval == "60s");
  CHECK(parse({"-syncinterval=90s"})->sync_interval == "90s");
  CHECK(parse({"-syncinterval", "1m30s"})->sync_interval == "90s");
  CHECK(parse({"-syncinterval", "1500ms"})->sync_interval == "1500ms");
  CHECK(parse({"-syncinterval", "0.5h"})->sync_interval == "1800s");
  CHECK_THAT(parse({"-syncinterval", "0s"}).error(), Catch::Contains("between 1s and 1h"));
  CHECK_THAT(parse({"-syncinterval", "2h"}).error(), Catch::Contains("between 1s and 1h"));
  CHECK_THAT(parse({"-syncinterval", "soon"}).error(), Catch::Contains("-syncinterval soon"));
  CHECK_THAT(parse({"-syncinterval", "10x"}).error(), Catch::Contains("-syncinterval 10x"));
}

TEST_CASE("syncinterval Nns is N seconds, node-cache's reading, with one warning",
          "[config][gflags]") {
  auto o = parse({"-syncinterval", "30ns"});
  REQUIRE(o.has_value());
  CHECK(o->sync_interval == "30s");
  CHECK(o->node_cache.warnings ==
        std::vector<std::string>{
            "-syncinterval 30ns: node-cache reads this as 30 seconds; localdns does too"});
  CHECK(parse({"-syncinterval=60ns"})->sync_interval == "60s");
  CHECK(parse({"-syncinterval", "30"})->node_cache.warnings.empty());
  CHECK_THAT(parse({"-syncinterval", "7200ns"}).error(), Catch::Contains("between 1s and 1h"));
  // Only a whole number of ns: other forms keep Go's meaning.
  CHECK_THAT(parse({"-syncinterval", "1.5ns"}).error(), Catch::Contains("between 1s and 1h"));
}

TEST_CASE("node-cache's -tls-* flags: known, and a warning only with -tls-enabled",
          "[config][gflags]") {
  auto quiet = parse({"-tls-cert-file", "/etc/ssl/tls.crt", "-tls-private-key-file=/k",
                      "-tls-client-auth-type", "NoClientCert", "-tls-client-ca-file", "",
                      "--tls-min-version", "TLS13", "-tls-enabled=false"});
  REQUIRE(quiet.has_value());
  CHECK(quiet->node_cache.warnings.empty());
  CHECK(quiet->node_cache.used);
  auto on = parse({"-tls-enabled"});
  REQUIRE(on.has_value());
  REQUIRE(on->node_cache.warnings.size() == 1);
  CHECK_THAT(on->node_cache.warnings[0], Catch::StartsWith("-tls-enabled:"));
  CHECK(parse({"-tls-enabled", "-tls-enabled=0"})->node_cache.warnings.empty());
  CHECK(parse({"-tls-enabled=1", "-tls-enabled"})->node_cache.warnings.size() == 1);
  CHECK_THAT(parse({"-tls-cert-file"}).error(), Catch::Contains("-tls-cert-file"));
  CHECK_THAT(go_flags_usage(), Catch::Contains("-tls-client-ca-file"));
}

TEST_CASE("localip: every element must be an address, as node-cache", "[config][gflags]") {
  CHECK_THAT(parse({"-localip", "169.254.20.10,"}).error(),
             Catch::Contains("invalid localip specified - \"\""));
  CHECK_THAT(parse({"-localip", ",10.96.0.10"}).error(),
             Catch::Contains("invalid localip specified - \"\""));
  CHECK_THAT(parse({"-localip="}).error(), Catch::Contains("invalid localip specified - \"\""));
  CHECK_THAT(parse({"-localip", "nodelocal"}).error(),
             Catch::Contains("invalid localip specified - \"nodelocal\""));
  CHECK(parse({"-localip", "fd00::10"})->local_ips == std::vector<std::string>{"fd00::10"});
  // As any Go flag, the last -localip wins; localdns's --local-ip adds to it.
  CHECK(parse({"--local-ip", "10.0.0.1", "-localip", "169.254.20.10,10.96.0.10", "--local-ip",
               "10.0.0.2", "-localip", "169.254.20.11"})
            ->local_ips == std::vector<std::string>{"10.0.0.1", "169.254.20.11", "10.0.0.2"});
}

TEST_CASE("Go flags map onto localdns's configuration", "[config][gflags]") {
  auto o =
      parse({"-localip", "169.254.20.10", "-interfacename", "nld0", "-setupiptables=false",
             "-health-port", "8081", "-dns.port", "1053", "-syncinterval", "30", "-skipteardown"});
  REQUIRE(o.has_value());
  Config c = default_config();
  REQUIRE(apply_cli(*o, c).empty());
  CHECK(c.node.local_addresses.size() == 1);
  CHECK(c.node.interface_name == "nld0");
  CHECK_FALSE(c.node.setup_rules);
  CHECK(c.node.health_port == 8081);
  CHECK(c.node.port == 1053);
  CHECK(c.node.sync_interval == std::chrono::seconds(30));
  CHECK(c.node.skip_teardown);
  CHECK(parse({"-p", "5300"})->node_cache.dns_port == 5300);
  CHECK_THAT(parse({"-dns.port", "dns"}).error(), Catch::Contains("invalid port specified"));
  CHECK_THAT(parse({"-health-port", "0"}).error(),
             Catch::Contains("invalid healthcheck port specified"));
  // Flags go on top of the file: -skipteardown=false undoes skip_teardown: true.
  c.node.skip_teardown = true;
  REQUIRE(apply_cli(*parse({"-skipteardown=false"}), c).empty());
  CHECK_FALSE(c.node.skip_teardown);
}

TEST_CASE("known flags localdns does not honour are warnings, unknown ones errors",
          "[config][gflags]") {
  auto o = parse({"-metrics-listen-address", "0.0.0.0:9353", "-reloadwithsignal",
                  "-setupebtables=true", "-setupebtables=false"});
  REQUIRE(o.has_value());
  REQUIRE(o->node_cache.warnings.size() == 3);  // a false -setupebtables asks for nothing
  CHECK_THAT(o->node_cache.warnings[0], Catch::StartsWith("-metrics-listen-address 0.0.0.0:9353"));
  CHECK_THAT(o->node_cache.warnings[1], Catch::StartsWith("-reloadwithsignal"));
  CHECK_THAT(o->node_cache.warnings[2], Catch::StartsWith("-setupebtables"));
  CHECK_THAT(parse({"-localipp", "1.2.3.4"}).error(), Catch::Contains("'-localipp'"));
  CHECK_THAT(parse({"--frob=1"}).error(), Catch::Contains("'--frob=1'"));
}

TEST_CASE("a double dash ends the flags; localdns's GNU flags keep their syntax",
          "[config][gflags]") {
  auto o =
      parse({"-localip", "169.254.20.10", "--local-ip", "10.96.0.10", "--no-setup-rules", "--"});
  REQUIRE(o.has_value());
  CHECK(o->local_ips == std::vector<std::string>{"169.254.20.10", "10.96.0.10"});
  CHECK(o->setup_rules == false);
  CHECK_THAT(parse({"--", "extra"}).error(), Catch::Contains("unexpected argument 'extra'"));
  CHECK(parse({"-version"})->command == Command::Version);
  CHECK(parse({"--version"})->command == Command::Version);
  CHECK(parse({"-plugins"})->command == Command::Plugins);
  CHECK(parse({"-help"})->command == Command::Help);
  CHECK(parse({"--print-config"})->command == Command::PrintConfig);
  auto m = parse({"migrate", "--corefile", "/x/Corefile", "--kube-dns-dir=/x/kube-dns",
                  "-upstreamsvc", "kube-dns-upstream"});
  REQUIRE(m.has_value());
  CHECK(m->command == Command::Migrate);
  CHECK(m->migrate_corefile == "/x/Corefile");
  CHECK(m->migrate_kube_dns_dir == "/x/kube-dns");
  CHECK(service_host_variable("kube-dns-upstream") == "KUBE_DNS_UPSTREAM_SERVICE_HOST");
}
