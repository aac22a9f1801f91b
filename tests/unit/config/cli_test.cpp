#include <cstdio>
#include <fstream>

#include <catch2/catch.hpp>

#include <localdns/config/cli.hpp>

using namespace localdns::config;

namespace {
std::expected<CliOptions, std::string> parse(std::vector<std::string_view> args) {
  return parse_cli(args);
}
}  // namespace

TEST_CASE("flags parse, with separate or inline values", "[config][cli]") {
  auto o = parse({"--listen", "127.0.0.1:5300", "--listen=[::1]:5300", "--forward",
                  "cluster.local=tcp://10.96.0.10:53", "--threads", "4", "--log-level=debug"});
  REQUIRE(o.has_value());
  CHECK(o->listen.size() == 2);
  CHECK(o->forward.size() == 1);
  CHECK(*o->threads == "4");
  CHECK(*o->log_level == "debug");
  CHECK(parse({"--version"})->command == Command::Version);
  CHECK(parse({"--check-config", "x.yaml"})->command == Command::CheckConfig);
  CHECK_THAT(parse({"--bogus"}).error(), Catch::Contains("unknown option '--bogus'"));
  CHECK_THAT(parse({"--listen"}).error(), Catch::Contains("--listen: needs a value"));
}

TEST_CASE("a forward flag replaces the group of its zone and keeps the rest", "[config][cli]") {
  Config c = default_config();
  auto o = parse({"--forward", "cluster.local=tcp://10.96.0.10:53,10.96.0.11", "--forward",
                  ".=udp://[2001:db8::1]:5353"});
  REQUIRE(o.has_value());
  auto errors = apply_cli(*o, c);
  REQUIRE(errors.empty());
  REQUIRE(c.forward.size() == 2);  // the default "." group was replaced
  CHECK(c.forward[0].zones == std::vector<std::string>{"cluster.local."});
  CHECK(c.forward[0].transport == Transport::Tcp);
  CHECK(c.forward[0].servers.size() == 2);
  CHECK(c.forward[0].servers[1].port == 53);
  CHECK(c.forward[1].zones == std::vector<std::string>{"."});
  CHECK(c.forward[1].transport == Transport::Udp);
  CHECK(c.forward[1].servers[0].to_string() == "[2001:db8::1]:5353");
  CHECK_FALSE(c.forward[1].servers_from_resolv_conf);
}

TEST_CASE("bad flag values name the flag", "[config][cli]") {
  Config c = default_config();
  struct Case {
    std::vector<std::string_view> args;
    const char* expect;
  };
  const Case cases[] = {
      {{"--forward", "cluster.local=quic://1.1.1.1"}, "protocol 'quic'"},
      {{"--forward", "cluster.local"}, "expected ZONE=PROTO://"},
      {{"--forward", "a..b=tcp://1.1.1.1"}, "bad zone name"},
      {{"--forward", ".=tcp://1.1.1.1:99999"}, "bad server address '1.1.1.1:99999'"},
      {{"--listen", "localhost"}, "--listen localhost"},
      {{"--threads", "-2"}, "--threads -2"},
      {{"--log-level", "loud"}, "--log-level loud"},
  };
  for (const auto& k : cases) {
    auto o = parse(k.args);
    REQUIRE(o.has_value());
    auto errors = apply_cli(*o, c);
    REQUIRE(errors.size() == 1);
    CHECK_THAT(errors[0], Catch::Contains(k.expect));
  }
}

TEST_CASE("build_config reads resolv.conf and catches loops", "[config][cli]") {
  char path[] = "/tmp/localdns-resolv-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(path) << "nameserver 127.0.0.1\n";
  std::string file = std::string("/tmp/localdns-cfg-") + std::to_string(getpid()) + ".yaml";
  std::ofstream(file) << "resolv_conf: " << path << "\nlisten: [\"127.0.0.1:53\"]\n";
  CliOptions o;
  o.config_path = file;
  auto c = build_config(o);
  REQUIRE_FALSE(c.has_value());
  CHECK_THAT(c.error().front(), Catch::Contains("is one of our own listen addresses"));
  o.listen = {"127.0.0.1:5399"};
  c = build_config(o);
  REQUIRE(c.has_value());
  // Read into what was resolved; the group stays as written.
  REQUIRE(c->resolv_conf_servers.size() == 1);
  CHECK(c->resolv_conf_servers[0].to_string() == "127.0.0.1:53");
  CHECK(c->forward[0].servers.empty());
  CHECK(servers_of(*c, c->forward[0]) == c->resolv_conf_servers);
  CHECK(upstream_settings(*c, c->forward[0]).servers == c->resolv_conf_servers);
  std::remove(path);
  std::remove(file.c_str());
}

