// Address ranges (node.service_cidr, --service-cidr).
#include <algorithm>
#include <array>
#include <charconv>
#include <string>

#include <localdns/config/config.hpp>

namespace localdns::config {

bool Cidr::contains(const boost::asio::ip::address& a) const {
  if (a.is_v4() != base.is_v4()) return false;
  auto bytes = [](const boost::asio::ip::address& x) {
    std::array<unsigned char, 16> out{};
    if (x.is_v4()) {
      auto b = x.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    } else {
      out = x.to_v6().to_bytes();
    }
    return out;
  };
  auto x = bytes(a), y = bytes(base);
  unsigned full = prefix / 8, rest = prefix % 8;
  if (!std::equal(x.begin(), x.begin() + full, y.begin())) return false;
  if (rest == 0) return true;
  unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (x[full] & mask) == (y[full] & mask);
}

std::string Cidr::to_string() const {
  return base.to_string() + "/" + std::to_string(prefix);
}

std::optional<Cidr> parse_cidr(std::string_view text) {
  auto slash = text.find('/');
  std::string addr(text.substr(0, slash));
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(addr, ec);
  if (ec) return std::nullopt;
  unsigned max = a.is_v4() ? 32 : 128, prefix = max;
  if (slash != std::string_view::npos) {
    auto len = text.substr(slash + 1);
    auto [end, err] = std::from_chars(len.data(), len.data() + len.size(), prefix);
    if (len.empty() || err != std::errc() || end != len.data() + len.size() || prefix > max) {
      return std::nullopt;
    }
  }
  // Clear the host bits so that equal ranges compare and print equal.
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    for (unsigned i = 0; i < 4; ++i) {
      unsigned keep = prefix >= (i + 1) * 8 ? 8 : prefix > i * 8 ? prefix - i * 8 : 0;
      b[i] = static_cast<unsigned char>(b[i] & (keep == 0 ? 0 : 0xff << (8 - keep)));
    }
    a = boost::asio::ip::address_v4(b);
  } else {
    auto b = a.to_v6().to_bytes();
    for (unsigned i = 0; i < 16; ++i) {
      unsigned keep = prefix >= (i + 1) * 8 ? 8 : prefix > i * 8 ? prefix - i * 8 : 0;
      b[i] = static_cast<unsigned char>(b[i] & (keep == 0 ? 0 : 0xff << (8 - keep)));
    }
    a = boost::asio::ip::address_v6(b);
  }
  return Cidr{a, prefix};
}

}  // namespace localdns::config
