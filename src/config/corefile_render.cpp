// node-cache's part: the kube-dns ConfigMap directory and the substitutions
// that turn Corefile.base into the Corefile CoreDNS reads (kubernetes/dns
// cmd/node-cache/app/configmap.go, pkg/dns/config).
#include <cctype>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include <yaml-cpp/yaml.h>

#include <localdns/config/corefile.hpp>
#include <localdns/config/duration.hpp>

namespace localdns::config::corefile {

namespace {

constexpr std::string_view kUpstreamServers = "__PILLAR__UPSTREAM__SERVERS__";
constexpr std::string_view kClusterDns = "__PILLAR__CLUSTER__DNS__";
constexpr std::string_view kLocalDns = "__PILLAR__LOCAL__DNS__";
constexpr std::string_view kDnsServer = "__PILLAR__DNS__SERVER__";
constexpr std::string_view kPrometheusEndpoint = "__PROMETHEUS__ENDPOINT__";
// node-cache swaps this exact text (indentation included) for the UDP form
// when the kube-dns ConfigMap names upstream servers.
constexpr std::string_view kUpstreamTcpBlock =
    "\n    forward . __PILLAR__UPSTREAM__SERVERS__ {\n            force_tcp\n    }\n";
constexpr std::string_view kUpstreamUdpBlock = "\n    forward . __PILLAR__UPSTREAM__SERVERS__\n";
constexpr int kStubCacheTtl = 30;

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += sep;
    out += v[i];
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xe  ? 3
                    : (c >> 3) == 0x1e ? 4
                                       : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += n;
  }
  return true;
}

// Kubernetes' IsDNS1123Subdomain: lower-case labels of [a-z0-9-], each
// starting and ending alphanumeric, dot separated, at most 253 characters.
bool dns1123_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      if (!(std::islower(static_cast<unsigned char>(c)) ||
            std::isdigit(static_cast<unsigned char>(c)) || c == '-')) {
        return false;
      }
    }
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// What node-cache's two checks accept together. kube-dns's Validate takes
// IP, IP:port ([V6]:port) or, for a stub server, a DNS-1123 host name
// without a port; node-cache's forward check (CoreDNS's parse.HostPortOrFile)
// then takes only addresses, with an optional dns:// or tls:// prefix that
// kube-dns's check has already refused. So: IP or IP:port.
bool nameserver(std::string_view s) {
  auto ep = parse_endpoint(s, 53);
  return ep.has_value();
}

std::expected<std::string, std::string> read_small_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::unexpected(path + ": cannot read the file");
  std::string data;
  data.resize((1u << 20) + 1);
  f.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<std::size_t>(f.gcount()));
  if (data.size() > (1u << 20)) return std::unexpected(path + ": larger than 1 MiB; refused");
  if (!valid_utf8(data)) return std::unexpected(path + ": not UTF-8 text");
  return data;
}

std::string at(const std::string& path, const YAML::Node& n) {
  return path + ":" + std::to_string(n.Mark().line + 1) + ": ";
}

}  // namespace

std::string render(std::string_view base, const Substitutions& subs, const KubeDns& kube) {
  std::string s(base);
  std::string local = join(subs.local_ips, " ");
  std::string upstream = join(kube.upstream_nameservers, " ");
  if (upstream.empty()) {
    // The forward plugin reads a resolv.conf-style file itself.
    replace_all(s, kUpstreamServers, "/etc/resolv.conf");
  } else {
    std::string udp(kUpstreamUdpBlock);
    replace_all(udp, kUpstreamServers, upstream);
    replace_all(s, kUpstreamTcpBlock, udp);
    replace_all(s, kUpstreamServers, upstream);
  }
  replace_all(s, kClusterDns, subs.cluster_dns);
  replace_all(s, kLocalDns, local);
  replace_all(s, kDnsServer, "");
  replace_all(s, kPrometheusEndpoint, subs.prometheus_endpoint);
  // node-cache ranges over a Go map (random order); file order here.
  for (const auto& [domain, servers] : kube.stub_domains) {
    s += "\n" + domain + ":" + std::to_string(subs.dns_port) + " {\n    errors\n    cache " +
         std::to_string(kStubCacheTtl) + "\n    bind " + local + "\n    forward . " +
         join(servers, " ") + "\n}\n";
  }
  return s;
}

