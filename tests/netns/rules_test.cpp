// NOTRACK rules in every backend this machine has, each in a fresh network
// namespace: install, order, repair, no duplicates, removal.
#include <chrono>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <localdns/app/health.hpp>
#include <localdns/config/cli.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/node/node_setup.hpp>
#include <localdns/node/rules.hpp>

#include "ask.hpp"
#include "fake_upstream.hpp"
#include "instance.hpp"
#include "netns.hpp"
#include "wait.hpp"

using namespace localdns;
using boost::asio::ip::make_address;

namespace {

node::RuleTargets targets() {
  node::RuleTargets t;
  // Both IPv4 addresses with a fallback (as `fallback_for` can list them).
  config::Endpoint fb{make_address("10.244.0.53"), 53};
  t.locals = {{make_address("169.254.20.10"), 53, fb},
              {make_address("10.96.0.10"), 53, fb},
              {make_address("fd00::10"), 53, std::nullopt}};
  t.health_port = 8080;
  return t;
}

// The rules of one chain, as the backend's own listing shows them.
std::vector<std::string> chain_rules(const std::string& variant, bool v6, const std::string& table,
                                     const std::string& chain) {
  std::string out = test::sh(std::string(v6 ? "ip6tables-" : "iptables-") + variant + "-save -t " +
                             table + " 2>/dev/null");
  std::vector<std::string> rules;
  std::size_t start = 0;
  while (start < out.size()) {
    auto end = out.find('\n', start);
    std::string line = out.substr(start, end - start);
    if (line.starts_with("-A " + chain + " ")) rules.push_back(line);
    start = end == std::string::npos ? out.size() : end + 1;
  }
  return rules;
}

// Our rules in `chain` are exactly `want`'s comments, in order, in one block,
// and no other rule of ours is there. The block leads the chain when `at_top`;
// otherwise only rules of other agents may precede it.
void check_chain(const std::string& variant, bool v6, const std::vector<node::IptablesRule>& all,
                 const std::string& table, const std::string& chain, bool at_top = true) {
  std::vector<std::string> want;
  for (const auto& r : all)
    if (r.table == table && r.chain == chain) want.push_back(r.comment);
  auto have = chain_rules(variant, v6, table, chain);
  INFO(variant << (v6 ? " ip6 " : " ip ") << table << " " << chain);
  std::size_t start = 0;
  if (!at_top) {
    while (start < have.size() && have[start].find(node::kCommentPrefix) == std::string::npos)
      ++start;
    if (want.empty()) start = have.size();
  }
  REQUIRE(have.size() >= start + want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO(have[start + i]);
    CHECK(have[start + i].find("\"" + want[i] + "\"") != std::string::npos);
  }
  for (std::size_t i = start + want.size(); i < have.size(); ++i)
    CHECK(have[i].find(node::kCommentPrefix) == std::string::npos);
}

constexpr std::pair<const char*, const char*> kOurChains[] = {{"raw", "PREROUTING"},
                                                              {"raw", "OUTPUT"},
                                                              {"filter", "INPUT"},
                                                              {"filter", "OUTPUT"},
                                                              {"nat", "PREROUTING"}};

void check_all(const std::string& variant, bool at_top = true) {
  for (bool v6 : {false, true}) {
    auto rules = node::iptables_rules(targets(), v6);
    for (auto [table, chain] : kOurChains)
      check_chain(variant, v6, rules, table, chain, at_top);
  }
}

// Both families' tables, as iptables-save lists them, without its comments
// and counters (the positions of every rule).
std::string saved_rules(const std::string& variant) {
  std::string all =
      test::sh("iptables-" + variant + "-save; ip6tables-" + variant + "-save", false);
  std::string kept;
  std::size_t start = 0;
  while (start < all.size()) {
    auto end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    std::string line = all.substr(start, end - start);
    if (!line.starts_with("#"))
      kept += (line.starts_with(":") ? line.substr(0, line.find(' ')) : line) + "\n";
    start = end + 1;
  }
  return kept;
}

// A jump to a chain of another agent, inserted at the top of `chain` as
// Calico's Felix (ChainInsertMode insert) and Cilium (--prepend-iptables-chains)
// put theirs.
void insert_agent_rule(const std::string& program, const std::string& table,
                       const std::string& chain, const std::string& target) {
  test::sh(program + " -w -t " + table + " -N " + target + " 2>/dev/null", false);
  test::sh(program + " -w -t " + table + " -I " + chain +
           " 1 -m comment --comment other-agent -j " + target);
}

// A config as `localdns --local-ip 169.254.20.10 --interface-kind bridge ...` builds it.
config::Config node_config(const char* backend) {
  std::vector<std::string_view> args = {"--local-ip",       "169.254.20.10",
                                        "--interface-kind", "bridge",
                                        "--rules-backend",  backend,
                                        "--sync-interval",  "1s",
                                        "--forward",        ".=udp://10.244.0.53"};
  auto opts = config::parse_cli(args);
  REQUIRE(opts);
  auto cfg = config::build_config(*opts);
  REQUIRE(cfg);
  return *cfg;
}

int our_rule_count(const std::string& variant) {
  return test::count_lines_with(test::sh("iptables-" + variant + "-save 2>/dev/null; ip6tables-" +
                                         variant + "-save 2>/dev/null"),
                                std::string(node::kCommentPrefix));
}

}  // namespace

