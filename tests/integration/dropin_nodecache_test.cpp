// node-cache's behaviour where localdns must match it: an invalid kube-dns
// ConfigMap, -syncinterval's units, the -tls-* flags, -corefile, the bounds
// on the Corefile read, no fallback DNAT, and what `migrate` keeps for the
// installer. Through the real binary.
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "dropin_support.hpp"

using namespace localdns::test::dropin;

namespace {

// The stock run on the official template after the installer's sed.
std::string stock_run_args(const TempDir& d, const std::string& base) {
  return stock_args(d) + " -basecorefile " + base + " -kubednscm " + (d / "kube-dns");
}

}  // namespace

TEST_CASE("an invalid kube-dns ConfigMap is ignored with warnings, as node-cache does",
          "[integration][dropin]") {
  TempDir d;
  const auto base = d.file("Corefile.base", installer_sed(official_template()));
  std::filesystem::create_directories(d / "kube-dns");
  const auto args = stock_run_args(d, base) + " --print-config";
  auto clean = run(kUpstreamEnv, args);
  INFO(clean.err);
  REQUIRE(clean.status == 0);
  // Bad JSON in one file, an invalid server in the other: both named with
  // file and line; the run goes on with no stub domains and resolv.conf.
  const auto stubs = d.file("kube-dns/stubDomains", "{\"acme.local\": [\"10.150.0.1\"],\n\"x\": [");
  const auto ups =
      d.file("kube-dns/upstreamNameservers", "[\"192.0.2.53\",\n \"tls://192.0.2.54\"]");
  auto bad = run(kUpstreamEnv, args);
  INFO(bad.err);
  CHECK(bad.status == 0);
  CHECK_THAT(bad.err, Catch::Contains("warning: " + stubs + ":"));
  CHECK_THAT(bad.err, Catch::Contains("not valid JSON"));
  CHECK_THAT(bad.err, Catch::Contains("warning: " + ups + ":2: invalid upstream nameserver"));
  CHECK_THAT(bad.err, Catch::Contains("the kube-dns ConfigMap is ignored"));
  CHECK(bad.out == clean.out);
  CHECK_THAT(bad.out, !Catch::Contains("acme.local"));
  // A hostname as a stub server passes kube-dns's own check but not
  // node-cache's forward check (not an IP address or file): ignored too.
  std::filesystem::remove(ups);
  d.file("kube-dns/stubDomains", R"({"acme.local": ["ns1.acme.local"]})");
  auto host = run(kUpstreamEnv, args);
  CHECK(host.status == 0);
  CHECK_THAT(host.err, Catch::Contains("invalid nameserver \"ns1.acme.local\""));
  CHECK(host.out == clean.out);
  // migrate stays strict: exit 2 naming the file.
  auto strict = run(kUpstreamEnv, "migrate --corefile " + base + " --kube-dns-dir " +
                                      (d / "kube-dns") + " " + stock_args(d));
  CHECK(strict.status == 2);
  CHECK_THAT(strict.err, Catch::Contains(d / "kube-dns/stubDomains"));
  CHECK(strict.out.empty());
}

TEST_CASE("node-cache's -syncinterval Nns is N seconds, as node-cache reads it",
          "[integration][dropin]") {
  const std::string tail = " -setupiptables=false --print-config --control-socket off";
  auto ns = run("", "-syncinterval 30ns" + tail);
  INFO(ns.err);
  REQUIRE(ns.status == 0);
  CHECK_THAT(ns.out, Catch::Contains("sync_interval: 30s"));
  CHECK(lines(ns.err) == 1);
  CHECK_THAT(ns.err, Catch::Contains("warning: -syncinterval 30ns: node-cache reads this as 30 "
                                     "seconds; localdns does too"));
  auto eq = run("", "--syncinterval=30ns" + tail);
  CHECK(eq.out == ns.out);
  // Seconds and other units as before; out of range still refused.
  auto plain = run("", "-syncinterval 30" + tail);
  CHECK(plain.out == ns.out);
  CHECK(plain.err.empty());
  auto zero = run("", "-syncinterval 0ns" + tail);
  CHECK(zero.status == 2);
  CHECK_THAT(zero.err, Catch::Contains("must be between 1s and 1h"));
}

