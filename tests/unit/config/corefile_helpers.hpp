// Helpers shared by the Corefile tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

#include <localdns/config/corefile.hpp>
#include <localdns/config/loader.hpp>

namespace corefile_test {

using namespace localdns::config;
using namespace localdns::config::corefile;

inline std::string all(const std::vector<std::string>& e) {
  std::string s;
  for (const auto& x : e)
    s += x + "\n";
  return s;
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream b;
  b << f.rdbuf();
  return b.str();
}

inline std::string data(const std::string& name) {
  return std::string(LOCALDNS_SOURCE_DIR) + "/tests/data/corefile/" + name;
}

inline void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
}

// What the addon's install instructions do in iptables mode (sed).
inline std::string installed_template() {
  std::string t = slurp(data("nodelocaldns.yaml.Corefile"));
  replace_all(t, "__PILLAR__LOCAL__DNS__", "169.254.20.10");
  replace_all(t, "__PILLAR__DNS__DOMAIN__", "cluster.local");
  replace_all(t, "__PILLAR__DNS__SERVER__", "10.96.0.10");
  return t;
}

inline Substitutions stock_subs() {
  Substitutions s;
  s.local_ips = {"169.254.20.10", "10.96.0.10"};
  s.cluster_dns = "10.100.0.20";  // kube-dns-upstream's ClusterIP
  return s;
}

inline Endpoint ep(const char* text) {
  auto a = boost::asio::ip::make_address(text);
  return Endpoint{a, 53};
}

inline Endpoint ep(const char* text, std::uint16_t port) {
  return Endpoint{boost::asio::ip::make_address(text), port};
}

inline Translation must_translate(const std::string& text, TranslateOptions opts = {}) {
  auto t = translate(text, opts);
  INFO(text);
  if (!t) FAIL(all(t.error()));
  return *t;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/localdns-corefile-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
  }
};

}  // namespace corefile_test
