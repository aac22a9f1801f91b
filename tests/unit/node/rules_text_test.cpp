// The rule sets as text: what each backend is asked to install.
#include <set>

#include <catch2/catch.hpp>

#include <localdns/config/loader.hpp>
#include <localdns/config/module_settings.hpp>
#include <localdns/node/node_setup.hpp>
#include <localdns/node/rules.hpp>
#include <localdns/node/takeover.hpp>

using namespace localdns;
using boost::asio::ip::make_address;

namespace {

config::Config k8s_config() {
  auto c = config::load_config_text(R"(
listen: ["127.0.0.1:5353"]
node:
  local_addresses: [169.254.20.10, 10.96.0.10, "fd00::10"]
  health_port: 8080
forward:
  - zones: [cluster.local]
    servers: ["10.96.0.11"]
    transport: tcp
  - zones: ["."]
    servers: ["10.244.0.53", "fd00::53", "169.254.20.10:5300"]
)",
                                    "t.yaml");
  REQUIRE(c.has_value());
  return *c;
}

}  // namespace

TEST_CASE("rule targets come from the listeners on local addresses", "[node]") {
  auto t = config::rule_targets(k8s_config());
  REQUIRE(t.locals.size() == 3);
  CHECK(t.locals[0].address == make_address("169.254.20.10"));
  CHECK(t.locals[0].port == 53);
  CHECK(t.health_port == 8080);
  // By default only the link-local address falls back, to the first "." server
  // of its family that is not one of our own addresses.
  REQUIRE(t.locals[0].fallback);
  CHECK(t.locals[0].fallback->to_string() == "10.244.0.53:53");
  // The captured kube-dns ClusterIP is kube-proxy's while localdns is down.
  CHECK_FALSE(t.locals[1].fallback);
  CHECK_FALSE(t.locals[2].fallback);  // fd00::10 is not link-local
}

namespace {

// The fallback of each local address, "ADDR->TARGET" or "ADDR->none", and the warnings.
struct Policy {
  std::vector<std::string> targets;
  std::vector<std::string> notes;
};

Policy policy(const std::string& node_yaml, const std::string& dot_servers) {
  auto c = config::load_config_text("listen: []\nnode:\n" + node_yaml +
                                        "forward:\n  - zones: [cluster.local]\n"
                                        "    servers: [\"10.96.0.11\"]\n"
                                        "  - zones: [\".\"]\n    servers: " +
                                        dot_servers + "\n",
                                    "t.yaml");
  INFO(node_yaml);
  REQUIRE(c.has_value());
  Policy p;
  auto t = config::rule_targets(*c, &p.notes);
  for (const auto& l : t.locals)
    p.targets.push_back(l.address.to_string() + "->" +
                        (l.fallback ? l.fallback->to_string() : std::string("none")));
  return p;
}

}  // namespace

