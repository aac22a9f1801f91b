// Text for logs and JSON documents: UTF-8 validation and JSON string
// escaping. Pure functions, any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace localdns::util {

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0.
std::size_t utf8_length(std::string_view s, std::size_t i);

// The inside of a JSON string holding `s`: quotes, backslashes, control
// characters and DEL escaped, each byte of invalid UTF-8 replaced by U+FFFD.
std::string json_escape(std::string_view s);

}  // namespace localdns::util
