// What the node module is told: the local addresses and where they live, the
// rules backend, how often to check, and the rules' resolved inputs. Plain
// values, built by config/ (config/module_settings.hpp) and handed out by
// app/; immutable once built, read by any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include <localdns/util/endpoint.hpp>

namespace localdns::node {

enum class RulesBackendKind { Auto, IptablesLegacy, IptablesNft, Nftables };
std::string_view to_string(RulesBackendKind b);  // "auto", "iptables-legacy", ...

// The default fallback_for: link-local addresses (169.254.0.0/16, fe80::/10).
bool is_link_local(const boost::asio::ip::address& a);

// The rules' inputs: what the rules (and the conntrack flush) cover.
struct RuleTargets {
  struct Local {
    boost::asio::ip::address address;
    std::uint16_t port = 53;
    // Where this address's DNS traffic goes while localdns is down (a DNAT);
    // none for an address that something else serves then (a Service IP,
    // which kube-proxy translates) or when no usable server is known.
    std::optional<util::Endpoint> fallback;

    friend bool operator==(const Local&, const Local&) = default;
  };
  std::vector<Local> locals;  // one per listening address and port
  std::uint16_t health_port = 0;

  friend bool operator==(const RuleTargets&, const RuleTargets&) = default;
};

// What the user wrote for node setup (node.* in the configuration, or the
// flags); config::NodeConfig adds what only the file format has.
struct NodeOptions {
  std::vector<boost::asio::ip::address> local_addresses;
  std::uint16_t port = 53;
  bool setup_interface = true;
  std::string interface_name = "nodelocaldns";
  std::string interface_kind = "dummy";  // tests use bridge: some kernels lack dummy
  bool setup_rules = true;
  RulesBackendKind rules_backend = RulesBackendKind::Auto;
  std::uint16_t health_port = 0;  // explicit; 0: see NodeSettings::targets.health_port
  util::Duration sync_interval{std::chrono::seconds(60)};
  bool skip_teardown = false;  // leave interface and rules in place on exit

  bool enabled() const { return !local_addresses.empty(); }

  friend bool operator==(const NodeOptions&, const NodeOptions&) = default;
};

struct NodeSettings : NodeOptions {
  // Resolved from the whole configuration, not written by the user: the
  // listen entries on local addresses, each with the fallback DNAT target it
  // gets (only addresses in the resolved fallback_for get one: the listed
  // ones, else the link-local ones), and the health port to keep out of
  // conntrack (health_port, else the health endpoint's when it is on a local
  // address).
  RuleTargets targets;
  // Why an address that wanted a fallback got none, one line each.
  std::vector<std::string> target_notes;

  friend bool operator==(const NodeSettings&, const NodeSettings&) = default;
};

}  // namespace localdns::node