TEST_CASE("node setup flags", "[config][cli][node]") {
  auto o =
      parse({"--local-ip", "169.254.20.10", "--local-ip=10.96.0.10", "--interface-kind", "bridge",
             "--interface-name", "ldns0", "--no-setup-rules", "--rules-backend", "iptables-legacy",
             "--sync-interval", "5s", "--skip-teardown", "--forward", ".=udp://192.0.2.1",
             "--service-cidr", "10.96.0.0/12", "--service-cidr=fd00::/108"});
  REQUIRE(o.has_value());
  auto c = build_config(*o);
  REQUIRE(c.has_value());
  const auto& n = c->node;
  REQUIRE(n.local_addresses.size() == 2);
  CHECK(n.interface_kind == "bridge");
  CHECK(n.interface_name == "ldns0");
  CHECK(n.setup_interface);
  CHECK_FALSE(n.setup_rules);
  CHECK(n.rules_backend == RulesBackend::IptablesLegacy);
  CHECK(n.sync_interval == std::chrono::seconds(5));
  CHECK(n.skip_teardown);
  REQUIRE(n.service_cidr.size() == 2);
  CHECK(n.service_cidr[1].to_string() == "fd00::/108");
  // The local addresses are served on port 53 besides the default listener.
  REQUIRE(c->listen.size() == 3);
  CHECK(c->listen[1].to_string() == "169.254.20.10:53");
  CHECK(c->listen[2].to_string() == "10.96.0.10:53");

  CHECK(parse({"cleanup"})->command == Command::Cleanup);
  CHECK_THAT(parse({"--setup-rules=yes"}).error(), Catch::Contains("takes no value"));
  auto bad = [](std::vector<std::string_view> args) {
    auto p = parse(args);
    REQUIRE(p.has_value());
    auto r = build_config(*p);
    REQUIRE_FALSE(r.has_value());
    return r.error().front();
  };
  CHECK_THAT(bad({"--local-ip", "not-an-ip"}), Catch::Contains("--local-ip not-an-ip"));
  CHECK_THAT(bad({"--rules-backend", "pf"}), Catch::Contains("--rules-backend pf: expected"));
  CHECK_THAT(bad({"--sync-interval", "2h"}), Catch::Contains("--sync-interval 2h"));
  CHECK_THAT(bad({"--service-cidr", "10.96.0.0/40"}),
             Catch::Contains("--service-cidr 10.96.0.0/40: expected an address range"));
  CHECK_THAT(bad({"--local-ip", "127.0.0.1"}),
             Catch::Contains("node.local_addresses[0]: 127.0.0.1 cannot be"));
}

TEST_CASE("the control socket flag is --control-socket, and --control is an alias",
          "[config][cli]") {
  for (auto flag : {"--control-socket", "--control"}) {
    INFO(flag);
    Config c = default_config();
    auto o = parse({flag, "/tmp/ctl.sock"});
    REQUIRE(o.has_value());
    REQUIRE(apply_cli(*o, c).empty());
    CHECK(c.control_socket == "/tmp/ctl.sock");
    auto off = parse({std::string(flag) + "=off"});
    REQUIRE(off.has_value());
    REQUIRE(apply_cli(*off, c).empty());
    CHECK(c.control_socket.empty());
  }
  CHECK_THAT(usage(), Catch::Contains("--control-socket PATH|off"));
}

TEST_CASE("a forward flag with more than 64 servers is an error", "[config][cli]") {
  std::string spec = ".=udp://192.0.2.1";
  for (int i = 2; i <= 65; ++i)
    spec += ",192.0.2." + std::to_string(i);
  auto o = parse({"--forward", spec});
  REQUIRE(o.has_value());
  auto c = build_config(*o);
  REQUIRE_FALSE(c.has_value());
  REQUIRE(c.error().size() == 1);
  CHECK_THAT(c.error()[0], Catch::StartsWith("--forward .=udp://192.0.2.1,"));
  CHECK_THAT(c.error()[0], Catch::Contains("65 servers; a group takes at most 64"));
}
