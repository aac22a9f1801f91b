// Shared pieces of the upstream unit tests: a question, the fake upstream's
// endpoint, and running an io_context until something happened (bounded).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>

#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/util/endpoint.hpp>

#include "fake_upstream.hpp"

namespace localdns::test {

inline util::Endpoint endpoint_of(const FakeUpstream& up) {
  return {boost::asio::ip::make_address("127.0.0.1"), up.port()};
}

// A port on loopback where nothing listens: connects are refused at once.
inline util::Endpoint closed_port() {
  return {boost::asio::ip::make_address("127.0.0.1"), 1};
}

// An A/IN question; keeps the wire name alive.
struct TestQuestion {
  explicit TestQuestion(const std::string& name, std::uint16_t qtype = 1)
      : wire(*dns::name_from_text(name)) {
    question = {dns::Bytes(reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()), qtype,
                1};
  }
  std::string wire;
  dns::Question question;
};

// Runs `ctx` until `done()` holds or `limit` of real time passed; returns done().
inline bool run_until(boost::asio::io_context& ctx, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) {
    ctx.restart();
    ctx.run_one_for(std::chrono::milliseconds(20));
  }
  return done();
}

}  // namespace localdns::test
