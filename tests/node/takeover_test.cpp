// Taking over from node-local-dns on a node that ran it: its exact rule set
// (as node-cache's `iptables -I` calls leave it) and its interface in a fresh
// network namespace, then localdns: in-process for every pair of backends,
// and the real binary against a kube-proxy-like DNAT to a Knot DNS "CoreDNS",
// through kill -9. This kernel has no `dummy` link type: `bridge` stands in.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <signal.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>
#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <localdns/config/loader.hpp>
#include <localdns/node/conntrack.hpp>
#include <localdns/node/node_setup.hpp>
#include <localdns/node/rules.hpp>
#include <localdns/node/takeover.hpp>

#include "netns.hpp"

using namespace localdns;
using namespace std::chrono_literals;

namespace {

const std::string kLinkLocal = "169.254.20.10";
const std::string kClusterIp = "10.96.0.10";
const std::string kCoreDns = "10.244.2.53";
const std::string kSkip = "NodeLocal DNS Cache: skip conntrack";
const std::string kAllow = "NodeLocal DNS Cache: allow DNS traffic";

// node-cache's rules for one -localip, in the order it ensures them
// (cmd/node-cache/app/cache_app.go, initIptables), each prepended with -I.
std::vector<std::string> node_cache_rules(const std::string& ip) {
  const std::string skip = " -m comment --comment \"" + kSkip + "\"";
  const std::string allow = " -m comment --comment \"" + kAllow + "\"";
  return {
      "-t raw -I PREROUTING -p tcp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t raw -I PREROUTING -p udp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t filter -I INPUT -p tcp -d " + ip + " --dport 53 -j ACCEPT" + allow,
      "-t filter -I INPUT -p udp -d " + ip + " --dport 53 -j ACCEPT" + allow,
      "-t raw -I OUTPUT -p tcp -s " + ip + " --sport 53 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p udp -s " + ip + " --sport 53 -j NOTRACK" + skip,
      "-t filter -I OUTPUT -p tcp -s " + ip + " --sport 53 -j ACCEPT" + allow,
      "-t filter -I OUTPUT -p udp -s " + ip + " --sport 53 -j ACCEPT" + allow,
      "-t raw -I OUTPUT -p tcp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p udp -d " + ip + " --dport 53 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p tcp -d " + ip + " --dport 8080 -j NOTRACK" + skip,
      "-t raw -I OUTPUT -p tcp -s " + ip + " --sport 8080 -j NOTRACK" + skip,
  };
}

// node-local-dns with `-localip IPS` (comma order) and `program` as its iptables.
void install_node_local_dns_rules(const std::string& program, const std::vector<std::string>& ips) {
  for (const auto& ip : ips)
    for (const auto& rule : node_cache_rules(ip))
      test::sh(program + " -w 5 " + rule);
}

// node-local-dns's interface as it leaves it: never set up, no alias, host
// routes (IPv6 ones tentative: added without NODAD).
void install_node_local_dns_interface(const std::vector<std::string>& ips) {
  test::sh("ip link add nodelocaldns type bridge");
  for (const auto& ip : ips)
    test::sh("ip addr add " + ip + (ip.find(':') == std::string::npos ? "/32" : "/128") +
             " dev nodelocaldns");
}

// Binds a UDP socket to [ip]:5353 in this namespace.
bool can_bind(const std::string& ip) {
  auto a = boost::asio::ip::make_address(ip);
  boost::asio::io_context io;
  boost::asio::ip::udp::socket s(io);
  boost::system::error_code ec;
  s.open(a.is_v4() ? boost::asio::ip::udp::v4() : boost::asio::ip::udp::v6(), ec);
  if (!ec) s.bind({a, 5353}, ec);
  return !ec;
}

std::string saves() {
  return test::sh(
      "iptables-legacy-save 2>/dev/null; iptables-nft-save 2>/dev/null; "
      "ip6tables-legacy-save 2>/dev/null; ip6tables-nft-save 2>/dev/null; true");
}

int node_local_dns_rule_count() {
  return test::count_lines_with(saves(), "NodeLocal DNS Cache:");
}

std::vector<std::string> chain_lines(const std::string& save_cmd, const std::string& chain) {
  std::vector<std::string> out;
  std::istringstream in(test::sh(save_cmd));
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("-A " + chain + " ")) out.push_back(line);
  return out;
}

