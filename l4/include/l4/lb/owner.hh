#pragma once
// The ownership rule: which worker owns a received packet. Every flow has exactly one owner, so
// per-worker state (connection table, TCBs, SNAT port ranges) is never shared. A packet that a
// port delivers to another worker (RSS, af_packet fanout rollover, a RETA change) is handed to
// its owner by the caller (edge/worker.cc) over a bounded ring.
//
//   1. A packet to a SNAT address (a full-NAT reply) belongs to the owner of its destination
//      port's range (lb_config::snat_port_owner): the worker that picked that port.
//   2. An ICMP/ICMPv6 error belongs to the owner of the packet it quotes (the quoted tuple is
//      one we sent: rule 1 on its source, else rule 3 on the quoted tuple).
//   3. Everything else: a symmetric software hash of (addresses, ports for TCP/UDP, protocol),
//      so both directions of a flow meet on one worker whatever the NIC's hash does.
//   ARP and packets that fail to parse have no owner: any worker handles them (`self`).
#include <rte_mbuf.h>

#include <cstdint>

#include "l4/ip_addr.hh"
#include "l4/packet.hh"

namespace l4::lb {

class lb_config;

// Symmetric: owner_hash(a, b, pa, pb, proto) == owner_hash(b, a, pb, pa, proto).
uint32_t owner_hash(const ip_addr& a, const ip_addr& b, uint16_t pa, uint16_t pb, uint8_t proto);

// Worker in [0, workers) for a hash (multiply-shift: no division, uniform for any count).
inline uint16_t owner_of_hash(uint32_t h, uint16_t workers) {
  return static_cast<uint16_t>((static_cast<uint64_t>(h) * workers) >> 32);
}

// The owner of parsed packet `p` (frame in `m`); `cfg` may be null (no service of kind l4). A
// SNAT range split for a different worker count than `workers` falls back to the hash.
uint16_t flow_owner(const lb_config* cfg, const rte_mbuf* m, const packet& p, uint16_t workers,
                    uint16_t self);

}  // namespace l4::lb
