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

// Builds a gratuitous ARP request for `addr` (IPv4) or an unsolicited neighbour advertisement to
// all-nodes (IPv6) into `m`. Returns false if `m` is too small.
bool build_announcement(rte_mbuf* m, const rte_ether_addr& mac, const ip_addr& addr);

}  // namespace l4