// The node-local-dns layout (config/kubernetes.yaml) for a namespace: bridge
// links, CoreDNS at kCoreDns, a 1 s sync.
std::string layout_yaml(const std::string& backend, const std::vector<std::string>& ips) {
  std::string locals;
  for (const auto& ip : ips)
    locals += (locals.empty() ? "\"" : ", \"") + ip + "\"";
  const std::string first =
      ips.front().find(':') == std::string::npos ? ips.front() : "[" + ips.front() + "]";
  return "node:\n  local_addresses: [" + locals +
         "]\n"
         "  port: 53\n"
         "  interface: {setup: true, name: nodelocaldns, kind: bridge}\n"
         "  rules: {setup: true, backend: " +
         backend +
         ", fallback: off}\n"
         "  service_cidr: [10.96.0.0/12]\n"
         "  health_port: 8080\n"
         "  sync_interval: 1s\n"
         "metrics: \"" +
         first + ":9253\"\n" + "health: \"" + first +
         ":8080\"\n"
         "listen: []\n"
         "control_socket: off\n"
         "forward:\n"
         "  - zones: [cluster.local, in-addr.arpa, ip6.arpa]\n"
         "    servers: [\"" +
         kCoreDns +
         ":53\"]\n"
         "    transport: tcp\n"
         "  - zones: [\".\"]\n"
         "    servers: [\"" +
         kCoreDns + ":53\"]\n";
}

config::Config layout_config(const std::string& backend, const std::vector<std::string>& ips) {
  auto c = config::load_config_text(layout_yaml(backend, ips), "layout.yaml");
  if (!c) {
    for (const auto& e : c.error())
      UNSCOPED_INFO(e);
  }
  REQUIRE(c.has_value());
  return *c;
}

// Snapshots the rules in a thread while a takeover runs: how often a table
// held both rule sets, and a snapshot held both anywhere.
class Watcher {
 public:
  explicit Watcher(std::vector<std::string> commands) : commands_(std::move(commands)) {
    thread_ = std::thread([this] {
      auto deadline = std::chrono::steady_clock::now() + 30s;
      while (!stop_ && std::chrono::steady_clock::now() < deadline) {
        bool ours = false, theirs = false;
        for (const auto& cmd : commands_) {
          std::string out = test::sh(cmd + " 2>/dev/null; true");
          for (const auto& [table, rules] : node::parse_iptables_save(out)) {
            bool o = false, t = false;
            for (const auto& r : rules) {
              o = o || r.comment.starts_with(node::kCommentPrefix);
              t = t || r.comment.starts_with(node::kNodeLocalDnsCommentPrefix);
            }
            if (o && t) ++mixed_tables_;
            ours = ours || o;
            theirs = theirs || t;
          }
          // nft listings: our table
          if (out.find("comment \"localdns:") != std::string::npos) ours = true;
        }
        ++snapshots_;
        if (ours && theirs) ++both_;
      }
    });
  }
  ~Watcher() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int snapshots() const { return snapshots_; }
  int mixed_tables() const { return mixed_tables_; }
  int both() const { return both_; }

 private:
  std::vector<std::string> commands_;
  std::atomic<bool> stop_{false};
  std::atomic<int> snapshots_{0}, mixed_tables_{0}, both_{0};
  std::thread thread_;
};

}  // namespace

