// What a TCP connection needs to know about a query it carries: the question
// (to match answers) and whom to tell of the answer or of the connection's
// loss. Exchange implements it; tests implement it to drive TcpPool alone.
//
// A connection holds each pending query by shared_ptr until it is answered,
// cancelled or lost, and calls it on the connection's worker thread.
#pragma once

#include <cstdint>

#include <localdns/dns/message.hpp>
#include <localdns/dns/wire.hpp>

namespace localdns::upstream {

class TcpConnection;

class PendingQuery {
 public:
  // The question as sent (lower case): a frame with the query's ID but
  // another question is not this query's answer.
  virtual const dns::Question& question() const = 0;
  // The answer carrying `id` arrived on `conn`; `rv` is null when the frame
  // did not parse. The connection no longer holds the query.
  virtual void on_tcp_answer(const TcpConnection* conn, std::uint16_t id, dns::Bytes msg,
                             const dns::ResponseView* rv) = 0;
  // `conn` closed (or never connected) with the query unanswered.
  virtual void on_tcp_lost(const TcpConnection* conn, std::uint16_t id) = 0;

 protected:
  ~PendingQuery() = default;
};

}  // namespace localdns::upstream
