#include <algorithm>
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

namespace {
// A wire name from raw labels, so tests can put any byte into a label.
std::string wire_of(std::initializer_list<std::string> labels) {
  std::string w;
  for (const auto& l : labels) {
    w.push_back(static_cast<char>(l.size()));
    w += l;
  }
  w.push_back('\0');
  return w;
}
}  // namespace

TEST_CASE("name_to_text escapes label bytes as master files do", "[dns][name]") {
  // Ordinary names are shown as they are, letter case kept.
  CHECK(name_to_text(wire_of({"Kube-DNS_1", "svc", "cluster", "local"})) ==
        "Kube-DNS_1.svc.cluster.local.");
  CHECK(name_to_text(wire_of({"*", "wild", "0/26", "example"})) == "*.wild.0/26.example.");
  // A dot or a backslash inside a label, and the other master-file specials.
  CHECK(name_to_text(wire_of({"a.b", "example"})) == "a\\.b.example.");
  CHECK(name_to_text(wire_of({"a\\b"})) == "a\\\\b.");
  CHECK(name_to_text(wire_of({"\"q\"(x);@$"})) == "\\\"q\\\"\\(x\\)\\;\\@\\$.");
  // Non-printable bytes, space and DEL as \DDD (decimal): no newline, no ESC,
  // no invalid UTF-8 leaves in the text.
  CHECK(name_to_text(wire_of({std::string("a\nb\x1b") + "[31m", "example"})) ==
        "a\\010b\\027[31m.example.");
  CHECK(name_to_text(wire_of({std::string("x y\t\r"), std::string(1, '\0') + "\x7f"})) ==
        "x\\032y\\009\\013.\\000\\127.");
  CHECK(name_to_text(wire_of({"\xc3\xa9\xff\x80"})) == "\\195\\169\\255\\128.");
  // The text never holds a byte outside printable ASCII.
  std::string all;
  for (int b = 0; b < 256; ++b)
    all.push_back(static_cast<char>(b));
  for (std::size_t at = 0; at < all.size(); at += 63) {
    auto text = name_to_text(wire_of({all.substr(at, 63)}));
    INFO(text);
    CHECK(std::all_of(text.begin(), text.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return u > 0x20 && u < 0x7f;
    }));
  }
}

TEST_CASE("name_from_text reads the escapes name_to_text writes", "[dns][name]") {
  CHECK(*name_from_text("a\\.b.example") == wire_of({"a.b", "example"}));
  CHECK(*name_from_text("a\\.") == wire_of({"a."}));  // an escaped dot is not the root's
  CHECK(*name_from_text("\\065\\066c.\\000") == wire_of({"abc", std::string(1, '\0')}));
  CHECK(*name_from_text("a\\\\b") == wire_of({"a\\b"}));
  CHECK_FALSE(name_from_text("a\\"));                            // nothing to escape
  CHECK_FALSE(name_from_text("\\256.x"));                        // over 255
  CHECK_FALSE(name_from_text("\\12"));                           // \DDD takes three digits
  CHECK_FALSE(name_from_text(std::string(62, 'x') + "\\0651"));  // 64 bytes once unescaped
  CHECK(name_from_text(std::string(60, 'x') + "\\065\\066\\067")->size() == 65);
  // Every byte survives the round trip (lower-cased, as name_from_text does).
  for (int b = 0; b < 256; ++b) {
    std::string label = std::string("p") + static_cast<char>(b) + "q";
    auto wire = wire_of({label, "example"});
    auto back = name_from_text(name_to_text(wire));
    INFO("byte " << b << ": " << name_to_text(wire));
    REQUIRE(back.has_value());
    std::string lowered = wire;
    for (auto& c : lowered)
      c = static_cast<char>(lower(static_cast<std::uint8_t>(c)));
    CHECK(*back == lowered);
  }
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

TEST_CASE("lowercase_name lowers A-Z only, every byte value at every position", "[dns][name]") {
  // Lengths 1-19 cover the eight-byte steps and the tail; each byte value
  // sits at every position among neighbours that are upper-case letters.
  for (std::size_t len = 1; len < 20; ++len) {
    for (std::size_t at = 0; at < len; ++at) {
      for (int v = 0; v < 256; ++v) {
        std::vector<std::uint8_t> in(len, 'Q'), out(len, 0);
        in[at] = static_cast<std::uint8_t>(v);
        lowercase_name(Bytes(in.data(), in.size()), out.data());
        for (std::size_t i = 0; i < len; ++i) {
          if (out[i] != lower(in[i])) FAIL("len " << len << " byte " << v << " at " << at);
        }
      }
    }
  }
  SUCCEED();
}
