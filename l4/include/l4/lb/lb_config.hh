#pragma once
// The immutable load-balancing configuration of service kind `l4`, built by the control thread
// from the daemon's config and published by pointer (the caller's RCU). Workers only read it.
// A backend's health or weight change = build a new lb_config (pass the running one as
// `previous` so Maglev tables of unchanged services are shared, not rebuilt) and publish it.
#include <rte_ether.h>

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/result.hh"
#include "l4/ip_addr.hh"
#include "l4/lb/maglev.hh"

namespace l4::lb {

enum class fwd_mode : uint8_t {
  fnat,  // full NAT: dst -> backend, src -> SNAT pool address + per-worker port; replies back
  ipip,  // IPv4-in-IPv4 / IPv6-in-IPv6 to the backend, direct server return
  gue,   // IP-in-UDP (GUE variant 1: the inner IP header follows the UDP header), direct return
};

enum class port_role : uint8_t { wan = 0, lan = 1 };  // clients / backends side

struct backend_spec {
  ip_addr addr;         // same family as the VIP
  uint16_t port = 0;    // full NAT target port; 0 = the VIP's port (ignored by encap modes)
  uint32_t weight = 1;  // 0 = drain: no new flows, existing ones stay
  bool healthy = true;  // false: leaves the Maglev table (existing flows stay)
};

struct service_spec {
  ip_addr vip;
  uint16_t port = 0;  // host order
  uint8_t proto = 6;  // IPPROTO_TCP or IPPROTO_UDP
  fwd_mode mode = fwd_mode::fnat;
  std::vector<backend_spec> backends;
  uint32_t maglev_size = maglev_table::default_size;
  uint16_t gue_port = 6080;  // GUE destination port on the backends
  // Full NAT only: on the client's SYN, add a TCP option carrying the client's address and port
  // (kind 254 "TOA" as LVS/IPVS uses it: 254, 8, port, IPv4 / 254, 20, port, IPv6), so a backend
  // with a TOA module sees the real client. Off by default; skipped when the SYN has no room.
  bool client_addr_option = false;
};

struct port_spec {
  uint16_t port_id = 0;  // DPDK port id written into verdicts
  rte_ether_addr mac{};
  uint16_t mtu = 1500;       // IP MTU of the link
  ip_addr addr_v4, addr_v6;  // this node's address on the link (encap outer source, ARP/NS source)
  std::optional<ip_addr> gw_v4, gw_v6;  // next hop for off-link destinations; unset = on-link
  std::vector<std::pair<ip_addr, rte_ether_addr>> static_neighbors;  // never learned over
};

struct lb_spec {
  std::vector<service_spec> services;
  std::vector<ip_addr> snat_v4, snat_v6;  // full NAT source addresses (local, routed to lan)
  uint16_t snat_port_lo = 1024, snat_port_hi = 65535;
  uint16_t workers = 1;  // SNAT ports are split into this many contiguous ranges
  port_spec wan, lan;
};

struct service {
  service_spec spec;
  std::shared_ptr<const maglev_table> maglev;  // indices into spec.backends
  std::vector<maglev_backend> maglev_input;    // what the table was built from (for reuse)
};

// Ports whose value under `mask` is `value`: (port & mask) == value. A NIC rule matches a masked
// port (rte_flow's TCP/UDP item with a mask); a range needs a set of them.
struct port_block {
  uint16_t value = 0, mask = 0xffff;
  friend bool operator==(const port_block&, const port_block&) = default;
};
// The fewest aligned blocks that cover [lo, hi] exactly, in ascending order (at most 30 for a
// 16-bit range). Empty when lo > hi.
std::vector<port_block> port_blocks(uint16_t lo, uint16_t hi);

class lb_config {
 public:
  static common::result<std::shared_ptr<const lb_config>> build(
      const lb_spec& spec, const lb_config* previous = nullptr);

  // The service for VIP:port/proto, or nullptr. Fast path: one probe sequence in a flat table.
  const service* find(const ip_addr& vip, uint16_t port, uint8_t proto) const;
  uint16_t index_of(const service* s) const { return static_cast<uint16_t>(s - services_.data()); }
  bool is_snat(const ip_addr& a) const;
  // The worker that owns SNAT source port `port` (for software dispatch of reply traffic).
  uint16_t snat_port_owner(uint16_t port) const;
  // This worker's SNAT port range [lo, hi].
  std::pair<uint16_t, uint16_t> snat_range(uint16_t worker) const;

  const lb_spec& spec() const { return spec_; }
  const std::vector<service>& services() const { return services_; }
  const port_spec& port(port_role r) const { return r == port_role::wan ? spec_.wan : spec_.lan; }

 private:
  lb_spec spec_;
  std::vector<service> services_;
  std::vector<int32_t> index_;  // open addressing over services_, -1 = empty
  uint32_t index_mask_ = 0;
  uint32_t ports_per_worker_ = 0;
};

}  // namespace l4::lb
