// The server blocks and their plugins: bind, forward, cache, health,
// prometheus, log, and the ones localdns does not carry over.
#include <algorithm>
#include <map>
#include <sys/stat.h>

#include <localdns/config/duration.hpp>

#include "corefile_translate.hpp"

namespace localdns::config::corefile::detail {

using namespace std::chrono_literals;

namespace {

struct Http {
  std::optional<Endpoint> ep;
  std::string where;
  bool wildcard = false;
};

struct Global {
  std::vector<Endpoint> listen;
  std::vector<UpstreamGroup> groups;
  std::map<std::string, std::string> zone_owner;  // zone -> FILE:LINE of its block
  std::string resolv_conf, resolv_where;
  Http health, metrics;
  std::vector<BlockCache> caches;
  std::vector<std::string> uncached;  // warnings, used when some block does cache
  int log_blocks = 0, blocks = 0;
  std::vector<std::pair<std::string, std::vector<Endpoint>>> block_listens;  // where, endpoints
};

std::string block_name(const ServerBlock& b) {
  std::string s;
  for (const auto& k : b.keys)
    s += (s.empty() ? "" : " ") + k;
  return s;
}

Directive as_directive(const ServerBlock& b) {
  Directive d;
  d.name = "server block '" + block_name(b) + "'";
  d.file = b.file;
  d.line = b.line;
  return d;
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void parse_bind(Ctx& ctx, const Directive& d, std::vector<boost::asio::ip::address>& out) {
  if (d.args.empty()) ctx.error(d, "needs at least one address");
  for (const auto& a : d.args) {
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(a.text, ec);
    if (ec) {
      ctx.error(d, "'" + a.text +
                       "' is not an IP address: localdns binds addresses, not interface names");
      continue;
    }
    if (addr.is_unspecified()) {
      ctx.error(d, a.text +
                       " is a wildcard address: localdns listens on each address it is given, so "
                       "that replies leave from the address the client asked; list them");
      continue;
    }
    if (std::find(out.begin(), out.end(), addr) == out.end()) out.push_back(addr);
  }
  for (const auto& sub : d.block) {
    ctx.error(sub, sub.name == "except"
                       ? "bind's except is not supported: list the addresses to bind"
                       : "unknown bind property");
  }
}

void parse_forward(Ctx& ctx, Global& g, const Directive& d, const std::vector<std::string>& zones,
                   std::vector<UpstreamGroup>& out) {
  if (d.args.size() < 2) {
    ctx.error(d, "needs FROM and at least one TO");
    return;
  }
  auto from = normalize_zone(d.args[0].text);
  if (!from) {
    ctx.error(d, "'" + d.args[0].text + "' is not a zone");
    return;
  }
  UpstreamGroup grp;
  for (const auto& z : zones) {
    std::string zone = within(z, *from) ? z : within(*from, z) ? *from : "";
    if (!zone.empty() && std::find(grp.zones.begin(), grp.zones.end(), zone) == grp.zones.end()) {
      grp.zones.push_back(zone);
    }
  }
  if (grp.zones.empty()) {
    ctx.warnings.push_back(loc(d) + ": forward " + *from +
                           " matches no zone of its server block: no query reaches it; skipped");
    return;
  }
  // CoreDNS's forward defaults where localdns has the same knob.
  grp.policy = Policy::Random;
  grp.fail_threshold = 2;
  grp.probe_interval = 500ms;
  grp.tcp.idle_timeout = 10s;
  std::string file;
  for (std::size_t i = 1; i < d.args.size(); ++i) {
    std::string to = d.args[i].text;
    std::string lt = lower(to);
    if (lt.starts_with("dns://")) {
      to.erase(0, 6);
    } else if (lt.starts_with("tls://")) {
      ctx.error(d, to +
                       ": DNS over TLS is not supported; localdns forwards plain DNS only, and "
                       "sending these queries in clear text must be a decision, not a translation");
      continue;
    } else if (auto p = lt.find("://"); p != std::string::npos) {
      ctx.error(d,
                to + ": transport " + lt.substr(0, p + 3) + " is not supported (plain DNS only)");
      continue;
    }
    if (auto ep = parse_endpoint(to, 53)) {
      grp.servers.push_back(*ep);
    } else if (!to.empty() && (to.find('/') != std::string::npos || is_file(to))) {
      if (!file.empty() && file != to) {
        ctx.error(d, "one group reads one resolv.conf file; got " + file + " and " + to);
      }
      file = to;
    } else {
      ctx.error(d, "'" + to + "' is not an IP address, IP:PORT or resolv.conf file");
    }
  }
  if (!file.empty()) {
    if (!grp.servers.empty()) {
      ctx.error(d, "localdns cannot mix a resolv.conf file and addresses in one group");
    }
    if (!g.resolv_conf.empty() && g.resolv_conf != file) {
      ctx.error(d, "localdns reads one resolv.conf file (resolv_conf); " + g.resolv_where +
                       " already uses " + g.resolv_conf);
    }
    g.resolv_conf = file;
    g.resolv_where = loc(d);
    grp.servers_from_resolv_conf = true;
  }
  if (grp.servers.size() > kMaxServersPerGroup) {
    ctx.error(d, "more than " + std::to_string(kMaxServersPerGroup) + " servers");
  }
  bool force_tcp = false;
  for (const auto& sub : d.block) {
    const std::string& p = sub.name;
    if (p == "force_tcp") {
      force_tcp = true;
    } else if (p == "prefer_udp") {
      // UDP first, TCP when truncated: localdns's default transport too.
    } else if (p == "max_fails") {
      if (auto n = count_arg(ctx, sub, 0, 0, 1000)) {
        if (*n == 0) {
          ctx.warnings.push_back(loc(sub) +
                                 ": forward max_fails 0 (never mark an upstream down) "
                                 "has no localdns equivalent: fail_threshold 1000");
          grp.fail_threshold = 1000;
        } else {
          grp.fail_threshold = static_cast<unsigned>(*n);
        }
      }
    } else if (p == "health_check") {
      if (auto v = duration_arg(ctx, sub, 0)) {
        if (in_range(ctx, sub, "health_check", *v, 100ms, 1h)) grp.probe_interval = *v;
      }
      if (sub.args.size() > 1) {
        drop_sub(ctx, d, sub,
                 "localdns probes a server marked down with '. NS', recursion desired");
      }
    } else if (p == "expire") {
      if (auto v = duration_arg(ctx, sub, 0)) {
        if (in_range(ctx, sub, "expire", *v, 0ms, 24h)) grp.tcp.idle_timeout = *v;
      }
    } else if (p == "max_age") {
      if (auto v = duration_arg(ctx, sub, 0)) {
        if (in_range(ctx, sub, "max_age", *v, 0ms, 24h)) grp.tcp.max_age = *v;
      }
    } else if (p == "read_timeout") {
      if (auto v = duration_arg(ctx, sub, 0)) {
        if (in_range(ctx, sub, "read_timeout", *v, 10ms, 60s)) grp.timeout = *v;
      }
    } else if (p == "max_concurrent") {
      if (auto n = count_arg(ctx, sub, 0, 1, 1'000'000))
        grp.max_in_flight = static_cast<unsigned>(*n);
    } else if (p == "max_connect_attempts") {
      if (auto n = count_arg(ctx, sub, 0, 1, 10)) grp.attempts = static_cast<unsigned>(*n);
    } else if (p == "policy") {
      std::string v = sub.args.empty() ? "" : sub.args[0].text;
      if (v == "random") {
        grp.policy = Policy::Random;
      } else if (v == "round_robin") {
        grp.policy = Policy::RoundRobin;
      } else if (v == "sequential") {
        grp.policy = Policy::Sequential;
      } else {
        ctx.error(sub, "expected random, round_robin or sequential, got '" + v + "'");
      }
    } else if (p == "except") {
      drop_sub(ctx, d, sub, "localdns forwards every name under the group's zones");
    } else if (p == "tls" || p == "tls_servername") {
      ctx.error(sub, "DNS over TLS is not supported; localdns forwards plain DNS only");
    } else if (p == "max_idle_conns" || p == "next" || p == "next_on_nodata" || p == "failover" ||
               p == "failfast_all_unhealthy_upstreams") {
      drop_sub(ctx, d, sub,
               "localdns has no such setting; it answers SERVFAIL when every attempt fails");
    } else {
      ctx.error(sub, "unknown forward property");
    }
  }
  grp.transport = force_tcp ? Transport::Tcp : Transport::PreferUdp;
  out.push_back(std::move(grp));
}

void parse_http(Ctx& ctx, const Directive& d, Http& h, std::string_view default_addr, bool v6,
                std::uint16_t port) {
  if (d.args.size() > 1) {
    ctx.error(d, "takes one address");
    return;
  }
  std::string text = d.args.empty() ? std::string(default_addr) : d.args[0].text;
  bool wildcard = false;
  auto ep = listen_address(text, port, v6, wildcard);
  if (!ep || ep->port == 0) {
    ctx.error(d, "'" + text + "' is not ADDRESS:PORT or :PORT");
    return;
  }
  if (h.ep) {
    if (*h.ep != *ep) {
      ctx.warnings.push_back(loc(d) + ": " + d.name + " " + text + ": localdns has one " + d.name +
                             " endpoint; " + h.ep->to_string() + " from " + h.where + " is used");
    }
    return;
  }
  h.ep = ep;
  h.where = loc(d);
  h.wildcard = wildcard;
}

void server_block(Ctx& ctx, Global& g, const ServerBlock& b, Config& c, bool v6) {
  Directive bd = as_directive(b);
  std::vector<std::string> zones;
  std::vector<std::uint16_t> ports;
  for (const auto& key : b.keys) {
    std::string err;
    auto k = parse_key(key, ctx.opts.default_port, err);
    if (!k) {
      ctx.error(bd, err);
      continue;
    }
    if (std::find(zones.begin(), zones.end(), k->zone) == zones.end()) zones.push_back(k->zone);
    if (std::find(ports.begin(), ports.end(), k->port) == ports.end()) ports.push_back(k->port);
  }
  for (const auto& z : zones) {
    auto [it, fresh] = g.zone_owner.emplace(z, loc(bd));
    if (!fresh) {
      ctx.error(bd, "zone " + z + " is also served by the block at " + it->second +
                        "; localdns has one set of listeners, so each zone is routed once");
    }
  }
  std::vector<boost::asio::ip::address> binds;
  std::vector<UpstreamGroup> groups;
  BlockCache bc;
  bool logs = false;
  for (const auto& d : b.directives) {
    const std::string& n = d.name;
    if (n == "bind") {
      parse_bind(ctx, d, binds);
    } else if (n == "forward") {
      parse_forward(ctx, g, d, zones, groups);
    } else if (n == "cache") {
      parse_cache(ctx, d, zones, bc);
    } else if (n == "health") {
      parse_http(ctx, d, g.health, ":8080", v6, kDefaultHealthPort);
      for (const auto& sub : d.block) {
        drop_sub(ctx, d, sub,
                 sub.name == "lameduck"
                     ? "localdns stops at once on SIGTERM after answering what is in flight "
                       "(shutdown_grace); it does not keep serving for the lameduck period"
                     : "unknown health property");
      }
    } else if (n == "prometheus") {
      parse_http(ctx, d, g.metrics, "localhost:9153", v6, 9153);
    } else if (n == "errors") {
      if (!d.args.empty() || d.has_block) {
        Directive named = d;
        named.name = "errors options";
        ctx.drop(named, "localdns logs failures in its own format, at log_level");
      }
    } else if (n == "log") {
      logs = true;
      if (!d.args.empty() || d.has_block) {
        Directive named = d;
        named.name = "log options";
        ctx.drop(named,
                 "localdns logs every answered query (query_log_sample: 1) in its own format");
      }
    } else if (n == "debug") {
      c.log_level = "debug";
    } else if (n == "reload") {
      ctx.drop(d, "localdns reloads when the Corefile changes and on SIGHUP, by itself");
    } else if (n == "loop") {
      ctx.drop(d,
               "localdns has no run-time loop probe; at start it refuses a group that "
               "forwards to one of its own listen addresses");
    } else if (n == "ready") {
      ctx.drop(d, "localdns serves /ready on its health endpoint");
    } else {
      ctx.drop(d,
               "localdns only caches and forwards: queries this plugin would answer are "
               "forwarded instead");
    }
  }
  ++g.blocks;
  if (logs) ++g.log_blocks;
  if (binds.empty()) {
    std::string p = ports.empty() ? "53" : std::to_string(ports.front());
    ctx.warnings.push_back(loc(bd) + ": server block '" + block_name(b) +
                           "' has no bind: CoreDNS listens on every address (port " + p +
                           "); localdns never listens on a wildcard address, so this block adds "
                           "no listen address (give bind, -localip or --listen)");
  }
  std::vector<Endpoint> mine;
  for (auto port : ports) {
    for (const auto& a : binds) {
      Endpoint ep{a, port};
      mine.push_back(ep);
      if (std::find(g.listen.begin(), g.listen.end(), ep) == g.listen.end()) g.listen.push_back(ep);
    }
  }
  if (!binds.empty()) g.block_listens.emplace_back(loc(bd), std::move(mine));
  for (const auto& z : zones) {
    bool covered = std::any_of(groups.begin(), groups.end(), [&](const UpstreamGroup& grp) {
      return std::find(grp.zones.begin(), grp.zones.end(), z) != grp.zones.end();
    });
    if (!covered) {
      ctx.warnings.push_back(loc(bd) + ": zone " + z +
                             " has no forward in its server block: localdns sends its queries to "
                             "the group of the closest enclosing zone, or answers REFUSED");
    }
  }
  for (auto& grp : groups) {
    if (bc.present) {
      if (bc.pttl != c.cache.max_ttl) grp.cache.max_ttl = bc.pttl;
      if (bc.nttl != c.cache.denial_max_ttl) grp.cache.denial_max_ttl = bc.nttl;
      if (bc.serve_stale) grp.cache.serve_stale = *bc.serve_stale;
    }
    for (const auto& z : grp.zones) {
      for (const auto& other : g.groups) {
        if (std::find(other.zones.begin(), other.zones.end(), z) != other.zones.end()) {
          ctx.error(bd, "zone " + z + " is forwarded twice");
        }
      }
    }
    g.groups.push_back(std::move(grp));
  }
  if (bc.present) {
    g.caches.push_back(bc);
  } else if (!groups.empty()) {
    g.uncached.push_back(loc(bd) + ": server block '" + block_name(b) +
                         "' has no cache: CoreDNS does not cache its zones; localdns caches "
                         "every answer it forwards");
  }
}

void check_placeholders(Ctx& ctx, const std::vector<Directive>& ds) {
  for (const auto& d : ds) {
    for (const auto& a : d.args) {
      for (const auto& p : leftover_placeholders(a.text)) {
        ctx.error(d, p + " is a placeholder node-cache fills in: render the template first");
      }
    }
    check_placeholders(ctx, d.block);
  }
}

}  // namespace

void translate_blocks(Ctx& ctx, const std::vector<ServerBlock>& blocks, Config& c) {
  Global g;
  // The address family of the first bind decides what ":PORT" means.
  auto first_bind_is_v6 = [&] {
    for (const auto& b : blocks) {
      for (const auto& d : b.directives) {
        if (d.name != "bind" || d.args.empty()) continue;
        boost::system::error_code ec;
        auto a = boost::asio::ip::make_address(d.args[0].text, ec);
        if (!ec) return a.is_v6();
      }
    }
    return false;
  };
  const bool v6 = first_bind_is_v6();
  for (const auto& b : blocks) {
    for (const auto& key : b.keys) {
      for (const auto& p : leftover_placeholders(key)) {
        ctx.errors.push_back(b.file + ":" + std::to_string(b.line) + ": " + p +
                             " is an installer placeholder: replace it first (for "
                             "__PILLAR__DNS__DOMAIN__, the cluster domain)");
      }
    }
    check_placeholders(ctx, b.directives);
  }
  if (!ctx.errors.empty()) return;
  for (const auto& b : blocks)
    server_block(ctx, g, b, c, v6);
  if (blocks.empty())
    ctx.errors.push_back(ctx.opts.source + ":1: the Corefile has no server block");

  // One listener set serves every zone: say so when the blocks had their own.
  bool differ = false;
  std::string blocks_with_bind;
  for (const auto& [where, eps] : g.block_listens) {
    differ = differ || eps.size() != g.listen.size();  // each holds distinct union members
    blocks_with_bind += (blocks_with_bind.empty() ? "" : ", ") + where;
  }
  if (differ) {
    ctx.warnings.push_back(
        "localdns serves every zone on every listen address: the server blocks "
        "listen on different addresses or ports (" +
        blocks_with_bind + ")");
  }
  c.listen = g.listen;
  c.forward = g.groups;
  if (!g.resolv_conf.empty()) c.resolv_conf = g.resolv_conf;
  c.health.enabled = g.health.ep.has_value();
  c.health.listen = g.health.ep;
  c.metrics.enabled = g.metrics.ep.has_value();
  c.metrics.listen = g.metrics.ep;
  for (const auto* h : {&g.health, &g.metrics}) {
    if (!h->wildcard) continue;
    std::string what = h == &g.health ? "health" : "prometheus";
    ctx.warnings.push_back(h->where + ": " + what + " " + h->ep->to_string() +
                           ": every address, as CoreDNS listens; localdns never does so by "
                           "default: give an address to narrow it");
  }
  if (g.log_blocks > 0) {
    c.query_log_sample = 1;
    if (g.log_blocks < g.blocks) {
      ctx.warnings.push_back(
          "log: localdns logs the queries of every zone, not only those of the "
          "server blocks that have log");
    }
  }
  finish_cache(ctx, g.caches, g.uncached, c);
}

}  // namespace localdns::config::corefile::detail
