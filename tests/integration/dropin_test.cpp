// localdns as a drop-in for node-local-dns: node-cache's arguments, its
// Corefile template, `migrate`, `--print-config` and the pid file, through the
// real binary.
#include <array>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <signal.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "dns_client.hpp"
#include "dropin_support.hpp"
#include "knot_server.hpp"
#include "wait.hpp"

using namespace localdns::test;
using namespace localdns::test::dropin;
using namespace std::chrono_literals;

namespace {
// SIGTERM, then a clean exit within 5 s that removes the pid file.
void stop_and_check_pidfile_removed(pid_t pid, const std::string& pidfile) {
  ::kill(pid, SIGTERM);
  int status = -1;
  wait_until(within(5s), [&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
  if (!WIFEXITED(status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL("localdns did not exit within 5 s of SIGTERM");
  }
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(std::filesystem::exists(pidfile));
}
}  // namespace

TEST_CASE("node-cache flags in Go's syntax, either dash form", "[integration][dropin]") {
  const std::string tail = " --print-config --control-socket off";
  auto one =
      run("", "-localip 169.254.20.10,10.96.0.10 -setupiptables=false -syncinterval 30" + tail);
  INFO(one.err);
  REQUIRE(one.status == 0);
  CHECK_THAT(one.out, Catch::Contains("local_addresses: [\"169.254.20.10\", \"10.96.0.10\"]"));
  CHECK_THAT(one.out, Catch::Contains("sync_interval: 30s"));
  auto two =
      run("", "--localip=169.254.20.10,10.96.0.10 --setupiptables=0 --syncinterval=30s" + tail);
  CHECK(two.status == 0);
  CHECK(two.out == one.out);
  // A boolean never takes the next argument: "false" is then an argument.
  auto next = run("", "-setupiptables false" + tail);
  CHECK(next.status == 2);
  CHECK_THAT(next.err, Catch::Contains("unexpected argument 'false'"));
  auto bad_bool = run("", "-skipteardown=yes" + tail);
  CHECK(bad_bool.status == 2);
  CHECK_THAT(bad_bool.err, Catch::Contains("-skipteardown"));
  auto empty = run("", "-localip 169.254.20.10,,10.96.0.10" + tail);
  CHECK(empty.status == 2);
  CHECK_THAT(empty.err, Catch::Contains("invalid localip specified - \"\""));
  auto unknown = run("", "-localipz 169.254.20.10" + tail);
  CHECK(unknown.status == 2);
  CHECK_THAT(unknown.err, Catch::Contains("-localipz"));
  // Known, not honoured: one line on stderr naming the flag, and on it goes.
  auto known = run("", "-metrics-listen-address 0.0.0.0:9353" + tail);
  CHECK(known.status == 0);
  CHECK(lines(known.err) == 1);
  CHECK_THAT(known.err, Catch::Contains("warning: -metrics-listen-address"));
  auto ends = run("", "-setupiptables -- " + tail);
  CHECK(ends.status == 2);
  CHECK_THAT(ends.err, Catch::Contains("after --"));
  CHECK(run("", "-version").out == run("", "--version").out);
  CHECK_THAT(run("", "-plugins").out, Catch::Contains("dns.forward"));
}

TEST_CASE("the pid file is written once localdns listens and removed on exit",
          "[integration][dropin]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  TempDir d;
  const auto port = free_port();
  const std::string pidfile = d / "node-cache.pid";
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  const std::string fwd = "cluster.local=tcp://" + knot.address();
  const std::string log = d / "log";
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execl(LOCALDNS_BINARY, LOCALDNS_BINARY, "--listen", listen.c_str(), "--forward", fwd.c_str(),
            "-pidfile", pidfile.c_str(), "--threads", "1", "--metrics", "off", "--health", "off",
            "--control-socket", "off", "-quiet", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string content;
  wait_until(
      within(5s),
      [&] {
        content = slurp(pidfile);
        return !content.empty();
      },
      50ms);
  if (content.empty()) ::kill(pid, SIGKILL);
  REQUIRE(content == std::to_string(pid) + "\n");
  // Written once listening: the first query gets its answer.
  auto r =
      udp_query({"127.0.0.1", port}, make_query("kube-dns.kube-system.svc.cluster.local", "A"), 2s);
  CHECK(r);
  if (r) CHECK(decode(*r).answers == std::vector<std::string>{"10.96.0.10"});
  stop_and_check_pidfile_removed(pid, pidfile);
  // -quiet: no start-up summary, the rest of the log as usual.
  const auto text = slurp(log);
  CHECK_THAT(text, !Catch::Contains("listening on"));
  CHECK_THAT(text, Catch::Contains("shutting down"));
}

TEST_CASE("node-local-dns's stock args and template: --print-config equals the migrated YAML's",
          "[integration][dropin]") {
  const auto tmpl = official_template();
  REQUIRE(tmpl.find("__PILLAR__LOCAL__DNS__") != std::string::npos);
  TempDir d;
  const auto base = d.file("Corefile.base", installer_sed(tmpl));
  const auto args = stock_args(d) + " -basecorefile " + base + " -kubednscm " + (d / "kube-dns");
  auto stock = run(kUpstreamEnv, args + " --print-config");
  INFO(stock.err);
  REQUIRE(stock.status == 0);
  // What the render and the flags put there.
  CHECK_THAT(stock.out, Catch::Contains("local_addresses: [\"169.254.20.10\", \"10.96.0.10\"]"));
  CHECK_THAT(stock.out, Catch::Contains("listen: [\"169.254.20.10:53\", \"10.96.0.10:53\"]"));
  CHECK_THAT(stock.out, Catch::Contains("\"10.96.0.11:53\""));  // kube-dns-upstream's ClusterIP
  CHECK_THAT(stock.out, Catch::Contains("zones: [\"cluster.local.\"]"));
  CHECK_THAT(stock.out, Catch::Contains("health_port: 8080"));
  CHECK_THAT(stock.out, Catch::Contains("health: \"169.254.20.10:8080\""));
  // --print-config writes nothing: the rendered Corefile is written by a run only.
  CHECK_FALSE(std::filesystem::exists(d / "Corefile"));
  // The migrated YAML, fed back with --config, gives the same configuration.
  auto migrated = run(kUpstreamEnv, "migrate --corefile " + base + " " + stock_args(d));
  INFO(migrated.err);
  REQUIRE(migrated.status == 0);
  const auto yaml = d.file("migrated.yaml", migrated.out);
  auto again = run("", "--print-config --config " + yaml);
  INFO(again.err);
  REQUIRE(again.status == 0);
  CHECK(again.out == stock.out);
  // --print-config's output is a configuration --check-config accepts.
  const auto printed = d.file("printed.yaml", stock.out);
  auto check = run("", "--check-config " + printed);
  CHECK(check.status == 0);
  CHECK_THAT(check.out, Catch::Contains(printed + ": OK"));
  auto reprinted = run("", "--print-config --config " + printed);
  CHECK(reprinted.out == stock.out);
  // With the kube-dns ConfigMap (stub domains, custom upstreams): the same.
  std::filesystem::create_directories(d / "kube-dns");
  d.file("kube-dns/stubDomains", R"({"acme.local": ["10.150.0.1", "10.150.0.2:5353"]})");
  d.file("kube-dns/upstreamNameservers", R"(["192.0.2.53", "192.0.2.54"])");
  auto stub = run(kUpstreamEnv, args + " --print-config");
  INFO(stub.err);
  REQUIRE(stub.status == 0);
  CHECK_THAT(stub.out, Catch::Contains("zones: [\"acme.local.\"]"));
  CHECK_THAT(stub.out, Catch::Contains("\"192.0.2.53:53\", \"192.0.2.54:53\""));
  auto stub_migrated = run(kUpstreamEnv, "migrate --corefile " + base + " --kube-dns-dir " +
                                             (d / "kube-dns") + " " + stock_args(d));
  REQUIRE(stub_migrated.status == 0);
  auto stub_again = run("", "--print-config --config " + d.file("stub.yaml", stub_migrated.out));
  CHECK(stub_again.out == stub.out);
}

TEST_CASE("upstreamsvc: the ClusterIP comes from NAME_SERVICE_HOST", "[integration][dropin]") {
  TempDir d;
  const auto base = d.file("Corefile.base", installer_sed(official_template()));
  const std::string args = "-localip 169.254.20.10 -basecorefile " + base + " -conf " +
                           (d / "Corefile") + " --print-config";
  auto named = run("MY_DNS_SVC_SERVICE_HOST=10.96.7.7", "-upstreamsvc my-dns-svc " + args);
  INFO(named.err);
  REQUIRE(named.status == 0);
  CHECK_THAT(named.out, Catch::Contains("\"10.96.7.7:53\""));
  // Without -upstreamsvc: kube-dns, so KUBE_DNS_SERVICE_HOST.
  auto dflt = run("KUBE_DNS_SERVICE_HOST=10.96.0.12", args);
  REQUIRE(dflt.status == 0);
  CHECK_THAT(dflt.out, Catch::Contains("servers: [\"10.96.0.12:53\"]"));
  // The template needs it and it is not set: exit 2 naming the variable.
  auto missing = run("", "-upstreamsvc kube-dns-upstream " + args);
  CHECK(missing.status == 2);
  CHECK_THAT(missing.err, Catch::Contains("KUBE_DNS_UPSTREAM_SERVICE_HOST is not set"));
  CHECK(missing.out.empty());
}

TEST_CASE("migrate keeps the installer's placeholders: sed before or after gives the same YAML",
          "[integration][dropin]") {
  TempDir d;
  const auto tmpl = d.file("Corefile.template", official_template());
  const auto sedded = d.file("Corefile.base", installer_sed(official_template()));
  auto raw = run("", "migrate --corefile " + tmpl);
  INFO(raw.err);
  REQUIRE(raw.status == 0);
  for (auto p : {"__PILLAR__DNS__DOMAIN__", "__PILLAR__LOCAL__DNS__", "__PILLAR__DNS__SERVER__",
                 "__PILLAR__CLUSTER__DNS__"}) {
    INFO(p);
    CHECK_THAT(raw.out, Catch::Contains(p));
    CHECK_THAT(raw.err, Catch::Contains(std::string("warning: ") + p + " is kept"));
  }
  CHECK_THAT(raw.out,
             Catch::Contains("servers: \"resolv.conf\""));  // __PILLAR__UPSTREAM__SERVERS__
  auto after = run("", "migrate --corefile " + sedded);
  REQUIRE(after.status == 0);
  CHECK(after.out == installer_sed(raw.out));
  // With the Service's variable set, __PILLAR__CLUSTER__DNS__ is filled.
  auto filled =
      run(kUpstreamEnv, "migrate --corefile " + sedded + " -upstreamsvc kube-dns-upstream");
  REQUIRE(filled.status == 0);
  CHECK(filled.out.find("__PILLAR__") == std::string::npos);
  const auto filled_yaml = d.file("filled.yaml", filled.out);
  CHECK(run("", "--check-config " + filled_yaml).status == 0);
  // And that YAML runs what the stock DaemonSet args run on the same template.
  auto stock = run(kUpstreamEnv, stock_args(d) + " -basecorefile " + sedded + " -kubednscm " +
                                     (d / "kube-dns") + " --print-config");
  REQUIRE(stock.status == 0);
  CHECK(run("", "--print-config --config " + filled_yaml).out == stock.out);
  // Every directive not carried over is a warning line (reload and loop here).
  CHECK_THAT(filled.err, Catch::Contains("directive reload"));
  CHECK_THAT(filled.err, Catch::Contains("directive loop"));
  // A Corefile error: exit 2 naming the file and the line.
  const auto bad = d.file("bad", "example.org {\n  forward . 192.0.2.1 {\n    bogus\n  }\n}\n");
  auto err = run("", "migrate --corefile " + bad);
  CHECK(err.status == 2);
  CHECK_THAT(err.err, Catch::Contains(bad + ":3:"));
  CHECK(err.out.empty());
  auto none = run("", "migrate --corefile " + (d / "missing"));
  CHECK(none.status == 2);
  CHECK_THAT(none.err, Catch::Contains(d / "missing"));
}

TEST_CASE("a config file and a Corefile: one configuration, not two", "[integration][dropin]") {
  TempDir d;
  const auto base = d.file("Corefile.base", installer_sed(official_template()));
  const auto yaml = d.file("l.yaml", "listen: [127.0.0.1:5300]\n");
  auto both = run(kUpstreamEnv, "--config " + yaml + " -basecorefile " + base + " --print-config");
  CHECK(both.status == 2);
  CHECK_THAT(both.err, Catch::Contains("give one configuration"));
  // -conf alone, without a template: the finished Corefile, as CoreDNS reads it.
  if (!std::filesystem::exists("/etc/coredns/Corefile.base")) {
    const auto conf = d.file("Corefile",
                             "example.org:5300 {\n  bind 127.0.0.1\n"
                             "  forward . 192.0.2.1\n}\n");
    auto plain = run("", "-conf " + conf + " --print-config");
    INFO(plain.err);
    CHECK(plain.status == 0);
    CHECK_THAT(plain.out, Catch::Contains("listen: [\"127.0.0.1:5300\"]"));
    CHECK_THAT(plain.out, Catch::Contains("zones: [\"example.org.\"]"));
    // Flags go on top of it.
    auto over = run("", "-conf " + conf + " --listen 127.0.0.2:5301 --print-config");
    CHECK_THAT(over.out, Catch::Contains("listen: [\"127.0.0.2:5301\"]"));
  }
  auto nofile = run("", "-basecorefile " + (d / "nothing") + " --print-config");
  CHECK(nofile.status == 2);
  CHECK_THAT(nofile.err, Catch::Contains("-basecorefile " + (d / "nothing") + ": no such file"));
  // The template binds __PILLAR__LOCAL__DNS__: -localip must say what that is.
  const auto local =
      d.file("local.base", replace_all(installer_sed(official_template()), "bind 169.254.20.10",
                                       "bind __PILLAR__LOCAL__DNS__"));
  auto no_ip = run(kUpstreamEnv,
                   "-upstreamsvc kube-dns-upstream -basecorefile " + local + " --print-config");
  CHECK(no_ip.status == 2);
  CHECK_THAT(no_ip.err, Catch::Contains(local + ":9: __PILLAR__LOCAL__DNS__ needs -localip"));
  auto filled = run(kUpstreamEnv,
                    "-upstreamsvc kube-dns-upstream -localip 169.254.20.11 "
                    "-basecorefile " +
                        local + " --print-config");
  CHECK(filled.status == 0);
  CHECK_THAT(filled.out, Catch::Contains("listen: [\"169.254.20.11:53\", \"10.96.0.10:53\"]"));
  // A template placeholder nothing fills is an error naming file and line.
  const auto raw = d.file("raw.base", official_template());
  auto left =
      run(kUpstreamEnv, "-upstreamsvc kube-dns-upstream -localip 169.254.20.10 -basecorefile " +
                            raw + " --print-config");
  CHECK(left.status == 2);
  CHECK_THAT(left.err, Catch::Contains(raw + ":1: __PILLAR__DNS__DOMAIN__"));
}

TEST_CASE("node-cache's Corefile run: pid file once listening, answers, rendered Corefile",
          "[integration][dropin]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  TempDir d;
  const auto port = free_port();
  // A Corefile.base as node-local-dns's, on loopback: keys without a port
  // take -dns.port; __PILLAR__CLUSTER__DNS__ comes from -upstreamsvc.
  const auto base = d.file("Corefile.base",
                           "cluster.local {\n"
                           "    errors\n"
                           "    cache 30\n"
                           "    bind 127.0.0.1\n"
                           "    forward . " +
                               knot.address() +
                               " {\n"
                               "        force_tcp\n"
                               "    }\n"
                               "    prometheus 127.0.0.1:" +
                               std::to_string(free_port()) +
                               "\n"
                               "    health 127.0.0.1:" +
                               std::to_string(free_port()) +
                               "\n"
                               "}\n");
  const std::string pidfile = d / "node-cache.pid";
  const std::string conf = d / "Corefile";
  const std::string dns_port = std::to_string(port);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(LOCALDNS_BINARY, LOCALDNS_BINARY, "-setupinterface=false", "-setupiptables=false",
            "-basecorefile", base.c_str(), "-conf", conf.c_str(), "-pidfile", pidfile.c_str(),
            "-dns.port", dns_port.c_str(), "--threads", "1", "--control-socket", "off",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string content;
  wait_until(
      within(5s),
      [&] {
        content = slurp(pidfile);
        return !content.empty();
      },
      50ms);
  if (content.empty()) ::kill(pid, SIGKILL);
  REQUIRE(content == std::to_string(pid) + "\n");
  auto r = udp_query({"127.0.0.1", port}, make_query("api.default.svc.cluster.local", "A"), 2s);
  CHECK(r);
  if (r) CHECK(decode(*r).answers == std::vector<std::string>{"10.96.0.1"});
  // node-cache writes the rendered Corefile to -conf; so does localdns.
  CHECK(slurp(conf) == slurp(base));
  stop_and_check_pidfile_removed(pid, pidfile);
}
