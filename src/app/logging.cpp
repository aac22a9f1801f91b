#include <algorithm>
#include <ctime>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <localdns/app/logging.hpp>

namespace localdns::app {

namespace {

void append_decimal_escape(std::string& out, unsigned char c) {
  out += '\\';
  out += static_cast<char>('0' + c / 100);
  out += static_cast<char>('0' + c / 10 % 10);
  out += static_cast<char>('0' + c % 10);
}

bool needs_text_escape(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c >= 0x7f;
  });
}

// The message part of a text line, escaped (the rest of the pattern is ours).
class EscapedPayload final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!needs_text_escape(payload)) {
      dest.append(payload.data(), payload.data() + payload.size());
      return;
    }
    auto text = escape_log_text(payload);
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedPayload>();
  }
};

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto t = std::chrono::system_clock::to_time_t(msg.time);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() %
        1000;
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char ts[80];
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    auto level = spdlog::level::to_string_view(msg.level);
    auto line = json_log_line(ts, std::string(level.data(), level.size()),
                              std::string(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::string escape_log_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (auto n = util::utf8_length(s, i)) {
        out.append(s.substr(i, n));
        i += n;
        continue;
      }
      append_decimal_escape(out, c);
    } else if (c < 0x20 || c == 0x7f) {
      append_decimal_escape(out, c);
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

std::string json_log_line(const std::string& time, const std::string& level,
                          const std::string& message) {
  return "{\"time\":\"" + json_escape(time) + "\",\"level\":\"" + json_escape(level) +
         "\",\"msg\":\"" + json_escape(message) + "\"}\n";
}

void setup_logging(const std::string& level, const std::string& format) {
  spdlog::set_level(spdlog::level::from_str(level));
  if (format == "json") {
    spdlog::set_formatter(std::make_unique<JsonFormatter>());
  } else {
    // spdlog's default layout, with the message escaped.
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<EscapedPayload>('*').set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %*");
    spdlog::set_formatter(std::move(f));
  }
  // Lines reach a pipe or file (kubelet's log capture) as they happen.
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace localdns::app
