#pragma once
// Next-hop MACs for one port, per worker: static entries from config, entries learned from ARP
// and neighbour advertisements seen on the port (only for addresses we already know or asked
// for, so random ARP cannot fill or poison it), and a request rate limit per unresolved address.
// Fixed capacity, open addressing, no allocation after create().
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <memory>

#include "common/result.hh"
#include "l4/ip_addr.hh"
#include "l4/packet.hh"

namespace l4::lb {

class neighbor_table {
 public:
  enum class kind : uint8_t { empty, pending, learned, fixed };
  struct entry {
    ip_addr addr;
    rte_ether_addr mac{};
    uint64_t last_request = 0;  // when an ARP request/NS was last sent (caller's clock)
    kind k = kind::empty;
  };

  // `capacity` slots (rounded up to a power of two); `request_interval` in the caller's clock.
  static common::result<std::unique_ptr<neighbor_table>> create(uint32_t capacity,
                                                                uint64_t request_interval);

  // A static entry from config; false when the table is full.
  bool add_static(const ip_addr& a, const rte_ether_addr& mac);

  // The MAC for `a`, or nullptr.
  const rte_ether_addr* lookup(const ip_addr& a) const;

  // For an unresolved `a`: records it as pending and returns true when a request is due now
  // (first time or `request_interval` since the last one); false when rate-limited or full.
  bool request_due(const ip_addr& a, uint64_t now);

  // Learns from a parsed ARP packet (request or reply: the sender's address) or an ICMPv6
  // neighbour advertisement with a target link-layer address option. Returns true if an entry
  // was resolved or refreshed. Fixed entries are never overwritten.
  bool learn(const rte_mbuf* m, const packet& p);

  uint32_t capacity() const { return mask_ + 1; }

 private:
  neighbor_table() = default;
  entry* slot(const ip_addr& a, bool create);
  std::unique_ptr<entry[]> e_;
  uint32_t mask_ = 0;
  uint64_t interval_ = 0;
};

// Rewrites `m` into an ARP request (IPv4) or neighbour solicitation (IPv6) for `target` from
// (`mac`, `src`). False when the mbuf cannot hold it.
bool build_neighbor_request(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& src,
                            const ip_addr& target);

}  // namespace l4::lb
