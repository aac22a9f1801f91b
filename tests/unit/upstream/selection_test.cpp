#include <catch2/catch.hpp>

#include <localdns/upstream/selection.hpp>

using namespace localdns;
using upstream::Policy;
using upstream::server_bit;
using upstream::ServerSelector;

TEST_CASE("server bits stop at the 64th server", "[upstream][selection]") {
  CHECK(server_bit(0) == 1);
  CHECK(server_bit(63) == std::uint64_t{1} << 63);
  CHECK(server_bit(64) == 0);
  CHECK(server_bit(-1) == 0);
}

TEST_CASE("sequential takes the first untried server that is up", "[upstream][selection]") {
  util::SequenceRandom random({});
  ServerSelector s(Policy::Sequential, random);
  CHECK(s.pick(0, 0, 0) == -1);
  CHECK(s.pick(3, 0, 0) == 0);
  CHECK(s.pick(3, 0, 0) == 0);  // no rotation
  CHECK(s.pick(3, server_bit(0), 0) == 1);
  CHECK(s.pick(3, server_bit(0) | server_bit(1), 0) == 2);
  // Down servers are passed over while another untried one is up.
  CHECK(s.pick(3, 0, server_bit(0)) == 1);
  CHECK(s.pick(3, 0, server_bit(0) | server_bit(1)) == 2);
  // All down: untried ones first even so.
  CHECK(s.pick(3, server_bit(0), server_bit(0) | server_bit(1) | server_bit(2)) == 1);
  // An untried server that is down beats tried ones that are up.
  CHECK(s.pick(3, server_bit(0) | server_bit(1), server_bit(2)) == 2);
  // All tried: any, so the first.
  CHECK(s.pick(3, server_bit(0) | server_bit(1) | server_bit(2), 0) == 0);
}

TEST_CASE("random picks among the best candidates with the random source",
          "[upstream][selection]") {
  util::SequenceRandom random({2, 0, 1, 5, 7});
  ServerSelector s(Policy::Random, random);
  // Candidates 0, 1, 2: the values modulo 3.
  CHECK(s.pick(3, 0, 0) == 2);
  CHECK(s.pick(3, 0, 0) == 0);
  CHECK(s.pick(3, 0, 0) == 1);
  CHECK(s.pick(3, 0, 0) == 2);  // 5 % 3
  // Server 1 tried: candidates 0 and 2, so 7 % 2 = 1 picks server 2.
  CHECK(s.pick(3, server_bit(1), 0) == 2);
  // Then 2 % 2 = 0 picks server 0: never the tried one while others remain.
  CHECK(s.pick(3, server_bit(1), 0) == 0);
  // One candidate left (0 tried, 1 down): whatever the random value.
  for (int i = 0; i < 5; ++i)
    CHECK(s.pick(3, server_bit(0), server_bit(1)) == 2);
}

TEST_CASE("round_robin takes the next candidate in turn", "[upstream][selection]") {
  util::SequenceRandom random({});
  ServerSelector s(Policy::RoundRobin, random);
  CHECK(s.pick(3, 0, 0) == 0);
  CHECK(s.pick(3, 0, 0) == 1);
  CHECK(s.pick(3, 0, 0) == 2);
  CHECK(s.pick(3, 0, 0) == 0);
  // Server 1 down: the turn (now 4) runs over the candidates 0 and 2.
  CHECK(s.pick(3, 0, server_bit(1)) == 0);
  CHECK(s.pick(3, 0, server_bit(1)) == 2);
  CHECK(s.pick(3, 0, server_bit(1)) == 0);
}
