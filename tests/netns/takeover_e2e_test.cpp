// Taking over from node-local-dns end to end, through the real binary: a pod
// namespace behind a veth, a kube-proxy-like DNAT of the kube-dns ClusterIP
// to a Knot DNS "CoreDNS", node-local-dns's leftovers, localdns, kill -9; and
// `localdns cleanup` on node-local-dns's leftovers.
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <signal.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <localdns/node/conntrack.hpp>
#include <localdns/node/rules.hpp>

#include "netns.hpp"
#include "node_local_dns.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

// A named network namespace (for `ip netns exec`), deleted when destroyed.
class NamedNetns {
 public:
  NamedNetns() {
    static int counter = 0;
    name_ = "ld-takeover-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    test::sh("ip netns add " + name_ + " && ip -n " + name_ + " link set lo up");
  }
  ~NamedNetns() { test::sh("ip netns del " + name_ + " 2>/dev/null", false); }
  NamedNetns(const NamedNetns&) = delete;
  NamedNetns& operator=(const NamedNetns&) = delete;
  const std::string& name() const { return name_; }
  std::string exec(const std::string& cmd, bool check = true) const {
    return test::sh("ip netns exec " + name_ + " " + cmd, check);
  }

 private:
  std::string name_;
};

// A program started in the calling thread's network namespace, output to a
// file; killed (SIGKILL) and reaped when destroyed.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::string& log) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + log);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fd);
    if (pid_ < 0) throw std::runtime_error("fork failed");
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      status_ = status;
      return false;
    }
    return true;
  }
  // Sends `sig` and waits (up to 10 s) for the exit; returns the wait status.
  int kill_and_wait(int sig) {
    if (pid_ <= 0) return status_;
    ::kill(pid_, sig);
    test::wait_until(
        test::within(10s), [&] { return !running(); }, 20ms);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      pid_ = -1;
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
};

std::string temp_dir() {
  char tmpl[] = "/tmp/localdns-takeover-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "CoreDNS": Knot DNS serving cluster.local on kCoreDns:53, in this namespace.
std::unique_ptr<Child> start_coredns(const std::string& dir) {
  std::ofstream(dir + "/zone") << "$ORIGIN cluster.local.\n$TTL 30\n"
                                  "@ IN SOA ns.cluster.local. hostmaster.cluster.local. 1 7200 "
                                  "1800 86400 5\n@ IN NS ns\nns IN A "
                               << kCoreDns << "\napi.default.svc IN A 10.96.0.1\n";
  std::ofstream(dir + "/knot.conf")
      << "server:\n  rundir: \"" << dir << "\"\n  listen: " << kCoreDns
      << "@53\n  udp-workers: 2\n  tcp-workers: 2\n  background-workers: 1\n"
      << "database:\n  storage: \"" << dir << "\"\n"
      << "log:\n  - target: stderr\n    any: error\n"
      << "zone:\n  - domain: cluster.local\n    storage: \"" << dir << "\"\n    file: \"zone\"\n";
  auto knot = std::make_unique<Child>(
      std::vector<std::string>{"/usr/sbin/knotd", "-c", dir + "/knot.conf"}, dir + "/knot.log");
  auto answers = [] {
    return test::sh("dig +short +time=1 +tries=1 @" + kCoreDns + " SOA cluster.local", false)
               .find("ns.cluster.local.") != std::string::npos;
  };
  if (test::wait_until(test::within(10s), answers, 100ms)) return knot;
  FAIL("knotd did not answer within 10 s: " << read_file(dir + "/knot.log"));
  return knot;
}

// The answer `dig` gets from `where` (a pod namespace, or "" for the node
// itself) asking `server` for api.default.svc.cluster.local; "" when none.
std::string ask(const NamedNetns* pod, const std::string& server) {
  std::string cmd = "dig +short +time=1 +tries=1 @" + server + " api.default.svc.cluster.local";
  std::string out = pod ? pod->exec(cmd, false) : test::sh(cmd, false);
  return out == "10.96.0.1\n" ? "10.96.0.1" : "";
}

bool answered_within(const NamedNetns* pod, const std::string& server, std::chrono::seconds limit) {
  return test::wait_until(
      test::within(limit), [&] { return ask(pod, server) == "10.96.0.1"; }, 100ms);
}

// Conntrack entries of DNS flows to `ip` in this namespace; `via` narrows to
// those whose reply comes from that address (a DNAT).
int dns_entries(const std::string& ip, const std::string& via = "") {
  std::istringstream in(test::sh("cat /proc/thread-self/net/nf_conntrack"));
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("dst=" + ip + " ") == std::string::npos) continue;
    if (line.find("dport=53 ") == std::string::npos) continue;
    if (!via.empty() && line.find("src=" + via + " ") == std::string::npos) continue;
    ++n;
  }
  return n;
}

