// Log output: spdlog to stderr, as text or as one JSON object per line.
#pragma once

#include <string>

namespace localdns::app {

// `format`: "text" or "json". Lines at info and above are flushed at once.
void setup_logging(const std::string& level, const std::string& format);

// The JSON line for one message (exposed for tests).
std::string json_log_line(const std::string& time, const std::string& level,
                          const std::string& message);

}  // namespace localdns::app
