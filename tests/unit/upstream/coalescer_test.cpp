#include <catch2/catch.hpp>

#include <localdns/upstream/coalescer.hpp>

using namespace localdns::upstream;

TEST_CASE("the first asker leads, the others wait, all are answered once", "[coalescer]") {
  Coalescer c;
  int calls = 0;
  Status seen = Status::Ok;
  auto waiter = [&](const Result& r) {
    ++calls;
    seen = r.status;
  };
  CHECK(c.join("k", waiter) == Coalescer::Role::Leader);
  CHECK(c.join("k", waiter) == Coalescer::Role::Waiting);
  CHECK(c.join("other", waiter) == Coalescer::Role::Leader);
  CHECK(c.pending_keys() == 2);
  c.complete("k", Result{Status::Timeout, {}, nullptr});
  CHECK(calls == 2);
  CHECK(seen == Status::Timeout);
  c.complete("k", Result{Status::Ok, {}, nullptr});  // already done: nothing runs twice
  CHECK(calls == 2);
  CHECK(c.pending_keys() == 1);
  CHECK(c.join("k", waiter) == Coalescer::Role::Leader);  // a new round
}

TEST_CASE("waiters per key are bounded", "[coalescer]") {
  Coalescer c;
  auto noop = [](const Result&) {};
  CHECK(c.join("hot", noop) == Coalescer::Role::Leader);
  for (std::size_t i = 1; i < Coalescer::kMaxWaitersPerKey; ++i) {
    REQUIRE(c.join("hot", noop) == Coalescer::Role::Waiting);
  }
  CHECK(c.join("hot", noop) == Coalescer::Role::Overflow);
}