void forget_dns_entries() {
  node::RuleTargets t;
  t.locals = {{boost::asio::ip::make_address(kLinkLocal), 53, std::nullopt},
              {boost::asio::ip::make_address(kClusterIp), 53, std::nullopt}};
  REQUIRE(node::delete_conntrack_entries(t));
}

}  // namespace

TEST_CASE("takeover end to end: node-local-dns's leftovers, localdns, kill -9, kube-proxy",
          "[node][takeover][e2e]") {
  test::require_root_or_skip("node-local-dns takeover test");
  const std::string dir = temp_dir();
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  test::ScopedNetns node_ns;  // the node
  NamedNetns pod;             // a pod behind a veth
  test::sh("ip link add vpod type veth peer name eth0 netns " + pod.name());
  test::sh("ip addr add 10.244.1.1/24 dev vpod && ip link set vpod up");
  pod.exec("ip addr add 10.244.1.2/24 dev eth0");
  pod.exec("ip link set eth0 up");
  pod.exec("ip route add default via 10.244.1.1");
  test::sh("ip link add coredns0 type bridge && ip link set coredns0 up && ip addr add " +
           kCoreDns + "/24 dev coredns0");
  auto coredns = start_coredns(dir);

  // kube-proxy in miniature (iptables-nft, kubelet's hint chain): the kube-dns
  // ClusterIP DNATed to CoreDNS.
  test::sh("iptables-nft -w -t mangle -N KUBE-IPTABLES-HINT");
  for (const char* chain : {"PREROUTING", "OUTPUT"})
    for (const char* proto : {"udp", "tcp"})
      test::sh(std::string("iptables-nft -w -t nat -A ") + chain + " -d " + kClusterIp + "/32 -p " +
               proto + " --dport 53 -j DNAT --to-destination " + kCoreDns + ":53");
  REQUIRE(ask(&pod, kClusterIp) == "10.96.0.1");
  CHECK(dns_entries(kClusterIp, kCoreDns) >= 1);

  // node-local-dns after kill -9: its interface and its 24 rules.
  install_node_local_dns_interface({kLinkLocal, kClusterIp});
  install_node_local_dns_rules("iptables-nft", {kLinkLocal, kClusterIp});
  REQUIRE(node_local_dns_rule_count() == 24);
  forget_dns_entries();
  // The ClusterIP is blackholed: untracked, so no DNAT; delivered to the local
  // address, where nothing listens.
  CHECK(ask(&pod, kClusterIp).empty());
  CHECK(ask(&pod, kLinkLocal).empty());
  CHECK(dns_entries(kClusterIp) == 0);

  // localdns with the node-local-dns layout.
  const std::string conf = dir + "/localdns.yaml", log = dir + "/localdns.log";
  std::ofstream(conf) << layout_yaml("auto", {kLinkLocal, kClusterIp});
  Child localdns({LOCALDNS_BINARY, "--config", conf}, log);
  test::wait_until(
      test::within(10s),
      [&] {
        return read_file(log).find("listening on") != std::string::npos || !localdns.running();
      },
      50ms);
  std::string text = read_file(log);
  INFO(text);
  REQUIRE(text.find("listening on") != std::string::npos);
  CHECK(text.find("rules backend iptables-nft (detected)") != std::string::npos);
  CHECK(text.find("[info] node setup: took over node-local-dns's interface nodelocaldns and 24 "
                  "rules (") != std::string::npos);

  if (auto at = text.find("took over node-local-dns's"); at != std::string::npos)
    std::printf("localdns: %s\n", text.substr(at, text.find('\n', at) - at).c_str());

  // Adopted and marked, its addresses kept.
  std::string link = test::sh("ip -d link show dev nodelocaldns");
  CHECK(link.find("alias localdns") != std::string::npos);
  CHECK(link.find("bridge") != std::string::npos);
  std::string addrs = test::sh("ip addr show dev nodelocaldns");
  CHECK(addrs.find(kLinkLocal + "/32") != std::string::npos);
  CHECK(addrs.find(kClusterIp + "/32") != std::string::npos);
  // None of node-local-dns's rules in any backend; ours in place.
  CHECK(node_local_dns_rule_count() == 0);
  CHECK(test::sh("nft list ruleset").find("NodeLocal DNS Cache") == std::string::npos);
  CHECK(test::count_lines_with(test::sh("iptables-nft-save"), "\"localdns:") == 2 * 15);

  // Both addresses answered, from the pod and from the node itself, and the
  // ClusterIP's queries stay out of conntrack.
  forget_dns_entries();
  CHECK(answered_within(&pod, kClusterIp, 10s));
  CHECK(answered_within(&pod, kLinkLocal, 10s));
  CHECK(answered_within(nullptr, kClusterIp, 10s));
  CHECK(answered_within(nullptr, kLinkLocal, 10s));
  CHECK(dns_entries(kClusterIp) == 0);

  // kill -9: the rules stay, and the ClusterIP falls back to kube-proxy.
  int status = localdns.kill_and_wait(SIGKILL);
  CHECK(WIFSIGNALED(status));
  CHECK(test::count_lines_with(test::sh("iptables-nft-save"), "\"localdns:") == 2 * 15);
  CHECK(test::sh("ip link show dev nodelocaldns").find("alias localdns") != std::string::npos);
  CHECK(answered_within(&pod, kClusterIp, 5s));
  CHECK(dns_entries(kClusterIp, kCoreDns) >= 1);  // through the DNAT, answered by "CoreDNS"

  // `localdns cleanup` then leaves nothing of either.
  std::string out = test::sh(std::string(LOCALDNS_BINARY) + " cleanup --config " + conf + " 2>&1");
  INFO(out);
  CHECK(out.find("iptables-nft: removed 30 rules") != std::string::npos);
  CHECK(out.find("removed interface nodelocaldns") != std::string::npos);
  CHECK(test::sh("iptables-nft-save").find("localdns:") == std::string::npos);
  CHECK(answered_within(&pod, kClusterIp, 5s));
}

