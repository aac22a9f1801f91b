#include <vector>

#include <catch2/catch.hpp>

#include <localdns/server/search_target.hpp>

using namespace localdns::server;

namespace {

constexpr std::uint16_t kA = 1;
constexpr std::uint16_t kAaaa = 28;

TargetCandidate nx(bool in_cluster, std::uint32_t negative_ttl) {
  return {TargetOutcome::NxDomain, TargetOutcome::NxDomain, in_cluster, negative_ttl};
}
TargetCandidate both(TargetOutcome a, TargetOutcome aaaa, bool in_cluster) {
  return {a, aaaa, in_cluster, UINT32_MAX};
}

SearchTarget choose(const std::vector<TargetCandidate>& cs, std::uint16_t qtype = kA,
                    bool single_label = false, std::uint32_t f_negative = 300) {
  return choose_search_target({cs, qtype, single_label, f_negative});
}

// The Kubernetes list after F for "www.external.test" with one host domain:
// www.external.test.svc.cluster.local, www.external.test.cluster.local,
// www.external.test.corp.example, www.external.test.
std::vector<TargetCandidate> external(TargetCandidate host_domain, TargetCandidate absolute) {
  return {nx(true, 60), nx(true, 45), host_domain, absolute};
}

}  // namespace

TEST_CASE("the target is the first candidate that exists after NXDOMAINs",
          "[server][search_target]") {
  const TargetCandidate exists = both(TargetOutcome::Records, TargetOutcome::Records, false);
  SECTION("found at the end of the walk, negative TTL over F and the skipped") {
    auto t = choose(external(nx(false, 90), exists), kA, false, 300);
    CHECK(t.verdict == Verdict::Answer);
    CHECK(t.index == 3);
    CHECK(t.negative_ttl == 45);
  }
  SECTION("F's negative TTL counts too") {
    auto t = choose(external(nx(false, 90), exists), kA, false, 10);
    CHECK(t.verdict == Verdict::Answer);
    CHECK(t.negative_ttl == 10);
  }
  SECTION("the earlier of two existing names wins, later ones do not count") {
    auto t =
        choose(external(both(TargetOutcome::Records, TargetOutcome::NoData, false), nx(false, 1)));
    CHECK(t.verdict == Verdict::Answer);
    CHECK(t.index == 2);
    CHECK(t.negative_ttl == 45);
  }
  SECTION("found at the first step: only F's negative TTL") {
    auto t = choose({both(TargetOutcome::Records, TargetOutcome::NoData, true), nx(true, 1)}, kA,
                    false, 30);
    CHECK(t.verdict == Verdict::Answer);
    CHECK(t.index == 0);
    CHECK(t.negative_ttl == 30);
  }
}

TEST_CASE("a target with only the other type gives the NODATA variant", "[server][search_target]") {
  const TargetCandidate v4_only = both(TargetOutcome::Records, TargetOutcome::NoData, false);
  auto aaaa = choose(external(nx(false, 90), v4_only), kAaaa);
  CHECK(aaaa.verdict == Verdict::NoData);
  CHECK(aaaa.index == 3);
  CHECK(aaaa.negative_ttl == 45);
  // The same outcomes pick the same X for the other type.
  auto a = choose(external(nx(false, 90), v4_only), kA);
  CHECK(a.verdict == Verdict::Answer);
  CHECK(a.index == 3);
}

TEST_CASE("an earlier candidate that is not NXDOMAIN stops the walk", "[server][search_target]") {
  const TargetCandidate exists = both(TargetOutcome::Records, TargetOutcome::Records, false);
  SECTION("NODATA for both types") {
    auto t = choose(external(both(TargetOutcome::NoData, TargetOutcome::NoData, false), exists));
    CHECK(t.verdict == Verdict::AnswerF);
  }
  SECTION("SERVFAIL for one type") {
    auto t =
        choose(external(both(TargetOutcome::NxDomain, TargetOutcome::ServFail, false), exists));
    CHECK(t.verdict == Verdict::AnswerF);
  }
  SECTION("timed out for one type") {
    auto t =
        choose(external(both(TargetOutcome::TimedOut, TargetOutcome::NxDomain, false), exists));
    CHECK(t.verdict == Verdict::AnswerF);
  }
  SECTION("NXDOMAIN for one type and NODATA for the other") {
    auto t = choose(external(both(TargetOutcome::NxDomain, TargetOutcome::NoData, false), exists));
    CHECK(t.verdict == Verdict::AnswerF);
  }
  SECTION("a target that failed for the asked type") {
    auto t = choose(
        external(nx(false, 90), both(TargetOutcome::ServFail, TargetOutcome::Records, false)));
    CHECK(t.verdict == Verdict::AnswerF);
  }
  SECTION("a target with records for one type and NXDOMAIN for the other") {
    auto t = choose(
        external(nx(false, 90), both(TargetOutcome::Records, TargetOutcome::NxDomain, false)));
    CHECK(t.verdict == Verdict::AnswerF);
  }
}

