// YAML configuration to a validated Config. Every problem is reported, each
// naming the file, the line and the key: "localdns.yaml:7: forward[0].timeout: ...".
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include <localdns/config/config.hpp>

namespace localdns::config {

using Errors = std::vector<std::string>;

// Parses YAML text on top of default_config(); keys not given keep their defaults,
// except `forward`, which replaces the default groups when present.
std::expected<Config, Errors> load_config_text(std::string_view yaml, std::string_view source);
std::expected<Config, Errors> load_config_file(const std::string& path);

// spdlog level names accepted by `log_level` and --log-level.
bool is_log_level(std::string_view name);

// Cross-field checks shared by the file loader and the flags.
Errors validate(const Config& c);

// Adds each node.local_addresses entry to `listen` on node.port, unless
// listen already has that address.
void add_local_addresses_to_listen(Config& c);

}  // namespace localdns::config
