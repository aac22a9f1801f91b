// Durations in config and flags: "1500ms", "1.5s", "2m", "1h", "0s".
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <localdns/config/config.hpp>

namespace localdns::config {

std::optional<Duration> parse_duration(std::string_view text);
std::string format_duration(Duration d);

// "ADDR", "ADDR:PORT", "[V6]:PORT" or "V6"; `default_port` when no port is given.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port);

}  // namespace localdns::config
