#include <algorithm>
#include <array>

#include <boost/asio/post.hpp>

#include <localdns/dns/builder.hpp>
#include <localdns/dns/message.hpp>
#include <localdns/dns/name.hpp>
#include <localdns/server/query_handler.hpp>
#include <localdns/server/search_prefetch.hpp>
#include <localdns/util/thread_scratch.hpp>

namespace localdns::server {

namespace {

constexpr std::size_t kMaxSettled = 4096;

// Scratch space for rendering a cached candidate's answer.
thread_local util::ThreadScratch<std::array<std::uint8_t, dns::kMaxMessageSize>> tl_probe;

ClientLimits per_client_limits(const SearchPathSettings& s) {
  ClientLimits l;
  l.rate_limit.qps = s.max_qps_per_client;
  l.rate_limit.exempt_node_addresses = false;  // a pod on the node's own network counts too
  l.rate_limit.table_size = 4096;
  return l;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

ProbeResult from_view(dns::Bytes msg, const dns::ResponseView& v) {
  ProbeResult p;
  p.outcome = outcome_of(msg, v);
  p.negative_ttl = v.negative_ttl.value_or(UINT32_MAX);
  p.answer = std::make_shared<const std::vector<std::uint8_t>>(msg.begin(), msg.end());
  return p;
}

}  // namespace

bool SpeculationBudget::take() {
  const unsigned rate = rate_.load(std::memory_order_relaxed);
  if (rate == 0) return true;
  const std::int64_t interval = 1'000'000'000 / rate;
  const std::int64_t window = 1'000'000'000;  // a burst of one second's worth
  const std::int64_t now = now_ns();
  std::int64_t tat = tat_.load(std::memory_order_relaxed);
  while (true) {
    const std::int64_t start = std::max(tat, now);
    if (start + interval - now > window) return false;
    if (tat_.compare_exchange_weak(tat, start + interval, std::memory_order_relaxed)) return true;
  }
}

ProbeResult probe_result(const upstream::Result& r) {
  if (r.status == upstream::Status::Ok && r.view != nullptr) return from_view(r.answer, *r.view);
  ProbeResult p;
  p.outcome = r.status == upstream::Status::Overloaded ? CandidateOutcome::ServFail
                                                       : CandidateOutcome::Timeout;
  return p;
}

CandidateSet::CandidateSet(std::string f_key, dns::Bytes f_name, std::uint16_t qtype, bool do_bit,
                           bool cd, std::vector<SearchCandidate> candidates, bool both_types)
    : key_(std::move(f_key)),
      f_name_(f_name.size(), '\0'),
      qtype_(qtype),
      do_bit_(do_bit),
      cd_(cd),
      both_types_(both_types),
      candidates_(std::move(candidates)) {
  dns::lowercase_name(f_name, reinterpret_cast<std::uint8_t*>(f_name_.data()));
  results_.resize(probes());
}

std::uint16_t CandidateSet::type_of(std::size_t t) const {
  if (t == 0) return qtype_;
  return qtype_ == static_cast<std::uint16_t>(dns::Type::A)
             ? static_cast<std::uint16_t>(dns::Type::AAAA)
             : static_cast<std::uint16_t>(dns::Type::A);
}

const ProbeResult& CandidateSet::result(int probe) const {
  return probe == kF ? f_ : results_[static_cast<std::size_t>(probe)];
}
ProbeResult& CandidateSet::result(int probe) {
  return probe == kF ? f_ : results_[static_cast<std::size_t>(probe)];
}

std::size_t CandidateSet::releasable_now() const {
  std::vector<CandidateOutcome> first;
  first.reserve(candidates_.size());
  for (std::size_t c = 0; c < candidates_.size(); ++c)
    first.push_back(results_[c * types()].outcome);
  return releasable(candidates_, f_.outcome, first);
}

bool CandidateSet::settled() const {
  if (f_.outcome == CandidateOutcome::Pending) return false;
  for (std::size_t p = 0; p < released_ * types(); ++p)
    if (results_[p].outcome == CandidateOutcome::Pending) return false;
  return releasable_now() == released_;
}

SearchPrefetch::SearchPrefetch(QueryHandler& handler, const SearchPathSettings& settings,
                               SpeculationBudget* budget, std::size_t max_sets)
    : handler_(handler),
      path_(settings),
      budget_(budget),
      max_sets_(max_sets),
      clients_(per_client_limits(settings), {}),
      timer_(handler.executor_),
      hold_timer_(handler.executor_) {}

SearchPrefetch::~SearchPrefetch() = default;

bool SearchPrefetch::busy(const upstream::Forwarder& fwd) {
  return 2ull * fwd.group()->in_flight.load(std::memory_order_relaxed) >
         fwd.settings().max_in_flight;
}

std::shared_ptr<CandidateSet> SearchPrefetch::on_miss(const dns::Question& q, bool do_bit, bool cd,
                                                      int group, std::string_view f_key,
                                                      const ClientAddress& client) {
  auto f = path_.match(q.qname, q.qtype);
  if (!f) return nullptr;
  auto& stats = handler_.stats_;
  if (sets_.contains(std::string(f_key)) || sets_.size() >= max_sets_) {
    stats.search_skipped_in_flight.inc();
    return nullptr;
  }
  if (busy(*handler_.forwarders_[static_cast<std::size_t>(group)])) {
    stats.search_skipped_busy.inc();
    return nullptr;
  }
  // cname holds F's round until the target is chosen; never for DO or CD
  // (a synthesized CNAME is unsigned): those walk as in warm.
  const bool hold = path_.settings().mode == SearchPathMode::Cname && !do_bit && !cd;
  auto set = std::make_shared<CandidateSet>(std::string(f_key), q.qname, q.qtype, do_bit, cd,
                                            path_.candidates(q.qname, *f), hold);
  set->client = client;
  set->holds_f = hold;
  set->single_label = f->n_labels == 1;
  if (!hold) {
    // Behind F's own round (the caller leads it and has not sent it yet), to
    // learn F's outcome as its other waiters do.
    auto role =
        handler_.cache_.coalescer->join(f_key, Waiter{&handler_, {}, set, CandidateSet::kF});
    if (role != JoinRole::Waiting) {
      if (role == JoinRole::Leader) (void)handler_.cache_.coalescer->take(f_key);
      return nullptr;
    }
  }
  sets_.emplace(std::string(f_key), set);
  stats.search_sets.inc();
  if (hold) this->hold(set);
  // After the current batch: the real queries in it go first.
  boost::asio::post(handler_.executor_, [this, alive = std::weak_ptr<bool>(alive_), set] {
    if (!alive.expired()) release(set);
  });
  return set;
}

void SearchPrefetch::release(const std::shared_ptr<CandidateSet>& set) {
  if (set->holds_f && !set->f_answered) decide(set);
  if (set->finished) return;
  const std::size_t from = set->released();
  const std::size_t to = set->releasable_now();
  set->mark_released(to);  // first: an outcome known at once releases the next ones from ask()
  for (std::size_t c = from; c < to; ++c)
    for (std::size_t t = 0; t < set->types(); ++t)
      ask(set, static_cast<int>(c * set->types() + t));
  if (!set->finished && set->settled()) settle(set);
}

void SearchPrefetch::ask(const std::shared_ptr<CandidateSet>& set, int probe) {
  const auto types = set->types();
  const auto& cand = set->candidates()[static_cast<std::size_t>(probe) / types];
  upstream::Request req;
  req.question = {
      dns::Bytes(reinterpret_cast<const std::uint8_t*>(cand.name.data()), cand.name.size()),
      set->type_of(static_cast<std::size_t>(probe) % types), dns::kClassIN};
  req.rd = true;
  req.cd = set->cd();
  req.do_bit = set->do_bit();
  auto failed = [] {
    ProbeResult r;
    r.outcome = CandidateOutcome::ServFail;
    return r;
  };
  auto done = [&](ProbeResult r) {
    set->result(probe) = std::move(r);
    set->notify(probe);
    release(set);
  };
  const int group = handler_.router_->route(req.question.qname);
  if (group < 0) return done(failed());
  auto key = cache::Key::make(req.question, req.do_bit, req.cd);
  if (auto* cache = handler_.cache_.cache) {
    // Cached already: the pod's own query will be a hit; the entry is the outcome.
    dns::ReplyShape shape;
    shape.flags = dns::kFlagRD | (req.cd ? dns::kFlagCD : 0);
    std::copy(cand.name.begin(), cand.name.end(), shape.qname.begin());
    shape.qname_len = static_cast<std::uint8_t>(cand.name.size());
    shape.qtype = req.question.qtype;
    shape.qclass = dns::kClassIN;
    shape.edns = req.do_bit;
    shape.do_bit = req.do_bit;
    shape.limit = dns::kMaxMessageSize;
    auto& buf = tl_probe.get();
    dns::MutableBytes out(buf.data(), buf.size());
    if (auto hit = cache->lookup(key, shape, out); hit.size != 0) {
      // This lookup may have claimed the entry's refresh: send it, as a
      // client's hit would.
      if (hit.prefetch) handler_.prefetch(group, key, req);
      dns::Bytes msg(buf.data(), hit.size);
      if (auto view = dns::parse_response(msg)) return done(from_view(msg, *view));
    }
  }
  auto* fwd = handler_.forwarders_[static_cast<std::size_t>(group)].get();
  auto& stats = handler_.stats_;
  if (busy(*fwd)) return capped(set, probe, stats.search_skipped_busy);
  if (!clients_.admit(set->client).ok) return capped(set, probe, stats.search_skipped_client);
  if (budget_ != nullptr && !budget_->take()) return capped(set, probe, stats.search_skipped_rate);
  FlightKey flight(key, fwd->group());
  switch (handler_.cache_.coalescer->join(flight.view(), Waiter{&handler_, {}, set, probe})) {
    case JoinRole::Leader:
      set->result(probe).sent = true;
      stats.search_sent.inc();
      handler_.lead(group, flight, key, req);
      break;
    case JoinRole::Waiting:
      break;  // a query in flight already: its outcome comes with the others
    case JoinRole::Overflow:
      done(failed());
      break;
  }
}

void SearchPrefetch::capped(const std::shared_ptr<CandidateSet>& set, int probe, Counter& reason) {
  reason.inc();
  set->result(probe).outcome = CandidateOutcome::ServFail;
  set->notify(probe);
  release(set);
}

void SearchPrefetch::report(const std::shared_ptr<CandidateSet>& set, int probe,
                            const upstream::Result& r, bool clients) {
  auto& res = set->result(probe);
  const bool sent = res.sent;
  res = probe_result(r);
  res.sent = sent;
  res.asked = clients;
  set->notify(probe);
  release(set);
}

void SearchPrefetch::settle(const std::shared_ptr<CandidateSet>& set) {
  set->finished = true;
  set->answer_f_as_is();  // every outcome is in: a choice still open answers F as it is
  if (auto it = sets_.find(set->key()); it != sets_.end() && it->second.lock() == set) {
    sets_.erase(it);
  }
  bool sent = false;
  for (std::size_t p = 0; p < set->probes(); ++p)
    sent = sent || set->result(static_cast<int>(p)).sent;
  if (!sent) return;
  set->settled_at = std::chrono::steady_clock::now();
  settled_.push_back(set);
  if (settled_.size() > kMaxSettled) check_useful();
  arm();
}

void SearchPrefetch::check_useful() {
  const auto now = std::chrono::steady_clock::now();
  auto& stats = handler_.stats_;
  while (!settled_.empty() &&
         (settled_.front()->settled_at + kUsefulWindow <= now || settled_.size() > kMaxSettled)) {
    const auto set = std::move(settled_.front());
    settled_.pop_front();
    for (std::size_t p = 0; p < set->probes(); ++p) {
      const auto& res = set->result(static_cast<int>(p));
      if (!res.sent) continue;
      bool useful = res.asked;
      if (!useful && handler_.cache_.cache) {
        const auto& cand = set->candidates()[p / set->types()];
        dns::Question q{
            dns::Bytes(reinterpret_cast<const std::uint8_t*>(cand.name.data()), cand.name.size()),
            set->type_of(p % set->types()), dns::kClassIN};
        useful = handler_.cache_.cache->hits(cache::Key::make(q, set->do_bit(), set->cd())) > 0;
      }
      (useful ? stats.search_useful : stats.search_waste).inc();
    }
  }
}

void SearchPrefetch::arm() {
  if (armed_ || settled_.empty()) return;
  armed_ = true;
  timer_.expires_at(settled_.front()->settled_at + kUsefulWindow);
  timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    // Cancelled, or this object went (a reload) after the timer had fired
    // but before its completion ran.
    if (ec || alive.expired()) return;
    armed_ = false;
    check_useful();
    arm();
  });
}

