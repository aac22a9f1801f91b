// The log line formats: JSON lines (log_format json) and text messages.
#include <catch2/catch.hpp>

#include <localdns/app/logging.hpp>

using namespace localdns;

TEST_CASE("JSON log lines escape what they carry", "[logging]") {
  CHECK(app::json_log_line("t", "info", "plain") ==
        "{\"time\":\"t\",\"level\":\"info\",\"msg\":\"plain\"}\n");
  CHECK(
      app::json_log_line("t", "warn", "a \"quoted\" \\ path\nnext\x01") ==
      "{\"time\":\"t\",\"level\":\"warn\",\"msg\":\"a \\\"quoted\\\" \\\\ path\\nnext\\u0001\"}\n");
}

TEST_CASE("JSON log lines stay valid UTF-8 whatever the message holds", "[logging]") {
  // Valid UTF-8 passes; each byte of an invalid sequence becomes U+FFFD.
  CHECK(app::json_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(app::json_escape("a\xff"
                         "b") == "a\\ufffdb");
  CHECK(app::json_escape("\xc3") == "\\ufffd");                                   // cut short
  CHECK(app::json_escape("\xc0\x80") == "\\ufffd\\ufffd");                        // overlong NUL
  CHECK(app::json_escape("\xed\xa0\x80") == "\\ufffd\\ufffd\\ufffd");             // a surrogate
  CHECK(app::json_escape("\xf4\x90\x80\x80") == "\\ufffd\\ufffd\\ufffd\\ufffd");  // > U+10FFFF
  CHECK(app::json_escape("\x80z") == "\\ufffdz");  // a lone continuation
  CHECK(app::json_escape("esc\x1b[2J del\x7f") == "esc\\u001b[2J del\\u007f");
  CHECK(app::json_log_line("t", "info", "x\xfe\ny") ==
        "{\"time\":\"t\",\"level\":\"info\",\"msg\":\"x\\ufffd\\ny\"}\n");
}

TEST_CASE("text log messages cannot end a line or start another", "[logging]") {
  CHECK(app::escape_log_text("plain message, 10 items") == "plain message, 10 items");
  CHECK(app::escape_log_text("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(app::escape_log_text("one\n[2026-01-01 00:00:00.000] [info] forged") ==
        "one\\010[2026-01-01 00:00:00.000] [info] forged");
  CHECK(app::escape_log_text("a\rb\tc\x1b[31md\x7f\xff") == "a\\013b\\009c\\027[31md\\127\\255");
  CHECK(app::escape_log_text("\xe2\x82") == "\\226\\130");  // an unfinished sequence
}
