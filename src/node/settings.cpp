#include <localdns/node/settings.hpp>

namespace localdns::node {

std::string_view to_string(RulesBackendKind b) {
  switch (b) {
    case RulesBackendKind::Auto:
      return "auto";
    case RulesBackendKind::IptablesLegacy:
      return "iptables-legacy";
    case RulesBackendKind::IptablesNft:
      return "iptables-nft";
    case RulesBackendKind::Nftables:
      return "nftables";
  }
  return "?";
}

bool is_link_local(const boost::asio::ip::address& a) {
  if (a.is_v4()) return (a.to_v4().to_uint() & 0xffff0000u) == 0xa9fe0000u;  // 169.254.0.0/16
  return a.to_v6().is_link_local();                                          // fe80::/10
}

}  // namespace localdns::node
