#include <cap-ng.h>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <linux/capability.h>
#include <sstream>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <localdns/app/privileges.hpp>
#include <localdns/node/node_setup.hpp>

namespace localdns::app {

namespace {

constexpr CapMask bit(unsigned cap) {
  return CapMask{1} << cap;
}

std::string read_text(const char* path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// iptables-legacy holds tables in this network namespace (its x_tables
// modules list them here); an unreadable file counts as none.
bool iptables_legacy_tables() {
  for (const char* path : {"/proc/self/net/ip_tables_names", "/proc/self/net/ip6_tables_names"})
    if (read_text(path).find_first_not_of(" \n") != std::string::npos) return true;
  return false;
}

std::size_t thread_count() {
  std::error_code ec;
  std::size_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/task", ec), end; !ec && it != end;
       it.increment(ec))
    ++n;
  return n;
}

std::optional<CapabilitySets> current_sets() {
  return parse_capability_sets(read_text("/proc/self/status"));
}

// A program that uid 0 executes gets the bounding set as its permitted set;
// any other uid only what is ambient.
bool runs_as_root() {
  return ::getuid() == 0 || ::geteuid() == 0;
}

// Applies `keep` with libcap-ng: bounding set first (it needs CAP_SETPCAP,
// still effective then), then the effective, permitted and inheritable sets,
// then the ambient set (a capability can be ambient only while permitted and
// inheritable). Each step that fails leaves the rest to the later ones.
void apply(CapMask keep, bool pass_on, bool can_shrink_bounding) {
  capng_clear(CAPNG_SELECT_ALL);
  for (unsigned cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if ((keep & bit(cap)) == 0) continue;
    capng_update(CAPNG_ADD,
                 static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET),
                 cap);
    if (pass_on)
      capng_update(CAPNG_ADD, static_cast<capng_type_t>(CAPNG_INHERITABLE | CAPNG_AMBIENT), cap);
  }
  if (can_shrink_bounding) {
    if (int rc = capng_apply(CAPNG_SELECT_BOUNDS); rc != 0)
      spdlog::debug("capabilities: bounding set: capng_apply returned {}", rc);
  }
  if (int rc = capng_apply(CAPNG_SELECT_CAPS); rc != 0)
    spdlog::debug("capabilities: capset: capng_apply returned {}", rc);
  if (int rc = capng_apply(CAPNG_SELECT_AMBIENT); rc != 0)
    spdlog::debug("capabilities: ambient set: capng_apply returned {}", rc);
}

// The one line saying what remains.
void report(CapMask wanted, CapMask keep, const CapabilitySets& after, std::size_t threads) {
  std::string line = "capabilities: kept " + capability_names(after.permitted);
  if (after.effective != after.permitted)
    line += " (effective: " + capability_names(after.effective) + ")";
  if (after.bounding != after.permitted)
    line += "; the bounding set still holds " + capability_names(after.bounding) +
            " (no CAP_SETPCAP to drop them: programs localdns runs as root may use them)";
  if ((wanted & ~keep) != 0) line += "; needed but never held: " + capability_names(wanted & ~keep);
  if (after.ambient != 0)
    line += "; ambient, for the programs it runs: " + capability_names(after.ambient);
  if (threads > 1)
    line += "; " + std::to_string(threads) +
            " threads were running: only this one's capabilities were dropped";
  bool clean =
      after.permitted == keep && after.effective == keep && after.bounding == keep && threads <= 1;
  spdlog::log(clean ? spdlog::level::info : spdlog::level::warn, "{}", line);
}

}  // namespace

CapMask needed_capabilities(const PrivilegeNeeds& needs) {
  CapMask caps = 0;
  if (needs.node_setup) caps |= bit(CAP_NET_ADMIN) | bit(CAP_NET_BIND_SERVICE);
  if (needs.node_setup && needs.iptables_legacy) caps |= bit(CAP_NET_RAW);
  if (needs.low_port) caps |= bit(CAP_NET_BIND_SERVICE);
  return caps;
}

bool has_low_port(const config::Config& c) {
  auto low = [](std::uint16_t port) { return port != 0 && port < 1024; };
  for (const auto& e : c.listen)
    if (low(e.port)) return true;
  if (c.node.enabled() && low(c.node.port)) return true;
  if (c.metrics.enabled && low(config::resolve(c.metrics, c, config::kDefaultMetricsPort).port))
    return true;
  return c.health.enabled && low(config::resolve(c.health, c, config::kDefaultHealthPort).port);
}

PrivilegeNeeds privilege_needs(const config::Config& c, const node::NodeSetup* node) {
  PrivilegeNeeds needs;
  needs.low_port = has_low_port(c);
  if (node == nullptr) return needs;
  needs.node_setup = true;
  const auto& backend = node->backend_name();
  // With rules of its own elsewhere, the sync loop still reads iptables-legacy
  // for node-local-dns's rules when that holds any tables.
  needs.iptables_legacy =
      backend == "iptables-legacy" || (backend != "none" && iptables_legacy_tables());
  return needs;
}

std::optional<CapabilitySets> parse_capability_sets(std::string_view status) {
  CapabilitySets sets;
  const std::pair<std::string_view, CapMask*> fields[] = {{"CapInh:", &sets.inheritable},
                                                          {"CapPrm:", &sets.permitted},
                                                          {"CapEff:", &sets.effective},
                                                          {"CapBnd:", &sets.bounding},
                                                          {"CapAmb:", &sets.ambient}};
  for (const auto& [name, out] : fields) {
    auto at = status.find(name);
    if (at == std::string_view::npos || (at > 0 && status[at - 1] != '\n')) return std::nullopt;
    auto value = status.substr(at + name.size());
    value.remove_prefix(std::min(value.find_first_not_of(" \t"), value.size()));
    auto end = value.find('\n');
    value = value.substr(0, end);
    if (value.empty()) return std::nullopt;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), *out, 16);
    if (ec != std::errc() || ptr != value.data() + value.size()) return std::nullopt;
  }
  return sets;
}

std::string capability_names(CapMask caps) {
  std::string names;
  for (unsigned cap = 0; cap < 64; ++cap) {
    if ((caps & bit(cap)) == 0) continue;
    const char* name = capng_capability_to_name(cap);
    names +=
        (names.empty() ? "" : ", ") + (name ? std::string(name) : "cap_" + std::to_string(cap));
  }
  return names.empty() ? "none" : names;
}

void drop_capabilities(const config::Config& c, const node::NodeSetup* node) {
  const CapMask wanted = needed_capabilities(privilege_needs(c, node));
  auto before = current_sets();
  if (!before || capng_get_caps_process() != 0) {
    spdlog::warn("capabilities: cannot read this process's capabilities; none dropped");
    return;
  }
  const bool setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) != 0;
  // Nothing can be gained, only kept.
  const CapMask keep = wanted & before->permitted;
  const std::size_t threads = thread_count();
  apply(keep, !runs_as_root() && keep != 0, setpcap);
  auto after = current_sets();
  if (!after) {
    spdlog::warn("capabilities: cannot read them back after dropping");
    return;
  }
  report(wanted, keep, *after, threads);
}

}  // namespace localdns::app