TEST_CASE("rules: iptables backends install, keep order, repair and remove", "[node][rules]") {
  test::require_root_or_skip("iptables rules test");
  for (std::string variant : {"legacy", "nft"}) {
    DYNAMIC_SECTION("iptables-" << variant) {
      test::ScopedNetns ns;
      auto kind = variant == "legacy" ? config::RulesBackend::IptablesLegacy
                                      : config::RulesBackend::IptablesNft;
      auto backend = node::make_rules_backend(kind);
      const int expected = static_cast<int>(node::iptables_rules(targets(), false).size() +
                                            node::iptables_rules(targets(), true).size());
      // Someone else's rules are there first.
      test::sh("iptables-" + variant + " -w -t raw -A PREROUTING -p udp --dport 999 -j NOTRACK");
      test::sh("iptables-" + variant + " -w -A INPUT -p tcp --dport 22 -j ACCEPT");

      auto first = backend->sync(targets());
      REQUIRE(first);
      CHECK(first->repaired == static_cast<unsigned>(expected));
      check_all(variant);
      CHECK(our_rule_count(variant) == expected);
      // The foreign rules are kept, behind ours.
      CHECK(chain_rules(variant, false, "raw", "PREROUTING").back().find("--dport 999") !=
            std::string::npos);

      // A second pass finds everything in place and changes nothing.
      auto second = backend->sync(targets());
      REQUIRE(second);
      CHECK(second->repaired == 0);
      CHECK(our_rule_count(variant) == expected);

      // Deleted by hand: restored, exactly once.
      test::sh("iptables-" + variant + " -w -t raw -D PREROUTING 2");
      test::sh("ip6tables-" + variant + " -w -D INPUT 1");
      CHECK(our_rule_count(variant) == expected - 2);
      auto third = backend->sync(targets());
      REQUIRE(third);
      CHECK(third->repaired == 2);
      CHECK(our_rule_count(variant) == expected);
      check_all(variant);

      // Another agent's rule inserted ahead of ours in every chain that holds
      // ours (Calico's Felix and Cilium insert theirs at the top and put them
      // back there): ours are in place behind it, nothing is moved or
      // counted, and each chain is said once, not at every pass.
      const std::string v4 = "iptables-" + variant, v6 = "ip6tables-" + variant;
      for (auto [table, chain] : kOurChains)
        insert_agent_rule(v4, table, chain, std::string("AGENT-") + chain);
      for (auto [table, chain] : {std::pair{"raw", "PREROUTING"}, {"filter", "INPUT"}})
        insert_agent_rule(v6, table, chain, std::string("AGENT-") + chain);
      const std::string positions = saved_rules(variant);
      auto fourth = backend->sync(targets());
      REQUIRE(fourth);
      CHECK(fourth->repaired == 0);
      CHECK(fourth->notes.empty());
      REQUIRE(fourth->warnings.size() == 5 + 2);
      CHECK(fourth->warnings[0] ==
            "iptables raw PREROUTING: 1 rule of another agent precedes localdns's NOTRACK rules "
            "(-m comment --comment other-agent -j AGENT-PREROUTING); localdns leaves it there: "
            "make sure it does not accept or drop DNS traffic to 169.254.20.10, 10.96.0.10 "
            "before ours");
      CHECK(fourth->warnings[2].starts_with(
          "iptables filter INPUT: 1 rule of another agent precedes localdns's ACCEPT rules "));
      CHECK(fourth->warnings[4].starts_with(
          "iptables nat PREROUTING: 1 rule of another agent precedes localdns's fallback DNAT "));
      CHECK(fourth->warnings[5].find("DNS traffic to fd00::10 before ours") != std::string::npos);
      CHECK(saved_rules(variant) == positions);
      auto again = backend->sync(targets());
      REQUIRE(again);
      CHECK(again->repaired == 0);
      CHECK(again->warnings.empty());  // said once per change
      CHECK(saved_rules(variant) == positions);
      auto checked = backend->check(targets());
      REQUIRE(checked);
      CHECK(*checked == 0);
      check_all(variant, false);
      CHECK(our_rule_count(variant) == expected);

      // Another rule inside our block (split): repaired, the block back at
      // the top of the chain, both foreign rules behind it.
      test::sh(v4 + " -w -t raw -I PREROUTING 3 -p udp --dport 1997 -j NOTRACK");
      auto split = backend->sync(targets());
      REQUIRE(split);
      CHECK(split->repaired == 1);
      CHECK(split->warnings.empty());
      check_chain(variant, false, node::iptables_rules(targets(), false), "raw", "PREROUTING");
      CHECK(our_rule_count(variant) == expected);
      auto pre = chain_rules(variant, false, "raw", "PREROUTING");
      REQUIRE(pre.size() > 3);
      CHECK(pre[pre.size() - 3].find("-j AGENT-PREROUTING") != std::string::npos);
      CHECK(pre[pre.size() - 2].find("--dport 1997") != std::string::npos);
      // The agent puts its rule back at the top: ours stay; that change is said.
      test::sh(v4 +
               " -w -t raw -D PREROUTING -m comment --comment other-agent -j AGENT-PREROUTING");
      insert_agent_rule(v4, "raw", "PREROUTING", "AGENT-PREROUTING");
      auto back = backend->sync(targets());
      REQUIRE(back);
      CHECK(back->repaired == 0);
      REQUIRE(back->warnings.size() == 1);
      CHECK(back->warnings[0].starts_with("iptables raw PREROUTING: 1 rule of another agent"));

      // Two of ours swapped (behind the agent's rule): repaired, back in
      // order at the top.
      auto out = chain_rules(variant, false, "raw", "OUTPUT");
      REQUIRE(out.size() > 3);
      REQUIRE(out[1].find(node::kCommentPrefix) != std::string::npos);
      test::sh(v4 + " -w -t raw -D OUTPUT 2");
      test::sh(v4 + " -w -t raw -I OUTPUT 3 " + out[1].substr(std::string("-A OUTPUT ").size()));
      auto swapped = backend->sync(targets());
      REQUIRE(swapped);
      CHECK(swapped->repaired == 1);
      REQUIRE(swapped->notes.size() == 1);
      CHECK(swapped->notes[0] ==
            "iptables raw OUTPUT: put our rules back together, in order, at the top");
      check_chain(variant, false, node::iptables_rules(targets(), false), "raw", "OUTPUT");
      CHECK(our_rule_count(variant) == expected);

      // A duplicate of ours (the node-local-dns failure mode) is removed.
      auto dup = node::iptables_rules(targets(), false).front();
      test::sh("iptables-" + variant + " -w -t " + dup.table + " -A " + dup.chain + " " + dup.spec);
      CHECK(our_rule_count(variant) == expected + 1);
      auto fifth = backend->sync(targets());
      REQUIRE(fifth);
      CHECK(fifth->repaired == 1);
      CHECK(our_rule_count(variant) == expected);

      // Removal leaves none of ours and every foreign rule.
      auto removed = backend->remove();
      REQUIRE(removed);
      CHECK(*removed == static_cast<unsigned>(expected));
      CHECK(our_rule_count(variant) == 0);
      CHECK(test::count_lines_with(test::sh("iptables-" + variant + "-save"), "--dport 999") == 1);
      CHECK(test::count_lines_with(test::sh("iptables-" + variant + "-save"), "--dport 22") == 1);
      CHECK(test::count_lines_with(test::sh("iptables-" + variant + "-save"), "--dport 1997") == 1);
      CHECK(test::count_lines_with(saved_rules(variant), "-j AGENT-") == 5 + 2);
    }
  }
}

