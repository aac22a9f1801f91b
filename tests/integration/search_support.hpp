// What the search-path integration tests share: a configuration with the
// prefetch on and one node search domain, a pod's walk for a name, asking
// it step by step, and an upstream where the cluster and the node's domain
// answer NXDOMAIN.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "ask.hpp"
#include "fake_upstream.hpp"
#include "instance.hpp"

namespace localdns::test {

using Clock = std::chrono::steady_clock;

// The node's own search domain, appended to every pod's list by kubelet.
inline constexpr const char* kHostDomain = "corp.example";

inline config::Config make_config(std::vector<config::UpstreamGroup> groups,
                                  server::SearchPathMode mode, unsigned threads = 2) {
  config::Config c;
  c.threads = threads;
  c.forward = std::move(groups);
  c.search_path.mode = mode;
  c.search_path.host_search_from_resolv_conf = false;
  c.search_path.host_search = {std::string(kHostDomain) + "."};
  return c;
}

// What a glibc pod in namespace `ns` asks for `name`, in order.
inline std::vector<std::string> walk_of(const std::string& name,
                                        const std::string& ns = "default") {
  return {name + "." + ns + ".svc.cluster.local", name + ".svc.cluster.local",
          name + ".cluster.local", name + "." + kHostDomain, name + "."};
}

struct Step {
  Reply reply;
  Clock::duration took;
};

// Asks each name of the walk in turn (a resolver moving on after each
// negative answer), timing each.
inline std::vector<Step> walk(const Instance& ld, const std::vector<std::string>& names,
                              const std::string& type = "A") {
  std::vector<Step> out;
  for (const auto& n : names) {
    auto t0 = Clock::now();
    auto r = ask(ld.endpoint(), n, type);
    out.push_back({r, Clock::now() - t0});
  }
  return out;
}

inline long long ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// A name as the fake upstream counts it: lower case, one trailing dot.
inline std::string fqdn(const std::string& name) {
  return name.ends_with('.') ? name : name + ".";
}

// Every name in the cluster domain and the node's domain is NXDOMAIN; any
// other name has an A record (the fake upstream's synthetic answer).
inline Behaviour cold_cluster(std::chrono::milliseconds delay) {
  Behaviour b;
  b.delay = delay;
  b.nx_suffixes = {"cluster.local.", std::string(kHostDomain) + "."};
  return b;
}

}  // namespace localdns::test
