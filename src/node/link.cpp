#include <linux/if_addr.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include <localdns/node/link.hpp>

namespace localdns::node {

namespace {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using LinkPtr = std::unique_ptr<rtnl_link, Deleter<rtnl_link, rtnl_link_put>>;
using AddrPtr = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, rtnl_addr_put>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Deleter<nl_addr, nl_addr_put>>;
using CachePtr = std::unique_ptr<nl_cache, Deleter<nl_cache, nl_cache_free>>;

std::string explain(int err, const std::string& what, const LinkSpec* spec = nullptr) {
  int e = err < 0 ? -err : err;
  if (e == NLE_PERM) {
    return what +
           ": permission denied: managing interfaces needs CAP_NET_ADMIN (run as root, "
           "or add NET_ADMIN to the container's capabilities), or turn interface setup off "
           "(--no-setup-interface) and add the addresses yourself";
  }
  if (spec && (e == NLE_OPNOTSUPP || e == NLE_NOATTR || e == NLE_INVAL)) {
    return what + ": the kernel has no '" + spec->kind + "' link type (" + nl_geterror(err) +
           "); load its module (modprobe " + spec->kind +
           "), or choose another kind with --interface-kind / node.interface.kind (bridge "
           "works the same for local delivery)";
  }
  return what + ": " + nl_geterror(err);
}

// An interface address object for `a` (a host route: /32 or /128) on
// interface `ifindex`, for rtnl_addr_add and rtnl_addr_delete.
std::expected<AddrPtr, std::string> host_address(const boost::asio::ip::address& a, int ifindex) {
  nl_addr* raw_local = nullptr;
  std::string text = a.to_string() + (a.is_v4() ? "/32" : "/128");
  if (int err = nl_addr_parse(text.c_str(), a.is_v4() ? AF_INET : AF_INET6, &raw_local); err < 0) {
    return std::unexpected(explain(err, "address " + text));
  }
  NlAddrPtr local(raw_local);
  AddrPtr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_local(addr.get(), local.get());
  rtnl_addr_set_prefixlen(addr.get(), a.is_v4() ? 32 : 128);
  return addr;
}

boost::asio::ip::address to_address(nl_addr* a) {
  if (a == nullptr) return {};
  auto* bytes = static_cast<const unsigned char*>(nl_addr_get_binary_addr(a));
  if (nl_addr_get_family(a) == AF_INET && nl_addr_get_len(a) == 4) {
    boost::asio::ip::address_v4::bytes_type b;
    std::copy(bytes, bytes + 4, b.begin());
    return boost::asio::ip::address_v4(b);
  }
  if (nl_addr_get_family(a) == AF_INET6 && nl_addr_get_len(a) == 16) {
    boost::asio::ip::address_v6::bytes_type b;
    std::copy(bytes, bytes + 16, b.begin());
    return boost::asio::ip::address_v6(b);
  }
  return {};
}

}  // namespace

std::vector<boost::asio::ip::address> foreign_addresses(
    const LinkState& state, const std::vector<boost::asio::ip::address>& allowed) {
  std::vector<boost::asio::ip::address> out;
  for (const auto& a : state.addresses) {
    bool wanted = std::find(allowed.begin(), allowed.end(), a) != allowed.end();
    bool kernel_made = a.is_v6() && a.to_v6().is_link_local();
    if (!wanted && !kernel_made) out.push_back(a);
  }
  return out;
}

std::expected<Netlink, std::string> Netlink::open() {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) return std::unexpected("netlink: out of memory");
  if (int err = nl_connect(sock, NETLINK_ROUTE); err < 0) {
    nl_socket_free(sock);
    return std::unexpected(std::string("netlink: cannot open a route socket: ") + nl_geterror(err));
  }
  return Netlink(sock);
}

Netlink::Netlink(Netlink&& o) noexcept : sock_(std::exchange(o.sock_, nullptr)) {}

Netlink& Netlink::operator=(Netlink&& o) noexcept {
  if (this != &o) {
    if (sock_) nl_socket_free(sock_);
    sock_ = std::exchange(o.sock_, nullptr);
  }
  return *this;
}

Netlink::~Netlink() {
  if (sock_) nl_socket_free(sock_);
}

