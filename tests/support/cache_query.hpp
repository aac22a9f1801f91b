// A query as the cache sees it, for the cache's unit tests: the packet, its
// parsed view, the reply shape it asks for and its cache key (with the DO
// and CD bits it carries).
#pragma once

#include <string>

#include <localdns/cache/packet_cache.hpp>
#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>

#include "dns_client.hpp"

namespace localdns::test {

struct CacheQuery {
  Packet query;
  dns::QueryView view;
  dns::ReplyShape shape;
  cache::Key key;
};

// `limit` 0: the query's own UDP reply limit.
inline CacheQuery cache_query(const std::string& name, QueryOptions o = {}, std::size_t limit = 0) {
  CacheQuery a;
  a.query = make_query(name, "A", o);
  a.view = dns::parse_query(a.query);
  a.shape = dns::make_reply_shape(a.view, limit ? limit : a.view.udp_reply_limit());
  a.key = cache::Key::make(a.view.question, a.view.edns.do_bit, a.view.header.flags & dns::kFlagCD);
  return a;
}

}  // namespace localdns::test