TEST_CASE("a choice that depends on an unknown outcome waits", "[server][search_target]") {
  const TargetCandidate exists = both(TargetOutcome::Records, TargetOutcome::Records, false);
  SECTION("an earlier candidate half known") {
    auto t = choose(external(both(TargetOutcome::NxDomain, TargetOutcome::Pending, false), exists));
    CHECK(t.verdict == Verdict::Pending);
  }
  SECTION("the target's other type still in flight") {
    auto t = choose(
        external(nx(false, 90), both(TargetOutcome::Records, TargetOutcome::Pending, false)));
    CHECK(t.verdict == Verdict::Pending);
  }
  SECTION("a known stop decides without waiting") {
    auto stop =
        choose(external(both(TargetOutcome::ServFail, TargetOutcome::Pending, false), exists));
    CHECK(stop.verdict == Verdict::AnswerF);
    auto mixed = choose({both(TargetOutcome::NxDomain, TargetOutcome::NoData, true),
                         both(TargetOutcome::Pending, TargetOutcome::Pending, true)});
    CHECK(mixed.verdict == Verdict::AnswerF);
  }
  SECTION("later unknowns do not matter once the target is known") {
    auto t = choose({nx(true, 60), both(TargetOutcome::Records, TargetOutcome::NoData, true),
                     both(TargetOutcome::Pending, TargetOutcome::Pending, false)});
    CHECK(t.verdict == Verdict::Answer);
    CHECK(t.index == 1);
  }
}

TEST_CASE("a single-label name never targets a name outside the cluster",
          "[server][search_target]") {
  const TargetCandidate exists_out = both(TargetOutcome::Records, TargetOutcome::Records, false);
  SECTION("redis. exists: still NXDOMAIN") {
    // redis.svc.cluster.local, redis.cluster.local, redis.corp.example, redis.
    auto t = choose({nx(true, 60), nx(true, 60), nx(false, 60), exists_out}, kA, true);
    CHECK(t.verdict == Verdict::AnswerF);
  }
  SECTION("out-of-cluster outcomes need not be known") {
    auto t = choose(
        {nx(true, 60), nx(true, 60), both(TargetOutcome::Pending, TargetOutcome::Pending, false),
         both(TargetOutcome::Pending, TargetOutcome::Pending, false)},
        kA, true);
    CHECK(t.verdict == Verdict::AnswerF);
  }
  SECTION("an in-cluster candidate may be the target") {
    auto t = choose(
        {nx(true, 60), both(TargetOutcome::Records, TargetOutcome::NoData, true), exists_out}, kA,
        true, 300);
    CHECK(t.verdict == Verdict::Answer);
    CHECK(t.index == 1);
    CHECK(t.negative_ttl == 60);
  }
  SECTION("the same list for a name of two labels does target outside") {
    auto t = choose({nx(true, 60), nx(true, 60), nx(false, 60), exists_out}, kA, false);
    CHECK(t.verdict == Verdict::Answer);
    CHECK(t.index == 3);
  }
}

TEST_CASE("no target when nothing exists or the type is not an address",
          "[server][search_target]") {
  auto none = choose(external(nx(false, 60), nx(false, 60)));
  CHECK(none.verdict == Verdict::AnswerF);
  CHECK(choose({}).verdict == Verdict::AnswerF);
  auto mx = choose({both(TargetOutcome::Records, TargetOutcome::Records, true)}, 15);
  CHECK(mx.verdict == Verdict::AnswerF);
}
