#pragma once
// The rules directory's limits and ACLs at the three points a connection passes (see limits/):
// every TCP segment to a terminated service (ACL, SYNs/s, packets/s, bytes/s), every accepted
// connection (new connections/s, concurrent), every HTTP request head (requests/s, in waf_conn).
// Small free functions so that the worker loop, the relay and waf_conn each call one line.
#include <rte_mbuf.h>

#include <cstdint>
#include <string_view>

#include "l4/ip_addr.hh"
#include "l4/packet.hh"
#include "limits/set.hh"

namespace edge {

enum class segment_verdict : uint8_t { pass, acl_denied, limited_drop, limited_rst };

// The limiter clock (1/16 ns units) from a TSC reading.
uint64_t limits_now(uint64_t tsc);

limits::flow limits_flow(const l4::ip_addr& src, const l4::ip_addr& vip, uint16_t vip_port);

// One packet to a service whose limits are `sl` (worker thread): the ACL, then syn (a TCP SYN
// without ACK), packets, bytes. Also the path of kind l4 services (UDP packets are never a SYN).
segment_verdict limits_packet(const limits::service_limits& sl, const l4::packet& p,
                              uint64_t now_tsc, unsigned worker);

// One TCP segment to service `service` (worker thread). `set` may be null (no limits loaded).
segment_verdict limits_segment(const limits::limit_set* set, std::string_view service,
                               const l4::packet& p, uint64_t now_tsc, unsigned worker);

}  // namespace edge
