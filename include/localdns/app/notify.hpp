// Readiness and shutdown notifications to a service manager (sd_notify(3),
// systemd's Type=notify), through libsystemd. Without NOTIFY_SOCKET in the
// environment every call does nothing.
#pragma once

#include <string>

#include <localdns/config/config.hpp>

namespace localdns::app {

// The STATUS= text sent with READY=1: what localdns serves and where it forwards.
std::string ready_status(const config::Config& c, const std::string& node_backend);

// READY=1 and STATUS=: call once every listener (DNS, HTTP, control socket) is
// bound, node setup is in place and the workers run.
void notify_ready(const config::Config& c, const std::string& node_backend);

// STOPPING=1: call when shutdown starts, before the grace for answers in flight.
void notify_stopping();

}  // namespace localdns::app
