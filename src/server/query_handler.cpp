#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <cstring>
#include <iterator>
#include <optional>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <localdns/dns/health.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/search_prefetch.hpp>
#include <localdns/server/tcp_listener.hpp>
#include <localdns/util/thread_scratch.hpp>

namespace localdns::server {

namespace {
// Per-thread scratch space for replies built outside a listener's batch.
thread_local util::ThreadScratch<std::array<std::uint8_t, dns::kMaxMessageSize>> tl_reply;

// An upstream outcome that outlives the completion it came with: one
// immutable copy made on the leader's thread, shared by the completions
// posted to the other workers.
class SharedResult {
 public:
  explicit SharedResult(const upstream::Result& r)
      : status_(r.status), bytes_(r.answer.begin(), r.answer.end()) {
    if (r.view == nullptr) return;
    view_ = *r.view;
    // The view holds offsets into its message, and the question's name as a
    // span of it: point that at the copy.
    const auto& qname = r.view->question.qname;
    const auto* base = r.answer.data();
    if (!qname.empty() && qname.data() >= base &&
        qname.data() + qname.size() <= base + r.answer.size()) {
      view_->question.qname = dns::Bytes(bytes_.data() + (qname.data() - base), qname.size());
    } else {
      view_ = dns::parse_response(bytes_);
    }
  }
  SharedResult(const SharedResult&) = delete;
  SharedResult& operator=(const SharedResult&) = delete;

  upstream::Result result() const { return {status_, bytes_, view_ ? &*view_ : nullptr}; }

 private:
  upstream::Status status_;
  std::vector<std::uint8_t> bytes_;
  std::optional<dns::ResponseView> view_;
};
}  // namespace

QueryHandler::QueryHandler(const ZoneRouter& router,
                           std::vector<std::unique_ptr<upstream::Forwarder>>& fwds,
                           const CacheWiring& cache,
                           boost::asio::io_context::executor_type executor, HandlerOptions options)
    : router_(&router), forwarders_(fwds), cache_(cache), executor_(executor) {
  dropped_zone_ = options.zone_labels != 0 ? options.zone_labels : router.zone_labels().size();
  if (options.metrics) metrics_ = std::make_unique<metrics::QueryMetrics>(dropped_zone_ + 1);
  if (options.top_sample != 0) {
    top_ = std::make_unique<metrics::TopTracker>(options.top_capacity, options.top_sample,
                                                 options.cluster_domain);
  }
  query_log_sample_ = options.query_log_sample;
}

QueryHandler::~QueryHandler() = default;

void QueryHandler::set_search_path(const SearchPathSettings& settings, SpeculationBudget* budget) {
  set_search_path(settings, budget, SearchPrefetch::kMaxSetsPerWorker);
}

void QueryHandler::set_search_path(const SearchPathSettings& settings, SpeculationBudget* budget,
                                   std::size_t max_sets) {
  // The walks in flight go on; the holds of F keep their deadlines.
  auto held = search_ ? search_->take_held() : SearchPrefetch::HeldSets{};
  search_.reset();
  if (settings.on() && cache_.coalescer != nullptr) {
    search_ = std::make_unique<SearchPrefetch>(*this, settings, budget, max_sets);
    search_->adopt_held(std::move(held));
  } else {
    for (auto& h : held)  // turned off: F is answered as it is
      if (auto set = h.set.lock()) set->end_hold();
  }
}

void QueryHandler::set_client_limits(const ClientLimits& limits) {
  if (!limits.any()) {
    limits_.reset();
    return;
  }
  std::vector<boost::asio::ip::address> exempt;
  if (limits.rate_limit.qps != 0 && limits.rate_limit.exempt_node_addresses) {
    exempt = interface_addresses();
  }
  limits_ = std::make_unique<ClientLimiter>(limits, exempt);
}

namespace {

ClientAddress address_of(const ClientRef& client) {
  if (const auto* udp = std::get_if<UdpClient>(&client)) return ClientAddress::of(udp->addr);
  return std::get<TcpClient>(client).addr;
}

metrics::Family family_of(const ClientRef& client) {
  if (const auto* udp = std::get_if<UdpClient>(&client)) {
    return udp->addr.ss_family == AF_INET6 ? metrics::Family::V6 : metrics::Family::V4;
  }
  return std::get<TcpClient>(client).v6 ? metrics::Family::V6 : metrics::Family::V4;
}

unsigned rcode_of(dns::Bytes reply) {
  return reply.size() >= dns::kHeaderSize
             ? static_cast<unsigned>(dns::Header::read(reply.data()).rcode())
             : 2;
}

std::string client_text(const ClientRef& client) {
  if (const auto* udp = std::get_if<UdpClient>(&client)) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (udp->addr.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&udp->addr)->sin_addr, buf,
                  sizeof buf);
    } else if (udp->addr.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&udp->addr)->sin6_addr, buf,
                  sizeof buf);
    }
    return buf;
  }
  if (auto s = std::get<TcpClient>(client).session.lock()) return s->peer_address();
  return "?";
}

