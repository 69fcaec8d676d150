#pragma once
// The one builder of the ARP and ICMPv6 neighbour frames the appliance originates: gratuitous
// announcements of its own addresses (l4/local) and resolution requests for next hops (l4/lb).
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>

#include "l4/ip_addr.hh"

namespace l4 {

constexpr uint8_t nd_neighbor_solicit = 135;
constexpr uint8_t nd_neighbor_advert = 136;
constexpr uint8_t nd_opt_source_lladdr = 1;
constexpr uint8_t nd_opt_target_lladdr = 2;

// An ARP request (broadcast) from `mac`: sender `sip`, target `tip` (IPv4, network order).
// `m` is reset first; false when it has no room.
bool build_arp_request(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& sip,
                       const ip_addr& tip);

// A 32-byte ICMPv6 neighbour message (solicitation or advertisement) from `mac` with one
// link-layer address option carrying `mac`. `flags` is the 32-bit word after the checksum, in
// host order (the advertisement's R/S/O bits). `m` is reset first; false when it has no room.
struct nd_frame {
  uint8_t type = 0;  // nd_neighbor_solicit or nd_neighbor_advert
  uint32_t flags = 0;
  ip_addr src, dst, target;
  rte_ether_addr dst_mac{};
  uint8_t lladdr_option = 0;  // nd_opt_source_lladdr or nd_opt_target_lladdr
};
bool build_nd(rte_mbuf* m, const rte_ether_addr& mac, const nd_frame& nd);

}  // namespace l4
