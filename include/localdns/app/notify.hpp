// Readiness and shutdown notifications to a service manager (sd_notify(3),
// systemd's Type=notify), through libsystemd, which is loaded (dlopen) only
// when NOTIFY_SOCKET is set. Without NOTIFY_SOCKET in the environment every
// call does nothing and libsystemd is never mapped.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <localdns/config/config.hpp>

namespace localdns::app {

// The STATUS= text sent with READY=1: what localdns serves and where it forwards.
std::string ready_status(const config::Config& c, const std::string& node_backend);

// READY=1 and STATUS=: call once every listener (DNS, HTTP, control socket) is
// bound, node setup is in place and the workers run.
void notify_ready(const config::Config& c, const std::string& node_backend);

// STOPPING=1: call when shutdown starts, before the grace for answers in flight.
void notify_stopping();

// True when every address in `listen` answers the local health name
// (health.localdns.invalid, answered by localdns itself) over UDP within `timeout`.
bool listeners_answer(const std::vector<config::Endpoint>& listen,
                      std::chrono::milliseconds timeout);

// systemd's watchdog (WatchdogSec=, WATCHDOG_USEC): four times per interval a
// thread checks listeners_answer() (up to three tries) and sends WATCHDOG=1
// only when they do, so a localdns that stops answering is restarted.
// `listen` gives the listen addresses each time (a reload may change them).
class Watchdog {
 public:
  using Listen = std::function<std::vector<config::Endpoint>()>;
  Watchdog(Listen listen, std::chrono::microseconds interval);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void run();
  Listen listen_;
  std::chrono::microseconds period_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// A running Watchdog when the service manager asked for one, else nullptr.
std::unique_ptr<Watchdog> start_watchdog(Watchdog::Listen listen);

}  // namespace localdns::app
