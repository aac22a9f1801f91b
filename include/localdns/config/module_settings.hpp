// Where the configuration becomes the modules' settings: the one place that
// maps config::Config to server::ServerSettings and node::NodeSettings
// (config/ builds the settings; app/ hands them to the modules). Values the
// user did not write but that follow from the whole configuration (the node
// rules' fallback targets, the health port on a local address) are resolved
// here and kept in the settings' resolved part. Pure functions; any thread.
#pragma once

#include <localdns/config/config.hpp>
#include <localdns/node/settings.hpp>
#include <localdns/server/settings.hpp>

namespace localdns::config {

// Listen addresses, TCP client limits, the client limits (clients.*, with
// node.local_addresses for the rate limit's exemption), and each group's
// zones for routing, and the search-path prefetch with its host search
// domains resolved.
server::ServerSettings server_settings(const Config& c);

// c.node as the node module takes it, with the rules' targets resolved
// (rule_targets()).
node::NodeSettings node_settings(const Config& c);

// The rules' inputs from a config: listen entries on local addresses, the
// health port, and each address's fallback (assign_fallbacks()); `notes`
// receives the fallback policy's warnings.
node::RuleTargets rule_targets(const Config& c, std::vector<std::string>* notes = nullptr);

// The fallback policy. For each local address that is in `fallback_for`
// (default: the link-local ones), the first server of its family among the
// candidates (node.rules.fallback, or with `auto` the servers of the "."
// group) that can work: not a local address, not loopback, not inside
// node.service_cidr. Returns one line per address that wanted a fallback and
// got none, saying why (empty when every such address has one).
std::vector<std::string> assign_fallbacks(const Config& c, node::RuleTargets& t);

}  // namespace localdns::config
