#pragma once
// Next-hop MACs for one port, one table shared by all workers: static entries from config,
// entries learned from ARP (replies, requests and gratuitous ARP) and neighbour advertisements
// (solicited or not) seen by any worker, for addresses we already know or asked for only (so
// random ARP cannot fill or poison it), and a request rate limit per unresolved address.
//
// Concurrency: readers and writers never lock. A slot is claimed once (CAS empty -> claiming,
// address written, then pending, release) and never freed; a MAC is one 64-bit atomic word, so a
// worker reads the old or the new MAC, never a torn one; a request is due for one worker only
// (CAS on last_request). Aging: a learned entry older than `max_age` no longer resolves (a
// request goes out instead); refresh_due() lists those older than max_age / 2, so a live next
// hop is asked again before it expires and traffic never waits for it.
// Fixed capacity, open addressing, no allocation after create().
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <atomic>
#include <memory>

#include "common/result.hh"
#include "l4/ip_addr.hh"
#include "l4/packet.hh"

namespace l4::lb {

class neighbor_table {
 public:
  enum class kind : uint8_t { empty, claiming, pending, learned, fixed };

  // `capacity` slots (rounded up to a power of two); `request_interval` and `max_age` in the
  // caller's clock (max_age 0: learned entries never expire).
  static common::result<std::unique_ptr<neighbor_table>> create(uint32_t capacity,
                                                                uint64_t request_interval,
                                                                uint64_t max_age = 0);

  // A static entry from config; false when the table is full.
  bool add_static(const ip_addr& a, const rte_ether_addr& mac);

  // The MAC for `a` into `mac`; false when unknown, pending or expired at `now`.
  bool lookup(const ip_addr& a, rte_ether_addr& mac, uint64_t now) const;

  // For an unresolved `a`: records it as pending and returns true when a request is due now
  // (first time or `request_interval` since the last one); false when rate-limited or full.
  // Only one of several workers asking at once gets true.
  bool request_due(const ip_addr& a, uint64_t now);

  // Learns from a parsed ARP packet (request, reply or gratuitous: the sender's address) or an
  // ICMPv6 neighbour advertisement with a target link-layer address option. Returns true if an
  // entry was resolved or refreshed. Fixed entries are never overwritten.
  bool learn(const rte_mbuf* m, const packet& p, uint64_t now = 0);

  // Calls f(addr) for each learned entry older than max_age / 2 whose refresh request is due
  // (at most one per request_interval each). Off the fast path: O(capacity).
  template <class F>
  void refresh_due(uint64_t now, F&& f) {
    if (max_age_ == 0) return;
    for (uint32_t i = 0; i <= mask_; ++i) {
      entry& e = e_[i];
      if (e.k.load(std::memory_order_acquire) != kind::learned) continue;
      if (now - e.updated.load(std::memory_order_relaxed) < max_age_ / 2) continue;
      if (claim_request(e, now)) f(e.addr);
    }
  }

  uint32_t capacity() const { return mask_ + 1; }

 private:
  struct entry {
    std::atomic<kind> k{kind::empty};
    ip_addr addr;                  // written once, before k leaves `claiming`
    std::atomic<uint64_t> mac{0};  // the 6 bytes of the MAC
    std::atomic<uint64_t> last_request{0};
    std::atomic<uint64_t> updated{0};  // when learned or last refreshed
  };
  neighbor_table() = default;
  entry* slot(const ip_addr& a, bool create) const;
  bool claim_request(entry& e, uint64_t now);
  std::unique_ptr<entry[]> e_;
  uint32_t mask_ = 0;
  uint64_t interval_ = 0;
  uint64_t max_age_ = 0;
};

// Rewrites `m` into an ARP request (IPv4) or neighbour solicitation (IPv6) for `target` from
// (`mac`, `src`). False when the mbuf cannot hold it.
bool build_neighbor_request(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& src,
                            const ip_addr& target);

}  // namespace l4::lb