TEST_CASE("fallback policy: which local address gets which target", "[node][fallback]") {
  using V = std::vector<std::string>;
  const std::string locals =
      "  local_addresses: [169.254.20.10, 10.96.0.10, \"fe80::53\", \"fd00::10\"]\n";

  SECTION("auto: link-local addresses only, first usable server per family") {
    auto p = policy(locals, R"(["10.244.0.53", "fd00::53"])");
    CHECK(p.targets == V{"169.254.20.10->10.244.0.53:53", "10.96.0.10->none",
                         "fe80::53->[fd00::53]:53", "fd00::10->none"});
    CHECK(p.notes.empty());
  }
  SECTION("the standard Kubernetes upstream: a Service IP is never a target") {
    auto p = policy(locals + "  service_cidr: [10.96.0.0/12, \"fd00::/108\"]\n",
                    R"(["10.96.0.11", "fd00::11"])");
    CHECK(p.targets ==
          V{"169.254.20.10->none", "10.96.0.10->none", "fe80::53->none", "fd00::10->none"});
    // One line per address that wanted a fallback, saying why there is none.
    REQUIRE(p.notes.size() == 2);
    CHECK_THAT(p.notes[0], Catch::StartsWith("no fallback DNAT for 169.254.20.10 (10.96.0.11:53 "
                                             "is inside node.service_cidr 10.96.0.0/12)"));
    CHECK_THAT(p.notes[1], Catch::Contains("[fd00::11]:53 is inside node.service_cidr fd00::/108"));
    CHECK(p.notes[0].find('\n') == std::string::npos);
  }
  SECTION("unusable candidates are skipped: our own address, loopback, the Service range") {
    auto p = policy(locals + "  service_cidr: [10.96.0.0/12]\n",
                    R"(["169.254.20.10:5300", "127.0.0.53", "10.100.0.1", "10.244.0.53:5353"])");
    CHECK(p.targets.front() == "169.254.20.10->10.244.0.53:5353");
    CHECK(p.notes.size() == 1);  // fe80::53 has no IPv6 server
    CHECK_THAT(p.notes[0], Catch::Contains("fe80::53 (no IPv6 server among the \".\" servers)"));
  }
  SECTION("auto with only unusable servers warns for each family") {
    auto p =
        policy("  local_addresses: [169.254.20.10]\n", R"(["127.0.0.1", "169.254.20.10:5300"])");
    CHECK(p.targets == V{"169.254.20.10->none"});
    REQUIRE(p.notes.size() == 1);
    CHECK_THAT(p.notes[0], Catch::Contains("127.0.0.1:53 is loopback, 169.254.20.10:5300 is a "
                                           "local address"));
  }
  SECTION("fallback_for lists the addresses explicitly") {
    auto p = policy(locals + "  rules:\n    fallback_for: [10.96.0.10]\n",
                    R"(["10.244.0.53", "fd00::53"])");
    CHECK(p.targets == V{"169.254.20.10->none", "10.96.0.10->10.244.0.53:53", "fe80::53->none",
                         "fd00::10->none"});
    CHECK(p.notes.empty());
  }
  SECTION("fallback_for: [] turns it off without a warning") {
    auto p = policy(locals + "  rules:\n    fallback_for: []\n", R"(["10.244.0.53"])");
    CHECK(p.targets ==
          V{"169.254.20.10->none", "10.96.0.10->none", "fe80::53->none", "fd00::10->none"});
    CHECK(p.notes.empty());
  }
  SECTION("explicit servers replace the \".\" group's") {
    auto p = policy(locals + "  rules:\n    fallback: [\"10.244.7.7:53\"]\n", R"(["10.244.0.53"])");
    CHECK(p.targets.front() == "169.254.20.10->10.244.7.7:53");
    CHECK(p.targets[2] == "fe80::53->none");
    REQUIRE(p.notes.size() == 1);
    CHECK_THAT(p.notes[0], Catch::Contains("no IPv6 server among node.rules.fallback"));
  }
  SECTION("off: no fallback and no warning") {
    auto p = policy(locals + "  rules:\n    fallback: off\n", R"(["10.244.0.53"])");
    CHECK(p.targets.front() == "169.254.20.10->none");
    CHECK(p.notes.empty());
  }
}

TEST_CASE("the link-local ranges", "[node][fallback]") {
  CHECK(node::is_link_local(make_address("169.254.0.0")));
  CHECK(node::is_link_local(make_address("169.254.255.255")));
  CHECK_FALSE(node::is_link_local(make_address("169.253.255.255")));
  CHECK_FALSE(node::is_link_local(make_address("169.255.0.0")));
  CHECK_FALSE(node::is_link_local(make_address("10.96.0.10")));
  CHECK(node::is_link_local(make_address("fe80::1")));
  CHECK(node::is_link_local(make_address("febf::1")));
  CHECK_FALSE(node::is_link_local(make_address("fec0::1")));
  CHECK_FALSE(node::is_link_local(make_address("fd00::10")));
}

