// Taking over from node-local-dns on a node that ran it, in-process: its
// exact rule set (as node-cache's `iptables -I` calls leave it) and its
// interface in a fresh network namespace, then NodeSetup, for every pair of
// backends. This kernel has no `dummy` link type: `bridge` stands in.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <localdns/config/loader.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/node/node_setup.hpp>
#include <localdns/node/rules.hpp>
#include <localdns/node/takeover.hpp>

#include "netns.hpp"
#include "node_local_dns.hpp"

using namespace localdns;
using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

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
      node::NodeSetup setup(config::node_settings(cfg));
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
      std::this_thread::sleep_for(50ms);  // and a few after
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
        CHECK(summary.find(", removed after ours were installed in " + c.ours +
                           ", both sets for at most ") != std::string::npos);
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
  node::NodeSetup setup(config::node_settings(*c));
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
