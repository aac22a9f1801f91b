// The interface that carries the local addresses (node-local-dns's
// "nodelocaldns" dummy link), managed over route netlink with libnl.
// Every call works in the calling thread's network namespace.
#pragma once

#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

struct nl_sock;

namespace localdns::node {

struct LinkSpec {
  std::string name;
  std::string kind;  // "dummy" on real nodes
  std::vector<boost::asio::ip::address> addresses;
};

// The interface alias (IFLA_IFALIAS) that marks a link as localdns's: set
// when localdns creates or adopts it. Teardown and cleanup delete only
// marked links.
inline constexpr std::string_view kLinkAlias = "localdns";

struct LinkState {
  bool exists = false;
  std::string kind;
  std::string alias;
  bool up = false;
  int ifindex = 0;
  std::vector<boost::asio::ip::address> addresses;
  // IPv6 addresses still in duplicate address detection: neither bindable nor
  // reachable yet (node-local-dns adds its IPv6 address without NODAD).
  std::vector<boost::asio::ip::address> tentative;

  bool ours() const { return exists && alias == kLinkAlias; }
};

// What ensure() had to do; all false/empty when everything was in place.
struct LinkRepair {
  bool created = false;
  bool adopted = false;  // an unmarked link was taken over and marked
  bool brought_up = false;
  std::vector<boost::asio::ip::address> added;
  // Tentative IPv6 addresses of ours, replaced by NODAD ones (included in `added`).
  std::vector<boost::asio::ip::address> untentative;

  unsigned count() const {
    return unsigned(created) + unsigned(adopted) + unsigned(brought_up) + unsigned(added.size());
  }
};

// The addresses of a link that are neither in `allowed` nor made by the
// kernel (IPv6 link-local): what makes an unmarked link someone else's.
std::vector<boost::asio::ip::address> foreign_addresses(
    const LinkState& state, const std::vector<boost::asio::ip::address>& allowed);

enum class LinkRemoval {
  absent,    // no link by that name
  removed,   // ours, deleted
  not_ours,  // exists but is not marked as localdns's: left alone
};

class Netlink {
 public:
  // Opens a route netlink socket in the current network namespace.
  static std::expected<Netlink, std::string> open();

  Netlink(Netlink&&) noexcept;
  Netlink& operator=(Netlink&&) noexcept;
  ~Netlink();

  std::expected<LinkState, std::string> inspect(const std::string& name);

  // Creates the link (marked with kLinkAlias) unless it exists, sets it up
  // and adds every missing address as a host route (/32, /128; IPv6 without
  // duplicate address detection). An existing link is used when it is marked;
  // an unmarked one is adopted (and marked) only when it is of spec.kind and
  // holds no address but spec.addresses (kernel-made IPv6 link-local ones
  // aside), such as node-local-dns's leftover dummy. Any other existing link
  // is refused with an error and left untouched.
  std::expected<LinkRepair, std::string> ensure(const LinkSpec& spec);

  // Removes `addresses` from the link `name` (those it holds; the link
  // stays); returns which it removed. A missing link holds none.
  std::expected<std::vector<boost::asio::ip::address>, std::string> remove_addresses(
      const std::string& name, const std::vector<boost::asio::ip::address>& addresses);

  // Deletes the link with its addresses if it is marked as localdns's, or,
  // given `adoptable`, if it is unmarked but ensure(*adoptable) would adopt it
  // (node-local-dns's leftover: adoptable->kind, no address but adoptable's).
  std::expected<LinkRemoval, std::string> remove(const std::string& name,
                                                 const LinkSpec* adoptable = nullptr);

 private:
  explicit Netlink(nl_sock* sock) : sock_(sock) {}
  std::expected<void, std::string> mark(const LinkState& state, const std::string& name);
  nl_sock* sock_ = nullptr;
};

}  // namespace localdns::node
