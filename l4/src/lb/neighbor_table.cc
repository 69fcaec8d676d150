#include "l4/lb/neighbor_table.hh"

#include <netinet/in.h>
#include <rte_arp.h>
#include <rte_ip.h>
#include <rte_pause.h>

#include <bit>
#include <cstring>

#include "l4/lb/flow.hh"
#include "l4/neighbor_frame.hh"

namespace l4::lb {
namespace {

uint64_t mac_word(const rte_ether_addr& mac) {
  uint64_t w = 0;
  std::memcpy(&w, &mac, 6);
  return w;
}

}  // namespace

common::result<std::unique_ptr<neighbor_table>> neighbor_table::create(uint32_t capacity,
                                                                       uint64_t request_interval,
                                                                       uint64_t max_age) {
  if (capacity == 0 || capacity > 65536)
    return common::fail("neighbor table capacity must be 1 .. 65536");
  std::unique_ptr<neighbor_table> t(new neighbor_table());
  const uint32_t n = std::bit_ceil(capacity);
  t->e_ = std::make_unique<entry[]>(n);
  t->mask_ = n - 1;
  t->interval_ = request_interval;
  t->max_age_ = max_age;
  return t;
}

neighbor_table::entry* neighbor_table::slot(const ip_addr& a, bool create) const {
  const uint32_t start = static_cast<uint32_t>(ip_addr_hash{}(a) >> 7) & mask_;
  for (uint32_t i = 0; i <= mask_; ++i) {  // linear probe; entries are never deleted
    entry& e = e_[(start + i) & mask_];
    kind k = e.k.load(std::memory_order_acquire);
    if (k == kind::empty) {
      if (!create) return nullptr;
      if (e.k.compare_exchange_strong(k, kind::claiming, std::memory_order_acquire)) {
        e.addr = a;
        e.k.store(kind::pending, std::memory_order_release);
        return &e;
      }
      // Another worker claimed it: fall through and read what it claims.
    }
    // A claim is two stores away from done; a claimer that does not finish in time (preempted)
    // costs at most a duplicate entry further along the probe sequence.
    for (int spin = 0; k == kind::claiming && spin < 4096; ++spin) {
      rte_pause();
      k = e.k.load(std::memory_order_acquire);
    }
    if (k == kind::claiming) continue;
    if (same_addr(e.addr, a)) return &e;
  }
  return nullptr;
}

bool neighbor_table::add_static(const ip_addr& a, const rte_ether_addr& mac) {
  entry* e = slot(a, true);
  if (e == nullptr) return false;
  e->mac.store(mac_word(mac), std::memory_order_relaxed);
  e->k.store(kind::fixed, std::memory_order_release);
  return true;
}

bool neighbor_table::lookup(const ip_addr& a, rte_ether_addr& mac, uint64_t now) const {
  const entry* e = slot(a, false);
  if (e == nullptr) return false;
  const kind k = e->k.load(std::memory_order_acquire);
  if (k != kind::learned && k != kind::fixed) return false;
  if (k == kind::learned && max_age_ != 0 &&
      now - e->updated.load(std::memory_order_relaxed) > max_age_)
    return false;  // expired: the caller asks again
  const uint64_t w = e->mac.load(std::memory_order_relaxed);
  std::memcpy(&mac, &w, 6);
  return true;
}

bool neighbor_table::claim_request(entry& e, uint64_t now) {
  uint64_t last = e.last_request.load(std::memory_order_relaxed);
  if (last != 0 && now - last < interval_) return false;
  return e.last_request.compare_exchange_strong(last, now == 0 ? 1 : now,
                                                std::memory_order_relaxed);
}

bool neighbor_table::request_due(const ip_addr& a, uint64_t now) {
  entry* e = slot(a, true);
  if (e == nullptr) return false;
  return claim_request(*e, now);
}

bool neighbor_table::learn(const rte_mbuf* m, const packet& p, uint64_t now) {
  const auto* data = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint16_t len = rte_pktmbuf_data_len(m);
  ip_addr who;
  rte_ether_addr mac;
  if (p.l3 == l3_kind::arp) {
    const auto* a = reinterpret_cast<const rte_arp_hdr*>(data + p.l2_len);
    who = ip_addr::v4_from_be(a->arp_data.arp_sip);
    mac = a->arp_data.arp_sha;
  } else if (p.l3 == l3_kind::ipv6 && p.proto == IPPROTO_ICMPV6 &&
             (p.sport >> 8) == nd_neighbor_advert) {
    const uint16_t off = p.l4_off();
    if (off + 24 + 8 > len) return false;
    who = ip_addr::v6_from(data + off + 8);
    const uint8_t* opt = data + off + 24;
    const uint8_t* end = data + len;
    bool found = false;
    while (opt + 8 <= end && opt[1] != 0) {
      if (opt[0] == nd_opt_target_lladdr && opt[1] == 1) {
        std::memcpy(&mac, opt + 2, 6);
        found = true;
        break;
      }
      opt += opt[1] * 8;
    }
    if (!found) return false;
  } else {
    return false;
  }
  if (!rte_is_valid_assigned_ether_addr(&mac)) return false;
  entry* e = slot(who, false);
  if (e == nullptr) return false;
  kind k = e->k.load(std::memory_order_acquire);
  if (k != kind::pending && k != kind::learned) return false;  // fixed entries stay
  e->mac.store(mac_word(mac), std::memory_order_relaxed);
  e->updated.store(now, std::memory_order_relaxed);
  // pending -> learned publishes the MAC (release); a concurrent add_static wins.
  if (k == kind::pending) e->k.compare_exchange_strong(k, kind::learned, std::memory_order_release);
  return true;
}

bool build_neighbor_request(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& src,
                            const ip_addr& target) {
  if (!target.v6) return build_arp_request(m, mac, src, target);
  // Solicited-node multicast: ff02::1:ffXX:XXXX and 33:33:ff:XX:XX:XX.
  uint8_t snm[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff};
  std::memcpy(snm + 13, target.b.data() + 13, 3);
  nd_frame nd;
  nd.type = nd_neighbor_solicit;
  nd.src = src;
  nd.dst = ip_addr::v6_from(snm);
  nd.target = target;
  nd.dst_mac = rte_ether_addr{{0x33, 0x33, 0xff, target.b[13], target.b[14], target.b[15]}};
  nd.lladdr_option = nd_opt_source_lladdr;
  return build_nd(m, mac, nd);
}

}  // namespace l4::lb