// The client's address for the top-clients sketch, without formatting it.
void record_client(metrics::TopTracker& t, const ClientRef& client) {
  if (const auto* udp = std::get_if<UdpClient>(&client)) {
    if (udp->addr.ss_family == AF_INET) {
      const auto* a = &reinterpret_cast<const sockaddr_in*>(&udp->addr)->sin_addr;
      t.record_client({reinterpret_cast<const std::uint8_t*>(a), 4});
    } else if (udp->addr.ss_family == AF_INET6) {
      const auto* a = &reinterpret_cast<const sockaddr_in6*>(&udp->addr)->sin6_addr;
      t.record_client({reinterpret_cast<const std::uint8_t*>(a), 16});
    }
  } else if (auto s = std::get<TcpClient>(client).session.lock()) {
    t.record_client(std::string_view(s->peer_address()));
  }
}

// The question of a reply (ours: one question, name uncompressed).
std::pair<std::string, std::uint16_t> question_of(dns::Bytes reply) {
  if (reply.size() < 12 || dns::read_u16(reply.data() + 4) == 0) return {"", 0};
  auto end = dns::skip_name(reply, 12);
  if (!end || *end + 4 > reply.size()) return {"", 0};
  return {dns::name_to_text(dns::Bytes(reply.data() + 12, *end - 12)),
          dns::read_u16(reply.data() + *end)};
}

}  // namespace

// Every flight key can be filed (longer ones would resolve alone).
static_assert(cache::Key::kMaxSize + sizeof(std::uintptr_t) <= QueryCoalescer::kMaxKeySize);

FlightKey::FlightKey(const cache::Key& key, const upstream::GroupState* group) {
  auto k = key.view();
  auto tag = reinterpret_cast<std::uintptr_t>(group);
  std::memcpy(bytes_.data(), &tag, sizeof tag);
  std::memcpy(bytes_.data() + sizeof tag, k.data(), k.size());
  len_ = static_cast<std::uint16_t>(sizeof tag + k.size());
}

