// node-cache's and CoreDNS's flags in Go's flag syntax (package flag):
// "-name" or "--name"; "-name=value" or "-name value" for everything but
// booleans, which take only "-name" or "-name=BOOL" (strconv.ParseBool: 1, 0,
// t, f, T, F, true, false, TRUE, FALSE, True, False) and never the next
// argument. A name not in the table below is not a Go flag: parse_cli then
// reads it as one of localdns's own.
#include <algorithm>
#include <charconv>
#include <cmath>

#include <boost/asio/ip/address.hpp>

#include <localdns/config/cli.hpp>
#include <localdns/config/duration.hpp>

namespace localdns::config {
namespace {

enum class Kind { String, Bool, Duration, Port };

struct GoFlag {
  std::string_view name;
  Kind kind;
  bool node_cache;  // node-cache's own (counts towards NodeCacheOptions::used)
};

constexpr GoFlag kGoFlags[] = {
    {"localip", Kind::String, true},
    {"setupinterface", Kind::Bool, true},
    {"interfacename", Kind::String, true},
    {"setupiptables", Kind::Bool, true},
    {"setupebtables", Kind::Bool, true},
    {"syncinterval", Kind::Duration, true},
    {"initialdelay", Kind::Duration, true},
    {"health-port", Kind::Port, true},
    {"skipteardown", Kind::Bool, true},
    {"metrics-listen-address", Kind::String, true},
    {"prometheus-listen-address", Kind::String, true},
    {"basecorefile", Kind::String, true},
    {"corefile", Kind::String, true},
    {"kubednscm", Kind::String, true},
    {"upstreamsvc", Kind::String, true},
    {"reloadwithsignal", Kind::Bool, true},
    {"tls-cert-file", Kind::String, true},
    {"tls-private-key-file", Kind::String, true},
    {"tls-client-auth-type", Kind::String, true},
    {"tls-client-ca-file", Kind::String, true},
    {"tls-min-version", Kind::String, true},
    {"tls-enabled", Kind::Bool, true},
    {"conf", Kind::String, false},
    {"pidfile", Kind::String, false},
    {"dns.port", Kind::Port, false},
    {"p", Kind::Port, false},
    {"quiet", Kind::Bool, false},
    {"version", Kind::Bool, false},
    {"plugins", Kind::Bool, false},
    {"help", Kind::Bool, false},
};

std::optional<bool> go_bool(std::string_view v) {
  for (auto t : {"1", "t", "T", "true", "TRUE", "True"})
    if (v == t) return true;
  for (auto f : {"0", "f", "F", "false", "FALSE", "False"})
    if (v == f) return false;
  return std::nullopt;
}

// time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?unit)+, units ns us µs ms s m h;
// "0" alone. Fractions of a millisecond are rounded.
std::optional<Duration> go_duration(std::string_view s) {
  if (s == "0" || s == "+0" || s == "-0") return Duration(0);
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  double total_ms = 0;
  while (!s.empty()) {
    std::size_t n = 0;
    while (n < s.size() && ((s[n] >= '0' && s[n] <= '9') || s[n] == '.'))
      ++n;
    std::string_view number = s.substr(0, n);
    if (number.empty() || number == ".") return std::nullopt;
    std::string digits(number);
    if (digits.front() == '.') digits.insert(0, "0");
    if (digits.back() == '.') digits.push_back('0');
    double value = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc{} || p != digits.data() + digits.size()) return std::nullopt;
    s.remove_prefix(n);
    std::size_t u = 0;
    while (u < s.size() && !((s[u] >= '0' && s[u] <= '9') || s[u] == '.'))
      ++u;
    std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    double scale = 0;
    if (unit == "ns") {
      scale = 1e-6;
    } else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") {
      scale = 1e-3;
    } else if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1e3;
    } else if (unit == "m") {
      scale = 60e3;
    } else if (unit == "h") {
      scale = 3600e3;
    } else {
      return std::nullopt;  // a missing or unknown unit
    }
    total_ms += value * scale;
  }
  if (!std::isfinite(total_ms) || total_ms > 1e12) return std::nullopt;
  auto ms = static_cast<Duration::rep>(std::llround(total_ms));
  return Duration(negative ? -ms : ms);
}

// strconv.Atoi, then the port range.
std::optional<std::uint16_t> go_port(std::string_view v) {
  if (!v.empty() && v.front() == '+') v.remove_prefix(1);
  long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n < 1 || n > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(n);
}