TEST_CASE("rules: the nftables backend owns one table and replaces it atomically",
          "[node][rules]") {
  test::require_root_or_skip("nftables rules test");
  test::ScopedNetns ns;
  test::sh(
      "nft add table inet other && nft add chain inet other c "
      "'{ type filter hook prerouting priority raw; }' && nft add rule inet other c udp dport "
      "999 notrack");
  auto backend = node::make_rules_backend(config::RulesBackend::Nftables);
  auto first = backend->sync(targets());
  REQUIRE(first);
  std::string listing = test::sh("nft list table inet localdns");
  // 3 addresses x (udp, tcp, health): 1 prerouting + 2 output rules each, plus
  // 2 fallback DNAT rules for each IPv4 address.
  CHECK(test::count_lines_with(listing, "comment \"localdns:") == 3 * 3 * 3 + 2 * 2);
  CHECK(test::count_lines_with(listing, "socket wildcard 0 notrack") == 9);
  CHECK(listing.find("dnat ip to 10.244.0.53:53") != std::string::npos);
  CHECK(listing.find("priority raw") != std::string::npos);

  auto second = backend->sync(targets());
  REQUIRE(second);
  CHECK(second->repaired == 0);

  // Another agent's rules at the same hook and priority live in its own table
  // and chain: nothing of ours is out of place (an accept there ends only that
  // chain; ours still runs), so nothing is repaired or said.
  test::sh("nft insert rule inet other c udp dport 53 accept");
  auto beside = backend->sync(targets());
  REQUIRE(beside);
  CHECK(beside->repaired == 0);
  CHECK(beside->warnings.empty());
  auto checked = backend->check(targets());
  REQUIRE(checked);
  CHECK(*checked == 0);
  CHECK(test::sh("nft list table inet localdns") == listing);

  // A rule deleted by hand is restored within the table, once.
  std::string handles = test::sh("nft -a list chain inet localdns output");
  auto pos = handles.find("# handle ", handles.find("notrack comment"));
  REQUIRE(pos != std::string::npos);
  std::string handle = handles.substr(pos + 9, handles.find('\n', pos) - pos - 9);
  test::sh("nft delete rule inet localdns output handle " + handle);
  auto third = backend->sync(targets());
  REQUIRE(third);
  CHECK(third->repaired == 1);
  CHECK(test::sh("nft list table inet localdns") == listing);

  // The whole table deleted by hand comes back.
  test::sh("nft delete table inet localdns");
  auto fourth = backend->sync(targets());
  REQUIRE(fourth);
  CHECK(fourth->repaired == 3 * 3 * 3 + 2 * 2);
  CHECK(test::sh("nft list table inet localdns") == listing);

  auto removed = backend->remove();
  REQUIRE(removed);
  CHECK(*removed == 3 * 3 * 3 + 2 * 2);
  CHECK(test::sh("nft list tables").find("localdns") == std::string::npos);
  // Other tables are left alone.
  CHECK(test::sh("nft list table inet other").find("udp dport 999 notrack") != std::string::npos);
}

