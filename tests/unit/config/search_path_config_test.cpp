// The `search_path` section and `--autopath`: keys and defaults, errors
// (key and line), the node's search domains from resolv.conf,
// print-config's round trip, the server settings, and reloads.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/config/cli.hpp>
#include <localdns/config/emit.hpp>
#include <localdns/config/loader.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/config/reload.hpp>
#include <localdns/config/resolv_conf.hpp>

using namespace localdns::config;
using localdns::server::SearchPathMode;

namespace {
std::string all(const Errors& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}

std::expected<CliOptions, std::string> cli(std::vector<std::string_view> args) {
  return parse_cli(args);
}

// A resolv.conf of the test's own, removed at the end.
struct TempFile {
  explicit TempFile(const std::string& text) {
    char tmpl[] = "/tmp/localdns-resolv-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
    std::ofstream(path) << text;
  }
  ~TempFile() { std::remove(path.c_str()); }
  std::string path;
};
}  // namespace

TEST_CASE("search_path is off by default", "[config][search-path]") {
  auto c = load_config_text("", "t.yaml");
  REQUIRE(c);
  const auto& s = c->search_path;
  CHECK(s.mode == SearchPathMode::Off);
  CHECK_FALSE(s.on());
  CHECK(s.cluster_domain == "cluster.local.");
  CHECK(s.ndots == 5);
  CHECK(s.host_search_from_resolv_conf);
  CHECK(s.max_qps == 1000);
  CHECK(s.max_qps_per_client == 50);
  CHECK(s.max_hold == std::chrono::seconds(1));
  // Off, resolv.conf is not read for it.
  auto e = load_config_text("forward: [{zones: [.], servers: [192.0.2.1]}]\n", "t.yaml");
  REQUIRE(e);
  auto f = finish_config(*e);
  REQUIRE(f);
  CHECK(f->resolv_conf_search.empty());
}

TEST_CASE("the search_path section loads and round-trips", "[config][search-path]") {
  auto c = load_config_text(R"(search_path:
  mode: cname
  cluster_domain: K8S.Internal
  ndots: 3
  host_search: [corp.example, "example.net."]
  max_qps: 200
  max_qps_per_client: 7
  max_hold: 400ms
forward: [{zones: [.], servers: [192.0.2.1]}]
)",
                            "t.yaml");
  INFO((c ? std::string() : all(c.error())));
  REQUIRE(c);
  const auto& s = c->search_path;
  CHECK(s.mode == SearchPathMode::Cname);
  CHECK(s.cluster_domain == "k8s.internal.");
  CHECK(s.ndots == 3);
  CHECK_FALSE(s.host_search_from_resolv_conf);
  CHECK(s.host_search == std::vector<std::string>{"corp.example.", "example.net."});
  CHECK(s.max_qps == 200);
  CHECK(s.max_qps_per_client == 7);
  CHECK(s.max_hold == std::chrono::milliseconds(400));
  auto again = load_config_text(emit_yaml(*c), "emitted.yaml");
  INFO(emit_yaml(*c));
  REQUIRE(again);
  CHECK(again->search_path == c->search_path);
  // Written host_search wins over resolv.conf; [] is none at all.
  auto finished = finish_config(*c);
  REQUIRE(finished);
  CHECK(server_settings(*finished).search_path.host_search == s.host_search);
  auto none = load_config_text("search_path: {mode: warm, host_search: []}\n", "n.yaml");
  REQUIRE(none);
  CHECK_FALSE(none->search_path.host_search_from_resolv_conf);
  auto none_again = load_config_text(emit_yaml(*none), "emitted.yaml");
  REQUIRE(none_again);
  CHECK(none_again->search_path == none->search_path);
}

TEST_CASE("search_path errors name the key and the line", "[config][search-path]") {
  auto c = load_config_text(R"(search_path:
  mode: fast
  cluster_domain: "."
  ndots: 16
  host_search: [corp.example, "bad..name"]
  max_qps: 0
  max_qps_per_client: lots
  colour: red
  max_hold: 20s
)",
                            "s.yaml");
  REQUIRE_FALSE(c);
  auto text = all(c.error());
  INFO(text);
  CHECK(c.error().size() == 8);
  CHECK(text.find("s.yaml:2: search_path.mode: expected one of off, warm, cname, got 'fast'") !=
        std::string::npos);
  CHECK(text.find("s.yaml:3: search_path.cluster_domain: expected a domain name other than the "
                  "root, got '.'") != std::string::npos);
  CHECK(text.find("s.yaml:4: search_path.ndots: must be between 1 and 15, got 16") !=
        std::string::npos);
  CHECK(text.find("s.yaml:5: search_path.host_search[1]: expected a domain name") !=
        std::string::npos);
  CHECK(text.find("s.yaml:6: search_path.max_qps: must be between 1 and 1000000, got 0") !=
        std::string::npos);
  CHECK(text.find("s.yaml:7: search_path.max_qps_per_client: expected an integer, got 'lots'") !=
        std::string::npos);
  CHECK(text.find("s.yaml:8: search_path.colour: unknown key (expected one of: mode, "
                  "cluster_domain, ndots, host_search, max_qps, max_qps_per_client, max_hold)") !=
        std::string::npos);
  CHECK(text.find("s.yaml:9: search_path.max_hold: must be between 10ms and 10s") !=
        std::string::npos);
  auto scalar = load_config_text("search_path: warm\n", "e.yaml");
  REQUIRE_FALSE(scalar);
  CHECK(all(scalar.error()).find("e.yaml:1: search_path: expected a mapping") != std::string::npos);
}

