// A Config as the YAML the loader reads: load_config_text(emit_yaml(c)) == c
// for every Config the loader or the flags can build. Every key is written,
// defaults included, so the output is the whole effective configuration.
#pragma once

#include <string>

#include <localdns/config/config.hpp>

namespace localdns::config {

std::string emit_yaml(const Config& c);

}  // namespace localdns::config