std::expected<void, std::string> store(const GoFlag& f, std::string_view value, bool flag_value,
                                       CliOptions& o) {
  const std::string dash = "-" + std::string(f.name);
  auto& nc = o.node_cache;
  if (f.node_cache) nc.used = true;
  const std::string v(value);
  const auto& name = f.name;
  if (name == "localip") {
    // As node-cache: every comma-separated element must be an address. As Go:
    // a second -localip replaces the first (--local-ip entries stay).
    if (nc.localip_count > 0) {
      auto at = o.local_ips.begin() + static_cast<long>(nc.localip_at);
      o.local_ips.erase(at, at + static_cast<long>(nc.localip_count));
    } else {
      nc.localip_at = o.local_ips.size();
    }
    std::vector<std::string> ips;
    std::size_t start = 0;
    while (true) {
      auto comma = v.find(',', start);
      std::string item = v.substr(start, comma == std::string::npos ? comma : comma - start);
      boost::system::error_code ec;
      boost::asio::ip::make_address(item, ec);
      if (ec || item.find('%') != std::string::npos) {
        return std::unexpected(dash + " " + v + ": invalid localip specified - \"" + item + "\"");
      }
      ips.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    o.local_ips.insert(o.local_ips.begin() + static_cast<long>(nc.localip_at), ips.begin(),
                       ips.end());
    nc.localip_count = ips.size();
  } else if (name == "setupinterface") {
    o.setup_interface = flag_value;
  } else if (name == "setupiptables") {
    o.setup_rules = flag_value;
  } else if (name == "skipteardown") {
    o.skip_teardown = flag_value;
  } else if (name == "interfacename") {
    o.interface_name = v;
  } else if (name == "syncinterval" || name == "initialdelay") {
    // A bare number is seconds (node-cache multiplies the value by a second);
    // otherwise Go's duration syntax, taken as written.
    // node-cache's own form, Nns (N nanoseconds, times a second), is N seconds.
    std::optional<Duration> d;
    long secs = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
    if (!v.empty() && ec == std::errc{} && p == v.data() + v.size()) {
      d = std::chrono::seconds(secs);
    } else if (v.size() > 2 && v.ends_with("ns") && ec == std::errc{} &&
               p == v.data() + v.size() - 2) {
      d = std::chrono::seconds(secs);
      if (name == "syncinterval") {
        nc.warnings.push_back(dash + " " + v + ": node-cache reads this as " +
                              std::to_string(secs) + " seconds; localdns does too");
      }
    } else {
      d = go_duration(v);
    }
    if (!d) {
      return std::unexpected(dash + " " + v +
                             ": expected seconds (60) or a duration (60s, 1m30s, 500ms)");
    }
    if (name == "initialdelay") {
      nc.warnings.push_back(dash +
                            ": localdns sets up the node once its sockets are bound, with "
                            "no initial delay; ignored");
    } else if (*d < std::chrono::seconds(1) || *d > std::chrono::hours(1)) {
      return std::unexpected(dash + " " + v + ": must be between 1s and 1h");
    } else {
      o.sync_interval = format_duration(*d);
    }
  } else if (name == "health-port") {
    auto port = go_port(v);
    if (!port) return std::unexpected(dash + " " + v + ": invalid healthcheck port specified");
    nc.health_port = *port;
  } else if (name == "dns.port" || name == "p") {
    auto port = go_port(v);
    if (!port) return std::unexpected(dash + " " + v + ": invalid port specified");
    nc.dns_port = *port;
  } else if (name == "metrics-listen-address") {
    nc.warnings.push_back(dash + " " + v +
                          ": localdns counts node setup errors on its one metrics endpoint "
                          "(`metrics`, --metrics, or the Corefile's prometheus); " +
                          v + " is not opened");
  } else if (name == "setupebtables") {
    if (flag_value) {
      nc.warnings.push_back(dash +
                            ": localdns sets up no ebtables rules (bridged pod networks "
                            "with the local address on the bridge); ignored");
    }
  } else if (name == "reloadwithsignal") {
    if (flag_value) {
      nc.warnings.push_back(dash +
                            ": localdns reloads on SIGHUP and when its inputs change, without "
                            "this flag; ignored");
    }
  } else if (name == "tls-enabled") {
    // The -tls-* flags configure node-cache's -metrics-listen-address
    // endpoint, which localdns does not open; they matter only with this one.
    std::erase_if(nc.warnings, [](const std::string& w) { return w.starts_with("-tls-enabled"); });
    if (flag_value) {
      nc.warnings.push_back(
          "-tls-enabled: node-cache serves -metrics-listen-address over TLS (-tls-cert-file, "
          "-tls-private-key-file, -tls-client-auth-type, -tls-client-ca-file, "
          "-tls-min-version); localdns does not open that endpoint; ignored");
    }
  } else if (name.starts_with("tls-")) {
    // Without -tls-enabled they do nothing in node-cache either.
  } else if (name == "prometheus-listen-address") {
    nc.prometheus = v;
  } else if (name == "basecorefile") {
    nc.base_corefile = v;
  } else if (name == "corefile") {
    nc.corefile = v;
  } else if (name == "conf") {
    nc.conf = v;
  } else if (name == "kubednscm") {
    nc.kube_dns_dir = v;
  } else if (name == "upstreamsvc") {
    nc.upstream_svc = v;
  } else if (name == "pidfile") {
    nc.pidfile = v;
  } else if (name == "quiet") {
    nc.quiet = flag_value;
  } else if (name == "version") {
    if (flag_value) o.command = Command::Version;
  } else if (name == "plugins") {
    if (flag_value) o.command = Command::Plugins;
  } else if (name == "help") {
    if (flag_value) o.command = Command::Help;
  }
  return {};
}

}  // namespace

