// Node setup on reload, through the real binary in a network namespace: a
// reload that adds a local address puts it on the interface with its NOTRACK
// rules before its listeners bind; one that removes it takes both away once
// they are closed; one that fails halfway leaves the node as it was; the
// teardown at exit removes everything.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "daemon.hpp"
#include "dns_client.hpp"
#include "netns.hpp"
#include "node_local_dns.hpp"
#include "run_binary.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using namespace std::chrono_literals;

namespace {

const std::string kAdded = "169.254.20.11";

std::string yaml(const std::string& dir, const std::vector<std::string>& locals,
                 const std::vector<std::string>& extra_listen = {}) {
  std::string list, listen;
  for (const auto& a : locals)
    list += (list.empty() ? "" : ", ") + a;
  for (const auto& l : extra_listen)
    listen += (listen.empty() ? "\"" : ", \"") + l + "\"";
  return "node:\n  local_addresses: [" + list +
         "]\n"
         "  interface: {name: nodelocaldns, kind: bridge}\n"
         "  rules: {backend: iptables-nft, fallback: off}\n"
         "  sync_interval: 1s\n"
         "threads: 2\n"
         "metrics: off\n"
         "health: off\n"
         "control_socket: " +
         dir + "/ctl.sock\nlisten: [" + listen +
         "]\n"
         "forward:\n"
         "  - zones: [\".\"]\n"
         "    servers: [\"" +
         kCoreDns + ":53\"]\n";
}

std::string addresses() {
  return test::sh("ip -4 addr show dev nodelocaldns 2>&1; true");
}
int our_rules() {
  return test::count_lines_with(test::sh("iptables-nft-save"), "\"localdns:");
}
int rules_for(const std::string& ip) {
  return test::count_lines_with(test::sh("iptables-nft-save"), ip + "/32");
}
bool answers(const std::string& ip) {
  return udp_query(Endpoint{ip, 53}, make_query("health.localdns.invalid", "A"), 500ms).has_value();
}

}  // namespace

TEST_CASE("node reload: added local addresses get the interface and rules, removed ones lose them",
          "[node][reload]") {
  test::require_root_or_skip("node setup reload test");
  char tmpl[] = "/tmp/localdns-node-reload-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  const std::string conf = dir + "/localdns.yaml";
  auto write = [&](const std::string& text) {
    std::ofstream(conf + ".tmp") << text;
    std::filesystem::rename(conf + ".tmp", conf);
  };
  auto reload = [&] { return run("ctl --socket " + dir + "/ctl.sock reload"); };

  test::ScopedNetns ns;
  write(yaml(dir, {kLinkLocal}));
  {
    Daemon d({"--config", conf}, dir + "/log");
    REQUIRE(d.wait_ready(Endpoint{kLinkLocal, 53}, 10s));
    INFO(d.log());
    REQUIRE(addresses().find(kLinkLocal + "/32") != std::string::npos);
    const int one = our_rules();
    REQUIRE(one > 0);
    CHECK(rules_for(kAdded) == 0);
    CHECK_FALSE(answers(kAdded));

    // Added: on the interface and in the rules, then served.
    write(yaml(dir, {kLinkLocal, kAdded}));
    auto res = reload();
    INFO(res.output);
    REQUIRE(res.output == "reloaded: generation 1\n");
    CHECK(addresses().find(kAdded + "/32") != std::string::npos);
    CHECK(rules_for(kAdded) > 0);
    const int two = our_rules();
    CHECK(two == 2 * one);
    CHECK(answers(kAdded));
    CHECK(answers(kLinkLocal));
    CHECK(d.log_count("node setup: added " + kAdded + " to nodelocaldns (reload)") == 1);

    // A reload that adds another address and then fails (a listen address
    // not on this host) leaves the node as it was.
    write(yaml(dir, {kLinkLocal, kAdded, "169.254.20.12"}, {"192.0.2.1:53"}));
    res = reload();
    CHECK(res.status == 1);
    CHECK(res.output.find("cannot listen on udp 192.0.2.1:53") != std::string::npos);
    CHECK(addresses().find("169.254.20.12") == std::string::npos);
    CHECK(rules_for("169.254.20.12") == 0);
    CHECK(our_rules() == two);
    CHECK(answers(kAdded));

    // Removed: no longer served, then off the interface and out of the rules.
    write(yaml(dir, {kLinkLocal}));
    res = reload();
    REQUIRE(res.output == "reloaded: generation 2\n");
    CHECK(addresses().find(kAdded) == std::string::npos);
    CHECK(rules_for(kAdded) == 0);
    CHECK(our_rules() == one);
    CHECK_FALSE(answers(kAdded));
    CHECK(answers(kLinkLocal));
    CHECK(d.log_count("node setup: removed " + kAdded + " from nodelocaldns (reload)") == 1);
    // The periodic sync (every second) works to the new settings: over
    // more than two of its passes it puts nothing back.
    bool put_back = test::wait_until(
        within(2500ms),
        [&] { return addresses().find(kAdded) != std::string::npos || our_rules() != one; }, 100ms);
    CHECK_FALSE(put_back);
    CHECK(d.log().find("repaired") == std::string::npos);

    CHECK(d.terminate(10s));
  }
  // Teardown: nothing of ours left.
  CHECK(addresses().find("does not exist") != std::string::npos);
  CHECK(our_rules() == 0);
}