TEST_CASE("node-cache's -tls-* flags are known and warn only when enabled",
          "[integration][dropin]") {
  const std::string tail = " --print-config --control-socket off";
  auto set = run("",
                 "-tls-cert-file /etc/ssl/tls.crt -tls-private-key-file=/etc/ssl/tls.key "
                 "-tls-client-auth-type NoClientCert -tls-client-ca-file '' "
                 "--tls-min-version TLS13 -tls-enabled=false" +
                     tail);
  INFO(set.err);
  CHECK(set.status == 0);
  CHECK(set.err.empty());
  auto on = run("", "-tls-enabled -tls-cert-file /etc/ssl/tls.crt" + tail);
  CHECK(on.status == 0);
  CHECK(lines(on.err) == 1);
  CHECK_THAT(on.err, Catch::Contains("warning: -tls-enabled"));
  CHECK(on.out == set.out);
  // The last value wins, as in Go: enabled then disabled warns nothing.
  auto off = run("", "-tls-enabled -tls-enabled=false" + tail);
  CHECK(off.err.empty());
  auto bad = run("", "-tls-enabled=maybe" + tail);
  CHECK(bad.status == 2);
  CHECK_THAT(bad.err, Catch::Contains("-tls-enabled"));
  CHECK_THAT(run("", "--help").out, Catch::Contains("-tls-min-version"));
}

TEST_CASE("node-cache's -corefile alone is read as -conf is", "[integration][dropin]") {
  // With a template at the default path, that is read instead (tested elsewhere).
  if (std::filesystem::exists("/etc/coredns/Corefile.base")) {
    WARN("/etc/coredns/Corefile.base exists: -corefile is then where the render goes");
    return;
  }
  TempDir d;
  const auto conf = d.file("Corefile",
                           "example.org:5300 {\n  bind 127.0.0.1\n"
                           "  forward . 192.0.2.1\n}\n");
  auto c = run("", "-corefile " + conf + " --print-config");
  INFO(c.err);
  CHECK(c.status == 0);
  CHECK_THAT(c.out, Catch::Contains("listen: [\"127.0.0.1:5300\"]"));
  // -corefile is node-cache's own flag, so node-cache's health port comes with it.
  CHECK(c.out == run("", "-conf " + conf + " -health-port 8080 --print-config").out);
  // -conf wins when both are given, as in node-cache.
  const auto other = d.file("Other",
                            "example.net:5301 {\n  bind 127.0.0.1\n"
                            "  forward . 192.0.2.1\n}\n");
  auto both = run("", "-corefile " + conf + " -conf " + other + " --print-config");
  CHECK_THAT(both.out, Catch::Contains("listen: [\"127.0.0.1:5301\"]"));
  auto missing = run("", "-corefile " + (d / "none") + " --print-config");
  CHECK(missing.status == 2);
  CHECK_THAT(missing.err, Catch::Contains("-corefile " + (d / "none")));
  const auto yaml = d.file("l.yaml", "listen: [127.0.0.1:5300]\n");
  auto with_yaml = run("", "--config " + yaml + " -corefile " + conf + " --print-config");
  CHECK(with_yaml.status == 2);
  CHECK_THAT(with_yaml.err, Catch::Contains("give one configuration"));
}