TEST_CASE("takeover: node-cache's rule set is installed exactly as it leaves it",
          "[node][takeover]") {
  test::require_root_or_skip("node-local-dns takeover test");
  test::ScopedNetns ns;
  install_node_local_dns_rules("iptables-nft", {kLinkLocal, kClusterIp});
  CHECK(node_local_dns_rule_count() == 24);
  // As `iptables-save` shows it on a node running node-local-dns: the last
  // -localip first (every rule is inserted at the top), udp before tcp.
  auto pre = chain_lines("iptables-nft-save -t raw", "PREROUTING");
  std::vector<std::string> want = {
      "-A PREROUTING -d 10.96.0.10/32 -p udp -m udp --dport 53 -m comment --comment \"" + kSkip +
          "\" -j NOTRACK",
      "-A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 53 -m comment --comment \"" + kSkip +
          "\" -j NOTRACK",
      "-A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment \"" + kSkip +
          "\" -j NOTRACK",
      "-A PREROUTING -d 169.254.20.10/32 -p tcp -m tcp --dport 53 -m comment --comment \"" + kSkip +
          "\" -j NOTRACK"};
  CHECK(pre == want);
  auto in = chain_lines("iptables-nft-save -t filter", "INPUT");
  REQUIRE(in.size() == 4);
  CHECK(in[0] == "-A INPUT -d 10.96.0.10/32 -p udp -m udp --dport 53 -m comment --comment \"" +
                     kAllow + "\" -j ACCEPT");
  auto out = chain_lines("iptables-nft-save -t raw", "OUTPUT");
  REQUIRE(out.size() == 12);
  CHECK(out[0] == "-A OUTPUT -s 10.96.0.10/32 -p tcp -m tcp --sport 8080 -m comment --comment \"" +
                      kSkip + "\" -j NOTRACK");
  // No socket match: they apply whether or not anything listens.
  CHECK(saves().find("socket") == std::string::npos);
}

TEST_CASE("takeover: node-local-dns's rules are replaced in every pair of backends",
          "[node][takeover]") {
  test::require_root_or_skip("node-local-dns takeover test");
  struct Case {
    std::string theirs;  // node-local-dns's iptables
    std::string ours;    // localdns's backend
    bool v6;
  };
  const std::vector<Case> cases = {
      {"iptables-nft", "iptables-nft", false},    {"iptables-legacy", "iptables-legacy", false},
      {"iptables-legacy", "iptables-nft", false}, {"iptables-nft", "iptables-legacy", false},
      {"iptables-nft", "nftables", false},        {"iptables-legacy", "nftables", false},
      {"ip6tables-nft", "iptables-nft", true},    {"ip6tables-legacy", "nftables", true},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.theirs << " replaced by " << c.ours) {
      test::ScopedNetns ns;
      std::vector<std::string> ips = c.v6 ? std::vector<std::string>{"fd00::10", "fd00::a"}
                                          : std::vector<std::string>{kLinkLocal, kClusterIp};
      install_node_local_dns_interface(ips);
      install_node_local_dns_rules(c.theirs, ips);
      REQUIRE(node_local_dns_rule_count() == 24);
      // Someone else's rule in the same chain stays.
      test::sh(c.theirs + " -w -t raw -A PREROUTING -p udp --dport 999 -j NOTRACK");

      auto cfg = layout_config(c.ours, ips);
      node::NodeSetup setup(cfg);
      const std::string their_variant = c.theirs.substr(c.theirs.find('-') + 1);
      const bool same = c.ours == "iptables-" + their_variant;
      std::vector<std::string> watch = {c.theirs + "-save"};
      if (c.ours == "nftables") {
        watch.push_back("nft list table inet localdns");
      } else if (!same) {
        watch.push_back((c.v6 ? "ip6tables-" : "iptables-") + c.ours.substr(9) + "-save");
      }
      Watcher watcher(watch);
      std::this_thread::sleep_for(50ms);  // a few snapshots before
      auto t0 = std::chrono::steady_clock::now();
      REQUIRE(setup.apply());
      auto took = std::chrono::steady_clock::now() - t0;
      std::this_thread::sleep_for(50ms);
      watcher.stop();

      auto tk = setup.last_takeover();
      CHECK(tk.interface);
      CHECK(tk.rules == 24);
      std::string summary = tk.summary("nodelocaldns");
      INFO(summary);
      CHECK(
          summary.starts_with("took over node-local-dns's interface nodelocaldns and 24 rules ("));
      CHECK(node_local_dns_rule_count() == 0);
      CHECK(test::sh("nft list ruleset").find("NodeLocal DNS Cache") == std::string::npos);
      CHECK(test::count_lines_with(saves(), "--dport 999") == 1);
      // Ours: 5 iptables rules or 3 nft rules per address and port (53 udp and tcp, 8080 tcp).
      if (c.ours == "nftables") {
        CHECK(test::count_lines_with(test::sh("nft list table inet localdns"),
                                     "comment \"localdns:") == 2 * 9);
      } else {
        CHECK(test::count_lines_with(saves(), "\"localdns:") == 2 * 15);
      }
      CHECK(setup.verify().empty());
      // A table never held both sets.
      CHECK(watcher.mixed_tables() == 0);
      // Bounded by one iptables-restore run (the same run, one COMMIT per
      // table) or by ours first, theirs right after: the traffic is never
      // without a NOTRACK, and never held both sets long.
      CHECK(tk.overlap > std::chrono::microseconds(0));
      CHECK(tk.overlap < 2s);
      if (same) {
        CHECK(summary.find("replaced in the iptables-restore run that installed ours") !=
              std::string::npos);
      } else {
        CHECK(summary.find(" after ours were being installed in " + c.ours) != std::string::npos);
      }
      std::printf(
          "takeover %s -> %s: overlap %.1f ms (upper bound), apply %.1f ms; %d snapshots, "
          "%d with both sets, %d tables with both\n",
          c.theirs.c_str(), c.ours.c_str(), double(tk.overlap.count()) / 1000.0,
          std::chrono::duration<double, std::milli>(took).count(), watcher.snapshots(),
          watcher.both(), watcher.mixed_tables());

      // The interface: adopted, marked, its addresses never removed.
      std::string link = test::sh("ip addr show dev nodelocaldns");
      CHECK(test::sh("ip link show dev nodelocaldns").find("alias localdns") != std::string::npos);
      for (const auto& ip : ips) {
        CHECK(link.find(ip + "/") != std::string::npos);
        CHECK(can_bind(ip));  // at once: no tentative address left
      }
      {
        std::istringstream lines(link);
        for (std::string line; std::getline(lines, line);)
          if (line.find("scope global") != std::string::npos)
            CHECK(line.find("tentative") == std::string::npos);
      }
      if (c.v6)
        CHECK(summary.find("tentative fd00::10, fd00::a replaced without DAD") !=
              std::string::npos);

      // node-local-dns still running elsewhere adds one back: the next pass
      // removes it again and says so.
      test::sh(c.theirs + " -w 5 " + node_cache_rules(ips[0])[0]);
      CHECK(setup.sync() >= 1);
      auto again = setup.last_takeover();
      CHECK(again.rules == 1);
      CHECK_FALSE(again.interface);
      CHECK(node_local_dns_rule_count() == 0);
      setup.teardown();
      CHECK(test::sh("ip link show nodelocaldns 2>&1; true").find("does not exist") !=
            std::string::npos);
    }
  }
}

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
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (running() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
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
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (test::sh("dig +short +time=1 +tries=1 @" + kCoreDns + " SOA cluster.local", false)
            .find("ns.cluster.local.") != std::string::npos)
      return knot;
    std::this_thread::sleep_for(100ms);
  }
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
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ask(pod, server) == "10.96.0.1") return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
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
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (read_file(log).find("listening on") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline && localdns.running())
    std::this_thread::sleep_for(50ms);
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

