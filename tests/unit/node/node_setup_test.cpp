// NodeSetup's timing on a ManualClock: verify() reuses its last result for
// RecentCheck::kReuse and checks again after it. No root, no interface: the
// rules backend is a fake that counts its checks.
#include <catch2/catch.hpp>

#include <localdns/node/node_setup.hpp>
#include <localdns/util/clock.hpp>

using namespace localdns;
using namespace std::chrono_literals;

namespace {

class CountingBackend final : public node::RulesBackend {
 public:
  explicit CountingBackend(unsigned* checks, unsigned* missing, unsigned* syncs = nullptr)
      : checks_(checks), missing_(missing), syncs_(syncs) {}
  std::string name() const override { return "counting"; }
  std::expected<node::RulesRepair, std::string> sync(const node::RuleTargets&) override {
    if (syncs_ != nullptr) ++*syncs_;
    return node::RulesRepair{};
  }
  std::expected<unsigned, std::string> check(const node::RuleTargets&) override {
    ++*checks_;
    return *missing_;
  }
  std::expected<unsigned, std::string> remove() override { return 0u; }

 private:
  unsigned* checks_;
  unsigned* missing_;
  unsigned* syncs_;
};

node::NodeSettings rules_only() {
  node::NodeSettings s;
  s.local_addresses = {boost::asio::ip::make_address("169.254.20.10")};
  s.setup_interface = false;
  s.targets.locals.push_back({s.local_addresses.front(), 53, std::nullopt});
  return s;
}

}  // namespace

TEST_CASE("a recent check is reused for one second, by the clock it is given", "[node][clock]") {
  util::ManualClock clock;
  node::RecentCheck recent;
  CHECK(recent.fresh(clock.now()) == nullptr);  // nothing stored yet
  recent.store(clock.now(), "rules missing");
  REQUIRE(recent.fresh(clock.now()) != nullptr);
  CHECK(*recent.fresh(clock.now()) == "rules missing");
  clock.advance(999ms);
  CHECK(recent.fresh(clock.now()) != nullptr);
  clock.advance(1ms);
  CHECK(recent.fresh(clock.now()) == nullptr);
}

TEST_CASE("verify() checks the rules again only once its last result is a second old",
          "[node][clock]") {
  util::ManualClock clock;
  unsigned checks = 0, missing = 0;
  node::NodeSetup setup(rules_only(), std::make_unique<CountingBackend>(&checks, &missing), clock);
  CHECK(setup.backend_name() == "counting");

  CHECK(setup.verify().empty());
  CHECK(checks == 1);
  missing = 2;  // rules went missing: not seen while the last result is fresh
  clock.advance(500ms);
  CHECK(setup.verify().empty());
  clock.advance(499ms);
  CHECK(setup.verify().empty());
  CHECK(checks == 1);

  clock.advance(1ms);
  CHECK(setup.verify() == "2 counting rules missing or out of place");
  CHECK(checks == 2);
  CHECK(setup.verify() == "2 counting rules missing or out of place");  // reused again
  CHECK(checks == 2);
}

TEST_CASE("without a rules backend, verify() reports nothing and names none", "[node][clock]") {
  util::ManualClock clock;
  node::NodeSettings s = rules_only();
  s.setup_rules = false;
  node::NodeSetup setup(s, nullptr, clock);
  CHECK(setup.backend_name() == "none");
  CHECK(setup.verify().empty());
}

TEST_CASE("once handed over, sync() repairs nothing and counts no pass", "[node][handover]") {
  util::ManualClock clock;
  unsigned checks = 0, missing = 0, syncs = 0;
  node::NodeSetup setup(rules_only(), std::make_unique<CountingBackend>(&checks, &missing, &syncs),
                        clock);
  setup.sync();
  CHECK(syncs == 1);
  CHECK(setup.counters().syncs.load() == 1);
  setup.set_handed_over(true);
  CHECK(setup.sync() == 0);
  CHECK(setup.sync() == 0);
  CHECK(syncs == 1);
  CHECK(setup.counters().syncs.load() == 1);
}