std::expected<LinkState, std::string> Netlink::inspect(const std::string& name) {
  LinkState state;
  rtnl_link* raw = nullptr;
  int err = rtnl_link_get_kernel(sock_, 0, name.c_str(), &raw);
  LinkPtr link(raw);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return state;
  if (err < 0) return std::unexpected(explain(err, "interface " + name));
  state.exists = true;
  const char* kind = rtnl_link_get_type(link.get());
  state.kind = kind ? kind : "";
  const char* alias = rtnl_link_get_ifalias(link.get());
  state.alias = alias ? alias : "";
  state.up = (rtnl_link_get_flags(link.get()) & IFF_UP) != 0;
  state.ifindex = rtnl_link_get_ifindex(link.get());

  nl_cache* raw_cache = nullptr;
  if (int e = rtnl_addr_alloc_cache(sock_, &raw_cache); e < 0) {
    return std::unexpected(explain(e, "addresses of " + name));
  }
  CachePtr cache(raw_cache);
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(addr) != state.ifindex) continue;
    auto a = to_address(rtnl_addr_get_local(addr));
    if (a.is_unspecified()) continue;
    state.addresses.push_back(a);
    if (a.is_v6() && (rtnl_addr_get_flags(addr) & IFA_F_TENTATIVE) != 0 &&
        (rtnl_addr_get_flags(addr) & IFA_F_DADFAILED) == 0)
      state.tentative.push_back(a);
  }
  return state;
}

std::expected<LinkRepair, std::string> Netlink::ensure(const LinkSpec& spec) {
  LinkRepair repair;
  auto state = inspect(spec.name);
  if (!state) return std::unexpected(state.error());
  if (state->exists && state->kind != spec.kind) {
    return std::unexpected("interface " + spec.name + " exists with kind '" +
                           (state->kind.empty() ? "unknown" : state->kind) + "', not '" +
                           spec.kind + "': it is not ours; choose another --interface-name");
  }
  if (state->exists && !state->ours()) {
    // Adopt only a link that serves nothing but our addresses; its addresses
    // stay on it throughout.
    std::string foreign;
    for (const auto& a : foreign_addresses(*state, spec.addresses))
      foreign += (foreign.empty() ? "" : ", ") + a.to_string();
    if (!foreign.empty()) {
      return std::unexpected("interface " + spec.name + " (" + spec.kind + ") exists, is not " +
                             "marked as localdns's (alias '" + state->alias +
                             "') and holds other addresses (" + foreign +
                             "): it is not ours to take over or delete; choose another "
                             "--interface-name, or remove it yourself");
    }
    if (auto m = mark(*state, spec.name); !m) return std::unexpected(m.error());
    repair.adopted = true;
  }
  if (!state->exists) {
    LinkPtr link(rtnl_link_alloc());
    rtnl_link_set_name(link.get(), spec.name.c_str());
    if (int err = rtnl_link_set_type(link.get(), spec.kind.c_str()); err < 0) {
      return std::unexpected(explain(err, "creating interface " + spec.name, &spec));
    }
    rtnl_link_set_flags(link.get(), IFF_UP);
    if (int err = rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
      return std::unexpected(explain(err, "creating interface " + spec.name, &spec));
    }
    repair.created = true;
    state = inspect(spec.name);
    if (!state) return std::unexpected(state.error());
    if (!state->exists)
      return std::unexpected("interface " + spec.name + " vanished after creation");
    // Marked before any address is added: a crash in between leaves an empty
    // unmarked link of our kind, which the next start adopts.
    if (auto m = mark(*state, spec.name); !m) return std::unexpected(m.error());
  }
  if (!state->up) {
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock_, state->ifindex, nullptr, &raw); err < 0) {
      return std::unexpected(explain(err, "interface " + spec.name));
    }
    LinkPtr current(raw);
    LinkPtr change(rtnl_link_alloc());
    rtnl_link_set_flags(change.get(), IFF_UP);
    if (int err = rtnl_link_change(sock_, current.get(), change.get(), 0); err < 0) {
      return std::unexpected(explain(err, "setting " + spec.name + " up"));
    }
    repair.brought_up = !repair.created;
    state = inspect(spec.name);  // setting it up may have started DAD
    if (!state) return std::unexpected(state.error());
  }
  // A tentative address serves nothing until DAD ends (a second or more on a
  // link that does it): replaced at once by a NODAD one, like those we add.
  for (const auto& a : state->tentative) {
    if (std::find(spec.addresses.begin(), spec.addresses.end(), a) == spec.addresses.end()) {
      continue;
    }
    std::string text = a.to_string() + "/128";
    auto addr = host_address(a, state->ifindex);
    if (!addr) return std::unexpected(addr.error());
    if (int err = rtnl_addr_delete(sock_, addr->get(), 0);
        err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NOADDR) {
      return std::unexpected(explain(err, "replacing tentative " + text + " on " + spec.name));
    }
    std::erase(state->addresses, a);
    repair.untentative.push_back(a);
  }
  for (const auto& a : spec.addresses) {
    if (std::find(state->addresses.begin(), state->addresses.end(), a) != state->addresses.end()) {
      continue;
    }
    std::string text = a.to_string() + (a.is_v4() ? "/32" : "/128");
    auto addr = host_address(a, state->ifindex);
    if (!addr) return std::unexpected(addr.error());
    // Without NODAD an IPv6 address stays tentative and cannot be bound.
    if (a.is_v6()) rtnl_addr_set_flags(addr->get(), IFA_F_NODAD);
    int err = rtnl_addr_add(sock_, addr->get(), NLM_F_CREATE | NLM_F_REPLACE);
    if (err < 0 && err != -NLE_EXIST) {
      return std::unexpected(explain(err, "adding " + text + " to " + spec.name));
    }
    repair.added.push_back(a);
  }
  return repair;
}

