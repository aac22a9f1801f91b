#include <algorithm>
#include <cstring>
#include <string>
#include <systemd/sd-daemon.h>

#include <spdlog/spdlog.h>

#include <localdns/app/notify.hpp>

namespace localdns::app {

namespace {

// sd_notify returns > 0 when sent, 0 without NOTIFY_SOCKET, < 0 (-errno) on error.
void send(const std::string& message, const char* what) {
  int r = ::sd_notify(0, message.c_str());
  if (r < 0) {
    spdlog::warn("cannot notify the service manager ({}) over NOTIFY_SOCKET: {}", what,
                 std::strerror(-r));
  } else if (r > 0) {
    spdlog::debug("notified the service manager: {}", what);
  }
}

}  // namespace

std::string ready_status(const config::Config& c, const std::string& node_backend) {
  std::string s = "serving on ";
  for (std::size_t i = 0; i < c.listen.size(); ++i)
    s += (i == 0 ? "" : ", ") + c.listen[i].to_string();
  for (const auto& g : c.forward) {
    if (std::find(g.zones.begin(), g.zones.end(), ".") == g.zones.end()) continue;
    s += "; forwarding . to ";
    for (std::size_t i = 0; i < g.servers.size(); ++i)
      s += (i == 0 ? "" : ", ") + g.servers[i].to_string();
  }
  if (!node_backend.empty()) s += "; node setup with " + node_backend + " rules";
  // One line: STATUS= ends at the newline.
  for (auto& ch : s)
    if (ch == '\n') ch = ' ';
  return s;
}

void notify_ready(const config::Config& c, const std::string& node_backend) {
  send("READY=1\nSTATUS=" + ready_status(c, node_backend), "READY=1");
}

void notify_stopping() {
  send("STOPPING=1\nSTATUS=shutting down", "STOPPING=1");
}

}  // namespace localdns::app
