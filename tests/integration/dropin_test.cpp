// localdns as a drop-in for node-local-dns: node-cache's arguments, its
// Corefile template, `migrate`, `--print-config` and the pid file, through the
// real binary.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <signal.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "dns_client.hpp"
#include "knot_server.hpp"

using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

// node-local-dns's Corefile template, as kubernetes/kubernetes ships it in
// cluster/addons/dns/nodelocaldns/nodelocaldns.yaml (ConfigMap node-local-dns).
constexpr const char* kTemplate = R"(__PILLAR__DNS__DOMAIN__:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    health __PILLAR__LOCAL__DNS__:8080
    }
in-addr.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    }
ip6.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    }
.:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__UPSTREAM__SERVERS__
    prometheus :9253
    }
)";

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

// What node-local-dns's install instructions run on the manifest (iptables mode).
[[maybe_unused]] std::string installer_sed(const std::string& s) {
  return replace_all(replace_all(replace_all(s, "__PILLAR__LOCAL__DNS__", "169.254.20.10"),
                                 "__PILLAR__DNS__DOMAIN__", "cluster.local"),
                     "__PILLAR__DNS__SERVER__", "10.96.0.10");
}

// A scratch directory, removed at the end.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("localdns-dropin-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string file(const std::string& name, const std::string& content) const {
    auto p = (path / name).string();
    std::ofstream(p) << content;
    return p;
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream b;
  b << f.rdbuf();
  return b.str();
}

struct Run {
  int status;
  std::string out;
  std::string err;
};

// Runs the binary through sh with `env` (VAR=value ...) and `args` (already
// quoted where needed); stdout and stderr apart.
Run run(const std::string& env, const std::string& args) {
  TempDir d;
  std::string cmd = "env -u KUBE_DNS_SERVICE_HOST -u KUBE_DNS_UPSTREAM_SERVICE_HOST " + env + " " +
                    LOCALDNS_BINARY + " " + args + " > " + (d / "out") + " 2> " + (d / "err");
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(d / "out"), slurp(d / "err")};
}

std::size_t lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
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
  CHECK_THAT(next.err, Catch::Contains("unexpected argument") || Catch::Contains("'false'"));
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

TEST_CASE("-pidfile is written once localdns listens and removed on exit",
          "[integration][dropin]") {
  KnotServer knot("cluster.local", cluster_local_zone());
  TempDir d;
  const auto port = free_port();
  const std::string pidfile = d / "node-cache.pid";
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  const std::string fwd = "cluster.local=tcp://" + knot.address();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(LOCALDNS_BINARY, LOCALDNS_BINARY, "--listen", listen.c_str(), "--forward", fwd.c_str(),
            "-pidfile", pidfile.c_str(), "--threads", "1", "--metrics", "off", "--health", "off",
            "--control-socket", "off", "-quiet", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string content;
  for (int i = 0; i < 100 && content.empty(); ++i) {
    content = slurp(pidfile);
    if (content.empty()) std::this_thread::sleep_for(50ms);
  }
  if (content.empty()) ::kill(pid, SIGKILL);
  REQUIRE(content == std::to_string(pid) + "\n");
  // Written once listening: the first query gets its answer.
  auto r =
      udp_query({"127.0.0.1", port}, make_query("kube-dns.kube-system.svc.cluster.local", "A"), 2s);
  CHECK(r);
  if (r) CHECK(decode(*r).answers == std::vector<std::string>{"10.96.0.10"});
  ::kill(pid, SIGTERM);
  int status = -1;
  for (int i = 0; i < 500; ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(10ms);
  }
  if (!WIFEXITED(status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL("localdns did not exit within 5 s of SIGTERM");
  }
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(std::filesystem::exists(pidfile));
}
