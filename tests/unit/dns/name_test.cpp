#include <vector>

#include <catch2/catch.hpp>

#include <localdns/dns/name.hpp>

using namespace localdns::dns;

namespace {
std::vector<std::uint8_t> bytes(std::initializer_list<int> v) {
  std::vector<std::uint8_t> out;
  for (int b : v)
    out.push_back(static_cast<std::uint8_t>(b));
  return out;
}
}  // namespace

TEST_CASE("name_from_text builds lower-case wire names", "[dns][name]") {
  CHECK(*name_from_text(".") == std::string(1, '\0'));
  CHECK(*name_from_text("Cluster.Local") == std::string("\7cluster\5local\0", 15));
  CHECK(*name_from_text("cluster.local.") == std::string("\7cluster\5local\0", 15));
  CHECK_FALSE(name_from_text("a..b"));
  CHECK_FALSE(name_from_text(std::string(64, 'x') + ".com"));
  std::string long_name;
  for (int i = 0; i < 50; ++i)
    long_name += "abcd.";
  CHECK(name_from_text(long_name + "com")->size() == 255);  // the longest legal name
  CHECK_FALSE(name_from_text(long_name + "comm"));          // 256 bytes in wire form
}

TEST_CASE("name_to_text round-trips and escapes", "[dns][name]") {
  auto wire = *name_from_text("kube-dns.kube-system.svc.cluster.local");
  CHECK(name_to_text(wire) == "kube-dns.kube-system.svc.cluster.local.");
  CHECK(name_to_text(std::string(1, '\0')) == ".");
}

TEST_CASE("uncompressed_name_length rejects pointers and overruns", "[dns][name]") {
  auto ok = bytes({3, 'w', 'w', 'w', 0});
  CHECK(uncompressed_name_length(ok, 0) == 5u);
  auto ptr = bytes({3, 'w', 'w', 'w', 0xC0, 0});
  CHECK_FALSE(uncompressed_name_length(ptr, 0));
  auto overrun = bytes({5, 'w', 'w'});
  CHECK_FALSE(uncompressed_name_length(overrun, 0));
  auto reserved = bytes({0x40, 'a', 0});
  CHECK_FALSE(uncompressed_name_length(reserved, 0));
}

TEST_CASE("skip_name follows pointers backwards only, never into the header", "[dns][name]") {
  auto at = [](std::initializer_list<int> v) {  // bytes after a 12-byte header
    auto out = bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    for (int b : v)
      out.push_back(static_cast<std::uint8_t>(b));
    return out;
  };
  // offset 12: "a." ; offset 15: "b" + pointer to 12
  auto msg = at({1, 'a', 0, 1, 'b', 0xC0, 12});
  CHECK(skip_name(msg, 15) == 19u);
  CHECK_FALSE(skip_name(at({0xC0, 12}), 12));             // points at itself
  CHECK_FALSE(skip_name(at({0xC0, 14, 1, 'a', 0}), 12));  // forwards
  CHECK_FALSE(skip_name(at({1, 'a', 0xC0}), 12));         // pointer cut short
  CHECK_FALSE(skip_name(at({0xC0, 14, 0xC0, 12}), 14));   // two pointers in a loop
  auto header = at({0xC0, 1});                            // into the ID, which localdns rewrites
  header[1] = 1;
  header[2] = 0;
  CHECK_FALSE(skip_name(header, 12));
}

TEST_CASE("names_equal ignores ASCII case only", "[dns][name]") {
  auto a = bytes({3, 'W', 'w', 'W', 0});
  auto b = bytes({3, 'w', 'W', 'w', 0});
  auto c = bytes({3, 'w', 'w', 'x', 0});
  CHECK(names_equal(a, b));
  CHECK_FALSE(names_equal(a, c));
  auto d = bytes({1, 0xC1, 0});  // non-ASCII bytes compare exactly
  auto e = bytes({1, 0xE1, 0});
  CHECK_FALSE(names_equal(d, e));
}