TEST_CASE("the flag --autopath sets search_path.mode", "[config][search-path][cli]") {
  auto mode = [](std::vector<std::string_view> args) {
    auto o = cli(std::move(args));
    REQUIRE(o);
    auto c = build_startup(*o);
    REQUIRE(c);
    return c->config.search_path.mode;
  };
  CHECK(mode({}) == SearchPathMode::Off);
  CHECK(mode({"--autopath"}) == SearchPathMode::Warm);  // bare: warm
  CHECK(mode({"--autopath=warm"}) == SearchPathMode::Warm);
  CHECK(mode({"--autopath=cname"}) == SearchPathMode::Cname);
  CHECK(mode({"--autopath=off"}) == SearchPathMode::Off);
  // A bare --autopath takes no value from the next word.
  auto o = cli({"--autopath", "--threads", "2"});
  REQUIRE(o);
  CHECK(o->autopath == "warm");
  CHECK(o->threads == "2");
  auto bad = cli({"--autopath=always"});
  REQUIRE(bad);
  auto c = build_startup(*bad);
  REQUIRE_FALSE(c);
  CHECK(all(c.error()).find("--autopath=always: expected warm, cname or off") != std::string::npos);
}

TEST_CASE("the node's search domains come from resolv.conf", "[config][search-path]") {
  CHECK(parse_resolv_conf_search("nameserver 10.0.0.1\nsearch Corp.Example example.net\n") ==
        std::vector<std::string>{"corp.example.", "example.net."});
  // The last search or domain line wins; comments end it; junk is left out.
  CHECK(parse_resolv_conf_search("search a.example\ndomain b.example\n") ==
        std::vector<std::string>{"b.example."});
  CHECK(parse_resolv_conf_search("search x.example . bad..name y.example # z.example\n") ==
        std::vector<std::string>{"x.example.", "y.example."});
  CHECK(parse_resolv_conf_search("nameserver 10.0.0.1\n").empty());

  TempFile f(
      "nameserver 192.0.2.53\n"
      "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\n");
  auto c = load_config_text("search_path: {mode: warm}\nresolv_conf: " + f.path +
                                "\nforward: [{zones: [.], servers: [192.0.2.1]}]\n",
                            "t.yaml");
  REQUIRE(c);
  auto done = finish_config(*c);
  INFO((done ? std::string() : all(done.error())));
  REQUIRE(done);
  // A pod's own list: the names under the cluster domain are not the node's.
  CHECK(done->resolv_conf_search == std::vector<std::string>{"corp.example."});
  CHECK(server_settings(*done).search_path.host_search ==
        std::vector<std::string>{"corp.example."});
  // print-config leaves it to resolv.conf again.
  auto again = load_config_text(emit_yaml(*done), "emitted.yaml");
  REQUIRE(again);
  CHECK(again->search_path.host_search_from_resolv_conf);

  auto missing = load_config_text(
      "search_path: {mode: warm}\nresolv_conf: /nonexistent/resolv.conf\n"
      "forward: [{zones: [.], servers: [192.0.2.1]}]\n",
      "t.yaml");
  REQUIRE(missing);
  auto failed = finish_config(*missing);
  REQUIRE_FALSE(failed);
  CHECK(all(failed.error()).find("search_path.host_search: cannot read /nonexistent/resolv.conf") !=
        std::string::npos);
}

TEST_CASE("a reload may change every search_path key", "[config][search-path][reload]") {
  auto running = load_config_text("", "a.yaml");
  auto next = load_config_text(R"(search_path:
  mode: warm
  cluster_domain: k8s.internal
  ndots: 2
  host_search: [corp.example]
  max_qps: 10
  max_qps_per_client: 1
)",
                               "b.yaml");
  REQUIRE(running);
  REQUIRE(next);
  CHECK(reload_rejections(*running, *next).empty());
  CHECK(server_settings(*next).search_path != server_settings(*running).search_path);
}