TEST_CASE("cleanup removes node-local-dns's rules, and its interface when it is its",
          "[node][takeover][cleanup]") {
  test::require_root_or_skip("node-local-dns cleanup test");
  const std::string cleanup = std::string(LOCALDNS_BINARY) + " cleanup --interface-kind bridge";
  SECTION("every backend and family; the interface holding only their addresses") {
    test::ScopedNetns ns;
    install_node_local_dns_interface({kLinkLocal, kClusterIp});
    install_node_local_dns_rules("iptables-legacy", {kLinkLocal, kClusterIp});
    install_node_local_dns_rules("iptables-nft", {kLinkLocal});
    install_node_local_dns_rules("ip6tables-nft", {"fd00::10"});
    test::sh("iptables-nft -w -t raw -A PREROUTING -p udp --dport 999 -j NOTRACK");
    REQUIRE(node_local_dns_rule_count() == 24 + 12 + 12);
    // No --local-ip: the addresses node-local-dns's rules name say the
    // interface is its.
    std::string out = test::sh(cleanup + " 2>&1");
    INFO(out);
    CHECK(out.find("iptables-legacy: removed 24 node-local-dns rules") != std::string::npos);
    CHECK(out.find("iptables-nft: removed 12 node-local-dns rules") != std::string::npos);
    CHECK(out.find("ip6tables-nft: removed 12 node-local-dns rules") != std::string::npos);
    CHECK(out.find("removed node-local-dns's interface nodelocaldns") != std::string::npos);
    CHECK(node_local_dns_rule_count() == 0);
    CHECK(test::count_lines_with(saves(), "--dport 999") == 1);
    CHECK(test::sh("ip link show nodelocaldns 2>&1; true").find("does not exist") !=
          std::string::npos);
    // Run again: nothing left.
    CHECK(test::sh(cleanup + " 2>&1") == "nothing to clean up\n");
  }
  SECTION("the configured local addresses say so too, without any rule") {
    test::ScopedNetns ns;
    install_node_local_dns_interface({kLinkLocal, kClusterIp});
    std::string out =
        test::sh(cleanup + " --local-ip " + kLinkLocal + " --local-ip " + kClusterIp + " 2>&1");
    INFO(out);
    CHECK(out == "removed node-local-dns's interface nodelocaldns\n");
  }
  SECTION("an interface holding another address is left alone, the rules still removed") {
    test::ScopedNetns ns;
    install_node_local_dns_interface({kLinkLocal, "10.1.2.3"});
    install_node_local_dns_rules("iptables-nft", {kLinkLocal});
    std::string out = test::sh(cleanup + " 2>&1");
    INFO(out);
    CHECK(out.find("iptables-nft: removed 12 node-local-dns rules") != std::string::npos);
    CHECK(out.find("is not marked as localdns's (alias ''): left alone") != std::string::npos);
    CHECK(
        out.find("it holds 10.1.2.3, neither a local address nor one of node-local-dns's rules") !=
        std::string::npos);
    CHECK(test::sh("ip addr show dev nodelocaldns").find("10.1.2.3/32") != std::string::npos);
    CHECK(node_local_dns_rule_count() == 0);
  }
  SECTION("an interface of another kind is left alone") {
    test::ScopedNetns ns;
    test::sh("ip link add nodelocaldns type veth peer name other0");
    install_node_local_dns_rules("iptables-legacy", {kLinkLocal});
    std::string out = test::sh(cleanup + " 2>&1");
    INFO(out);
    CHECK(out.find("iptables-legacy: removed 12 node-local-dns rules") != std::string::npos);
    CHECK(out.find("has kind 'veth', not 'bridge': left alone") != std::string::npos);
    CHECK(test::sh("ip link show nodelocaldns 2>&1").find("does not exist") == std::string::npos);
  }
}

