#include <sstream>

#include <catch2/catch.hpp>

#include <localdns/app/doctor_main.hpp>
#include <localdns/config/cli.hpp>
#include <localdns/doctor/checks.hpp>
#include <localdns/doctor/doctor.hpp>

using namespace localdns::doctor;

namespace {

// Captured on kernel 6.18 (2 CPUs): has clashres.
constexpr const char* kStatNew =
    "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop "
    "early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"
    "0000002a  0000001f  00000003 00000000 00000005 00000000 00000000 00000000 00000000 00000002 "
    "00000001 00000000 00000000  00000000 00000000 00000000 00000000\n"
    "0000002a  00000011  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 "
    "00000000 00000004 00000000  00000000 00000000 00000000 00000000\n";
// An older kernel's layout (4.x): searched/found/..., no clashres.
constexpr const char* kStatOld =
    "entries  searched found new invalid ignore delete delete_list insert insert_failed drop "
    "early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"
    "00000010  00000000 0000abcd 00000000 00000001 00000000 00000000 00000000 00000000 000000ff "
    "00000010 00000000 00000000  00000000 00000000 00000000 00000000\n"
    "00000010  00000000 00000001 00000000 00000002 00000000 00000000 00000000 00000000 00000001 "
    "00000000 00000000 00000000  00000000 00000000 00000000 00000000\n";

constexpr const char* kPod =
    "nameserver 10.96.0.10\n"
    "search default.svc.cluster.local svc.cluster.local cluster.local\n"
    "options ndots:5\n";

ResolvConf rc(const char* text) {
  return parse_resolv_conf(text);
}

LocalView view(std::vector<std::string> captured) {
  LocalView v;
  v.captured = std::move(captured);
  v.cluster_dns = {"10.96.0.10"};
  for (const auto& c : v.captured)
    std::erase(v.cluster_dns, c);
  v.localdns_deployed = !v.captured.empty();
  return v;
}

bool has_line(const std::vector<std::string>& lines, const std::string& part) {
  for (const auto& l : lines)
    if (l.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("nf_conntrack statistics: columns from the header, hex summed over CPUs", "[doctor]") {
  auto s = parse_conntrack_stat(kStatNew);
  REQUIRE(s);
  CHECK(s->cpus == 2);
  CHECK(s->has("clashres"));
  CHECK(s->get("entries") == 0x2a);  // global, not summed
  CHECK(s->get("clashres") == 0x1f + 0x11);
  CHECK(s->get("insert_failed") == 3);
  CHECK(s->get("drop") == 1);
  CHECK(s->get("early_drop") == 4);
  CHECK(s->get("invalid") == 5);

  auto old = parse_conntrack_stat(kStatOld);
  REQUIRE(old);
  CHECK_FALSE(old->has("clashres"));
  CHECK(old->get("insert_failed") == 0x100);
  CHECK(old->get("found") == 0xabce);

  CHECK_FALSE(parse_conntrack_stat(""));
  CHECK_FALSE(parse_conntrack_stat("entries drop\n0000 zz\n"));
  CHECK_FALSE(parse_conntrack_stat("entries drop\n0000\n"));
}

TEST_CASE("check 1: totals since boot, rates with --watch, kernels without clashres", "[doctor]") {
  auto now = parse_conntrack_stat(kStatNew);
  REQUIRE(now);
  auto once = check_conntrack_race(*now, std::nullopt, 0);
  CHECK(once.status == Status::warn);  // non-zero since boot, no rate known
  CHECK(has_line(once.evidence, "clashres 48"));

  // The same counters twice: nothing rising is ok.
  auto flat = check_conntrack_race(*now, *now, 5);
  CHECK(flat.status == Status::ok);
  CHECK(std::get<std::int64_t>(flat.facts.at("clashres_delta")) == 0);

  // clashres rose by 10 in 5 s: the race, resolved here (warn).
  std::string later = kStatNew;
  later.replace(later.find("0000001f"), 8, "00000029");
  auto after = parse_conntrack_stat(later);
  REQUIRE(after);
  auto clash = check_conntrack_race(*after, *now, 5);
  CHECK(clash.status == Status::warn);
  CHECK(std::get<std::int64_t>(clash.facts.at("clashres_delta")) == 10);
  CHECK(std::get<double>(clash.facts.at("clashres_per_s")) == Approx(2.0));
  CHECK(has_line(clash.evidence, "clashres +10 (2.00/s)"));

  // insert_failed climbing on an old kernel: packets dropped (fail).
  auto old = parse_conntrack_stat(kStatOld);
  std::string old_later = kStatOld;
  old_later.replace(old_later.find("000000ff"), 8, "00000fff");
  auto old_after = parse_conntrack_stat(old_later);
  REQUIRE((old && old_after));
  auto drop = check_conntrack_race(*old_after, *old, 10);
  CHECK(drop.status == Status::fail);
  CHECK(has_line(drop.evidence, "no clashres column"));
  CHECK(has_line(drop.remedies, "single-request-reopen"));

  auto none = check_conntrack_race(std::nullopt, std::nullopt, 0);
  CHECK(none.status == Status::ok);
  CHECK(has_line(none.evidence, "not loaded"));
}

TEST_CASE("check 2 and 3: table pressure and the kernel log", "[doctor]") {
  auto fine = check_table_pressure({100, 262144, 65536, 30, 120});
  CHECK(fine.status == Status::ok);
  auto full = check_table_pressure({200000, 262144, 65536, 30, 120});
  CHECK(full.status == Status::warn);  // 76 %
  auto buckets = check_table_pressure({10, 262144, 16384, 30, 120});
  CHECK(buckets.status == Status::warn);  // below max/8
  CHECK(check_table_pressure({}).status == Status::ok);

  const std::string log =
      "[  1.0] eth0: link up\n"
      "[ 99.1] nf_conntrack: nf_conntrack: table full, dropping packet\n"
      "[ 99.2] nf_conntrack: nf_conntrack: table full, dropping packet\n";
  CHECK(count_table_full(log) == 2);
  CHECK(check_kernel_log(log).status == Status::fail);
  CHECK(check_kernel_log(std::string("[ 1.0] boot\n")).status == Status::ok);
  auto unreadable = check_kernel_log(std::nullopt, "dmesg: read kernel buffer failed");
  CHECK(unreadable.status == Status::warn);
  CHECK(has_line(unreadable.evidence, "not readable"));
}

TEST_CASE("pod resolv.conf files are parsed as glibc reads them", "[doctor]") {
  auto pod = rc(kPod);
  CHECK(pod.nameservers == std::vector<std::string>{"10.96.0.10"});
  CHECK(pod.search == std::vector<std::string>{"default.svc.cluster.local", "svc.cluster.local",
                                               "cluster.local"});
  CHECK(pod.ndots == 5);
  CHECK_FALSE(pod.single_request_reopen);

  auto reopen =
      rc("nameserver 169.254.20.10\n"
         "search default.svc.cluster.local svc.cluster.local cluster.local\n"
         "options ndots:5 single-request-reopen timeout:2\noptions attempts:3 use-vc\n");
  CHECK(reopen.single_request_reopen);
  CHECK(reopen.use_vc);
  CHECK(reopen.timeout == 2);
  CHECK(reopen.attempts == 3);
  CHECK(reopen.nameservers == std::vector<std::string>{"169.254.20.10"});

  auto host_domains =
      rc("# generated by kubelet\nnameserver 10.96.0.10\ndomain old.example\n"
         "search default.svc.cluster.local svc.cluster.local cluster.local ec2.internal "
         "corp.example.\n"
         "options ndots:5 ndots:99\n");
  CHECK(host_domains.search.size() == 5);  // the last search/domain line wins
  CHECK(host_domains.search.back() == "corp.example");
  CHECK(host_domains.ndots == 15);  // glibc caps ndots at 15
}

TEST_CASE("amplification: glibc and musl search arithmetic", "[doctor]") {
  auto pod = rc(kPod);
  // The first expansion answers: 1 name x A and AAAA.
  auto own = amplification(pod, Resolver::glibc, "my-service",
                           std::string("my-service.default.svc.cluster.local"));
  CHECK(own.names == 1);
  CHECK(own.queries == 2);
  CHECK(own.answered);
  auto other = amplification(pod, Resolver::glibc, "my-service.other-ns",
                             std::string("my-service.other-ns.svc.cluster.local"));
  CHECK(other.queries == 4);
  // 3 failed expansions, then the name itself: 4 names x 2 = 8.
  auto ext = amplification(pod, Resolver::glibc, "api.example.com", std::string("api.example.com"));
  CHECK(ext.names == 4);
  CHECK(ext.queries == 8);
  CHECK(candidate_names(pod, Resolver::glibc, "api.example.com") ==
        std::vector<std::string>{"api.example.com.default.svc.cluster.local",
                                 "api.example.com.svc.cluster.local",
                                 "api.example.com.cluster.local", "api.example.com"});
  auto nowhere = amplification(pod, Resolver::glibc, "api.example.com", std::nullopt);
  CHECK(nowhere.queries == 8);
  CHECK_FALSE(nowhere.answered);
  // A trailing dot: only the name itself.
  CHECK(amplification(pod, Resolver::glibc, "api.example.com.", std::string("api.example.com"))
            .queries == 2);
  // Extra host search domains: 5 expansions + the name = 12 queries.
  auto host = rc(
      "nameserver 10.96.0.10\n"
      "search default.svc.cluster.local svc.cluster.local cluster.local ec2.internal corp.example\n"
      "options ndots:5\n");
  CHECK(amplification(host, Resolver::glibc, "api.example.com", std::string("api.example.com"))
            .queries == 12);

  // dots >= ndots: glibc tries the name first, then the search list; musl never searches.
  auto two = rc("search a.example b.example\noptions ndots:2\n");
  CHECK(amplification(two, Resolver::glibc, "api.example.com", std::nullopt).queries == 6);
  CHECK(amplification(two, Resolver::musl, "api.example.com", std::nullopt).queries == 2);
  CHECK(candidate_names(two, Resolver::musl, "api.example.com") ==
        std::vector<std::string>{"api.example.com"});
  // Below ndots both search, then try the name as given.
  CHECK(amplification(pod, Resolver::musl, "api.example.com", std::string("api.example.com"))
            .queries == 8);
}

TEST_CASE("check 4: nameserver classification and remedies", "[doctor]") {
  // The ClusterIP, not captured by localdns: warn, recommend the link-local address.
  auto uncaptured = check_resolver({{"pod", kPod, {}}}, view({"169.254.20.10"}), Resolver::glibc);
  CHECK(uncaptured.status == Status::warn);
  CHECK(has_line(uncaptured.evidence, "does not capture"));
  CHECK(has_line(uncaptured.remedies, "node-local address 169.254.20.10"));
  CHECK(has_line(uncaptured.remedies, "single-request-reopen"));
  CHECK(std::get<std::int64_t>(uncaptured.facts.at("queries.my-service")) == 2);
  CHECK(std::get<std::int64_t>(uncaptured.facts.at("queries.api.example.com")) == 8);
  CHECK(std::get<bool>(uncaptured.facts.at("ndots_high")));

  // Captured: no warning.
  auto captured =
      check_resolver({{"pod", kPod, {}}}, view({"169.254.20.10", "10.96.0.10"}), Resolver::glibc);
  CHECK(captured.status == Status::ok);
  CHECK(has_line(captured.evidence, "captured"));
  CHECK_FALSE(has_line(captured.remedies, "node-local address"));

  // The link-local cache itself: ok.
  std::string ll =
      "nameserver 169.254.20.10\nsearch default.svc.cluster.local "
      "svc.cluster.local cluster.local\noptions ndots:5\n";
  auto cache = check_resolver({{"pod", ll, {}}}, view({"169.254.20.10"}), Resolver::glibc);
  CHECK(cache.status == Status::ok);
  CHECK(has_line(cache.evidence, "the link-local cache"));
  // ... but a link-local address nothing serves is a warning.
  CHECK(check_resolver({{"pod", ll, {}}}, view({}), Resolver::glibc).status == Status::warn);

  // musl: single-request-reopen would not help.
  auto musl = check_resolver({{"pod", kPod, {}}}, view({}), Resolver::musl);
  CHECK(has_line(musl.evidence, "musl (and Go's resolver) ignore single-request"));
  CHECK_FALSE(has_line(musl.remedies, "single-request-reopen"));
  // Groups from --all-pods say how many processes share a file.
  auto grouped = check_resolver({{"group", kPod, {10, 11, 12}}}, view({}), Resolver::glibc);
  CHECK(has_line(grouped.evidence, "(3 processes: 10,11,12)"));
}

TEST_CASE("check 5: rules verified against iptables-save, missing ones named", "[doctor]") {
  localdns::node::RuleTargets t;
  t.locals.push_back({boost::asio::ip::make_address("169.254.20.10"), 53, std::nullopt});
  auto want = expected_rules(t, false);
  REQUIRE(want.size() == 10);
  // iptables-save as the rules code writes them, behind a foreign rule in one chain.
  auto save = [&](bool drop_first, bool foreign_first) {
    std::string s;
    for (const char* table : {"raw", "filter"}) {
      s += std::string("*") + table + "\n";
      if (foreign_first && std::string(table) == "filter") s += "-A INPUT -j KUBE-FIREWALL\n";
      for (std::size_t i = 0; i < want.size(); ++i) {
        if (want[i].table != table) continue;
        if (drop_first && i == 0) continue;
        s += "-A " + want[i].chain + " -d 169.254.20.10/32 -m comment --comment \"" +
             want[i].comment + "\" -j NOTRACK\n";
      }
      s += "-A OUTPUT -j KUBE-SOMETHING\nCOMMIT\n";
    }
    return s;
  };
  CHECK(verify_iptables_save(want, save(false, false), "iptables").empty());
  auto missing = verify_iptables_save(want, save(true, false), "iptables");
  REQUIRE(missing.size() == 1);
  CHECK(missing[0].find("missing in iptables " + want[0].table + " " + want[0].chain) == 0);
  CHECK(missing[0].find(want[0].comment) != std::string::npos);
  // Another agent's rule ahead of ours is fine (localdns leaves it there);
  // one between two of ours is not.
  CHECK(verify_iptables_save(want, save(false, true), "iptables").empty());
  std::string split;
  bool inserted = false;
  std::istringstream in(save(false, false));
  for (std::string line; std::getline(in, line);) {
    split += line + "\n";
    if (!inserted && line.starts_with("-A ") && line.find(want[0].comment) != line.npos) {
      split += "-A " + want[0].chain + " -j CALI-SOMETHING\n";
      inserted = true;
    }
  }
  bool two_in_chain = std::count_if(want.begin(), want.end(), [&](const ExpectedRule& r) {
                        return r.table == want[0].table && r.chain == want[0].chain;
                      }) > 1;
  REQUIRE(two_in_chain);
  CHECK(has_line(verify_iptables_save(want, split, "iptables"),
                 "split in iptables " + want[0].table + " " + want[0].chain));
  std::string dup = save(false, false);
  dup += "*" + want[0].table + "\n-A " + want[0].chain + " -m comment --comment \"" +
         want[0].comment + "\"\n";
  CHECK(has_line(verify_iptables_save(want, dup, "iptables"), "duplicated (2x)"));

  LocaldnsObservation o;
  o.expected = true;
  o.pids = {42};
  o.interface_name = "nodelocaldns";
  o.interface_exists = o.interface_up = true;
  o.interface_addresses = o.want_addresses = {"169.254.20.10"};
  o.backend = "iptables-nft";
  o.rules_checked = 10;
  o.queries = {{"169.254.20.10:53 udp", true, 0.4, "NOERROR"},
               {"169.254.20.10:53 tcp", true, 0.6, "NOERROR"}};
  CHECK(check_localdns(o).status == Status::ok);
  o.rule_problems = missing;
  auto bad = check_localdns(o);
  CHECK(bad.status == Status::fail);
  CHECK(has_line(bad.evidence, want[0].comment));
  o.rule_problems.clear();
  o.pids.clear();
  o.queries[0].answered = false;
  auto down = check_localdns(o);
  CHECK(down.status == Status::fail);
  CHECK(has_line(down.evidence, "localdns is not running"));
  o.rules_error = "iptables-nft-save: exit 1 (needs root: CAP_NET_ADMIN)";
  CHECK(has_line(check_localdns(o).evidence, "rules not checked"));
  // Its own counters: SERVFAIL share and setup errors.
  auto m = parse_metrics(
      "# TYPE coredns_dns_responses_total counter\n"
      "coredns_dns_responses_total{server=\"dns://:53\",zone=\".\",view=\"\",rcode=\"NOERROR\","
      "plugin=\"\"} 900\n"
      "coredns_dns_responses_total{server=\"dns://:53\",zone=\".\",view=\"\",rcode=\"SERVFAIL\","
      "plugin=\"\"} 100\n"
      "localdns_upstream_failures_total{to=\"10.244.2.53:53\"} 7\n"
      "coredns_nodecache_setup_errors_total{errortype=\"setup\"} 0\n"
      "localdns_node_repairs_total 2\n");
  CHECK(m.any);
  CHECK(m.responses == 1000);
  CHECK(m.servfail == 100);
  CHECK(m.upstream_failures == 7);
  CHECK(m.repairs == 2);
  LocaldnsObservation healthy = o;
  healthy.rules_error.reset();
  healthy.pids = {42};
  healthy.queries[0].answered = true;
  healthy.metrics_url = "http://169.254.20.10:9253/metrics";
  healthy.metrics = m;
  auto servfail = check_localdns(healthy);
  CHECK(servfail.status == Status::warn);  // 10 % SERVFAIL
  CHECK(
      has_line(servfail.evidence, "10 % SERVFAIL, 7 upstream failures, 0 setup errors, 2 repairs"));
  healthy.metrics->servfail = 0;
  CHECK(check_localdns(healthy).status == Status::ok);
  LocaldnsObservation absent;
  absent.interface_name = "nodelocaldns";
  CHECK(check_localdns(absent).status == Status::warn);

  // nft: the listing is checked by comment.
  std::string ruleset = localdns::node::nftables_ruleset(t);
  CHECK(verify_nft_listing(ruleset, ruleset).empty());
  auto nft_missing = verify_nft_listing(ruleset, "table inet localdns {\n}\n");
  CHECK(nft_missing.size() == 6);
}

TEST_CASE("check 6: conntrack entries for DNS by original destination", "[doctor]") {
  const std::string table =
      "ipv4     2 udp      17 28 src=10.244.1.2 dst=169.254.20.10 sport=40000 dport=53 "
      "src=169.254.20.10 dst=10.244.1.2 sport=53 dport=40000 mark=0 zone=0 use=2\n"
      "ipv4     2 udp      17 29 src=10.244.1.2 dst=10.96.0.10 sport=40001 dport=53 [UNREPLIED] "
      "src=10.244.2.53 dst=10.244.1.1 sport=53 dport=40001 mark=0 zone=0 use=2\n"
      "ipv4     2 tcp      6 117 TIME_WAIT src=10.244.1.2 dst=10.96.0.10 sport=40002 dport=53 "
      "src=10.244.2.53 dst=10.244.1.1 sport=53 dport=40002 [ASSURED] mark=0 zone=0 use=2\n"
      "ipv4     2 igmp     2 599 src=0.0.0.0 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 "
      "dst=0.0.0.0 mark=0 zone=0 use=2\n"
      "ipv4     2 tcp      6 10 CLOSE src=10.0.0.1 dst=10.0.0.2 sport=5353 dport=443 src=10.0.0.2 "
      "dst=10.0.0.1 sport=443 dport=5353 mark=0 zone=0 use=2\n";
  auto e = count_dns_entries(table, {"169.254.20.10"}, {"10.96.0.10"});
  CHECK(e.to_local == 1);
  CHECK(e.to_cluster == 2);
  CHECK(e.total_dns == 3);
  auto c = check_dns_entries(e, view({"169.254.20.10"}));
  CHECK(c.status == Status::warn);
  CHECK(check_dns_entries(DnsEntries{}, view({"169.254.20.10"})).status == Status::ok);
  CHECK(check_dns_entries(std::nullopt, view({}), "permission denied (needs root)").status ==
        Status::warn);
}

TEST_CASE("check 7: the verdict table and exit codes", "[doctor]") {
  auto pod = check_resolver({{"pod", kPod, {}}}, view({"169.254.20.10"}), Resolver::glibc);
  auto stat = parse_conntrack_stat(kStatNew);
  REQUIRE(stat);
  auto quiet = check_conntrack_race(*stat, *stat, 5);
  LocaldnsObservation none;
  none.interface_name = "nodelocaldns";
  auto no_localdns = check_localdns(none);

  auto run = [](std::vector<Check> checks) { return verdict(checks); };
  // Table full beats everything.
  auto full =
      run({quiet, check_kernel_log(std::string("nf_conntrack: table full, dropping packet\n"))});
  CHECK(has_line(full.remedies, "raise nf_conntrack_max"));
  CHECK(full.status == Status::fail);
  // insert_failed climbing without a node-local cache.
  std::string later = kStatNew;
  later.replace(later.find("00000002"), 8, "00000009");
  auto rising = check_conntrack_race(*parse_conntrack_stat(later), *stat, 5);
  auto race = run({rising, no_localdns});
  CHECK(has_line(race.evidence, "insert_failed is climbing"));
  CHECK(has_line(race.remedies, "`single-request-reopen` now; plan the node-local cache"));
  // localdns runs but pods still use the uncaptured ClusterIP.
  LocaldnsObservation good;
  good.expected = true;
  good.pids = {1};
  good.interface_exists = good.interface_up = true;
  auto ok5 = check_localdns(good);
  CHECK(has_line(run({quiet, pod, ok5}).remedies, "point pods at the node-local address"));
  // Tracked DNS to the ClusterIP, no cache anywhere.
  DnsEntries e;
  e.to_cluster = 3;
  auto entries = check_dns_entries(e, view({}));
  CHECK(has_line(run({quiet, no_localdns, entries}).remedies, "a node-local cache (localdns)"));
  // Only ndots:5.
  auto cached =
      check_resolver({{"pod", kPod, {}}}, view({"169.254.20.10", "10.96.0.10"}), Resolver::glibc);
  CHECK(has_line(run({quiet, cached, ok5}).remedies, "lower ndots"));
  // Nothing wrong.
  auto all_ok = run({quiet, ok5});
  CHECK(all_ok.status == Status::ok);
  CHECK(has_line(all_ok.evidence, "no sign of the conntrack DNS race"));

  CHECK(exit_code({quiet, ok5}) == 0);
  CHECK(exit_code({quiet, pod}) == 1);
  CHECK(exit_code({quiet, pod, full}) == 2);
}

TEST_CASE("doctor: flags, usage errors and the JSON document", "[doctor]") {
  using localdns::config::parse_doctor_cli;
  std::vector<std::string_view> a = {
      "--watch",          "5",          "--pod", "12",         "--all-pods",
      "--json",           "--resolver", "musl",  "--local-ip", "169.254.20.10",
      "--interface-kind", "bridge"};
  auto d = parse_doctor_cli(a);
  REQUIRE(d);
  CHECK(d->watch_seconds == 5u);
  CHECK(d->pods == std::vector<int>{12});
  CHECK(d->all_pods);
  CHECK(d->json);
  CHECK(d->musl);
  CHECK(d->has_node_flags);
  CHECK(d->node.local_ips == std::vector<std::string>{"169.254.20.10"});
  CHECK(d->cluster_dns == std::vector<std::string>{"10.96.0.10"});
  for (std::vector<std::string_view> bad : {std::vector<std::string_view>{"--watch", "0"},
                                            {"--watch"},
                                            {"--pod", "x"},
                                            {"--resolver", "bionic"},
                                            {"--cluster-dns", "nope"},
                                            {"--bogus"},
                                            {"extra"},
                                            {"--json=1"}}) {
    CHECK_FALSE(parse_doctor_cli(bad));
  }
  // Exit status 64 for a usage error, from the command itself.
  CHECK(localdns::app::doctor_main({"--watch", "-1"}) == 64);

  auto stat = parse_conntrack_stat(kStatNew);
  std::vector<Check> checks{check_conntrack_race(*stat, std::nullopt, 0)};
  checks.push_back(verdict(checks));
  ReportMeta meta;
  meta.root = true;
  std::string json = render_json(checks, meta);
  CHECK(json.starts_with("{\"version\":"));
  CHECK(json.find("\"status\":\"warn\",\"exit_code\":1") != std::string::npos);
  CHECK(json.find("\"key\":\"conntrack_race\"") != std::string::npos);
  CHECK(json.find("\"clashres\":48") != std::string::npos);
  CHECK(json.find("\"watch_seconds\":null") != std::string::npos);
  std::string text = render_text(checks, meta, false);
  CHECK(text.find("[warn] 1. Conntrack race evidence") != std::string::npos);
  CHECK(text.find("\033[") == std::string::npos);
  CHECK(render_text(checks, meta, true).find("\033[33m") != std::string::npos);
}

TEST_CASE("doctor: --json stays JSON when the evidence holds bytes that are not UTF-8",
          "[doctor]") {
  Check c;
  c.id = 4;
  c.key = "resolver";
  c.name = "Resolver configuration";
  c.evidence = {"search caf\xe9.example \x01\"x\""};  // Latin-1 and a control byte
  std::string json = render_json({c}, ReportMeta{});
  CHECK(json.find("caf\\ufffd.example \\u0001\\\"x\\\"") != std::string::npos);
  CHECK(json.find('\xe9') == std::string::npos);
  CHECK(json.find('\x01') == std::string::npos);
}
