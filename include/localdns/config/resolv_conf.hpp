// Reads the nameserver lines of a resolv.conf(5) file.
#pragma once

#include <expected>
#include <string>
#include <vector>

#include <localdns/config/config.hpp>
#include <localdns/config/loader.hpp>

namespace localdns::config {

// Nameservers in file order (IPv6 zone ids dropped is an error), or a message.
std::expected<std::vector<Endpoint>, std::string> read_resolv_conf(const std::string& path);
std::vector<Endpoint> parse_resolv_conf(std::string_view text);

// The search list: the words of the last `search` or `domain` line, as
// resolv.conf(5) reads them, in presentation form (lower case, trailing
// dot); names that are not valid domain names, and the root, left out.
std::vector<std::string> parse_resolv_conf_search(std::string_view text);
// Reads c.resolv_conf's search list into c.resolv_conf_search when
// search_path is on and takes the node's domains from there, leaving out
// those under search_path.cluster_domain (a pod's own list).
Errors fill_resolv_conf_search(Config& c);

}  // namespace localdns::config