TEST_CASE("takeover: a variant localdns cannot read is said once, and start-up goes on",
          "[node][takeover]") {
  test::require_root_or_skip("node-local-dns takeover test");
  const std::string dir = temp_dir();
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  test::ScopedNetns ns;
  install_node_local_dns_interface({kLinkLocal, kClusterIp});
  install_node_local_dns_rules("iptables-legacy", {kLinkLocal, kClusterIp});
  // Without CAP_NET_RAW, iptables-legacy cannot be read (iptables-nft can).
  const std::string conf = dir + "/localdns.yaml", log = dir + "/localdns.log";
  std::ofstream(conf) << layout_yaml("iptables-nft", {kLinkLocal, kClusterIp});
  Child localdns({"/usr/bin/setpriv", "--bounding-set=-net_raw", LOCALDNS_BINARY, "--config", conf},
                 log);
  test::wait_until(
      test::within(10s),
      [&] {
        return read_file(log).find("listening on") != std::string::npos || !localdns.running();
      },
      50ms);
  std::this_thread::sleep_for(2500ms);  // two more sync passes
  std::string text = read_file(log);
  INFO(text);
  CHECK(text.find("listening on") != std::string::npos);
  CHECK(test::count_lines_with(text,
                               "cannot look for node-local-dns's rules in iptables-legacy: "
                               "iptables-legacy-save: exit 1: iptables-save v") == 1);
  CHECK(text.find("[error]") == std::string::npos);
  CHECK(text.find("took over node-local-dns's interface nodelocaldns (") != std::string::npos);
  CHECK(test::count_lines_with(test::sh("iptables-legacy-save"), "NodeLocal DNS Cache:") == 24);
  CHECK(WIFEXITED(localdns.kill_and_wait(SIGTERM)));
}