Outcome QueryHandler::handle(dns::Bytes query, Transport transport, const ClientRef& client,
                             dns::MutableBytes out) {
  stats_.queries.inc();
  auto q = dns::parse_query(query);
  const bool over_tcp = transport == Transport::Tcp;
  const auto proto = over_tcp ? metrics::Proto::Tcp : metrics::Proto::Udp;
  std::size_t zone = dropped_zone_;
  // Replies made here, without an upstream: counted with no measurable duration.
  auto reply = [&](std::size_t len) {
    if (metrics_ && len != 0) {
      metrics_->response(zone, proto, rcode_of(dns::Bytes(out.data(), len)), len, 0);
    }
    if (len != 0) note_answer(client, dns::Bytes(out.data(), len), 0, "local");
    return Outcome{Action::Reply, len};
  };
  auto error = [&](dns::Rcode rc, Counter& c) {
    c.inc();
    return reply(dns::build_error_reply(q, rc, out));
  };
  if (q.status == dns::QueryStatus::Drop) {
    stats_.dropped.inc();
    return {Action::Drop, 0};
  }
  if (q.status == dns::QueryStatus::Ok && dns::is_health_name(q.question.qname)) {
    return {Action::Reply, dns::build_error_reply(q, dns::Rcode::NoError, out)};
  }
  auto route = q.status == dns::QueryStatus::Ok ? router_->route_zone(q.question.qname)
                                                : ZoneRouter::Route{};
  if (route.zone >= 0) zone = static_cast<std::size_t>(route.zone);
  if (metrics_) {
    metrics_->request(zone, proto, family_of(client), q.question.qtype, query.size());
  }
  if (top_ && q.status == dns::QueryStatus::Ok && top_->should_sample()) {
    top_->record_name(metrics::TopKind::Names, q.question.qname);
    record_client(*top_, client);
  }
  // The client limits. Off, this is the one test the hit path pays; with
  // exempt_cache_hits the rate is only checked after a miss.
  ClientAddress from;
  auto limited = [&] {
    auto admission = limits_->admit(from);
    if (admission.evicted) stats_.client_evictions.inc();
    return !admission.ok;
  };
  // Over the client's rate: REFUSED, with EDE 0 (Other) and a text, since
  // RFC 8914 has no code for a rate limit (18, Prohibited, is for a client
  // that may not ask at all); or no reply.
  auto over_rate = [&](const dns::ReplyShape& shape) {
    if (limits_->action() == RateAction::Drop) {
      stats_.client_dropped.inc();
      return Outcome{Action::Drop, 0};
    }
    stats_.client_rate_limited.inc();
    stats_.refused.inc();
    return reply(dns::build_error_reply(shape, dns::Rcode::Refused,
                                        dns::ExtendedError{dns::kEdeOther, "rate limit exceeded"},
                                        out));
  };
  if (limits_) [[unlikely]] {
    from = address_of(client);
    const bool ok = q.status == dns::QueryStatus::Ok;
    if (!limits_->allowed(from)) {
      // RFC 8914 4.19: Prohibited, for a client that may not ask.
      stats_.client_not_allowed.inc();
      stats_.refused.inc();
      if (!ok) return reply(dns::build_error_reply(q, dns::Rcode::Refused, out));
      auto shape = dns::make_reply_shape(q, over_tcp ? dns::kMaxMessageSize : q.udp_reply_limit());
      return reply(dns::build_error_reply(
          shape, dns::Rcode::Refused,
          dns::ExtendedError{dns::kEdeProhibited, "client not in clients.allow"}, out));
    }
    if (ok && limits_->limits_rate() && !limits_->exempt_cache_hits() && limited()) {
      return over_rate(
          dns::make_reply_shape(q, over_tcp ? dns::kMaxMessageSize : q.udp_reply_limit()));
    }
  }
  switch (q.status) {
    case dns::QueryStatus::Drop:
    case dns::QueryStatus::Ok:
      break;
    case dns::QueryStatus::FormErr:
      return error(dns::Rcode::FormErr, stats_.formerr);
    case dns::QueryStatus::NotImp:
      return error(dns::Rcode::NotImp, stats_.notimp);
    case dns::QueryStatus::BadVers:
      return error(dns::Rcode::NoError, stats_.formerr);  // extended RCODE BADVERS in the OPT
  }
  int group = route.group;
  if (group < 0) return error(dns::Rcode::Refused, stats_.refused);

  std::size_t limit = over_tcp ? dns::kMaxMessageSize : q.udp_reply_limit();
  upstream::Request req;
  req.question = q.question;
  // Always ask for recursion: the answer is cached and shared with clients that
  // did set RD, which is every stub resolver. The reply echoes the client's RD.
  req.rd = true;
  req.cd = q.header.flags & dns::kFlagCD;
  req.do_bit = q.edns.do_bit;
  auto shape = dns::make_reply_shape(q, limit);
  auto key = cache::Key::make(q.question, req.do_bit, req.cd);
  if (cache_.cache) {
    auto hit = cache_.cache->lookup(key, shape, out);
    if (hit.size != 0) {
      stats_.cache_hits.inc();
      if (out[2] & (dns::kFlagTC >> 8)) stats_.truncated.inc();  // cached answers never have TC
      if (hit.prefetch) prefetch(group, key, req);
      return reply(hit.size);
    }
  }
  // Exempt cache hits: only what would go upstream is counted.
  if (limits_ && limits_->limits_rate() && limits_->exempt_cache_hits() && limited()) {
    return over_rate(shape);
  }
  Asker asker{client, shape, static_cast<int>(zone), proto, {}};
  if (metrics_) asker.start = std::chrono::steady_clock::now();
  auto* fwd = forwarders_[group].get();
  if (cache_.coalescer) {
    FlightKey flight(key, fwd->group());
    auto role = cache_.coalescer->join(flight.view(), Waiter{this, asker, {}, -1});
    if (role == JoinRole::Waiting) {
      stats_.coalesced.inc();
      return {Action::Async, 0};
    }
    if (role == JoinRole::Leader) {
      // A first search expansion: the walk files itself behind this round,
      // or in cname mode holds the round until it has chosen.
      std::shared_ptr<CandidateSet> set;
      if (search_) {
        set = search_->on_miss(q.question, req.do_bit, req.cd, group, flight.view(),
                               limits_ ? from : address_of(client));
      }
      if (set && set->holds_f) {
        lead_held(group, flight, key, req, std::move(set));
      } else {
        lead(group, flight, key, req);
      }
      return {Action::Async, 0};
    }
  }
  stats_.forwarded.inc();
  fwd->resolve(req, [this, asker, key, fwd](const upstream::Result& r) {
    store(key, r, fwd);
    deliver(asker, r, key);
  });
  return {Action::Async, 0};
}

