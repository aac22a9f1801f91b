// Reads the nameserver lines of a resolv.conf(5) file.
#pragma once

#include <expected>
#include <string>
#include <vector>

#include <localdns/config/config.hpp>

namespace localdns::config {

// Nameservers in file order (IPv6 zone ids dropped is an error), or a message.
std::expected<std::vector<Endpoint>, std::string> read_resolv_conf(const std::string& path);
std::vector<Endpoint> parse_resolv_conf(std::string_view text);

}  // namespace localdns::config