TEST_CASE("backend auto-detection: each branch", "[node][detect]") {
  using B = config::RulesBackend;
  node::BackendFacts none;
  // Nothing anywhere: iptables-nft, as the wrapper defaults.
  CHECK(node::choose_rules_backend(none) == B::IptablesNft);
  // kubelet's hint (or canary) in legacy wins even where nft holds more rules.
  auto legacy_hint = none;
  legacy_hint.hint_legacy = true;
  legacy_hint.nft_rules = 50;
  legacy_hint.kube_proxy_nft = true;
  CHECK(node::choose_rules_backend(legacy_hint) == B::IptablesLegacy);
  // A hint in nft is looked at first, as the wrapper does.
  auto both = legacy_hint;
  both.hint_nft = true;
  both.legacy_rules = 500;
  CHECK(node::choose_rules_backend(both) == B::IptablesNft);
  // No hint: kube-proxy's nftables table.
  auto kp = none;
  kp.kube_proxy_nft = true;
  kp.legacy_rules = 10;
  CHECK(node::choose_rules_backend(kp) == B::Nftables);
  // No hint, no table: the majority; nft on a tie.
  auto majority = none;
  majority.legacy_rules = 3;
  majority.nft_rules = 2;
  CHECK(node::choose_rules_backend(majority) == B::IptablesLegacy);
  majority.nft_rules = 3;
  CHECK(node::choose_rules_backend(majority) == B::IptablesNft);
  majority.nft_rules = 4;
  CHECK(node::choose_rules_backend(majority) == B::IptablesNft);
  // Only nft installed: the native backend.
  auto nft_only = none;
  nft_only.have_iptables_nft = false;
  CHECK(node::choose_rules_backend(nft_only) == B::Nftables);
  nft_only.have_nft = false;
  CHECK(node::choose_rules_backend(nft_only) == B::IptablesNft);
}

TEST_CASE("iptables rules: NOTRACK while listening, both directions, first in order", "[node]") {
  auto t = config::rule_targets(k8s_config());
  auto v4 = node::iptables_rules(t, false);
  auto v6 = node::iptables_rules(t, true);
  // 2 addresses x 3 ports x 5 rules, plus 2 fallback rules for the link-local one.
  CHECK(v4.size() == 2 * 3 * 5 + 2);
  CHECK(v6.size() == 3 * 5);
  std::set<std::string> comments;
  for (const auto& r : v4) {
    CHECK(comments.insert(r.comment).second);  // unique: the comment identifies the rule
    CHECK(r.comment.starts_with("localdns: "));
    CHECK(r.spec.find("--comment \"" + r.comment + "\"") != std::string::npos);
    if (r.table == "raw" && r.chain == "PREROUTING") {
      // Conditional on our socket: no stranded traffic when localdns is gone.
      CHECK(r.spec.find("-m socket --nowildcard -j NOTRACK") != std::string::npos);
    }
    if (r.table == "nat") {
      CHECK(r.spec.find("-d 169.254.20.10/32 ") == 0);
      CHECK(r.spec.find("-j DNAT --to-destination 10.244.0.53:53") != std::string::npos);
    }
  }
  auto has = [&](const std::string& needle) {
    return std::any_of(v4.begin(), v4.end(), [&](const auto& r) {
      return r.spec == needle + " -m comment --comment \"" + r.comment + "\"";
    });
  };
  CHECK(has("-s 169.254.20.10/32 -p udp -m udp --sport 53 -j NOTRACK"));
  CHECK(has("-d 10.96.0.10/32 -p tcp -m tcp --dport 8080 -j NOTRACK"));
  CHECK(has("-d 169.254.20.10/32 -p tcp -m tcp --dport 53 -j ACCEPT"));
  CHECK(has("-s 10.96.0.10/32 -p udp -m udp --sport 53 -j ACCEPT"));
  for (const auto& r : v6) {
    CHECK(r.spec.find("fd00::10/128") != std::string::npos);
    CHECK(r.table != "nat");
  }
  // Chains come grouped so each can be checked as a prefix.
  for (std::size_t i = 1; i < v4.size(); ++i) {
    CHECK(std::tie(v4[i - 1].table, v4[i - 1].chain) <= std::tie(v4[i].table, v4[i].chain));
  }
}

TEST_CASE("nftables rules: one table, raw priority, socket-conditional", "[node]") {
  auto text = node::nftables_ruleset(config::rule_targets(k8s_config()));
  CHECK(text.starts_with("table inet localdns {"));
  CHECK(text.find("type filter hook prerouting priority raw;") != std::string::npos);
  CHECK(text.find("type filter hook output priority raw;") != std::string::npos);
  CHECK(text.find("ip daddr 169.254.20.10 udp dport 53 socket wildcard 0 notrack") !=
        std::string::npos);
  CHECK(text.find("ip6 saddr fd00::10 tcp sport 53 notrack") != std::string::npos);
  CHECK(text.find("ip daddr 169.254.20.10 tcp dport 53 dnat ip to 10.244.0.53:53") !=
        std::string::npos);
  CHECK(text.find("ip daddr 10.96.0.10 tcp dport 53 dnat") == std::string::npos);
  CHECK(text.find("dnat ip6") == std::string::npos);
}

