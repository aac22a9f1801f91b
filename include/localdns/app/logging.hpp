// Log output: spdlog to stderr, as text or as one JSON object per line.
#pragma once

#include <string>
#include <string_view>

#include <localdns/util/text.hpp>

namespace localdns::app {

// `format`: "text" or "json". Lines at info and above are flushed at once.
// Neither form lets a message end its line or start another: text lines
// show control bytes, DEL and invalid UTF-8 as \DDD; JSON lines are valid
// JSON (invalid UTF-8 becomes U+FFFD).
void setup_logging(const std::string& level, const std::string& format);

// JSON string escaping lives in util/ (doctor's report uses it too).
using util::json_escape;

// `s` for a text log line: control characters, DEL and each byte of invalid
// UTF-8 as \DDD (decimal); everything else, valid UTF-8 included, as it is.
std::string escape_log_text(std::string_view s);

// The JSON line for one message (exposed for tests).
std::string json_log_line(const std::string& time, const std::string& level,
                          const std::string& message);

}  // namespace localdns::app