void SearchPrefetch::hold(const std::shared_ptr<CandidateSet>& set) {
  auto done = [](const Held& h) {
    auto s = h.set.lock();
    return !s || s->f_answered || s->hold_over;
  };
  // Entries whose F was answered before its deadline go when they reach the
  // front; past twice the walks a worker may hold, all of them go now, so
  // the list stays within the sets in flight.
  while (!held_.empty() && done(held_.front()))
    held_.pop_front();
  if (held_.size() >= 2 * max_sets_) std::erase_if(held_, done);
  held_.push_back({std::chrono::steady_clock::now() + path_.settings().max_hold, set});
  arm_holds();
}

void SearchPrefetch::adopt_held(HeldSets held) {
  for (auto& h : held)
    held_.push_back(std::move(h));
  std::stable_sort(held_.begin(), held_.end(),
                   [](const Held& a, const Held& b) { return a.deadline < b.deadline; });
  end_holds();
  arm_holds();
}

void SearchPrefetch::end_holds() {
  const auto now = std::chrono::steady_clock::now();
  while (!held_.empty() && held_.front().deadline <= now) {
    auto set = held_.front().set.lock();
    held_.pop_front();
    if (set && set->end_hold()) handler_.stats_.search_deadline.inc();
  }
}

void SearchPrefetch::arm_holds() {
  if (hold_armed_ || held_.empty()) return;
  hold_armed_ = true;
  hold_timer_.expires_at(held_.front().deadline);
  hold_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (ec || alive.expired()) return;
    hold_armed_ = false;
    end_holds();
    arm_holds();
  });
}

}  // namespace localdns::server
