#pragma once
// NIC steering of full-NAT replies (workers.snat_steering: flow): rte_flow rules that send a packet
// to a SNAT address straight to the RX queue of the worker that owns its destination port, so that
// it needs no hand-off between workers (the approach of DPVS). Each worker's SNAT port range is
// written as aligned port blocks (l4::lb::port_blocks): one rule per SNAT address, protocol (TCP,
// UDP) and block. Everything else still reaches its owner by the ownership rule (docs/
// packet-flow.md); ICMP errors about full-NAT flows are handed over as before.
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hh"
#include "l4/ip_addr.hh"
#include "l4/lb/lb_config.hh"

struct rte_flow;

namespace edge {

struct steering_rule {
  l4::ip_addr dst;    // a SNAT address
  uint8_t proto = 0;  // IPPROTO_TCP or IPPROTO_UDP
  l4::lb::port_block ports;
  uint16_t queue = 0;  // the RX queue of the owning worker (= its index)
};

// The rules for `cfg`'s SNAT addresses and its workers' port ranges, in a stable order.
std::vector<steering_rule> snat_steering_rules(const l4::lb::lb_config& cfg);

// A rule created on a port.
struct installed_flow {
  uint16_t port = 0;
  rte_flow* flow = nullptr;
};

// Validates and creates `rules` on DPDK port `port` (started) and appends them to `made`. On the
// first rule the driver refuses, removes every flow in `made` (those of earlier ports too) and
// fails with the driver's reason.
common::result<void> install_steering(uint16_t port, const std::string& port_name,
                                      const std::vector<steering_rule>& rules,
                                      std::vector<installed_flow>& made);
// Destroys the flows in `made` and empties it.
void remove_steering(std::vector<installed_flow>& made);

}  // namespace edge