TEST_CASE("takeover: with rule setup off, node-local-dns's rules stay, with a warning",
          "[node][takeover]") {
  test::require_root_or_skip("node-local-dns takeover test");
  test::ScopedNetns ns;
  install_node_local_dns_interface({kLinkLocal, kClusterIp});
  install_node_local_dns_rules("iptables-legacy", {kLinkLocal, kClusterIp});
  std::string yaml = layout_yaml("auto", {kLinkLocal, kClusterIp});
  yaml.replace(yaml.find("setup: true, backend: auto"), 26, "setup: false, backend: auto");
  auto c = config::load_config_text(yaml, "layout.yaml");
  REQUIRE(c);
  std::ostringstream logged;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(logged)));
  node::NodeSetup setup(*c);
  auto applied = setup.apply();
  spdlog::set_default_logger(previous);
  REQUIRE(applied);
  INFO(logged.str());
  CHECK(logged.str().find("took over node-local-dns's interface nodelocaldns (") !=
        std::string::npos);
  CHECK(logged.str().find("24 node-local-dns rules are in iptables-legacy and rule setup is off: "
                          "they keep DNS to 10.96.0.10, 169.254.20.10 out of conntrack") !=
        std::string::npos);
  CHECK(node_local_dns_rule_count() == 24);
  setup.teardown();
}