void QueryHandler::lead(int group, const FlightKey& flight, const cache::Key& key,
                        const upstream::Request& req) {
  stats_.forwarded.inc();
  auto* fwd = forwarders_[group].get();
  fwd->resolve(req, [this, flight, key, fwd](const upstream::Result& r) {
    store(key, r, fwd);  // first, so that later askers hit the cache
    complete(flight, key, r);
  });
}

void QueryHandler::complete(const FlightKey& flight, const cache::Key& key,
                            const upstream::Result& result) {
  auto waiters = cache_.coalescer->take(flight.view());
  const bool clients =
      std::any_of(waiters.begin(), waiters.end(), [](const Waiter& w) { return !w.set; });
  // This worker's waiters first (in join order), then the others' by worker.
  auto others = std::stable_partition(waiters.begin(), waiters.end(),
                                      [this](const Waiter& w) { return w.home == this; });
  std::stable_sort(others, waiters.end(),
                   [](const Waiter& a, const Waiter& b) { return std::less<>{}(a.home, b.home); });
  // Posted before answering here, so that the other workers start at once.
  std::shared_ptr<const SharedResult> shared;
  for (auto first = others; first != waiters.end();) {
    QueryHandler* home = first->home;
    auto last =
        std::find_if(first, waiters.end(), [home](const Waiter& w) { return w.home != home; });
    if (!shared) shared = std::make_shared<const SharedResult>(result);
    // The shutdown order relies on this post: it is queued on the home
    // worker before that worker is asked to drain its clients (see
    // app::Worker::fail_upstreams). A worker stopped before it runs this
    // destroys it unrun: nothing then touches `home`.
    boost::asio::post(home->executor_,
                      [home, shared, key, clients,
                       batch = std::vector<Waiter>(std::make_move_iterator(first),
                                                   std::make_move_iterator(last))] {
                        home->deliver_all(batch, shared->result(), key, clients);
                      });
    first = last;
  }
  deliver_all(std::span<const Waiter>(waiters.begin(), others), result, key, clients);
}

void QueryHandler::deliver_all(std::span<const Waiter> waiters, const upstream::Result& result,
                               const cache::Key& key, bool clients) {
  for (const auto& w : waiters) {
    if (!w.set) {
      deliver(w.asker, result, key);
    } else if (search_) {
      search_->report(w.set, w.probe, result, clients);
    } else {
      w.set->answer_f_as_is();  // the search path was turned off: F's round must end
    }
  }
}

void QueryHandler::prefetch(int group, const cache::Key& key, const upstream::Request& req) {
  // Joins like a client that needs no reply: if a refresh or a miss for this
  // key is already in flight, it will refresh the entry anyway.
  if (!cache_.coalescer) return;
  FlightKey flight(key, forwarders_[group]->group());
  if (!cache_.coalescer->lead_if_idle(flight.view())) return;
  stats_.prefetches.inc();
  lead(group, flight, key, req);
}

int QueryHandler::index_of(const upstream::Forwarder* fwd) const {
  for (std::size_t i = 0; i < forwarders_.size(); ++i)
    if (forwarders_[i].get() == fwd) return static_cast<int>(i);
  return -1;
}

const cache::TtlPolicy* QueryHandler::policy_for(const cache::Key& key) const {
  int g = router_->route(key.qname());
  return g >= 0 && static_cast<std::size_t>(g) < cache_.policies.size()
             ? &cache_.policies[static_cast<std::size_t>(g)]
             : nullptr;
}

void QueryHandler::store(const cache::Key& key, const upstream::Result& result,
                         const upstream::Forwarder* from) {
  if (!cache_.cache || result.status != upstream::Status::Ok) return;
  // Replaced by a reload while this was in flight, or the name now routes to
  // another group: the old upstream's answer. (A replaced forwarder lives
  // until its last exchange is done, so the address cannot have been reused.)
  int group = index_of(from);
  if (group < 0 || router_->route(key.qname()) != group) return;
  const auto& policy = cache_.policies[static_cast<std::size_t>(group)];
  auto life = cache::cache_lifetime(*result.view, policy);
  if (life.kind == cache::AnswerKind::Uncacheable) return;
  cache_.cache->insert(key, result.answer, *result.view, life.seconds, policy.stale_window);
}

