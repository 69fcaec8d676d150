#pragma once
// The forwarding stage of service kind `l4`: full NAT or IPIP/GUE encapsulation with direct
// server return, replies of full NAT translated back, ICMP errors routed by their inner tuple,
// MSS clamping and ICMP frag-needed/packet-too-big for encapsulation overhead, and the L2 header
// of the output frame from a per-port neighbour table.
//
// Worker integration (see docs in the report):
//   once:      auto w = lb_worker::create(cfg, worker_spec{...});
//   per burst: parse_burst → local_input → for packets where is_lb_packet(cfg, p):
//              forward_burst(cfg, *w, pkts, parsed, verdicts, now_tsc)
//              → action tx: transmit on verdict.port_id; action drop: free the mbuf (already
//              counted in w->drops under verdict.reason).
//   ARP/NA received on a port: w->neighbors(role).learn(m, p, now) before local_input.
#include <rte_mbuf.h>

#include <memory>
#include <span>

#include "common/counter.hh"
#include "common/result.hh"
#include "l4/drop_reason.hh"
#include "l4/lb/conn_table.hh"
#include "l4/lb/lb_config.hh"
#include "l4/lb/neighbor_table.hh"
#include "l4/packet.hh"

namespace l4::lb {

// Per-worker counters, declared in counters.def (field, type, metric, help).
struct lb_counters {
#define X(field, type, metric, help) common::counter field;
#include "l4/lb/counters.def"
#undef X
};

// Name/value pairs of the counters (lb_<field>), e.g. for tests; /metrics uses counters.def.
template <class F>
void for_each_counter(const lb_counters& c, F&& f) {
#define X(field, type, metric, help) f("lb_" #field, c.field.get());
#include "l4/lb/counters.def"
#undef X
}

struct worker_spec {
  uint16_t index = 0;                 // 0 .. lb_spec.workers-1: selects the SNAT port range
  uint32_t conn_capacity = 1u << 18;  // 128 bytes per slot + 2 per tag: 32 MiB
  uint64_t hz = 1000;                 // ticks per second of the `now` passed to forward_burst
  uint32_t neighbor_capacity = 1024;
  // The node's neighbour tables (one per port role), shared by every worker; null: this worker
  // makes its own (tests, benches, a single worker).
  std::shared_ptr<neighbor_table> wan_neighbors, lan_neighbors;
};

// The neighbour tables all workers of a node share: entries learned on any worker resolve for
// all. `max_age` in `hz` ticks (learned entries expire after it; refreshed from max_age / 2).
struct shared_neighbors {
  std::shared_ptr<neighbor_table> wan, lan;
  static common::result<shared_neighbors> create(uint32_t capacity, uint64_t hz, uint64_t max_age);
};

class lb_worker {
 public:
  static common::result<std::unique_ptr<lb_worker>> create(const worker_spec& spec);

  // Seeds both ports' neighbour tables with the config's static entries (call after create()
  // and after publishing a config whose static_neighbors changed). False if a table is full.
  bool add_static_neighbors(const lb_config& cfg);

  conn_table& conns() { return *conns_; }
  neighbor_table& neighbors(port_role r) { return *neigh_[static_cast<size_t>(r)]; }
  uint16_t index() const { return index_; }

  drop_counters drops;  // every packet not forwarded, by reason
  lb_counters counters;
  uint32_t port_cursor = 0;  // next SNAT port to try, offset in this worker's range

 private:
  lb_worker() = default;
  std::unique_ptr<conn_table> conns_;
  std::shared_ptr<neighbor_table> neigh_[2];
  uint16_t index_ = 0;
};

enum class lb_action : uint8_t { drop, tx };

struct lb_verdict {
  lb_action action = lb_action::drop;
  uint16_t port_id = 0;      // with tx: the DPDK port to send on
  drop reason = drop::none;  // with drop: why; with tx and a reason: the packet was replaced by
                             // an ICMP error or ARP/NS request that is sent instead
};

// True for packets this stage handles: TCP/UDP to an l4 service's VIP:port, anything to a SNAT
// address, ICMP/ICMPv6 errors to a VIP of an l4 service.
bool is_lb_packet(const lb_config& cfg, const packet& p);
// The same, with the caller's lookup of p's service (cfg.find(p.dst, p.dport, p.proto) for TCP and
// UDP over IP, else nullptr), so that the packet's service is looked up once.
bool is_lb_packet(const lb_config& cfg, const packet& p, const service* svc);

// One packet; rewrites `m` in place (it may prepend/trim the frame).
lb_verdict forward_one(const lb_config& cfg, lb_worker& w, rte_mbuf* m, const packet& p,
                       uint64_t now);

// A burst: out[i] for pkts[i]. `now` in worker_spec.hz ticks (e.g. rte_rdtsc() with hz =
// rte_get_tsc_hz()).
void forward_burst(const lb_config& cfg, lb_worker& w, std::span<rte_mbuf* const> pkts,
                   std::span<const packet> parsed, std::span<lb_verdict> out, uint64_t now);
// The same, with services[i] the caller's lookup of pkts[i]'s service as for is_lb_packet (the
// burst path of edge/worker.cc, which has looked it up once to classify the packet).
void forward_burst(const lb_config& cfg, lb_worker& w, std::span<rte_mbuf* const> pkts,
                   std::span<const packet> parsed, std::span<const service* const> services,
                   std::span<lb_verdict> out, uint64_t now);

}  // namespace l4::lb