TEST_CASE("rules: the sync loop repairs within one interval and counts it", "[node][rules]") {
  test::require_root_or_skip("node setup sync test");
  test::ScopedNetns ns;
  auto cfg = node_config("iptables-nft");
  node::NodeSetup setup(config::node_settings(cfg));
  REQUIRE(setup.apply());
  CHECK(setup.in_place());
  CHECK(setup.counters().repairs.load() == 0);
  const int expected = our_rule_count("nft");
  // udp and tcp 53: 1 prerouting, 2 output, 2 accept, 1 fallback DNAT each; tcp 8080 (the
  // health endpoint, on the local address by default): the same without the DNAT.
  CHECK(expected == 12 + 5);
  setup.start_sync();

  test::sh(
      "iptables-nft -w -t raw -D PREROUTING 1 && ip addr del 169.254.20.10/32 dev nodelocaldns");
  test::wait_until(
      test::within(std::chrono::seconds(5)),
      [&] {
        return our_rule_count("nft") == expected &&
               test::sh("ip addr show dev nodelocaldns").find("169.254.20.10") != std::string::npos;
      },
      std::chrono::milliseconds(100));
  CHECK(our_rule_count("nft") == expected);
  CHECK(test::sh("ip addr show dev nodelocaldns").find("169.254.20.10/32") != std::string::npos);
  CHECK(setup.counters().repairs.load() == 2);  // one rule, one address
  CHECK(setup.counters().setup_errors.load() == 0);

  setup.teardown();
  CHECK(our_rule_count("nft") == 0);
  CHECK(test::sh("ip link show nodelocaldns 2>&1", false).find("does not exist") !=
        std::string::npos);
}