void QueryHandler::deliver(const Asker& asker, const upstream::Result& result,
                           const cache::Key& key) {
  const auto& shape = asker.shape;
  const auto& client = asker.client;
  auto& reply = tl_reply.get();
  dns::MutableBytes buf(reply.data(), reply.size());
  std::size_t n = 0;
  bool failed = result.status != upstream::Status::Ok ||
                result.view->rcode() == static_cast<std::uint16_t>(dns::Rcode::ServFail);
  // The serve-stale window of the group the name routes to now, on this
  // worker (a reload may have moved it since the query started).
  const auto* policy = failed && cache_.cache ? policy_for(key) : nullptr;
  if (policy != nullptr && policy->stale_window != 0) {
    // RFC 8767: every upstream failed; an expired answer beats SERVFAIL.
    n = cache_.cache->lookup(key, shape, buf, cache::Freshness::AllowStale).size;
    if (n != 0) stats_.stale.inc();
  }
  if (n == 0 && result.status == upstream::Status::Ok) {
    n = dns::build_client_reply(result.answer, *result.view, shape, buf);
    if (n != 0 && (dns::read_u16(buf.data() + 2) & dns::kFlagTC) &&
        !(result.view->header.flags & dns::kFlagTC)) {
      stats_.truncated.inc();
    }
  }
  if (n == 0) {
    bool overloaded = result.status == upstream::Status::Overloaded;
    (overloaded ? stats_.refused : stats_.servfail).inc();
    if (overloaded || result.status == upstream::Status::Ok) {
      n = dns::build_error_reply(shape, overloaded ? dns::Rcode::Refused : dns::Rcode::ServFail,
                                 buf);
    } else {
      // RFC 8914: say why localdns itself gave up on the upstreams.
      const dns::ExtendedError ede =
          result.status == upstream::Status::Timeout
              ? dns::ExtendedError{dns::kEdeNoReachableAuthority, "upstream timed out"}
              : dns::ExtendedError{dns::kEdeNetworkError,
                                   "upstream unreachable or answer unusable"};
      n = dns::build_error_reply(shape, dns::Rcode::ServFail, ede, buf);
    }
  }
  std::uint64_t micros = 0;
  if (metrics_) {
    micros = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::steady_clock::now() - asker.start)
                                            .count());
    metrics_->response(static_cast<std::size_t>(asker.zone), asker.proto,
                       rcode_of(dns::Bytes(buf.data(), n)), n, micros);
  }
  note_answer(client, dns::Bytes(buf.data(), n), micros,
              result.status == upstream::Status::Ok ? "upstream" : "error");
  send(client, dns::Bytes(buf.data(), n));
}

void QueryHandler::note_answer(const ClientRef& client, dns::Bytes reply, std::uint64_t micros,
                               const char* source) {
  unsigned rcode = rcode_of(reply);
  if (top_ && rcode == 3 && top_->should_sample()) {
    if (auto end = reply.size() > 12 ? dns::skip_name(reply, 12) : std::nullopt) {
      top_->record_name(metrics::TopKind::NxDomain, reply.subspan(12, *end - 12));
    }
  }
  if (query_log_sample_ != 0 && query_log_tick_++ % query_log_sample_ == 0) {
    auto [name, type] = question_of(reply);
    spdlog::info("query client={} name={} type={} rcode={} size={} source={}{}",
                 client_text(client), name, type, metrics::kRcodeNames[metrics::rcode_index(rcode)],
                 reply.size(), source,
                 micros != 0 ? " us=" + std::to_string(micros) : std::string());
  }
}

void QueryHandler::send(const ClientRef& client, dns::Bytes reply) {
  if (const auto* udp = std::get_if<UdpClient>(&client)) {
    // A full socket buffer drops the reply like a lost datagram; the client retries.
    (void)::sendto(udp->fd, reply.data(), reply.size(), MSG_DONTWAIT,
                   reinterpret_cast<const sockaddr*>(&udp->addr), udp->addr_len);
  } else if (auto session = std::get<TcpClient>(client).session.lock()) {
    session->send_reply(reply);  // this thread owns the session: answers come home first
  }
}

}  // namespace localdns::server