TEST_CASE("the Corefile is read with a bound and only from a regular file",
          "[integration][dropin]") {
  TempDir d;
  // Under a 400 MB address space limit, an unbounded read of /dev/zero aborts;
  // a sanitizer runtime cannot start under one, and there the time limit alone
  // ends an unbounded read (exit 124).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const std::string bounded = "sh -c 'exec timeout 30 \"$0\" \"$@\"'";
#else
  const std::string bounded = "sh -c 'ulimit -v 400000; exec timeout 30 \"$0\" \"$@\"'";
#endif
  for (const std::string args : {"--print-config -conf /dev/zero", "migrate --corefile /dev/zero",
                                 "--print-config -basecorefile /dev/zero"}) {
    INFO(args);
    auto r = run(bounded, args);
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Catch::Contains("/dev/zero"));
    CHECK_THAT(r.err, Catch::Contains("not a regular file"));
  }
  const auto big = d.file("big", std::string((1u << 20) + 10, '#'));
  auto r = run("", "--print-config -conf " + big);
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains(big + ": larger than 1048576 bytes"));
  auto m = run("", "migrate --corefile " + big);
  CHECK(m.status == 2);
  CHECK_THAT(m.err, Catch::Contains(big + ": larger than 1048576 bytes"));
}

TEST_CASE("the drop-in installs no fallback DNAT unless asked", "[integration][dropin]") {
  TempDir d;
  const auto base = d.file("Corefile.base", installer_sed(official_template()));
  auto stock = run(kUpstreamEnv, stock_run_args(d, base) + " --print-config");
  INFO(stock.err);
  REQUIRE(stock.status == 0);
  CHECK_THAT(stock.out, Catch::Contains("fallback: \"off\""));
  CHECK_THAT(stock.out, !Catch::Contains("fallback: \"auto\""));
  auto migrated = run(kUpstreamEnv, "migrate --corefile " + base + " " + stock_args(d));
  REQUIRE(migrated.status == 0);
  CHECK_THAT(migrated.out, Catch::Contains("fallback: \"off\""));
  // A YAML file asks for one: it stays (the standalone default is auto).
  auto yaml = run(
      "", "--print-config --config " + d.file("f.yaml", "node:\n  rules:\n    fallback: auto\n"));
  CHECK_THAT(yaml.out, Catch::Contains("fallback: \"auto\""));
}

TEST_CASE("migrate keeps the installer's local addresses: sed(migrate) = migrate(sed) = stock",
          "[integration][dropin]") {
  TempDir d;
  const auto tmpl = d.file("Corefile.template", official_template());
  const auto sedded = d.file("Corefile.base", installer_sed(official_template()));
  const std::string svc = " -upstreamsvc kube-dns-upstream";
  auto raw = run(kUpstreamEnv, "migrate --corefile " + tmpl + svc);
  INFO(raw.err);
  REQUIRE(raw.status == 0);
  CHECK_THAT(raw.out,
             Catch::Contains(
                 "local_addresses: [\"__PILLAR__LOCAL__DNS__\", \"__PILLAR__DNS__SERVER__\"]"));
  CHECK_THAT(raw.out, Catch::Contains("health_port: 8080"));
  CHECK_THAT(raw.err, Catch::Contains("warning: node.local_addresses: __PILLAR__LOCAL__DNS__,"
                                      "__PILLAR__DNS__SERVER__"));
  auto after = run(kUpstreamEnv, "migrate --corefile " + sedded + svc);
  INFO(after.err);
  REQUIRE(after.status == 0);
  CHECK(after.out == installer_sed(raw.out));
  // What the stock DaemonSet args run, and what the YAML runs, are the same.
  auto stock = run(kUpstreamEnv, stock_run_args(d, sedded) + " --print-config");
  REQUIRE(stock.status == 0);
  auto from_yaml =
      run("", "--print-config --config " + d.file("sedded.yaml", installer_sed(raw.out)));
  INFO(from_yaml.err);
  REQUIRE(from_yaml.status == 0);
  CHECK(from_yaml.out == stock.out);
  // -localip still decides when given.
  auto given = run(kUpstreamEnv, "migrate --corefile " + sedded + svc + " -localip 169.254.20.11");
  CHECK_THAT(given.out, Catch::Contains("local_addresses: [\"169.254.20.11\"]"));
  CHECK_THAT(given.err, !Catch::Contains("node.local_addresses:"));
}