TEST_CASE("without a fallback server there are no DNAT rules", "[node]") {
  auto c = k8s_config();
  c.node.fallback_auto = false;
  auto t = config::rule_targets(c);
  for (const auto& l : t.locals)
    CHECK_FALSE(l.fallback);
  for (const auto& r : node::iptables_rules(t, false))
    CHECK(r.table != "nat");
  CHECK(node::nftables_ruleset(t).find("dnat") == std::string::npos);
}

TEST_CASE("iptables-save parsing: tables, chains, comments in both notations", "[node][takeover]") {
  // As a node running node-local-dns and kube-proxy shows it (trimmed).
  const std::string save =
      R"(# Generated by iptables-nft-save v1.8.9 (nf_tables) on Tue Dec  1 10:00:00 2026
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 10.96.0.10/32 -p udp -m udp --dport 53 -m comment --comment "NodeLocal DNS Cache: skip conntrack" -j NOTRACK
-A PREROUTING -p udp -m udp --dport 999 -j NOTRACK
-A OUTPUT -s 169.254.20.10/32 -p tcp -m tcp --sport 8080 -m comment --comment "NodeLocal DNS Cache: skip conntrack" -j NOTRACK
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment "NodeLocal DNS Cache: allow DNS traffic" -j ACCEPT
-A INPUT -m comment --comment kubernetes-firewall -j KUBE-FIREWALL
-A INPUT -m comment --comment "say \"hi\"" -j ACCEPT
COMMIT
*mangle
:KUBE-IPTABLES-HINT - [0:0]
COMMIT
)";
  auto t = node::parse_iptables_save(save);
  REQUIRE(t.size() == 3);
  CHECK(t["mangle"].empty());
  REQUIRE(t["raw"].size() == 3);
  CHECK(t["raw"][0].chain == "PREROUTING");
  CHECK(t["raw"][0].comment == "NodeLocal DNS Cache: skip conntrack");
  CHECK(t["raw"][1].comment.empty());
  CHECK(t["raw"][2].chain == "OUTPUT");
  REQUIRE(t["filter"].size() == 3);
  CHECK(t["filter"][0].comment == "NodeLocal DNS Cache: allow DNS traffic");
  CHECK(t["filter"][1].comment == "kubernetes-firewall");
  CHECK(t["filter"][2].comment == "say \"hi\"");
  CHECK(t["filter"][0].comment.starts_with(node::kNodeLocalDnsCommentPrefix));
  // nft's notation.
  CHECK(node::rule_comment("\t\tip daddr 169.254.20.10 udp dport 53 notrack comment \"localdns: "
                           "notrack udp\"") == "localdns: notrack udp");
  CHECK(node::rule_comment("-A INPUT -j ACCEPT").empty());

  using boost::asio::ip::make_address;
  CHECK(node::rule_addresses(t["raw"][0].line) ==
        std::vector<boost::asio::ip::address>{make_address("10.96.0.10")});
  CHECK(node::rule_addresses("-A OUTPUT -s fd00::10/128 -d 10.0.0.1 -p tcp -j NOTRACK") ==
        std::vector<boost::asio::ip::address>{make_address("fd00::10"), make_address("10.0.0.1")});
  CHECK(node::rule_addresses("-A INPUT -j ACCEPT").empty());
}

TEST_CASE("the takeover's one log line", "[node][takeover]") {
  node::Takeover t;
  CHECK_FALSE(t.any());
  t.interface = true;
  CHECK(t.summary("nodelocaldns") == "took over node-local-dns's interface nodelocaldns");
  t.rules = 24;
  t.details = {"iptables-nft: 24 replaced"};
  CHECK(t.summary("nodelocaldns") ==
        "took over node-local-dns's interface nodelocaldns and 24 rules (iptables-nft: 24 "
        "replaced)");
  t.interface = false;
  t.rules = 1;
  t.details.clear();
  CHECK(t.summary("nodelocaldns") == "took over node-local-dns's 1 rule");
}
