// Search-path prefetch through the real listeners: a pod's resolver walking
// its Kubernetes search list (ndots:5) for a cold name, against Knot DNS and
// against the fault-injecting upstream with per-name delays.
#include <algorithm>
#include <chrono>

#include <catch2/catch.hpp>

#include <localdns/server/search_prefetch.hpp>

#include "ask.hpp"
#include "fake_upstream.hpp"
#include "instance.hpp"
#include "knot_server.hpp"
#include "reload_support.hpp"
#include "search_support.hpp"
#include "wait.hpp"

using namespace localdns;
using namespace localdns::test;
using config::Transport;

namespace {

// A reply's content, for comparing two: RCODE, answer records (any order),
// the size of the authority section. TTLs may differ by age.
std::string content(const Reply& r) {
  auto answers = r.answers;
  std::sort(answers.begin(), answers.end());
  std::string s = r.rcode + " authority=" + std::to_string(r.authority) + " answers:";
  for (const auto& a : answers)
    s += " " + a;
  return s;
}

// The arrival at the upstream of the first query for `name`.
std::optional<Clock::time_point> arrival(const FakeUpstream& up, const std::string& name) {
  for (const auto& q : up.seen_queries())
    if (FakeUpstream::name_of(q) == name) return q.at;
  return std::nullopt;
}

}  // namespace