std::optional<std::expected<void, std::string>> parse_go_flag(
    std::span<const std::string_view> args, std::size_t& i, CliOptions& o) {
  std::string_view arg = args[i];
  if (arg.size() < 2 || arg.front() != '-') return std::nullopt;
  std::string_view body = arg.substr(arg.starts_with("--") ? 2 : 1);
  auto eq = body.find('=');
  std::string_view name = body.substr(0, eq);
  auto flag = std::find_if(std::begin(kGoFlags), std::end(kGoFlags),
                           [&](const GoFlag& f) { return f.name == name; });
  if (flag == std::end(kGoFlags)) return std::nullopt;
  const std::string dash = "-" + std::string(name);
  if (flag->kind == Kind::Bool) {
    bool value = true;
    if (eq != std::string_view::npos) {
      auto b = go_bool(body.substr(eq + 1));
      if (!b) {
        return std::unexpected("invalid boolean value \"" + std::string(body.substr(eq + 1)) +
                               "\" for " + dash +
                               " (expected 1, 0, t, f, T, F, true, false, TRUE, FALSE, True "
                               "or False, as -flag=VALUE)");
      }
      value = *b;
    }
    return store(*flag, "", value, o);
  }
  std::string_view value;
  if (eq != std::string_view::npos) {
    value = body.substr(eq + 1);
  } else if (i + 1 < args.size()) {
    value = args[++i];  // as Go: the next argument, even one starting with '-'
  } else {
    return std::unexpected("flag needs an argument: " + dash);
  }
  return store(*flag, value, false, o);
}

std::string go_flags_usage() {
  return R"(node-local-dns (node-cache) and CoreDNS flags, in Go's syntax (-flag value,
-flag=value, one dash or two; booleans as -flag or -flag=false):
  -localip IP[,IP...]      the local addresses (node.local_addresses)
  -setupinterface=BOOL     create the interface (node.interface.setup)
  -interfacename NAME      node.interface.name
  -setupiptables=BOOL      install the NOTRACK rules (node.rules.setup)
  -syncinterval D          check-and-repair period: seconds (60, or 60ns as node-cache
                           reads it) or a duration (60s)
  -health-port PORT        kept out of conntrack with the local addresses (node.health_port,
                           default 8080 with node-cache's flags)
  -skipteardown=BOOL       node.skip_teardown
  -basecorefile FILE       node-local-dns's Corefile template (default
                           /etc/coredns/Corefile.base), read as node-cache does
  -conf FILE, -corefile FILE
                           where the rendered Corefile is written (default /etc/Corefile;
                           -conf wins); read as a finished Corefile when there is no template
  -kubednscm DIR           the kube-dns ConfigMap (default /etc/kube-dns when it exists)
  -upstreamsvc NAME        the Service whose ClusterIP ($NAME_SERVICE_HOST) fills
                           __PILLAR__CLUSTER__DNS__ (default kube-dns)
  -prometheus-listen-address ADDR
                           fills __PROMETHEUS__ENDPOINT__ (default :9253)
  -dns.port PORT, -p PORT  port of the local addresses and stub-domain blocks (default 53)
  -pidfile FILE            written once every listener is bound, removed on a clean exit
  -quiet                   no start-up summary
  -version, -plugins       print the version, or the Corefile directives localdns reads
  -metrics-listen-address, -reloadwithsignal, -setupebtables, -initialdelay,
  -tls-enabled, -tls-cert-file, -tls-private-key-file, -tls-client-auth-type,
  -tls-client-ca-file, -tls-min-version
                           accepted with a warning when set to do something:
                           localdns does not honour them
)";
}

std::string plugins_text() {
  return R"(Corefile directives localdns translates (localdns migrate, -basecorefile, -conf):
  dns.bind
  dns.cache
  dns.errors
  dns.forward
  dns.health
  dns.log
  dns.loop
  dns.prometheus
  dns.reload
Others are reported, one warning line each, and not carried over.
)";
}

}  // namespace localdns::config
