// node-local-dns's Corefile template: node-cache's rendering of it and its
// translation into localdns's Config. (The syntax itself: corefile_syntax.hpp,
// std-only so that the clang-14 fuzz target can build it.)
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <localdns/config/config.hpp>
#include <localdns/config/loader.hpp>  // Errors

namespace localdns::config::corefile {

// The kube-dns ConfigMap, mounted as a directory of files (node-cache's
// -kubednscm): `stubDomains` (JSON map of domain to servers) and
// `upstreamNameservers` (JSON list). A missing directory or file is empty;
// a file that does not parse is an error naming it.
struct KubeDns {
  std::vector<std::pair<std::string, std::vector<std::string>>> stub_domains;
  std::vector<std::string> upstream_nameservers;
};
std::expected<KubeDns, Errors> read_kube_dns_dir(const std::string& dir);

// What node-cache substitutes at run time.
struct Substitutions {
  std::vector<std::string> local_ips;  // __PILLAR__LOCAL__DNS__ (space separated)
  std::string cluster_dns;  // __PILLAR__CLUSTER__DNS__ (the upstream Service's ClusterIP)
  std::string prometheus_endpoint = ":9253";  // __PROMETHEUS__ENDPOINT__
  std::uint16_t dns_port = 53;                // stub-domain blocks' port
};

// The Corefile node-cache would write: placeholders substituted
// (__PILLAR__UPSTREAM__SERVERS__ from kube.upstream_nameservers, else
// /etc/resolv.conf), leftover __PILLAR__DNS__SERVER__ dropped, one block
// appended per stub domain, as node-cache does.
std::string render(std::string_view base, const Substitutions& subs, const KubeDns& kube);

struct TranslateOptions {
  std::string source = "Corefile";  // file name used in errors and warnings
  std::string base_dir;             // relative `import` paths resolve here ("": next to source)
  std::uint16_t default_port = 53;  // for keys without a port (CoreDNS's -dns.port)
  bool allow_file_imports = true;
};

struct Translation {
  Config config;                      // default_config() overlaid with the Corefile's blocks
  std::vector<std::string> warnings;  // one line per directive or default that does not carry over
};

// Parses and translates a (rendered) Corefile. Errors name the file, the line
// and the directive. The result is not validated (flags may still add to it):
// run config::validate() on the final Config.
std::expected<Translation, Errors> translate(std::string_view text, const TranslateOptions& opts);

// Reads FILE and translates it; relative imports resolve next to it.
std::expected<Translation, Errors> translate_file(const std::string& path);

// Installer placeholders node-cache never fills (__PILLAR__DNS__DOMAIN__, ...)
// still present in `text`, in order of appearance.
std::vector<std::string> leftover_placeholders(std::string_view text);

}  // namespace localdns::config::corefile
