// The search-path arithmetic: which questions have the shape of a first
// search expansion, the candidates after it, and their release order.
#include <catch2/catch.hpp>

#include <localdns/dns/name.hpp>
#include <localdns/server/search_path.hpp>

#include "packets.hpp"

using namespace localdns;
using server::CandidateOutcome;

namespace {

constexpr std::uint16_t kA = 1, kAAAA = 28, kTXT = 16, kSRV = 33;

server::SearchPathSettings settings(std::vector<std::string> host = {"corp.example.",
                                                                     "example.net."}) {
  server::SearchPathSettings s;
  s.mode = server::SearchPathMode::Warm;
  s.host_search = std::move(host);
  return s;
}

std::string wire(const char* text) {
  return *dns::name_from_text(text);
}
dns::Bytes bytes(const std::string& w) {
  return {reinterpret_cast<const std::uint8_t*>(w.data()), w.size()};
}

std::optional<server::Expansion> match(const server::SearchPath& p, const char* name,
                                       std::uint16_t qtype = kA) {
  auto w = wire(name);
  return p.match(bytes(w), qtype);
}

std::vector<std::string> names(const server::SearchPath& p, const char* f) {
  auto w = wire(f);
  auto e = p.match(bytes(w), kA);
  REQUIRE(e);
  std::vector<std::string> out;
  for (const auto& c : p.candidates(bytes(w), *e))
    out.push_back(dns::name_to_text(c.name) + (c.in_cluster ? " (cluster)" : ""));
  return out;
}

}  // namespace

TEST_CASE("a first search expansion is N.<ns>.svc.<cluster domain>", "[server][search-path]") {
  server::SearchPath p(settings());
  auto e = match(p, "www.external.test.default.svc.cluster.local");
  REQUIRE(e);
  CHECK(e->n_labels == 3);
  CHECK(e->n_len == wire("www.external.test").size() - 1);
  CHECK(e->ns_len == 8);  // \7default
  CHECK(match(p, "redis.prod.svc.cluster.local", kAAAA));
  CHECK(match(p, "REDIS.Prod.SVC.Cluster.Local"));  // any letter case
  // Only A and AAAA.
  CHECK_FALSE(match(p, "redis.prod.svc.cluster.local", kTXT));
  CHECK_FALSE(match(p, "redis.prod.svc.cluster.local", kSRV));
  // The namespace is one label, N at least one.
  CHECK_FALSE(match(p, "prod.svc.cluster.local"));
  CHECK_FALSE(match(p, "svc.cluster.local"));
  CHECK_FALSE(match(p, "cluster.local"));
  CHECK_FALSE(match(p, "redis.prod.pod.cluster.local"));
  CHECK_FALSE(match(p, "redis.prod.svc.other.local"));
  CHECK_FALSE(match(p, "redis.prod.xsvc.cluster.local"));  // label boundaries
  CHECK_FALSE(match(p, "redis.prodsvc.cluster.local"));
  // Another cluster domain.
  auto s = settings();
  s.cluster_domain = "k8s.internal.";
  server::SearchPath q(s);
  CHECK(match(q, "api.default.svc.k8s.internal"));
  CHECK_FALSE(match(q, "api.default.svc.cluster.local"));
}

TEST_CASE("N has fewer dots than ndots", "[server][search-path]") {
  server::SearchPath p(settings());                                // ndots 5
  CHECK(match(p, "a.b.c.d.e.default.svc.cluster.local"));          // 4 dots
  CHECK_FALSE(match(p, "a.b.c.d.e.f.default.svc.cluster.local"));  // 5 dots: asked as is first
  auto s = settings();
  s.ndots = 1;
  server::SearchPath one(s);
  CHECK(match(one, "redis.default.svc.cluster.local"));
  CHECK_FALSE(match(one, "www.example.default.svc.cluster.local"));
}

TEST_CASE("names that never match", "[server][search-path]") {
  server::SearchPath p(settings());
  // Already ending in a host search domain (or being one).
  CHECK_FALSE(match(p, "db.corp.example.default.svc.cluster.local"));
  CHECK_FALSE(match(p, "corp.example.default.svc.cluster.local"));
  CHECK_FALSE(match(p, "x.example.net.default.svc.cluster.local"));
  CHECK(match(p, "db.notcorp.example.default.svc.cluster.local"));  // label boundaries
  // _port._proto names.
  CHECK_FALSE(match(p, "_http._tcp.web.default.svc.cluster.local"));
  CHECK_FALSE(match(p, "_dns.web.default.svc.cluster.local"));
  CHECK_FALSE(match(p, "web._ns.svc.cluster.local"));
  // Reverse zones.
  CHECK_FALSE(match(p, "4.3.in-addr.arpa.default.svc.cluster.local"));
  CHECK_FALSE(match(p, "b.a.ip6.arpa.default.svc.cluster.local"));
  auto s = settings();
  s.ndots = 15;
  server::SearchPath deep(s);
  CHECK_FALSE(match(deep, "10.0.96.10.in-addr.arpa.default.svc.cluster.local"));
  CHECK(match(deep, "10.0.96.10.in-addr.example.default.svc.cluster.local"));
}

