// The system side of `localdns doctor`: reads procfs, the kernel log and the
// rules, inspects the interface over netlink, and probes localdns and its
// upstreams. Everything here is bounded in time; nothing is changed.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>

#include <localdns/config/cli.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/doctor/doctor.hpp>
#include <localdns/doctor/resolved.hpp>
#include <localdns/node/link.hpp>
#include <localdns/node/node_setup.hpp>
#include <localdns/node/process.hpp>
#include <localdns/node/rules.hpp>

namespace localdns::doctor {

namespace {

using Clock = std::chrono::steady_clock;

// File contents, or errno.
std::expected<std::string, int> slurp(const std::string& path, std::size_t limit = 1 << 24) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::unexpected(errno);
  std::string out;
  char buf[16384];
  while (out.size() < limit) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return std::unexpected(e);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::optional<std::uint64_t> read_number(const std::string& path) {
  auto t = slurp(path);
  if (!t) return std::nullopt;
  try {
    return std::stoull(*t);
  } catch (...) {
    return std::nullopt;
  }
}

std::vector<int> all_pids() {
  std::vector<int> pids;
  DIR* d = ::opendir("/proc");
  if (!d) return pids;
  while (auto* e = ::readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end && *end == '\0' && v > 0) pids.push_back(static_cast<int>(v));
    if (pids.size() > 1'000'000) break;
  }
  ::closedir(d);
  std::sort(pids.begin(), pids.end());
  return pids;
}

std::string link_target(const std::string& path) {
  char buf[256];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::string(buf, static_cast<std::size_t>(n));
}

// localdns servers in this network namespace (not doctor/ctl/cleanup runs).
std::vector<int> localdns_pids() {
  std::vector<int> out;
  const std::string my_net = link_target("/proc/self/ns/net");
  const int self = ::getpid();
  for (int pid : all_pids()) {
    if (pid == self) continue;
    std::string base = "/proc/" + std::to_string(pid);
    auto comm = slurp(base + "/comm");
    if (!comm || *comm != "localdns\n") continue;
    auto cmdline = slurp(base + "/cmdline");
    if (cmdline) {
      std::vector<std::string> argv;
      std::stringstream ss(*cmdline);
      for (std::string a; std::getline(ss, a, '\0');)
        argv.push_back(a);
      if (argv.size() > 1 && (argv[1] == "doctor" || argv[1] == "ctl" || argv[1] == "cleanup" ||
                              argv[1] == "--check-config" || argv[1] == "--version"))
        continue;
    }
    std::string net = link_target(base + "/ns/net");
    if (!my_net.empty() && net != my_net) continue;  // unreadable (not root) counts as ours
    out.push_back(pid);
  }
  return out;
}

std::string describe_rcode(std::uint16_t flags) {
  static const char* names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"};
  unsigned r = flags & 0xf;
  return r < 6 ? names[r] : "RCODE " + std::to_string(r);
}

// One query (`qname` in wire form, SOA; NS for the root) over UDP or TCP,
// answered or not, and how fast.
ProbeResult query(const config::Endpoint& ep, bool tcp, std::chrono::milliseconds timeout,
                  const std::string& qname = std::string(1, '\0')) {
  ProbeResult r;
  r.target = ep.to_string() + (tcp ? " tcp" : " udp");
  const std::uint16_t id = static_cast<std::uint16_t>(::getpid() ^ (tcp ? 0x5a5a : 0xa5a5));
  std::vector<std::uint8_t> q = {
      std::uint8_t(id >> 8), std::uint8_t(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  q.insert(q.end(), qname.begin(), qname.end());
  const std::uint8_t qtype = qname.size() == 1 ? 2 : 6;  // NS for ".", else SOA
  q.insert(q.end(), {0x00, qtype, 0x00, 0x01});
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (ep.address.is_v4()) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(ep.port);
    auto b = ep.address.to_v4().to_bytes();
    std::memcpy(&s->sin_addr, b.data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(ep.port);
    auto b = ep.address.to_v6().to_bytes();
    std::memcpy(&s->sin6_addr, b.data(), 16);
    len = sizeof(sockaddr_in6);
  }
  int fd =
      ::socket(ss.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r.detail = std::strerror(errno);
    return r;
  }
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  auto wait = [&](short events) {
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd, events, 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) return false;
    }
  };
  auto fail = [&](std::string why) {
    r.detail = std::move(why);
    ::close(fd);
    return r;
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS)
    return fail(std::strerror(errno));
  if (tcp) {
    if (!wait(POLLOUT)) return fail("connect timed out");
    int err = 0;
    socklen_t el = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) return fail(std::strerror(err));
    std::vector<std::uint8_t> framed = {std::uint8_t(q.size() >> 8), std::uint8_t(q.size())};
    framed.insert(framed.end(), q.begin(), q.end());
    if (::send(fd, framed.data(), framed.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(framed.size()))
      return fail(std::strerror(errno));
  } else if (::send(fd, q.data(), q.size(), 0) != static_cast<ssize_t>(q.size())) {
    return fail(std::strerror(errno));
  }
  std::vector<std::uint8_t> buf(65537);
  std::size_t have = 0;
  while (true) {
    if (!wait(POLLIN)) return fail("no reply within " + std::to_string(timeout.count()) + " ms");
    ssize_t n = ::recv(fd, buf.data() + have, buf.size() - have, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail(std::strerror(errno));
    }
    if (tcp && n == 0) return fail("connection closed");
    have += static_cast<std::size_t>(n);
    dns::Bytes msg(buf.data(), have);
    if (tcp) {
      if (have < 2 || have < 2u + ((buf[0] << 8) | buf[1])) continue;
      msg = dns::Bytes(buf.data() + 2, (buf[0] << 8) | buf[1]);
    }
    auto rv = dns::parse_response(msg);
    if (!rv || rv->header.id != id) {
      if (tcp) return fail("malformed reply");
      have = 0;
      continue;
    }
    r.answered = true;
    r.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    r.detail = describe_rcode(rv->header.flags);
    ::close(fd);
    return r;
  }
}

ProbeResult tcp_connect(const config::Endpoint& ep, std::chrono::milliseconds timeout) {
  // A DNS query over TCP: reachable means it answers, not only accepts.
  auto r = query(ep, true, timeout);
  r.target = ep.to_string() + " tcp";
  if (!r.answered) r.detail = "unreachable over TCP: " + r.detail;
  return r;
}

// GET /metrics over HTTP/1.0; the body, or why not.
std::expected<std::string, std::string> http_get(const config::Endpoint& ep, const char* path,
                                                 std::chrono::milliseconds timeout) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (ep.address.is_v4()) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(ep.port);
    auto b = ep.address.to_v4().to_bytes();
    std::memcpy(&s->sin_addr, b.data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(ep.port);
    auto b = ep.address.to_v6().to_bytes();
    std::memcpy(&s->sin6_addr, b.data(), 16);
    len = sizeof(sockaddr_in6);
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::unexpected(std::string(std::strerror(errno)));
  const auto deadline = Clock::now() + timeout;
  auto wait = [&](short events) {
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd, events, 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) return false;
    }
  };
  auto fail = [&](std::string why) -> std::expected<std::string, std::string> {
    ::close(fd);
    return std::unexpected(std::move(why));
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS)
    return fail(std::strerror(errno));
  if (!wait(POLLOUT)) return fail("connect timed out");
  int err = 0;
  socklen_t el = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
  if (err != 0) return fail(std::strerror(err));
  std::string req = std::string("GET ") + path + " HTTP/1.0\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    return fail(std::strerror(errno));
  std::string out;
  char buf[16384];
  while (out.size() < (8u << 20)) {
    if (!wait(POLLIN)) return fail("no reply within " + std::to_string(timeout.count()) + " ms");
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail(std::strerror(errno));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (!out.starts_with("HTTP/1.") || out.find(" 200 ") != 8) return fail("not HTTP 200");
  auto body = out.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : out.substr(body + 4);
}

