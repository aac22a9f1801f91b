// Where the configuration comes from: the YAML file, node-local-dns's
// Corefile (as node-cache renders it), or the default; then the flags.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <localdns/config/cli.hpp>
#include <localdns/config/corefile.hpp>
#include <localdns/config/corefile_syntax.hpp>
#include <localdns/config/emit.hpp>
#include <localdns/config/resolv_conf.hpp>

namespace localdns::config {
namespace {

namespace fs = std::filesystem;

// A Corefile (or template): a regular file of at most the parser's input bound.
std::expected<std::string, std::string> read_file(const std::string& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return std::unexpected(path + ": cannot read the file: no such file");
  if (!fs::is_regular_file(st)) return std::unexpected(path + ": not a regular file");
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::unexpected(path + ": cannot read the file");
  const std::size_t max = corefile::Limits{}.max_input_bytes;
  std::string data(max + 1, '\0');
  f.read(data.data(), static_cast<std::streamsize>(data.size()));
  if (f.bad()) return std::unexpected(path + ": cannot read the file");
  data.resize(static_cast<std::size_t>(f.gcount()));
  if (data.size() > max) {
    return std::unexpected(path + ": larger than " + std::to_string(max) + " bytes; refused");
  }
  return data;
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string line_of(std::string_view text, std::size_t pos) {
  return std::to_string(std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n') + 1);
}

// A placeholder still in a Corefile about to be translated: name it with its line.
Errors leftover_placeholders(std::string_view text, const std::string& source) {
  Errors errors;
  for (std::string_view p :
       {"__PILLAR__DNS__DOMAIN__", "__PILLAR__LOCAL__DNS__", "__PILLAR__DNS__SERVER__",
        "__PILLAR__CLUSTER__DNS__", "__PILLAR__UPSTREAM__SERVERS__", "__PROMETHEUS__ENDPOINT__"}) {
    if (auto pos = text.find(p); pos != std::string_view::npos) {
      std::string hint = p == "__PILLAR__DNS__DOMAIN__"
                             ? "the installer's sed fills it with the cluster domain"
                         : p == "__PILLAR__LOCAL__DNS__" ? "-localip fills it"
                         : p == "__PILLAR__CLUSTER__DNS__"
                             ? "-upstreamsvc NAME with NAME_SERVICE_HOST set fills it"
                             : "the installer's sed fills it";
      errors.push_back(source + ":" + line_of(text, pos) + ": " + std::string(p) +
                       " is not filled in (" + hint + ")");
    }
  }
  return errors;
}

std::string kube_dns_dir(const NodeCacheOptions& nc, Errors& warnings) {
  if (nc.kube_dns_dir) {
    std::error_code ec;
    if (!fs::is_directory(*nc.kube_dns_dir, ec)) {
      warnings.push_back("-kubednscm " + *nc.kube_dns_dir +
                         ": no such directory; no stub domains, upstreams from resolv.conf");
    }
    return *nc.kube_dns_dir;
  }
  std::error_code ec;
  if (fs::exists(std::string(kDefaultKubeDnsDir), ec)) return std::string(kDefaultKubeDnsDir);
  return "";
}

// The upstream Service's ClusterIP, as node-cache looks it up.
std::optional<std::string> cluster_ip(const NodeCacheOptions& nc) {
  auto var = service_host_variable(nc.upstream_svc.value_or("kube-dns"));
  const char* v = std::getenv(var.c_str());
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::string dir_of(const std::string& path) {
  auto parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// A rendered Corefile (from SOURCE) with no placeholder left, translated with
// node-cache's port.
std::expected<corefile::Translation, Errors> translate_rendered(std::string_view text,
                                                                const std::string& source,
                                                                const NodeCacheOptions& nc) {
  if (auto left = leftover_placeholders(text, source); !left.empty()) {
    return std::unexpected(std::move(left));
  }
  corefile::TranslateOptions topts;
  topts.source = source;
  topts.base_dir = dir_of(source);
  if (nc.dns_port) topts.default_port = *nc.dns_port;
  return corefile::translate(text, topts);
}

// node-cache's start: read the template, fill it in, translate it.
std::expected<Startup, Errors> from_corefile(const CliOptions& o) {
  const auto& nc = o.node_cache;
  Startup s;
  std::string base = nc.base_corefile.value_or(std::string(kDefaultBaseCorefile));
  s.rendered_path = nc.conf.value_or(nc.corefile.value_or(std::string(kDefaultCorefile)));
  std::string source, text;
  if (is_file(base)) {
    auto t = read_file(base);
    if (!t) return std::unexpected(Errors{"-basecorefile " + t.error()});
    source = base;
    if (o.local_ips.empty()) {
      if (auto pos = t->find("__PILLAR__LOCAL__DNS__"); pos != std::string::npos) {
        return std::unexpected(Errors{base + ":" + line_of(*t, pos) +
                                      ": __PILLAR__LOCAL__DNS__ needs -localip (the addresses "
                                      "node-cache binds, e.g. 169.254.20.10,10.96.0.10)"});
      }
    }
    corefile::Substitutions subs;
    subs.local_ips = o.local_ips;
    if (nc.prometheus) subs.prometheus_endpoint = *nc.prometheus;
    if (nc.dns_port) subs.dns_port = *nc.dns_port;
    auto var = service_host_variable(nc.upstream_svc.value_or("kube-dns"));
    if (auto ip = cluster_ip(nc)) {
      subs.cluster_dns = *ip;
    } else if (t->find("__PILLAR__CLUSTER__DNS__") != std::string::npos) {
      return std::unexpected(
          Errors{base + ": __PILLAR__CLUSTER__DNS__ needs the ClusterIP of Service '" +
                 nc.upstream_svc.value_or("kube-dns") + "' (-upstreamsvc), but " + var +
                 " is not set: Kubernetes sets it for Services of the pod's namespace that exist "
                 "when the pod starts"});
    } else {
      s.warnings.push_back("-upstreamsvc " + nc.upstream_svc.value_or("kube-dns") + ": " + var +
                           " is not set (unused: " + base + " has no __PILLAR__CLUSTER__DNS__)");
    }
    // As node-cache: an invalid ConfigMap is logged and left out (the
    // Corefile from the template alone), and the run goes on.
    corefile::KubeDns kube;
    if (auto k = corefile::read_kube_dns_dir(kube_dns_dir(nc, s.warnings))) {
      kube = std::move(*k);
    } else {
      for (const auto& e : k.error())
        s.warnings.push_back(e);
      s.warnings.push_back(
          "the kube-dns ConfigMap is ignored, as node-cache ignores an invalid one: no stub "
          "domains, upstreams from resolv.conf");
      s.configmap_errors = k.error().size();
    }
    s.corefile = *t;
    s.rendered = corefile::render(*t, subs, kube);
    text = s.rendered;
  } else if (nc.base_corefile) {
    std::error_code ec;
    return std::unexpected(
        Errors{"-basecorefile " + base +
               (fs::exists(base, ec) ? ": not a regular file" : ": no such file")});
  } else if (nc.conf || nc.corefile) {
    // No template: the Corefile itself, as CoreDNS reads -conf.
    source = s.rendered_path;
    auto t = read_file(source);
    if (!t) {
      return std::unexpected(
          Errors{(nc.conf ? "-conf " : "-corefile ") + t.error() + " (and no " + base + ")"});
    }
    s.corefile = *t;
    text = *t;
    s.rendered_path.clear();
  }
  auto tr = translate_rendered(text, source, nc);
  if (!tr) return std::unexpected(tr.error());
  s.config = std::move(tr->config);
  for (auto& w : tr->warnings)
    s.warnings.push_back(std::move(w));
  return s;
}

bool wants_corefile(const CliOptions& o) {
  const auto& nc = o.node_cache;
  // -corefile alone is read as -conf is (node-cache lets -conf override it).
  if (nc.base_corefile || nc.conf || nc.corefile) return true;
  return nc.used && is_file(std::string(kDefaultBaseCorefile));
}

}  // namespace

std::string service_host_variable(std::string_view name) {
  std::string v;
  for (char ch : name)
    v += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return v + "_SERVICE_HOST";
}

std::expected<Startup, Errors> build_startup(const CliOptions& o) {
  const auto& nc = o.node_cache;
  Startup s;
  if (o.config_path && (nc.base_corefile || nc.conf || nc.corefile)) {
    std::string other = nc.base_corefile ? "-basecorefile " + *nc.base_corefile
                        : nc.conf        ? "-conf " + *nc.conf
                                         : "-corefile " + *nc.corefile;
    return std::unexpected(Errors{"--config " + *o.config_path + " and " + other +
                                  ": give one configuration, the YAML file or "
                                  "node-local-dns's Corefile"});
  }
  if (o.config_path) {
    auto loaded = load_config_file(*o.config_path);
    if (!loaded) return std::unexpected(loaded.error());
    s.config = std::move(*loaded);
    if (nc.used && is_file(std::string(kDefaultBaseCorefile))) {
      s.warnings.push_back("--config " + *o.config_path + " is used; " +
                           std::string(kDefaultBaseCorefile) + " is not read");
    }
  } else if (wants_corefile(o)) {
    auto core = from_corefile(o);
    if (!core) return std::unexpected(core.error());
    s = std::move(*core);
  } else {
    s.config = default_config();
  }
  for (const auto& w : nc.warnings)
    s.warnings.push_back(w);
  Errors errors = apply_cli(o, s.config);
  if (errors.empty()) errors = validate(s.config);
  if (!errors.empty()) return std::unexpected(std::move(errors));
  return s;
}

std::expected<Config, Errors> finish_config(Config c) {
  Errors errors = fill_resolv_conf_servers(c);
  for (auto& e : fill_resolv_conf_search(c))
    errors.push_back(std::move(e));
  if (errors.empty()) errors = validate(c);
  if (!errors.empty()) return std::unexpected(std::move(errors));
  // validate() sees resolv.conf groups as written (no servers); check what
  // was read for them: their number, and loops.
  for (std::size_t i = 0; i < c.forward.size(); ++i) {
    if (!c.forward[i].servers_from_resolv_conf) continue;
    const auto& servers = servers_of(c, c.forward[i]);
    if (servers.size() > kMaxServersPerGroup) {
      errors.push_back("forward[" + std::to_string(i) + "].servers: " +
                       std::to_string(servers.size()) + " servers; a group takes at most " +
                       std::to_string(kMaxServersPerGroup) + " (from " + c.resolv_conf + ")");
    }
    for (const auto& s : servers) {
      for (const auto& l : c.listen) {
        if (s == l) {
          errors.push_back("forward[" + std::to_string(i) + "].servers: " + s.to_string() +
                           " (from " + c.resolv_conf + ") is one of our own listen addresses");
        }
      }
    }
  }
  if (!errors.empty()) return std::unexpected(std::move(errors));
  return c;
}

std::expected<Config, Errors> build_config(const CliOptions& o) {
  auto s = build_startup(o);
  if (!s) return std::unexpected(s.error());
  return finish_config(std::move(s->config));
}

namespace {

struct Sentinel {
  std::string_view placeholder;
  std::string value;
  std::string hint;
};

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
    text.replace(pos, from.size(), to);
}

}  // namespace

std::expected<Migration, Errors> migrate(const CliOptions& o) {
  if (!o.migrate_corefile) return std::unexpected(Errors{"migrate: --corefile FILE is required"});
  const std::string& path = *o.migrate_corefile;
  auto text = read_file(path);
  if (!text) return std::unexpected(Errors{"--corefile " + text.error()});
  Migration m;
  const auto& nc = o.node_cache;
  // Placeholders left for the installer become values that translate like the
  // real ones and come back as the placeholder in the YAML: unused documentation
  // addresses (RFC 5737) and an .invalid name (RFC 6761).
  std::vector<Sentinel> kept;
  std::string work = *text;
  auto keep = [&](std::string_view placeholder, std::vector<std::string> candidates,
                  std::string hint) -> std::optional<std::string> {
    if (work.find(placeholder) == std::string::npos) return std::nullopt;
    for (auto& c : candidates) {
      if (work.find(c) == std::string::npos) {
        kept.push_back({placeholder, c, std::move(hint)});
        return c;
      }
    }
    return std::nullopt;
  };
  corefile::Substitutions subs;
  if (auto v = keep("__PILLAR__DNS__DOMAIN__",
                    {"pillar-dns-domain.localdns.invalid", "pillar-dns-domain2.localdns.invalid"},
                    "the installer's sed puts the cluster domain there")) {
    replace_all(work, "__PILLAR__DNS__DOMAIN__", *v);
  }
  if (!o.local_ips.empty()) {
    subs.local_ips = o.local_ips;  // as node-cache: -localip fills the bind, DNS__SERVER goes
  } else {
    if (auto v = keep("__PILLAR__LOCAL__DNS__", {"192.0.2.231", "198.51.100.231"},
                      "the installer's sed puts the link-local address there (169.254.20.10)")) {
      subs.local_ips = {*v};
    }
    if (auto v = keep("__PILLAR__DNS__SERVER__", {"192.0.2.232", "198.51.100.232"},
                      "the installer's sed puts the kube-dns ClusterIP there in iptables mode; "
                      "in IPVS mode, where it is emptied, remove those entries")) {
      replace_all(work, "__PILLAR__DNS__SERVER__", *v);
    }
  }
  if (auto ip = cluster_ip(nc)) {
    subs.cluster_dns = *ip;
  } else if (auto v = keep("__PILLAR__CLUSTER__DNS__", {"192.0.2.233", "198.51.100.233"},
                           "node-cache fills it at run time with the ClusterIP of -upstreamsvc "
                           "(" +
                               service_host_variable(nc.upstream_svc.value_or("kube-dns")) +
                               "); give -upstreamsvc NAME with that variable set to fill it")) {
    subs.cluster_dns = *v;
  }
  if (nc.prometheus) subs.prometheus_endpoint = *nc.prometheus;
  if (nc.dns_port) subs.dns_port = *nc.dns_port;
  std::string dir = o.migrate_kube_dns_dir.value_or(nc.kube_dns_dir.value_or(""));
  auto kube = corefile::read_kube_dns_dir(dir);
  if (!kube) return std::unexpected(kube.error());
  std::string rendered = corefile::render(work, subs, *kube);
  auto tr = translate_rendered(rendered, path, nc);
  if (!tr) {
    auto errors = tr.error();
    for (auto& e : errors)
      for (const auto& k : kept)
        replace_all(e, k.value, k.placeholder);
    return std::unexpected(std::move(errors));
  }
  // The flags given with the Corefile (the DaemonSet's args) go on top, as for a run.
  Config c = std::move(tr->config);
  // node-local-dns's DaemonSet gives -localip the addresses its Corefile
  // binds; without -localip, those are the local addresses (the kept
  // placeholders included), so that the YAML sets the node up as node-cache.
  std::optional<std::string> inferred;
  if (o.local_ips.empty() && c.node.local_addresses.empty()) {
    for (const auto& l : c.listen) {
      const auto& a = l.address;
      if (a.is_loopback() || a.is_unspecified()) continue;
      auto& la = c.node.local_addresses;
      if (std::find(la.begin(), la.end(), a) == la.end()) {
        la.push_back(a);
        inferred = inferred ? *inferred + "," + a.to_string() : a.to_string();
      }
    }
    if (inferred && c.node.health_port == 0 && !nc.health_port) {
      c.node.health_port = kNodeCacheHealthPort;
    }
  }
  Errors errors = apply_cli(o, c);
  if (errors.empty()) errors = validate(c);
  if (!errors.empty()) {
    for (auto& e : errors)
      for (const auto& k : kept)
        replace_all(e, k.value, k.placeholder);
    return std::unexpected(std::move(errors));
  }
  m.yaml = emit_yaml(c);
  m.warnings = std::move(tr->warnings);
  if (inferred) {
    m.warnings.push_back("node.local_addresses: " + *inferred +
                         ", the addresses the Corefile binds (node-local-dns's DaemonSet gives "
                         "them to -localip), with node.health_port " +
                         std::to_string(c.node.health_port) +
                         ": localdns sets them up on the node; give -localip to choose others");
  }
  for (const auto& w : nc.warnings)
    m.warnings.push_back(w);
  for (const auto& k : kept) {
    replace_all(m.yaml, k.value, k.placeholder);
    for (auto& w : m.warnings)
      replace_all(w, k.value, k.placeholder);
    m.warnings.push_back(std::string(k.placeholder) + " is kept as it is in the YAML: " + k.hint);
  }
  return m;
}

}  // namespace localdns::config