std::vector<std::string> leftover_placeholders(std::string_view text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while ((pos = text.find("__P", pos)) != std::string_view::npos) {
    std::size_t end = pos + 3;
    while (end < text.size() &&
           (std::isupper(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
      ++end;
    }
    std::string_view word = text.substr(pos, end - pos);
    if (word.size() > 4 && word.ends_with("__") &&
        (word.starts_with("__PILLAR__") || word.starts_with("__PROMETHEUS__"))) {
      out.emplace_back(word);
    }
    pos = end;
  }
  return out;
}

std::expected<KubeDns, Errors> read_kube_dns_dir(const std::string& dir) {
  KubeDns out;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return out;  // an optional ConfigMap that is absent
  if (!S_ISDIR(st.st_mode)) {
    return std::unexpected(Errors{dir + ": the kube-dns ConfigMap path is not a directory"});
  }
  Errors errors;
  auto load = [&](const std::string& name) -> std::optional<YAML::Node> {
    std::string path = dir + "/" + name;
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    auto data = read_small_file(path);
    if (!data) {
      errors.push_back(data.error());
      return std::nullopt;
    }
    try {
      // JSON is YAML; an empty file is not JSON, as for node-cache.
      YAML::Node n = YAML::Load(*data);
      if (!n.IsDefined() || n.IsNull()) {
        errors.push_back(path + ": expected JSON, found nothing");
        return std::nullopt;
      }
      return n;
    } catch (const YAML::Exception& e) {
      errors.push_back(path + ":" + std::to_string(e.mark.line + 1) + ": not valid JSON: " + e.msg);
      return std::nullopt;
    }
  };
  if (auto n = load("stubDomains")) {
    std::string path = dir + "/stubDomains";
    if (!n->IsMap()) {
      errors.push_back(at(path, *n) + "expected a JSON map of domain to a list of servers");
    } else {
      for (const auto& kv : *n) {
        if (!kv.first.IsScalar()) {
          errors.push_back(at(path, kv.first) + "a domain must be a string");
          continue;
        }
        std::string domain = kv.first.Scalar();
        if (!dns1123_subdomain(domain)) {
          errors.push_back(at(path, kv.first) + "invalid domain name: \"" + domain + "\"");
          continue;
        }
        if (!kv.second.IsSequence()) {
          errors.push_back(at(path, kv.second) + "the servers of \"" + domain +
                           "\" must be a JSON list of strings");
          continue;
        }
        std::vector<std::string> servers;
        for (const auto& s : kv.second) {
          if (!s.IsScalar() || !nameserver(s.Scalar())) {
            errors.push_back(
                at(path, s) + "invalid nameserver " +
                (s.IsScalar() ? "\"" + s.Scalar() + "\"" : std::string("(not a string)")) +
                " for the stub domain \"" + domain +
                "\": expected IP or IP:port (node-cache refuses host names and tls:// too)");
            continue;
          }
          servers.push_back(s.Scalar());
        }
        out.stub_domains.emplace_back(std::move(domain), std::move(servers));
      }
    }
  }
  if (auto n = load("upstreamNameservers")) {
    std::string path = dir + "/upstreamNameservers";
    if (!n->IsSequence()) {
      errors.push_back(at(path, *n) + "expected a JSON list of servers");
    } else if (n->size() > 3) {
      errors.push_back(at(path, *n) + "upstreamNameservers cannot have more than three entries");
    } else {
      for (const auto& s : *n) {
        if (!s.IsScalar() || !nameserver(s.Scalar())) {
          errors.push_back(
              at(path, s) + "invalid upstream nameserver " +
              (s.IsScalar() ? "\"" + s.Scalar() + "\"" : std::string("(not a string)")) +
              ": expected IP or IP:port");
          continue;
        }
        out.upstream_nameservers.push_back(s.Scalar());
      }
    }
  }
  if (!errors.empty()) return std::unexpected(std::move(errors));
  return out;
}

}  // namespace localdns::config::corefile
