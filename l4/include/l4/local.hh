#pragma once
// Local delivery on a port: answers ARP and IPv6 neighbour solicitations for the port's own
// addresses and the VIPs it serves, and ICMP/ICMPv6 echo for them, by rewriting the received
// mbuf into the reply in place. Also builds gratuitous ARP / unsolicited NA for start-up.
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <vector>

#include "l4/drop_reason.hh"
#include "l4/packet.hh"

namespace l4 {

// The addresses a port answers for. Small (a handful of addresses and VIPs): a flat vector.
struct local_addrs {
  rte_ether_addr mac{};
  std::vector<ip_addr> addrs;

  bool has(const ip_addr& a) const {
    for (const auto& x : addrs)
      if (x == a) return true;
    return false;
  }
};

enum class local_action : uint8_t {
  reply,    // the mbuf now holds a reply: transmit it on the receiving port
  deliver,  // addressed to a local address/VIP, not ARP/ND/echo: the next stage decides
  dropped,  // see the returned reason
};

struct local_verdict {
  local_action action;
  drop reason = drop::none;
};

// For a parsed frame: answer it, pass it on, or drop it with a reason.
local_verdict local_input(rte_mbuf* m, const packet& p, const local_addrs& local);

// A TCP segment for an address this port answers for, on a port no service listens on: the RST
// a closed port sends (RFC 9293 §3.10.7.1; RFC 793 "If the state is CLOSED"), written over the
// segment in place (IP options / IPv6 extension headers and the payload dropped). With ACK:
// <SEQ=SEG.ACK><CTL=RST>; without: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. A RST is never
// answered (dropped as no_service); nor is anything but TCP.
local_verdict closed_port_reset(rte_mbuf* m, const packet& p, const rte_ether_addr& own_mac);

// Token bucket for the closed-port RSTs of one worker: spoofed SYNs to closed ports get at most
// `per_second` answers (plus a burst), so the appliance is no reflector. Owner thread only.
class reply_limiter {
 public:
  reply_limiter() = default;  // allows nothing
  reply_limiter(uint64_t hz, uint32_t per_second, uint32_t burst)
      : hz_(hz), rate_(per_second), burst_(burst), tokens_(burst) {}
  bool allow(uint64_t now_tsc);

 private:
  uint64_t hz_ = 0;
  uint32_t rate_ = 0, burst_ = 0, tokens_ = 0;
  uint64_t last_ = 0;
};

// Builds a gratuitous ARP request for `addr` (IPv4) or an unsolicited neighbour advertisement to
// all-nodes (IPv6) into `m`. Returns false if `m` is too small.
bool build_announcement(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& addr);

}  // namespace l4