std::string errno_text(int e) {
  if (e == EACCES || e == EPERM) return "permission denied (needs root)";
  return std::strerror(e);
}

}  // namespace

int run_doctor(const std::vector<std::string>& raw) {
  std::vector<std::string_view> args(raw.begin(), raw.end());
  auto opts = config::parse_doctor_cli(args);
  if (!opts) {
    std::cerr << "localdns doctor: " << opts.error()
              << (opts.error().find("see --help") == std::string::npos
                      ? " (see localdns doctor --help)"
                      : "")
              << "\n";
    return 64;
  }
  if (opts->node.command == config::Command::Help) {
    std::cout << config::doctor_usage();
    return 0;
  }
  ReportMeta meta;
  meta.root = ::geteuid() == 0;
  meta.resolver = opts->musl ? "musl" : "glibc";
  meta.watch_seconds = opts->watch_seconds.value_or(0);
  if (!meta.root) {
    meta.notes.push_back(
        "not root: checks 3 (kernel log), 5 (rules) and 6 (conntrack entries) and --all-pods "
        "need root (CAP_NET_ADMIN, CAP_SYSLOG, CAP_SYS_PTRACE); their results are partial");
  }
  const Resolver resolver = opts->musl ? Resolver::musl : Resolver::glibc;

  // What localdns should look like: flags/--config, else what the node has.
  config::Config cfg = config::default_config();
  if (opts->node.config_path) {
    auto loaded = config::load_config_file(*opts->node.config_path);
    if (!loaded) {
      for (const auto& e : loaded.error())
        std::cerr << "localdns doctor: " << e << "\n";
      return 64;
    }
    cfg = std::move(*loaded);
  }
  const std::string ifname = opts->node.interface_name.value_or(cfg.node.interface_name);
  LocaldnsObservation obs;
  obs.interface_name = ifname;
  obs.from_config = opts->has_node_flags || !cfg.node.local_addresses.empty();
  std::optional<node::LinkState> link;
  if (auto nl = node::Netlink::open(); nl) {
    if (auto st = nl->inspect(ifname); st) {
      link = *st;
    } else {
      obs.interface_error = st.error();
    }
  } else {
    obs.interface_error = nl.error();
  }
  config::CliOptions node_flags = opts->node;
  if (!obs.from_config && link && link->exists) {
    for (const auto& a : link->addresses)
      if (!(a.is_v6() && a.to_v6().is_link_local())) node_flags.local_ips.push_back(a.to_string());
  }
  if (auto errors = config::apply_cli(node_flags, cfg); !errors.empty()) {
    for (const auto& e : errors)
      std::cerr << "localdns doctor: " << e << "\n";
    return 64;
  }
  (void)config::fill_resolv_conf_servers(cfg);  // only for the fallback DNAT's target
  node::RuleTargets targets = node::rule_targets(cfg);
  if (!obs.from_config) {
    for (auto& l : targets.locals)
      l.fallback.reset();  // unknown without its flags
  }
  for (const auto& a : cfg.node.local_addresses)
    obs.want_addresses.push_back(a.to_string());

  // 1: first sample now; the second after --watch.
  const std::string stat_path = "/proc/net/stat/nf_conntrack";
  auto sample = [&]() -> std::pair<std::optional<ConntrackStat>, std::string> {
    auto t = slurp(stat_path);
    if (!t) {
      if (t.error() == ENOENT) return {std::nullopt, {}};
      return {std::nullopt, stat_path + ": " + errno_text(t.error())};
    }
    auto s = parse_conntrack_stat(*t);
    if (!s) return {std::nullopt, stat_path + ": " + s.error()};
    return {*s, {}};
  };
  auto first = sample();
  const auto t0 = Clock::now();

  // 5: localdns.
  obs.pids = localdns_pids();
  if (link && link->exists) {
    obs.interface_exists = true;
    obs.interface_up = link->up;
    obs.interface_ours = link->ours();
    for (const auto& a : link->addresses)
      obs.interface_addresses.push_back(a.to_string());
  }
  auto kind = cfg.node.rules_backend;
  if (kind == config::RulesBackend::Auto) kind = node::detect_rules_backend();
  obs.backend = std::string(config::to_string(kind));
  bool rules_found = false;
  if (kind == config::RulesBackend::Nftables) {
    auto r = node::run_process({"nft", "list", "table", "inet", std::string(node::kNftTable)});
    if (!r) {
      obs.rules_error = r.error();
    } else if (!r->ok() && r->err.find("No such file") == std::string::npos) {
      obs.rules_error = "nft: " + r->describe() + (meta.root ? "" : " (needs root)");
    } else {
      rules_found = r->out.find(node::kCommentPrefix) != std::string::npos;
      std::string want = node::nftables_ruleset(targets);
      obs.rule_problems = verify_nft_listing(want, r->ok() ? r->out : std::string());
      for (std::size_t p = 0; (p = want.find("comment \"", p)) != std::string::npos; ++p)
        ++obs.rules_checked;
    }
  } else {
    const std::string variant = kind == config::RulesBackend::IptablesLegacy ? "legacy" : "nft";
    for (bool v6 : {false, true}) {
      auto want = expected_rules(targets, v6);
      const std::string save = std::string(v6 ? "ip6tables-" : "iptables-") + variant + "-save";
      if (want.empty() && v6) continue;
      auto r = node::run_process({save});
      if (!r || !r->ok()) {
        obs.rules_error = save + ": " + (r ? r->describe() : r.error()) +
                          (meta.root ? "" : " (needs root: CAP_NET_ADMIN)");
        break;
      }
      rules_found = rules_found || r->out.find(node::kCommentPrefix) != std::string::npos;
      auto problems = verify_iptables_save(want, r->out, v6 ? "ip6tables" : "iptables");
      obs.rule_problems.insert(obs.rule_problems.end(), problems.begin(), problems.end());
      obs.rules_checked += static_cast<unsigned>(want.size());
    }
  }
  obs.expected = obs.from_config || (link && link->exists) || rules_found || !obs.pids.empty();
  if (obs.expected) {
    // The first forwarded zone other than the root (cluster.local), else ".".
    std::string zone = ".";
    for (const auto& g : cfg.forward)
      for (const auto& z : g.zones)
        if (zone == "." && z != ".") zone = z;
    std::string wire = dns::name_from_text(zone).value_or(std::string(1, '\0'));
    for (const auto& l : targets.locals) {
      config::Endpoint ep{l.address, l.port};
      obs.queries.push_back(query(ep, false, std::chrono::milliseconds(2000), wire));
      obs.queries.push_back(query(ep, true, std::chrono::milliseconds(2000), wire));
      for (std::size_t i = obs.queries.size() - 2; i < obs.queries.size(); ++i)
        obs.queries[i].target += " (" + zone + (zone == "." ? " NS)" : " SOA)");
    }
    if (obs.from_config) {
      for (const auto& g : cfg.forward)
        for (const auto& s : config::servers_of(cfg, g)) {
          if (std::any_of(obs.upstreams.begin(), obs.upstreams.end(),
                          [&](const ProbeResult& p) { return p.target == s.to_string() + " tcp"; }))
            continue;
          obs.upstreams.push_back(tcp_connect(s, std::chrono::milliseconds(2000)));
        }
    }
  }
  if (obs.expected && cfg.metrics.enabled) {
    auto ep = config::resolve(cfg.metrics, cfg, config::kDefaultMetricsPort);
    obs.metrics_url = "http://" + ep.to_string() + "/metrics";
    if (auto body = http_get(ep, "/metrics", std::chrono::milliseconds(2000)); body) {
      obs.metrics = parse_metrics(*body);
    } else {
      obs.metrics_error = body.error();
    }
  }
  Check c5 = check_localdns(obs);

  LocalView view;
  view.cluster_dns = opts->cluster_dns;
  view.localdns_deployed = obs.expected;
  bool answering = std::any_of(obs.queries.begin(), obs.queries.end(),
                               [](const ProbeResult& p) { return p.answered; });
  for (const auto& l : targets.locals) {
    std::string a = l.address.to_string();
    bool on_link = std::find(obs.interface_addresses.begin(), obs.interface_addresses.end(), a) !=
                   obs.interface_addresses.end();
    if (on_link && answering) view.captured.push_back(a);
    if (node::is_link_local(l.address)) view.link_local = a;
  }
  std::erase_if(view.cluster_dns, [&](const std::string& ip) {
    return std::find(view.captured.begin(), view.captured.end(), ip) != view.captured.end();
  });

  // 4: resolv.conf files.
  std::vector<ResolvSource> sources;
  std::vector<std::string> unreadable;
  auto add_file = [&](const std::string& label, const std::string& path) {
    auto t = slurp(path, 1 << 16);
    if (!t) {
      unreadable.push_back(label + ": " + errno_text(t.error()));
      return;
    }
    sources.push_back({label, *t, {}});
  };
  for (const auto& f : opts->resolv_conf)
    add_file(f, f);
  for (int pid : opts->pods) {
    const std::string proc = "/proc/" + std::to_string(pid);
    if (::access(proc.c_str(), F_OK) != 0) {
      unreadable.push_back("pid " + std::to_string(pid) + ": no such process");
      continue;
    }
    add_file("pid " + std::to_string(pid) + " (" + proc + "/root/etc/resolv.conf)",
             proc + "/root/etc/resolv.conf");
  }
  if (opts->all_pods) {
    std::map<std::string, std::vector<int>> groups;
    unsigned denied = 0;
    for (int pid : all_pids()) {
      auto t = slurp("/proc/" + std::to_string(pid) + "/root/etc/resolv.conf", 1 << 16);
      if (t) {
        groups[*t].push_back(pid);
      } else if (t.error() == EACCES || t.error() == EPERM) {
        ++denied;
      }
    }
    auto host = slurp("/etc/resolv.conf", 1 << 16);
    std::vector<std::pair<std::string, std::vector<int>>> ordered(groups.begin(), groups.end());
    std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
      return a.second.size() > b.second.size();
    });
    for (auto& [text, pids] : ordered) {
      std::string label = "/proc/" + std::to_string(pids.front()) + "/root/etc/resolv.conf";
      if (host && *host == text) label += " (same as the host's)";
      sources.push_back({label, text, pids});
    }
    if (denied > 0) {
      unreadable.push_back(std::to_string(denied) +
                           " processes' resolv.conf not readable: --all-pods needs root on the "
                           "host (from a pod: hostPID and CAP_SYS_PTRACE)");
    }
  }
  if (opts->resolv_conf.empty() && opts->pods.empty() && !opts->all_pods)
    add_file("/etc/resolv.conf", "/etc/resolv.conf");
  Check c4 = check_resolver(sources, view, resolver, unreadable);
  if (sources.empty()) c4.raise(Status::warn);
  if (opts->resolv_conf.empty() && opts->pods.empty() && !opts->all_pods) {
    std::vector<std::string> mine, servers;  // systemd-resolved next to localdns
    for (const auto& l : targets.locals)
      if (obs.expected) mine.push_back(l.address.to_string());
    for (const auto& g : cfg.forward)
      for (const auto& s : config::servers_of(cfg, g))
        servers.push_back(s.to_string());
    add_resolved(c4, probe_resolved(), mine, servers);
  }

  // 2 and 3.
  const std::string sys = "/proc/sys/net/netfilter/";
  ConntrackSysctls sc{
      read_number(sys + "nf_conntrack_count"), read_number(sys + "nf_conntrack_max"),
      read_number(sys + "nf_conntrack_buckets"), read_number(sys + "nf_conntrack_udp_timeout"),
      read_number(sys + "nf_conntrack_udp_timeout_stream")};
  Check c2 = check_table_pressure(sc);
  std::optional<std::string> klog;
  std::string klog_why;
  if (auto r = node::run_process({"dmesg"}, {}, std::chrono::seconds(5)); r && r->ok()) {
    klog = r->out;
  } else {
    klog_why = r ? r->describe() : r.error();
  }
  Check c3 = check_kernel_log(klog, klog_why);

  // 6.
  std::optional<DnsEntries> entries;
  std::string entries_why;
  std::vector<std::string> locals;
  for (const auto& l : targets.locals)
    locals.push_back(l.address.to_string());
  if (auto t = slurp("/proc/net/nf_conntrack"); t) {
    entries = count_dns_entries(*t, locals, view.cluster_dns);
  } else if (t.error() != ENOENT || first.first) {
    entries_why = "/proc/net/nf_conntrack: " + errno_text(t.error());
  }
  Check c6 = check_dns_entries(entries, view, entries_why);

  // 1: the second sample.
  std::optional<ConntrackStat> before;
  double seconds = 0;
  auto now = first;
  if (opts->watch_seconds && first.first) {
    std::this_thread::sleep_until(t0 + std::chrono::seconds(*opts->watch_seconds));
    before = first.first;
    now = sample();
    seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  Check c1 = check_conntrack_race(now.first, before, seconds, now.second);

  std::vector<Check> checks{c1, c2, c3, c4, c5, c6};
  checks.push_back(verdict(checks));
  if (opts->json) {
    std::cout << render_json(checks, meta);
  } else {
    std::cout << render_text(checks, meta, ::isatty(STDOUT_FILENO) != 0);
  }
  std::cout.flush();
  return exit_code(checks);
}

}  // namespace localdns::doctor
