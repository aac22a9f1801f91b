// Private to the config loader: messages the YAML reader and the cross-field
// checks (loader_validate.cpp) share. Pure functions, any thread.
#pragma once

#include <cstddef>
#include <string>

#include <localdns/config/config.hpp>

namespace localdns::config {

inline std::string too_many_servers(std::size_t n) {
  return std::to_string(n) + " servers; a group takes at most " +
         std::to_string(kMaxServersPerGroup);
}

}  // namespace localdns::config
