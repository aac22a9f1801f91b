#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <localdns/dns/name.hpp>
#include <localdns/server/coalescer.hpp>
#include <localdns/server/query_handler.hpp>

using namespace localdns::server;

TEST_CASE("the first asker leads, the others wait, all are handed out once", "[coalescer]") {
  Coalescer<int> c;
  CHECK(c.join("k", 1) == JoinRole::Leader);
  CHECK(c.join("k", 2) == JoinRole::Waiting);
  CHECK(c.join("other", 3) == JoinRole::Leader);
  CHECK(c.pending_keys() == 2);
  CHECK(c.take("k") == std::vector<int>{1, 2});  // in join order, the leader's first
  CHECK(c.take("k").empty());                    // already done: nothing handed out twice
  CHECK(c.pending_keys() == 1);
  CHECK(c.join("k", 4) == JoinRole::Leader);  // a new round
  CHECK(c.take("other") == std::vector<int>{3});
}

TEST_CASE("waiters per key are bounded", "[coalescer]") {
  Coalescer<int> c;
  CHECK(c.join("hot", 0) == JoinRole::Leader);
  for (std::size_t i = 1; i < Coalescer<int>::kMaxWaitersPerKey; ++i) {
    REQUIRE(c.join("hot", 0) == JoinRole::Waiting);
  }
  CHECK(c.join("hot", 0) == JoinRole::Overflow);
  CHECK(c.take("hot").size() == Coalescer<int>::kMaxWaitersPerKey);
}

TEST_CASE("a refresh leads a round with no waiter only when none is in flight", "[coalescer]") {
  Coalescer<std::string> c;
  CHECK(c.lead_if_idle("k"));
  CHECK_FALSE(c.lead_if_idle("k"));                   // its own round is in flight
  CHECK(c.join("k", "client") == JoinRole::Waiting);  // clients join the refresh
  CHECK(c.take("k") == std::vector<std::string>{"client"});
  CHECK(c.join("k", "first") == JoinRole::Leader);
  CHECK_FALSE(c.lead_if_idle("k"));  // a client's miss is in flight: it refreshes the entry
  CHECK(c.take("k") == std::vector<std::string>{"first"});
  CHECK(c.pending_keys() == 0);
}

TEST_CASE("one question routed to two groups is two rounds (FlightKey)", "[coalescer][reload]") {
  // As after a reload moved the question's zone: the old group's query in
  // flight and a new query of the new group must not share a round.
  localdns::upstream::GroupState old_group{localdns::upstream::GroupSettings{}};
  localdns::upstream::GroupState new_group{localdns::upstream::GroupSettings{}};
  auto name = *localdns::dns::name_from_text("www.moved.test");
  localdns::dns::Question q{
      localdns::dns::Bytes(reinterpret_cast<const std::uint8_t*>(name.data()), name.size()), 1, 1};
  auto key = localdns::cache::Key::make(q, false, false);
  FlightKey before(key, &old_group), after(key, &new_group), again(key, &old_group);
  CHECK(before.view() != after.view());
  CHECK(before.view() == again.view());
  CHECK(before.view().ends_with(key.view()));
  Coalescer<int> c;
  CHECK(c.join(before.view(), 1) == JoinRole::Leader);
  CHECK(c.join(after.view(), 2) == JoinRole::Leader);
  CHECK(c.join(again.view(), 3) == JoinRole::Waiting);
  CHECK(c.take(before.view()) == std::vector<int>{1, 3});
  CHECK(c.take(after.view()) == std::vector<int>{2});
}
