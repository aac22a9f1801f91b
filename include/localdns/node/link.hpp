// The interface that carries the local addresses (node-local-dns's
// "nodelocaldns" dummy link), managed over route netlink with libnl.
// Every call works in the calling thread's network namespace.
#pragma once

#include <expected>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

struct nl_sock;

namespace localdns::node {

struct LinkSpec {
  std::string name;
  std::string kind;  // "dummy" on real nodes
  std::vector<boost::asio::ip::address> addresses;
};

struct LinkState {
  bool exists = false;
  std::string kind;
  bool up = false;
  int ifindex = 0;
  std::vector<boost::asio::ip::address> addresses;
};

// What ensure() had to do; all false/empty when everything was in place.
struct LinkRepair {
  bool created = false;
  bool brought_up = false;
  std::vector<boost::asio::ip::address> added;

  unsigned count() const {
    return unsigned(created) + unsigned(brought_up) + unsigned(added.size());
  }
};

class Netlink {
 public:
  // Opens a route netlink socket in the current network namespace.
  static std::expected<Netlink, std::string> open();

  Netlink(Netlink&&) noexcept;
  Netlink& operator=(Netlink&&) noexcept;
  ~Netlink();

  std::expected<LinkState, std::string> inspect(const std::string& name);

  // Creates the link unless it exists (an existing link of another kind is an
  // error: it is not ours to take), sets it up and adds every missing address
  // as a host route (/32, /128; IPv6 without duplicate address detection).
  std::expected<LinkRepair, std::string> ensure(const LinkSpec& spec);

  // Deletes the link with its addresses; false when there was none.
  std::expected<bool, std::string> remove(const std::string& name);

 private:
  explicit Netlink(nl_sock* sock) : sock_(sock) {}
  nl_sock* sock_ = nullptr;
};

}  // namespace localdns::node