TEST_CASE("warm: the later expansions of a cold external name come from the cache or in flight",
          "[integration][search-path]") {
  constexpr auto kDelay = std::chrono::milliseconds(150);  // each upstream answer
  const auto names = walk_of("www.external.test");
  FakeUpstream up_off, up_warm;
  up_off.set(cold_cluster(kDelay));
  up_warm.set(cold_cluster(kDelay));
  Instance off(
      make_config({group({"."}, {up_off.address()}, Transport::Udp)}, server::SearchPathMode::Off));
  Instance warm(make_config({group({"."}, {up_warm.address()}, Transport::Udp)},
                            server::SearchPathMode::Warm));
  auto before = walk(off, names);
  auto after = walk(warm, names);
  Clock::duration total_off{}, total_warm{};
  for (std::size_t i = 0; i < names.size(); ++i) {
    INFO(names[i] << ": off " << ms(before[i].took) << " ms, warm " << ms(after[i].took) << " ms");
    CHECK(content(after[i].reply) == content(before[i].reply));
    total_off += before[i].took;
    total_warm += after[i].took;
    // Every name went upstream once, with the feature or without.
    CHECK(up_off.queries_for(fqdn(names[i])) == 1);
    CHECK(up_warm.queries_for(fqdn(names[i])) == 1);
  }
  CHECK(after.back().reply.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  // Off, every step is a full upstream round trip; warm, the two in-cluster
  // expansions were asked with F and are cache hits by the time the pod asks.
  for (std::size_t i = 0; i < names.size(); ++i)
    CHECK(before[i].took >= kDelay);
  CHECK(after[1].took < kDelay / 2);
  CHECK(after[2].took < kDelay / 2);
  // The ones outside the cluster were in flight when the pod asked for them
  // (released as the answers of F and the cluster names came in, which is
  // when the pod moves on too: either may be first, and the other joins).
  CHECK(after[3].took < kDelay + kDelay / 2);
  CHECK(after[4].took < kDelay + kDelay / 2);
  INFO("walk: off " << ms(total_off) << " ms, warm " << ms(total_warm) << " ms");
  CHECK(total_warm + kDelay < total_off);
  CHECK(up_warm.queries() == up_off.queries());
  const auto st = warm.server().stats();
  CHECK(st.search_sets == 1);
  // The two in the cluster always went ahead of the pod; each of the two
  // outside either went ahead (the pod joined it) or behind (it joined the pod's).
  CHECK(st.search_sent >= 2);
  CHECK(st.search_sent <= 4);
  CHECK(st.coalesced >= st.search_sent - 2);
  CHECK(off.server().stats().search_sets == 0);
  // The pod asked for every name fetched ahead: all useful, once the window
  // for asking has passed.
  CHECK(wait_until(within(server::SearchPrefetch::kUsefulWindow + std::chrono::seconds(3)),
                   [&] { return warm.server().stats().search_useful == st.search_sent; }));
  CHECK(warm.server().stats().search_waste == 0);
}

TEST_CASE("warm: nothing leaves the cluster before the cluster names came back NXDOMAIN",
          "[integration][search-path]") {
  constexpr auto kClusterDelay = std::chrono::milliseconds(200);
  FakeUpstream up;
  auto b = cold_cluster(std::chrono::milliseconds(0));
  b.name_delays = {{"cluster.local.", kClusterDelay}};
  up.set(b);
  Instance ld(
      make_config({group({"."}, {up.address()}, Transport::Udp)}, server::SearchPathMode::Warm));
  const auto names = walk_of("www.external.test");
  // Only F: the rest is the walk's own doing.
  CHECK(ask(ld.endpoint(), names[0]).rcode == "NXDOMAIN");
  REQUIRE(wait_until(within(std::chrono::seconds(3)),
                     [&] { return up.queries_for(fqdn(names[4])) == 1; }));
  std::vector<Clock::time_point> at;
  for (const auto& n : names) {
    auto t = arrival(up, fqdn(n));
    REQUIRE(t);
    at.push_back(*t);
  }
  // The in-cluster ones went with F, before its answer came back.
  CHECK(at[1] - at[0] < kClusterDelay);
  CHECK(at[2] - at[0] < kClusterDelay);
  // Each outside name only after F and both cluster names were answered
  // (NXDOMAIN, kClusterDelay after each arrived), and after the one before it.
  for (std::size_t cluster = 0; cluster < 3; ++cluster) {
    CHECK(at[3] - at[cluster] >= kClusterDelay);
    CHECK(at[4] - at[cluster] >= kClusterDelay);
  }
  CHECK(at[4] >= at[3]);
  CHECK(ld.server().stats().search_sent == 4);
}

TEST_CASE("warm: a cluster name that exists ends the walk there", "[integration][search-path]") {
  FakeUpstream up;
  Behaviour b;
  b.nx_suffixes = {"default.svc.cluster.local.", std::string(kHostDomain) + "."};
  up.set(b);  // x.svc.cluster.local and x.cluster.local exist
  Instance ld(
      make_config({group({"."}, {up.address()}, Transport::Udp)}, server::SearchPathMode::Warm, 1));
  const auto names = walk_of("x");
  CHECK(ask(ld.endpoint(), names[0]).rcode == "NXDOMAIN");
  REQUIRE(wait_until(within(std::chrono::seconds(3)), [&] {
    return up.queries_for(fqdn(names[1])) == 1 && up.queries_for(fqdn(names[2])) == 1;
  }));
  // Two more round trips through the one worker and the upstream: the
  // cluster answers are in by then, and a release they caused would be too.
  ask(ld.endpoint(), "sync-1.example");
  ask(ld.endpoint(), "sync-2.example");
  CHECK(up.queries_for(fqdn(names[3])) == 0);
  CHECK(up.queries_for(fqdn(names[4])) == 0);
  CHECK(ld.server().stats().search_sent == 2);
  // The pod finds the name at the second step, from the cache.
  auto found = ask(ld.endpoint(), names[1]);
  CHECK(found.answers == std::vector<std::string>{FakeUpstream::answer_address()});
  CHECK(up.queries_for(fqdn(names[1])) == 1);
}

TEST_CASE("warm: a cache hit on the first expansion sends nothing", "[integration][search-path]") {
  FakeUpstream up;
  up.set(cold_cluster(std::chrono::milliseconds(0)));
  Instance ld(
      make_config({group({"."}, {up.address()}, Transport::Udp)}, server::SearchPathMode::Warm, 1));
  const auto names = walk_of("api.example");
  CHECK(ask(ld.endpoint(), names[0]).rcode == "NXDOMAIN");
  REQUIRE(wait_until(within(std::chrono::seconds(3)),
                     [&] { return up.queries_for(fqdn(names[4])) == 1; }));
  const auto sent = up.queries();
  const auto st = ld.server().stats();
  CHECK(st.search_sets == 1);
  // F again: a hit (its NXDOMAIN is cached for 5 s), and no walk.
  CHECK(ask(ld.endpoint(), names[0]).rcode == "NXDOMAIN");
  // A miss behind it on the one worker: anything the hit had started would
  // have gone out before this query does.
  ask(ld.endpoint(), "sync.example");
  CHECK(up.queries() == sent + 1);
  const auto now = ld.server().stats();
  CHECK(now.cache_hits == st.cache_hits + 1);
  CHECK(now.search_sets == 1);
  CHECK(now.search_sent == st.search_sent);
}

// Knot DNS with the cluster zone (svc-7.default.svc added), external.test,
// the node's domain corp.example and a top-level zone solo. with an address.
std::vector<std::pair<std::string, std::string>> knot_zones() {
  auto cluster = cluster_local_zone() + "svc-7.default.svc IN A 10.96.0.7\n";
  const std::string corp =
      "$ORIGIN corp.example.\n$TTL 60\n"
      "@ IN SOA ns.corp.example. hostmaster.corp.example. 1 7200 1800 86400 "
      "10\n@ IN NS ns\nns IN A 192.0.2.54\nintranet IN A 192.0.2.90\n";
  const std::string solo =
      "$ORIGIN solo.\n$TTL 60\n"
      "@ IN SOA ns.solo. hostmaster.solo. 1 7200 1800 86400 10\n"
      "@ IN NS ns\n@ IN A 192.0.2.70\nns IN A 192.0.2.55\n";
  return {{"cluster.local", cluster},
          {"external.test", external_test_zone()},
          {"corp.example", corp},
          {"solo", solo}};
}

TEST_CASE("warm: answers equal those with the feature off, Knot DNS upstream",
          "[integration][search-path]") {
  KnotServer knot(knot_zones());
  auto groups = [&] {
    return std::vector<config::UpstreamGroup>{
        group({"cluster.local"}, {knot.address()}, Transport::Udp),
        group({"."}, {knot.address()}, Transport::Udp)};
  };
  Instance off(make_config(groups(), server::SearchPathMode::Off));
  Instance warm(make_config(groups(), server::SearchPathMode::Warm));
  std::size_t compared = 0;
  for (const char* name : {"www.external.test", "alias.external.test", "v4only.external.test",
                           "nothing.external.test", "api", "svc-7", "intranet", "svc-7.default"}) {
    for (const char* ns : {"default", "other"}) {
      for (const char* type : {"A", "AAAA"}) {
        const auto names = walk_of(name, ns);
        auto a = walk(off, names, type);
        auto b = walk(warm, names, type);
        for (std::size_t i = 0; i < names.size(); ++i) {
          INFO(names[i] << " " << type);
          CHECK(content(b[i].reply) == content(a[i].reply));
          ++compared;
        }
      }
    }
  }
  CHECK(compared == 8 * 2 * 2 * 5);
  // The walks did run: F missed for every name with the shape.
  CHECK(warm.server().stats().search_sets > 0);
  CHECK(warm.server().stats().search_sent > 0);
  // And a name found at the second step was found the same way.
  auto svc7 = ask(warm.endpoint(), "svc-7.default.svc.cluster.local");
  CHECK(svc7.answers == std::vector<std::string>{"10.96.0.7"});
}

TEST_CASE("cname: the first expansion of a name found later in the walk is a CNAME to it",
          "[integration][search-path]") {
  KnotServer knot(knot_zones());
  auto groups = [&] {
    return std::vector<config::UpstreamGroup>{
        group({"cluster.local"}, {knot.address()}, Transport::Udp),
        group({"."}, {knot.address()}, Transport::Udp)};
  };
  Instance off(make_config(groups(), server::SearchPathMode::Off));
  Instance ld(make_config(groups(), server::SearchPathMode::Cname));

  // Found outside the cluster: CNAME to it, then its address, in the
  // client's letter case and ID; every TTL the smallest of the CNAME's
  // inputs (cluster.local's and corp.example's negative TTLs: 5 and 10 s).
  auto r = ask(ld.endpoint(), "WWW.External.Test.Default.svc.cluster.local", "A",
               {.query = {.id = 4321}});
  CHECK(r.rcode == "NOERROR");
  CHECK(r.id == 4321);
  CHECK(r.qname == "WWW.External.Test.Default.svc.cluster.local.");
  CHECK(r.answers == std::vector<std::string>{"www.external.test.", "192.0.2.80"});
  REQUIRE(r.answer_ttls.size() == 2);
  for (auto ttl : r.answer_ttls)
    CHECK(ttl <= 5);
  auto aaaa = ask(ld.endpoint(), "www.external.test.default.svc.cluster.local", "AAAA");
  CHECK(aaaa.answers == std::vector<std::string>{"www.external.test.", "2001:db8::80"});
  // Only the other type: CNAME and NODATA with the target's SOA.
  auto v4 = ask(ld.endpoint(), "v4only.external.test.default.svc.cluster.local", "AAAA");
  CHECK(v4.rcode == "NOERROR");
  CHECK(v4.answers == std::vector<std::string>{"v4only.external.test."});
  CHECK(v4.authority == 1);
  // Found at the second step, in the cluster.
  auto svc7 = ask(ld.endpoint(), "svc-7.default.default.svc.cluster.local");
  CHECK(svc7.answers == std::vector<std::string>{"svc-7.default.svc.cluster.local.", "10.96.0.7"});
  CHECK(ld.server().stats().search_cname == 4);
  // Cached as it was made: the same answer again, no new CNAME made.
  CHECK(ask(ld.endpoint(), "www.external.test.default.svc.cluster.local").answers == r.answers);
  CHECK(ld.server().stats().search_cname == 4);

  // Cluster names that exist, and names that exist nowhere, are unchanged.
  for (const char* name :
       {"api.default.svc.cluster.local", "nothing.external.test.default.svc.cluster.local",
        "intranet.other.svc.cluster.local"}) {
    INFO(name);
    CHECK(content(ask(ld.endpoint(), name)) == content(ask(off.endpoint(), name)));
  }
  auto nowhere = ask(ld.endpoint(), "nothing.external.test.default.svc.cluster.local");
  CHECK(nowhere.rcode == "NXDOMAIN");
  CHECK(nowhere.authority == 1);
  // A single-label name is sent nowhere outside the cluster, even where
  // solo. exists.
  CHECK(ask(ld.endpoint(), "solo.default.svc.cluster.local").rcode == "NXDOMAIN");
  CHECK(ask(ld.endpoint(), "solo.").answers == std::vector<std::string>{"192.0.2.70"});
  // With DO: never a CNAME (it would be unsigned).
  auto with_do = ask(ld.endpoint(), "alias.external.test.default.svc.cluster.local", "A",
                     {.query = {.edns = true, .do_bit = true}});
  CHECK(with_do.rcode == "NXDOMAIN");
  CHECK(ld.server().stats().search_cname == 4);
}

TEST_CASE("search_path through the binary: a reload turns warm on, --autopath at start, /metrics",
          "[integration][search-path][reload]") {
  FakeUpstream up;
  up.set(cold_cluster(std::chrono::milliseconds(0)));
  TempDir dir;
  auto config = [&](std::uint16_t port) {
    ReloadConfig c;
    c.port = port;
    c.metrics_port = free_port();
    c.health_port = free_port();
    c.control_socket = dir.file("ctl-" + std::to_string(port) + ".sock");
    c.threads = 1;  // a query behind another on the one worker sees what it started
    return c;
  };
  const std::vector<ReloadGroup> groups{{{"."}, up.address()}};
  const std::string search = "search_path:\n  host_search: [corp.example]\n";
  auto cfg = config(free_port());
  const auto path = dir.file("localdns.yaml");
  replace_file(path, cfg.yaml(groups) + search);
  const Endpoint ep{"127.0.0.1", cfg.port};
  Daemon d({"--config", path, "--no-watch"}, dir.file("log"));
  REQUIRE(d.wait_ready(ep, std::chrono::seconds(10)));
  // Off: F alone goes upstream.
  const auto first = walk_of("one.example");
  CHECK(ask(ep, first[0]).rcode == "NXDOMAIN");
  ask(ep, "sync.example");
  CHECK(up.queries_for(fqdn(first[1])) == 0);
  CHECK(metric(cfg.metrics_port, "localdns_search_path_walks_total") == 0);
  // A reload turns warm on.
  replace_file(path, cfg.yaml(groups) + search + "  mode: warm\n");
  d.signal(SIGHUP);
  REQUIRE(wait_until(within(std::chrono::seconds(5)),
                     [&] { return reloads(cfg.metrics_port, "success") == 1; }));
  const auto second = walk_of("two.example");
  CHECK(ask(ep, second[0]).rcode == "NXDOMAIN");
  CHECK(wait_until(within(std::chrono::seconds(3)),
                   [&] { return up.queries_for(fqdn(second[4])) == 1; }));
  CHECK(metric(cfg.metrics_port, "localdns_search_path_walks_total") == 1);
  CHECK(metric(cfg.metrics_port, "localdns_search_path_queries_total") == 4);
  CHECK(metric(cfg.metrics_port, "localdns_search_path_skipped_total") == 0);

  // --autopath on a config that leaves it off: warm from the start.
  auto cfg2 = config(free_port());
  const auto path2 = dir.file("off.yaml");
  replace_file(path2, cfg2.yaml(groups) + search);
  const Endpoint ep2{"127.0.0.1", cfg2.port};
  Daemon d2({"--config", path2, "--no-watch", "--autopath"}, dir.file("log2"));
  REQUIRE(d2.wait_ready(ep2, std::chrono::seconds(10)));
  const auto third = walk_of("three.example");
  CHECK(ask(ep2, third[0]).rcode == "NXDOMAIN");
  CHECK(wait_until(within(std::chrono::seconds(3)),
                   [&] { return up.queries_for(fqdn(third[4])) == 1; }));
  CHECK(metric(cfg2.metrics_port, "localdns_search_path_walks_total") == 1);
}
