// Helpers of the drop-in tests: the real binary run through sh, scratch
// directories, node-local-dns's template and DaemonSet args.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace localdns::test::dropin {

// node-local-dns's Corefile template, as kubernetes/kubernetes ships it in
// cluster/addons/dns/nodelocaldns/nodelocaldns.yaml (ConfigMap node-local-dns).
inline std::string official_template();

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

// What node-local-dns's install instructions run on the manifest (iptables mode).
inline std::string installer_sed(const std::string& s) {
  return replace_all(replace_all(replace_all(s, "__PILLAR__LOCAL__DNS__", "169.254.20.10"),
                                 "__PILLAR__DNS__DOMAIN__", "cluster.local"),
                     "__PILLAR__DNS__SERVER__", "10.96.0.10");
}

// A scratch directory, removed at the end.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("localdns-dropin-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string file(const std::string& name, const std::string& content) const {
    auto p = (path / name).string();
    std::ofstream(p) << content;
    return p;
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream b;
  b << f.rdbuf();
  return b.str();
}

struct Run {
  int status;
  std::string out;
  std::string err;
};

// Runs the binary through sh with `env` (VAR=value ...) and `args` (already
// quoted where needed); stdout and stderr apart.
inline Run run(const std::string& env, const std::string& args) {
  TempDir d;
  std::string cmd = "env -u KUBE_DNS_SERVICE_HOST -u KUBE_DNS_UPSTREAM_SERVICE_HOST " + env + " " +
                    LOCALDNS_BINARY + " " + args + " > " + (d / "out") + " 2> " + (d / "err");
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(d / "out"), slurp(d / "err")};
}

inline std::string official_template() {
  return slurp(std::string(LOCALDNS_SOURCE_DIR) +
               "/tests/data/corefile/nodelocaldns.yaml.Corefile");
}

inline std::size_t lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// node-local-dns's DaemonSet args (cluster/addons/dns/nodelocaldns), after the
// installer's sed.
inline const std::string kStockArgs =
    "-localip 169.254.20.10,10.96.0.10 -conf CONF -upstreamsvc kube-dns-upstream "
    "-pidfile /tmp/node-cache.pid";
inline const std::string kUpstreamEnv = "KUBE_DNS_UPSTREAM_SERVICE_HOST=10.96.0.11";

inline std::string stock_args(const TempDir& d) {
  return replace_all(kStockArgs, "CONF", d / "Corefile");
}

}  // namespace localdns::test::dropin
