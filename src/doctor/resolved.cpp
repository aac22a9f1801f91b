#include <algorithm>
#include <arpa/inet.h>
#include <charconv>
#include <climits>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include <localdns/doctor/resolved.hpp>

namespace localdns::doctor {

namespace {

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// "169.254.20.10:53" -> "169.254.20.10"; "[fd00::1]:53" -> "fd00::1".
std::string host_of(const std::string& endpoint) {
  if (endpoint.starts_with("[")) return endpoint.substr(1, endpoint.find(']') - 1);
  auto colon = endpoint.find(':');
  if (colon != std::string::npos && endpoint.find(':', colon + 1) == std::string::npos)
    return endpoint.substr(0, colon);
  return endpoint;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v)
    out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

bool udp_bound(std::string_view text, const std::string& ipv4, std::uint16_t port) {
  in_addr want{};
  if (::inet_pton(AF_INET, ipv4.c_str(), &want) != 1) return false;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    // "  1107: 3500007F:0035 00000000:0000 07 ...": the address as the kernel
    // prints the in-memory 32-bit value, the port in host order.
    std::istringstream words(line);
    std::string slot, local;
    if (!(words >> slot >> local) || slot.back() != ':') continue;
    auto colon = local.find(':');
    if (colon != 8 || local.size() != 13) continue;
    std::uint32_t addr = 0;
    unsigned p = 0;
    auto a = std::from_chars(local.data(), local.data() + 8, addr, 16);
    auto b = std::from_chars(local.data() + 9, local.data() + 13, p, 16);
    if (a.ec != std::errc{} || b.ec != std::errc{}) continue;
    if (addr == want.s_addr && p == port) return true;
  }
  return false;
}

ResolvedView probe_resolved() {
  ResolvedView v;
  if (auto udp = read_text("/proc/net/udp")) v.stub_listening = udp_bound(*udp, kResolvedStub, 53);
  v.resolv_conf = read_text("/etc/resolv.conf");
  char target[PATH_MAX];
  auto n = ::readlink("/etc/resolv.conf", target, sizeof target - 1);
  if (n > 0) v.resolv_conf_link.assign(target, static_cast<std::size_t>(n));
  v.resolved_servers = read_text(kResolvedUpstreamFile);
  return v;
}

void add_resolved(Check& c, const ResolvedView& v, const std::vector<std::string>& local_addresses,
                  const std::vector<std::string>& upstreams) {
  const auto host_servers =
      v.resolv_conf ? parse_resolv_conf(*v.resolv_conf).nameservers : std::vector<std::string>{};
  const bool uses_stub = contains(host_servers, kResolvedStub);
  c.facts["resolved_stub"] = v.stub_listening;
  c.facts["resolved_stub_used"] = uses_stub;
  if (!v.stub_listening && !uses_stub) {
    c.facts["resolved_to_localdns"] = false;
    return;
  }
  const auto resolved_servers = v.resolved_servers
                                    ? parse_resolv_conf(*v.resolved_servers).nameservers
                                    : std::vector<std::string>{};
  std::vector<std::string> to_localdns;
  for (const auto& s : resolved_servers)
    if (contains(local_addresses, s)) to_localdns.push_back(s);
  c.facts["resolved_to_localdns"] = !to_localdns.empty();
  const std::string link =
      v.resolv_conf_link.empty() ? "" : " (a link to " + v.resolv_conf_link + ")";
  if (v.stub_listening) {
    c.evidence.push_back("systemd-resolved's stub listener is on " + std::string(kResolvedStub) +
                         ":53 (/proc/net/udp)");
  }
  if (!resolved_servers.empty()) {
    c.evidence.push_back("systemd-resolved forwards to " + join(resolved_servers) + " (" +
                         kResolvedUpstreamFile + ")");
  }
  if (uses_stub && !v.stub_listening) {
    c.evidence.push_back("/etc/resolv.conf" + link + " names " + kResolvedStub +
                         ", but nothing listens there: host lookups fail");
    c.raise(Status::warn);
    c.remedies.push_back(
        local_addresses.empty()
            ? "start systemd-resolved, or list real nameservers in /etc/resolv.conf"
            : "make /etc/resolv.conf a file with `nameserver " + local_addresses.front() + "`");
    return;
  }
  if (local_addresses.empty()) return;  // no localdns here: nothing more to say
  const std::string& mine = local_addresses.front();
  if (uses_stub && to_localdns.empty()) {
    c.evidence.push_back(
        "/etc/resolv.conf" + link + " names " + kResolvedStub +
        ": host lookups go through systemd-resolved to " +
        (resolved_servers.empty() ? std::string("its servers") : join(resolved_servers)) +
        ", not through localdns");
    c.raise(Status::warn);
    c.remedies.push_back(
        "either turn the stub off: DNSStubListener=no in /etc/systemd/resolved.conf, restart "
        "systemd-resolved, and make /etc/resolv.conf a file (not a link) with `nameserver " +
        mine + "`; localdns may then read " + kResolvedUpstreamFile + " for its upstreams");
    c.remedies.push_back("or keep the stub and have it forward to localdns: DNS=" + mine +
                         " and Domains=~. in /etc/systemd/resolved.conf; localdns's upstreams "
                         "must then be the real servers, not " +
                         kResolvedUpstreamFile + " (it would list " + mine + ")");
    return;
  }
  bool loop = false;
  for (const auto& u : upstreams)
    if (host_of(u) == kResolvedStub || host_of(u) == "127.0.0.54") loop = true;
  if (!to_localdns.empty() && loop) {
    c.evidence.push_back("a loop: systemd-resolved forwards to localdns (" + join(to_localdns) +
                         "), and localdns forwards to systemd-resolved's stub");
    c.raise(Status::fail);
    c.remedies.push_back(
        "give localdns the real upstream servers (/etc/localdns/upstream.conf), not " +
        std::string(kResolvedStub));
    return;
  }
  if (uses_stub) {
    c.evidence.push_back("host lookups: /etc/resolv.conf -> systemd-resolved's stub -> localdns (" +
                         join(to_localdns) + ")");
  } else if (v.stub_listening) {
    c.evidence.push_back(
        "programs asking " + std::string(kResolvedStub) +
        " directly (and nss-resolve in nsswitch.conf) bypass localdns; DNSStubListener=no in "
        "/etc/systemd/resolved.conf if nothing needs the stub");
  }
}

}  // namespace localdns::doctor