std::expected<std::vector<boost::asio::ip::address>, std::string> Netlink::remove_addresses(
    const std::string& name, const std::vector<boost::asio::ip::address>& addresses) {
  std::vector<boost::asio::ip::address> removed;
  auto state = inspect(name);
  if (!state) return std::unexpected(state.error());
  if (!state->exists) return removed;
  for (const auto& a : addresses) {
    bool held =
        std::find(state->addresses.begin(), state->addresses.end(), a) != state->addresses.end() ||
        std::find(state->tentative.begin(), state->tentative.end(), a) != state->tentative.end();
    if (!held) continue;
    std::string text = a.to_string() + (a.is_v4() ? "/32" : "/128");
    auto addr = host_address(a, state->ifindex);
    if (!addr) return std::unexpected(addr.error());
    if (int err = rtnl_addr_delete(sock_, addr->get(), 0);
        err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NOADDR) {
      return std::unexpected(explain(err, "removing " + text + " from " + name));
    }
    removed.push_back(a);
  }
  return removed;
}

std::expected<void, std::string> Netlink::mark(const LinkState& state, const std::string& name) {
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sock_, state.ifindex, nullptr, &raw); err < 0) {
    return std::unexpected(explain(err, "interface " + name));
  }
  LinkPtr current(raw);
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_ifalias(change.get(), std::string(kLinkAlias).c_str());
  if (int err = rtnl_link_change(sock_, current.get(), change.get(), 0); err < 0) {
    return std::unexpected(explain(err, "marking interface " + name + " as localdns's"));
  }
  return {};
}

std::expected<LinkRemoval, std::string> Netlink::remove(const std::string& name,
                                                        const LinkSpec* adoptable) {
  auto state = inspect(name);
  if (!state) return std::unexpected(state.error());
  if (!state->exists) return LinkRemoval::absent;
  bool leftover = adoptable != nullptr && state->kind == adoptable->kind &&
                  foreign_addresses(*state, adoptable->addresses).empty();
  if (!state->ours() && !leftover) return LinkRemoval::not_ours;
  LinkPtr link(rtnl_link_alloc());
  rtnl_link_set_ifindex(link.get(), state->ifindex);
  if (int err = rtnl_link_delete(sock_, link.get()); err < 0) {
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return LinkRemoval::absent;
    return std::unexpected(explain(err, "deleting interface " + name));
  }
  return LinkRemoval::removed;
}

}  // namespace localdns::node