TEST_CASE("readiness follows node setup: 503 while a rule is missing, 200 once repaired",
          "[node][health]") {
  test::require_root_or_skip("readiness with node setup");
  test::ScopedNetns ns;
  test::FakeUpstream up;  // in this namespace, on its loopback
  auto cfg = node_config("iptables-legacy");
  node::NodeSetup setup(config::node_settings(cfg));
  REQUIRE(setup.apply());
  test::Instance ld({test::group({"."}, {up.address()}, config::Transport::Udp)});
  app::HealthEndpoint health(ld.server(), &setup,
                             {boost::asio::ip::make_address("127.0.0.1"), test::free_port()});
  test::ask(ld.endpoint(), "ready.example");
  CHECK(health.respond("/ready").status == 200);

  test::sh("iptables-legacy -w -t raw -D PREROUTING 1");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s result cache
  auto broken = health.respond("/ready");
  CHECK(broken.status == 503);
  CHECK(broken.body == "node setup: 1 iptables-legacy rules missing or out of place\n");

  CHECK(setup.sync() == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s result cache
  CHECK(health.respond("/ready").status == 200);

  test::sh("ip link set nodelocaldns down");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s result cache
  CHECK(health.respond("/ready").body == "node setup: interface nodelocaldns is missing or down\n");
  setup.teardown();
}

// What Felix does at each refresh: its jump (-j cali-CHAIN) first in each of
// its chains, moved back to the top if it is not.
void reassert_agent_rules(const std::string& program, std::vector<std::string> raw,
                          std::vector<std::string> filter) {
  for (auto [table, chains] : {std::pair{"raw", &raw}, {"filter", &filter}}) {
    for (const auto& chain : *chains) {
      auto rules = chain_rules(program.substr(program.find('-') + 1), false, table, chain);
      if (!rules.empty() && rules.front().ends_with("-j cali-" + chain)) continue;
      test::sh(program + " -w -t " + table + " -D " + chain +
               " -m comment --comment other-agent -j cali-" + chain);
      insert_agent_rule(program, table, chain, "cali-" + chain);
    }
  }
}

TEST_CASE("another agent's rules ahead of ours (Calico, Cilium): no repair, said once, ready",
          "[node][health]") {
  test::require_root_or_skip("node setup with another agent's rules");
  for (std::string variant : {"legacy", "nft"}) {
    DYNAMIC_SECTION("iptables-" << variant) {
      test::ScopedNetns ns;
      test::FakeUpstream up;
      auto cfg = node_config(("iptables-" + variant).c_str());
      node::NodeSetup setup(config::node_settings(cfg));
      REQUIRE(setup.apply());
      test::Instance ld({test::group({"."}, {up.address()}, config::Transport::Udp)});
      app::HealthEndpoint health(ld.server(), &setup,
                                 {boost::asio::ip::make_address("127.0.0.1"), test::free_port()});
      test::ask(ld.endpoint(), "agent.example");
      CHECK(health.respond("/ready").status == 200);

      // Felix's hooks as its default ChainInsertMode (insert) leaves them.
      const std::string v4 = "iptables-" + variant;
      insert_agent_rule(v4, "raw", "PREROUTING", "cali-PREROUTING");
      insert_agent_rule(v4, "raw", "OUTPUT", "cali-OUTPUT");
      insert_agent_rule(v4, "filter", "INPUT", "cali-INPUT");
      insert_agent_rule(v4, "filter", "OUTPUT", "cali-OUTPUT");
      const std::string positions = saved_rules(variant);
      std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s result cache
      CHECK(health.respond("/ready").status == 200);

      // Two passes, the agent putting its rules back at the top after each, as
      // Felix does at every refresh.
      std::ostringstream logged;
      auto previous = spdlog::default_logger();
      spdlog::set_default_logger(std::make_shared<spdlog::logger>(
          "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(logged)));
      unsigned first = setup.sync();
      reassert_agent_rules(v4, {"PREROUTING", "OUTPUT"}, {"INPUT", "OUTPUT"});
      unsigned second = setup.sync();
      reassert_agent_rules(v4, {"PREROUTING", "OUTPUT"}, {"INPUT", "OUTPUT"});
      spdlog::set_default_logger(previous);
      INFO(logged.str());
      CHECK(first == 0);
      CHECK(second == 0);
      CHECK(setup.counters().repairs.load() == 0);
      CHECK(setup.counters().setup_errors.load() == 0);
      CHECK(setup.in_place());
      CHECK(saved_rules(variant) == positions);
      // One warning per chain over both passes, none about a repair.
      CHECK(test::count_lines_with(logged.str(), "of another agent precedes localdns's") == 4);
      CHECK(logged.str().find(
                "node setup: iptables raw PREROUTING: 1 rule of another agent precedes "
                "localdns's NOTRACK rules (-m comment --comment other-agent -j "
                "cali-PREROUTING); localdns leaves it there: make sure it does not accept or "
                "drop DNS traffic to 169.254.20.10 before ours") != std::string::npos);
      CHECK(logged.str().find("repaired") == std::string::npos);
      std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s result cache
      CHECK(health.respond("/ready").status == 200);

      // One of ours deleted behind the agent's rule: still repaired, once.
      auto pre = chain_rules(variant, false, "raw", "PREROUTING");
      REQUIRE(pre.size() > 1);
      REQUIRE(pre[1].find(node::kCommentPrefix) != std::string::npos);
      test::sh(v4 + " -w -t raw -D PREROUTING 2");
      std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s result cache
      CHECK(health.respond("/ready").status == 503);
      CHECK(setup.sync() == 1);
      CHECK(setup.counters().repairs.load() == 1);
      CHECK(chain_rules(variant, false, "raw", "PREROUTING").front().find(node::kCommentPrefix) !=
            std::string::npos);
      std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s result cache
      CHECK(health.respond("/ready").status == 200);
      CHECK(setup.sync() == 0);
      CHECK(setup.counters().repairs.load() == 1);
      setup.teardown();
      CHECK(our_rule_count(variant) == 0);
      CHECK(test::count_lines_with(saved_rules(variant), "-j cali-") == 4);
    }
  }
}

TEST_CASE("backend auto-detection: each branch, built for real", "[node][detect]") {
  test::require_root_or_skip("backend detection test");
  using B = config::RulesBackend;
  // Rules nobody cares about, to tip a majority.
  auto rules = [](const std::string& variant, int n) {
    for (int i = 0; i < n; ++i)
      test::sh("iptables-" + variant + " -w -A INPUT -p tcp --dport " + std::to_string(2000 + i) +
               " -j ACCEPT");
  };
  SECTION("nothing there: iptables-nft") {
    test::ScopedNetns ns;
    auto f = node::observe_backend_facts();
    CHECK_FALSE(f.hint_nft);
    CHECK_FALSE(f.hint_legacy);
    CHECK_FALSE(f.kube_proxy_nft);
    CHECK(f.legacy_rules == 0);
    CHECK(f.nft_rules == 0);
    CHECK(node::detect_rules_backend() == B::IptablesNft);
  }
  SECTION("kubelet's hint in legacy while nft holds more rules: legacy") {
    test::ScopedNetns ns;
    test::sh("iptables-legacy -w -t mangle -N KUBE-IPTABLES-HINT");
    rules("nft", 3);
    auto f = node::observe_backend_facts();
    CHECK(f.hint_legacy);
    CHECK_FALSE(f.hint_nft);
    CHECK(f.nft_rules == 3);
    CHECK(node::detect_rules_backend() == B::IptablesLegacy);
  }
  SECTION("the canary chain counts as the hint (IPv6 table, nft)") {
    test::ScopedNetns ns;
    test::sh("ip6tables-nft -w -t mangle -N KUBE-KUBELET-CANARY");
    rules("legacy", 3);
    auto f = node::observe_backend_facts();
    CHECK(f.hint_nft);
    CHECK(f.legacy_rules == 3);
    CHECK(node::detect_rules_backend() == B::IptablesNft);
  }
  SECTION("the canary chain in legacy while nft holds more rules: legacy") {
    test::ScopedNetns ns;
    test::sh("iptables-legacy -w -t mangle -N KUBE-KUBELET-CANARY");
    rules("nft", 2);
    CHECK(node::detect_rules_backend() == B::IptablesLegacy);
  }
  SECTION("kube-proxy's nftables table, no hint, legacy holding more rules: nftables") {
    test::ScopedNetns ns;
    test::sh("nft add table ip kube-proxy");
    rules("legacy", 2);
    auto f = node::observe_backend_facts();
    CHECK(f.kube_proxy_nft);
    CHECK(node::detect_rules_backend() == B::Nftables);
  }
  SECTION("a table merely named like kube-proxy's is not it") {
    test::ScopedNetns ns;
    test::sh("nft add table ip kube-proxy-old");
    CHECK_FALSE(node::observe_backend_facts().kube_proxy_nft);
  }
  SECTION("no hint, no table, a legacy majority: legacy") {
    test::ScopedNetns ns;
    rules("legacy", 3);
    rules("nft", 1);
    auto f = node::observe_backend_facts();
    CHECK(f.legacy_rules == 3);
    CHECK(f.nft_rules == 1);
    CHECK(node::detect_rules_backend() == B::IptablesLegacy);
  }
  SECTION("a tie: iptables-nft") {
    test::ScopedNetns ns;
    rules("legacy", 2);
    rules("nft", 2);
    CHECK(node::detect_rules_backend() == B::IptablesNft);
  }
}