TEST_CASE("the candidates follow the pod's search list", "[server][search-path]") {
  server::SearchPath p(settings());
  CHECK(names(p, "www.external.test.default.svc.cluster.local") ==
        std::vector<std::string>{"www.external.test.svc.cluster.local. (cluster)",
                                 "www.external.test.cluster.local. (cluster)",
                                 "www.external.test.corp.example.",
                                 "www.external.test.example.net.", "www.external.test."});
  // Lower case, whatever the client sent.
  CHECK(names(p, "Redis.PROD.svc.cluster.local") ==
        std::vector<std::string>{"redis.svc.cluster.local. (cluster)",
                                 "redis.cluster.local. (cluster)", "redis.corp.example.",
                                 "redis.example.net.", "redis."});
  // No host search domains: only the name itself outside the cluster.
  server::SearchPath bare(settings({}));
  CHECK(names(bare, "api.default.svc.cluster.local") ==
        std::vector<std::string>{"api.svc.cluster.local. (cluster)", "api.cluster.local. (cluster)",
                                 "api."});
  // A host domain under the cluster domain is not the node's: left out.
  server::SearchPath inside(settings({"svc.cluster.local.", "corp.example."}));
  CHECK(names(inside, "api.default.svc.cluster.local") ==
        std::vector<std::string>{"api.svc.cluster.local. (cluster)", "api.cluster.local. (cluster)",
                                 "api.corp.example.", "api."});
  // A host domain that repeats one is not asked twice.
  server::SearchPath dup(settings({"example.net.", "example.net."}));
  CHECK(names(dup, "a.b.svc.cluster.local").size() == 4);
}

TEST_CASE("the candidates' release order", "[server][search-path]") {
  server::SearchPath p(settings());
  auto w = wire("www.external.test.default.svc.cluster.local");
  auto c = p.candidates(bytes(w), *p.match(bytes(w), kA));
  REQUIRE(c.size() == 5);
  using O = CandidateOutcome;
  std::vector<O> out(5, O::Pending);
  // In the cluster: at once, with F.
  CHECK(server::releasable(c, O::Pending, out) == 2);
  CHECK(server::releasable(c, O::NxDomain, out) == 2);
  out[0] = O::NxDomain;
  CHECK(server::releasable(c, O::NxDomain, out) == 2);
  CHECK(server::releasable(c, O::Pending, out) == 2);
  // Outside: once F and every one before came back NXDOMAIN; one at a time.
  out[1] = O::NxDomain;
  CHECK(server::releasable(c, O::Pending, out) == 2);
  CHECK(server::releasable(c, O::NxDomain, out) == 3);
  out[2] = O::NxDomain;
  CHECK(server::releasable(c, O::NxDomain, out) == 4);
  out[3] = O::NxDomain;
  CHECK(server::releasable(c, O::NxDomain, out) == 5);
  // Anything else stops the walk where it is: the pod stops there too, or
  // resolvers disagree on what comes next.
  for (auto stop : {O::Records, O::NoData, O::ServFail, O::Timeout}) {
    CHECK(server::releasable(c, stop, std::vector<O>(5, O::NxDomain)) == 2);
    std::vector<O> o(5, O::NxDomain);
    o[1] = stop;
    CHECK(server::releasable(c, O::NxDomain, o) == 2);
    o[1] = O::NxDomain;
    o[2] = stop;
    CHECK(server::releasable(c, O::NxDomain, o) == 3);
  }
}

TEST_CASE("an answer as the walk reads it", "[server][search-path]") {
  using test::ResponseBuilder;
  auto outcome = [](const test::Packet& msg) {
    auto v = dns::parse_response(msg);
    REQUIRE(v);
    return server::outcome_of(msg, *v);
  };
  const char* name = "www.external.test.svc.cluster.local";
  CHECK(outcome(ResponseBuilder(1, name).rcode(3).authority(test::soa_record(30, 5)).build()) ==
        CandidateOutcome::NxDomain);
  CHECK(outcome(ResponseBuilder(1, name).answer(test::a_record(30, {192, 0, 2, 1})).build()) ==
        CandidateOutcome::Records);
  CHECK(outcome(ResponseBuilder(1, name).authority(test::soa_record(30, 5)).build()) ==
        CandidateOutcome::NoData);
  // Records of another type than asked: none of it.
  CHECK(outcome(ResponseBuilder(1, name, 28).answer(test::a_record(30, {192, 0, 2, 1})).build()) ==
        CandidateOutcome::NoData);
  CHECK(outcome(ResponseBuilder(1, name).rcode(2).build()) == CandidateOutcome::ServFail);
  CHECK(outcome(ResponseBuilder(1, name).rcode(5).build()) == CandidateOutcome::ServFail);
}
