#include "edge/worker.hh"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_tcp.h>
#include <unistd.h>

#include "edge/limits_hook.hh"
#include "l4/lb/owner.hh"
#include "l4/local.hh"
#include "l4/parse.hh"

namespace edge {
namespace {

// Packets of one burst owned by other workers, by owner; flushed at the end of the burst.
struct handoff_buffer {
  uint16_t n = 0;
  rte_mbuf* pkts[max_burst];
};

thread_local handoff_buffer handoff_buffers[max_workers];

void flush_tx(worker_context& w) {
  for (unsigned i = 0; i < w.ports.size(); ++i) {
    tx_buffer& b = w.tx[i];
    if (b.n == 0) continue;
    const uint16_t sent = rte_eth_tx_burst(w.ports[i].id, static_cast<uint16_t>(w.id), b.pkts, b.n);
    w.stats.tx_packets[i].add(sent);
    if (sent < b.n) {
      w.stats.tx_dropped[i].add(b.n - sent);
      w.stats.drops.add(l4::drop::tx_ring_full, b.n - sent);
      rte_pktmbuf_free_bulk(b.pkts + sent, b.n - sent);
    }
    b.n = 0;
  }
}

void enqueue_tx(worker_context& w, unsigned port_index, rte_mbuf* m) {
  tx_buffer& b = w.tx[port_index];
  if (b.n == std::size(b.pkts)) flush_tx(w);
  b.pkts[b.n++] = m;
}

void drop(worker_context& w, rte_mbuf* m, l4::drop reason) {
  w.stats.drops.add(reason);
  rte_pktmbuf_free(m);
}

// One burst enqueue per owner; what its ring has no room for is a counted drop, never a stall.
void flush_handoff(worker_context& w, unsigned port_index) {
  for (unsigned k = 0; k < w.handoff.size(); ++k) {
    handoff_buffer& b = handoff_buffers[k];
    if (b.n == 0) continue;
    for (uint16_t i = 0; i < b.n; ++i) b.pkts[i]->port = static_cast<uint16_t>(port_index);
    const unsigned sent =
        rte_ring_mp_enqueue_burst(w.handoff[k], reinterpret_cast<void**>(b.pkts), b.n, nullptr);
    w.stats.handoff_out.add(sent);
    if (sent < b.n) {
      w.stats.drops.add(l4::drop::handoff_ring_full, b.n - sent);
      rte_pktmbuf_free_bulk(b.pkts + sent, b.n - sent);
    }
    b.n = 0;
  }
}

unsigned port_index(const worker_context& w, uint16_t port_id) {
  for (unsigned i = 0; i < w.ports.size(); ++i)
    if (w.ports[i].id == port_id) return i;
  return 0;
}

bool is_neighbor_reply(const l4::packet& p) {
  constexpr uint8_t nd_neighbor_advert = 136;
  return p.l3 == l4::l3_kind::arp ||
         (p.proto == IPPROTO_ICMPV6 && (p.sport >> 8) == nd_neighbor_advert);
}

// ICMP "fragmentation needed" / ICMPv6 "packet too big".
bool is_path_mtu_error(const l4::packet& p) {
  return (p.proto == IPPROTO_ICMP && p.sport == (3u << 8 | 4u)) ||
         (p.proto == IPPROTO_ICMPV6 && (p.sport >> 8) == 2);
}

void limited_segment(worker_context& w, rte_mbuf* m, const l4::packet& p,
                     const l4::local_addrs& local, unsigned port_index, segment_verdict v);

enum class lb_class : uint8_t {
  other,     // not the balancer's: the local stage and the services see it
  consumed,  // taken here (a neighbour's answer learned)
  forward,   // the balancer's: forwarded with the rest of the burst
};

// Service kind l4: whether the packet is the balancer's. `svc`: its service (one lookup per
// packet, by the caller).
lb_class lb_classify(worker_context& w, const snapshot& snap, unsigned port_index_in, rte_mbuf* m,
                     const l4::packet& p, const l4::lb::service* svc, uint64_t now) {
  if (!snap.lb || !w.lb) return lb_class::other;
  if (is_neighbor_reply(p)) {
    const auto role = w.ports[port_index_in].role == port_role::wan ? l4::lb::port_role::wan
                                                                    : l4::lb::port_role::lan;
    const bool request =
        p.l3 == l4::l3_kind::arp &&
        rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l2_len)[7] == 1;  // ARP opcode request
    if (w.lb->neighbors(role).learn(m, p, now) && !request) {
      drop(w, m, l4::drop::neighbor_learned);
      return lb_class::consumed;
    }
    return lb_class::other;  // requests still get our reply from the local stage
  }
  if (p.l3 == l4::l3_kind::arp || !l4::lb::is_lb_packet(*snap.lb, p, svc)) return lb_class::other;
  // Kind l4: the rules directory's ACL and syn/packets/bytes limits, before any flow state.
  if (const limits::service_limits* sl = snap.l4_limits_for(p.dst, p.dport, p.proto); sl != nullptr)
    if (const auto v = limits_packet(*sl, p, now, w.id); v != segment_verdict::pass) {
      limited_segment(w, m, p, snap.local[port_index_in], port_index_in, v);
      return lb_class::consumed;
    }
  return lb_class::forward;
}

// The balancer's packets of one burst, forwarded together (forward_burst prefetches the
// connection table across them). `parsed` and `svcs` are the packets' own.
void lb_forward(worker_context& w, const snapshot& snap, std::span<rte_mbuf*> pkts,
                std::span<const l4::packet> parsed, std::span<const l4::lb::service*> svcs,
                uint64_t now) {
  if (pkts.empty()) return;
  l4::lb::lb_verdict verdicts[max_burst];
  l4::lb::forward_burst(*snap.lb, *w.lb, pkts, parsed, svcs, std::span(verdicts, pkts.size()), now);
  for (size_t i = 0; i < pkts.size(); ++i) {
    if (verdicts[i].action == l4::lb::lb_action::tx)
      enqueue_tx(w, port_index(w, verdicts[i].port_id), pkts[i]);
    else
      rte_pktmbuf_free(pkts[i]);  // counted by the stage in w.lb->drops
  }
}

// Segments the TCP stack emitted → the client-facing port's TX buffer. Returns whether any.
bool drain_relay(worker_context& w) {
  rte_mbuf* out[64];
  bool any = false;
  for (uint16_t n; (n = w.tcp->drain_tx(out, 64)) != 0;) {
    any = true;
    for (uint16_t k = 0; k < n; ++k) enqueue_tx(w, w.tcp_port, out[k]);
  }
  return any;
}

// On a new snapshot: ask for the MACs of on-link l4 backends the worker does not know yet, so
// that the first connections do not wait for resolution.
void resolve_backends(worker_context& w, const snapshot& snap, uint64_t now) {
  w.seen_generation = snap.generation;
  if (!snap.lb || !w.lb) return;
  // Static neighbours of this snapshot (the tables are the node's: one worker writes them).
  if (w.id == 0 && !w.lb->add_static_neighbors(*snap.lb)) w.lb->counters.neighbor_table_full.add();
  const auto& lan = snap.lb->port(l4::lb::port_role::lan);
  auto& table = w.lb->neighbors(l4::lb::port_role::lan);
  const unsigned out = port_index(w, lan.port_id);
  for (const auto& svc : snap.lb->services())
    for (const auto& b : svc.spec.backends) {
      if ((b.addr.v6 ? lan.gw_v6 : lan.gw_v4).has_value()) continue;  // reached through a gateway
      rte_ether_addr known;
      if (table.lookup(b.addr, known, now) || !table.request_due(b.addr, now)) continue;
      rte_mbuf* m = rte_pktmbuf_alloc(w.pool);
      if (m == nullptr) return;
      if (!l4::lb::build_neighbor_request(m, lan.mac, b.addr.v6 ? lan.addr_v6 : lan.addr_v4,
                                          b.addr)) {
        rte_pktmbuf_free(m);
        continue;
      }
      w.lb->counters.neighbor_requests.add();
      enqueue_tx(w, out, m);
    }
}

// No service on the segment's port: TCP gets the RST of a closed port (the client's connect
// fails at once with ECONNREFUSED instead of timing out), within the worker's rate limit; a RST,
// UDP and the rest are dropped as no_service.
void closed_port(worker_context& w, rte_mbuf* m, const l4::packet& p, const l4::local_addrs& local,
                 unsigned port_index, uint64_t now) {
  if (p.proto != IPPROTO_TCP || (p.tcp_flags & RTE_TCP_RST_FLAG))
    return drop(w, m, l4::drop::no_service);
  if (!w.closed_port_rsts.allow(now)) return drop(w, m, l4::drop::closed_port_rst_limited);
  const l4::local_verdict v = l4::closed_port_reset(m, p, local.mac);
  if (v.action != l4::local_action::reply) return drop(w, m, v.reason);
  w.stats.drops.add(l4::drop::closed_port_rst);  // the segment itself goes no further
  w.stats.replies.add();
  enqueue_tx(w, port_index, m);
}

// Worker 0, once a second: ARP requests / NS for learned neighbours at half their age, so that
// a live next hop answers (and is refreshed in the shared table) before it expires.
void refresh_neighbors(worker_context& w, const snapshot& snap, uint64_t now) {
  if (w.id != 0 || !snap.lb || !w.lb || now < w.neighbor_refresh_tsc) return;
  w.neighbor_refresh_tsc = now + w.tsc_hz;
  for (const auto role : {l4::lb::port_role::wan, l4::lb::port_role::lan}) {
    const auto& ps = snap.lb->port(role);
    const unsigned out = port_index(w, ps.port_id);
    w.lb->neighbors(role).refresh_due(now, [&](const l4::ip_addr& a) {
      rte_mbuf* m = rte_pktmbuf_alloc(w.pool);
      if (m == nullptr) return;
      if (!l4::lb::build_neighbor_request(m, ps.mac, a.v6 ? ps.addr_v6 : ps.addr_v4, a)) {
        rte_pktmbuf_free(m);
        return;
      }
      w.lb->counters.neighbor_requests.add();
      enqueue_tx(w, out, m);
    });
  }
}

// A segment the rules directory's ACL or limits refused (counted there by limit/list name too).
void limited_segment(worker_context& w, rte_mbuf* m, const l4::packet& p,
                     const l4::local_addrs& local, unsigned port_index, segment_verdict v) {
  if (v == segment_verdict::acl_denied) return drop(w, m, l4::drop::acl_denied);
  if (v != segment_verdict::limited_rst) return drop(w, m, l4::drop::rate_limited);
  if (l4::closed_port_reset(m, p, local.mac).action != l4::local_action::reply)
    return drop(w, m, l4::drop::rate_limited);
  w.stats.drops.add(l4::drop::rate_limited_rst);
  enqueue_tx(w, port_index, m);
}

}  // namespace

void process_burst(worker_context& w, const snapshot& snap, unsigned port_index,
                   std::span<rte_mbuf*> pkts, bool handed) {
  l4::packet parsed[max_burst];
  l4::drop verdict[max_burst];
  const size_t n = pkts.size();  // at most max_burst (rx bursts and hand-off dequeues are)
  l4::parse_burst(pkts, std::span(parsed, n), std::span(verdict, n));
  const l4::local_addrs& local = snap.local[port_index];
  const uint64_t now = rte_rdtsc();
  // The balancer's packets, gathered for one forward_burst after this pass: their parsed headers
  // move down in `parsed` (to slot n_lb <= i, already read), their mbufs and services beside.
  rte_mbuf* lb_pkts[max_burst];
  const l4::lb::service* lb_svcs[max_burst];
  size_t n_lb = 0;
  for (size_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (verdict[i] != l4::drop::none) {
      drop(w, m, verdict[i]);
      continue;
    }
    const l4::packet& p = parsed[i];
    if (!handed && w.handoff.size() > 1) {
      const uint16_t owner =
          l4::lb::flow_owner(snap.lb.get(), m, p, static_cast<uint16_t>(w.handoff.size()),
                             static_cast<uint16_t>(w.id));
      if (owner != w.id) {
        handoff_buffer& b = handoff_buffers[owner];
        b.pkts[b.n++] = m;  // at most one burst (≤ max_burst) per flush
        continue;
      }
    }
    // The packet's service, looked up once for the balancer and the delivery below.
    const service_entry* svc = p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP
                                   ? snap.services.find(p.dst, p.dport, p.proto)
                                   : nullptr;
    switch (lb_classify(w, snap, port_index, m, p, svc != nullptr ? svc->lb : nullptr, now)) {
      case lb_class::consumed:
        continue;
      case lb_class::forward:
        lb_pkts[n_lb] = m;
        lb_svcs[n_lb] = svc != nullptr ? svc->lb : nullptr;
        if (n_lb != i) parsed[n_lb] = p;
        ++n_lb;
        continue;
      case lb_class::other:
        break;
    }
    if (w.tcp && is_path_mtu_error(p) && local.has(p.dst)) {
      // To a tcp/tls VIP: the owning TCB checks the quote and lowers its MSS (counted there).
      (void)w.tcp->icmp_error(m, p);
      continue;
    }
    const l4::local_verdict lv = l4::local_input(m, p, local);
    switch (lv.action) {
      case l4::local_action::reply:
        w.stats.replies.add();
        enqueue_tx(w, port_index, m);
        break;
      case l4::local_action::dropped:
        drop(w, m, lv.reason);
        break;
      case l4::local_action::deliver: {
        if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP) {
          drop(w, m, l4::drop::proto_unsupported);
          break;
        }
        const service_config* s = svc != nullptr ? svc->cfg : nullptr;
        if (s == nullptr) {
          closed_port(w, m, p, local, port_index, now);
          break;
        }
        if ((s->kind == service_kind::tcp || s->kind == service_kind::tls) && w.tcp) {
          if (const auto limv = limits_segment(snap.waf ? snap.waf->limits.get() : nullptr, s->name,
                                               p, now, w.id);
              limv != segment_verdict::pass) {
            limited_segment(w, m, p, local, port_index, limv);
            break;
          }
          // Consumed; a segment the stack does not use is counted in its own drop counters.
          (void)w.tcp->input(m, p);
          break;
        }
        // Service kinds plug in here as their data paths land; config refuses kinds not built.
        drop(w, m, l4::drop::no_service);
        break;
      }
    }
  }
  lb_forward(w, snap, std::span(lb_pkts, n_lb), std::span(parsed, n_lb), std::span(lb_svcs, n_lb),
             now);
  if (!handed && w.handoff.size() > 1) flush_handoff(w, port_index);
}

unsigned process_handoff(worker_context& w, const snapshot& snap, unsigned max) {
  if (w.handoff.size() <= 1) return 0;
  rte_mbuf* pkts[max_burst];
  const unsigned n = rte_ring_sc_dequeue_burst(w.handoff[w.id], reinterpret_cast<void**>(pkts),
                                               std::min(max, max_burst), nullptr);
  if (n == 0) return 0;
  w.stats.handoff_in.add(n);
  // The sender wrote the port index into mbuf->port; runs of one port go through as one burst.
  unsigned from = 0;
  for (unsigned i = 1; i <= n; ++i) {
    if (i < n && pkts[i]->port == pkts[from]->port) continue;
    const unsigned port = pkts[from]->port;
    if (port < w.ports.size()) {
      process_burst(w, snap, port, std::span(pkts + from, i - from), true);
    } else {
      w.stats.drops.add(l4::drop::handoff_bad_port, i - from);
      rte_pktmbuf_free_bulk(pkts + from, i - from);
    }
    from = i;
  }
  return n;
}

int worker_main(void* arg) {
  auto& w = *static_cast<worker_context*>(arg);
  w.snapshots->register_worker(w.id);
  if (w.tcp) {
    // Per-thread state (OpenSSL's ASYNC job pool) must be made on this thread.
    if (auto r = w.tcp->attach_thread(); !r) {
      w.start_error = r.error().str();
      w.failed.store(true);
      w.snapshots->unregister_worker(w.id);
      return -1;
    }
  }
  w.running.store(true);
  rte_mbuf* pkts[max_burst];
  unsigned sleep_us = 0;
  const uint16_t burst = static_cast<uint16_t>(std::min(w.burst, max_burst));
  while (!w.stop->load(std::memory_order_relaxed)) {
    const snapshot* snap = w.snapshots->current();
    if (snap->generation != w.seen_generation) {
      resolve_backends(w, *snap, rte_rdtsc());
      if (w.tcp && !w.tcp->sync(*snap)) w.tcp_sync_errors.add();
    }
    bool busy = false;
    const uint8_t drain = w.drain != nullptr ? w.drain->load(std::memory_order_acquire) : 0;
    if (drain != 0 && w.tcp) {
      if (w.seen_drain == 0) w.tcp->stop_accepting();
      if (drain >= 2 && w.seen_drain < 2)
        w.drain_reset.store(w.tcp->abort_all(), std::memory_order_relaxed);
      if (const uint64_t now = rte_rdtsc(); now >= w.drain_count_tsc || drain != w.seen_drain) {
        w.drain_open.store(w.tcp->open_connections(), std::memory_order_relaxed);
        w.drain_count_tsc = now + w.tsc_hz / 1000;
      }
    } else if (drain == 0 && w.seen_drain != 0 && w.tcp) {
      w.tcp->resume_accepting();  // undrain
    }
    // TCP timers and upstream completions first, so that bytes the upstream delivered leave in
    // this iteration's TX flush. Completions run in small rounds with a drain after each: one
    // completion can make the stack emit dozens of segments.
    if (w.tcp) {
      w.tcp->poll(rte_rdtsc());
      if (w.tcp->poll_tls(32) != 0) busy = true;
      for (unsigned round = 0; round < 16; ++round) {
        const unsigned done = w.tcp->poll_upstream(16);
        if (drain_relay(w) || done != 0) busy = true;
        if (done < 16) break;
      }
    }
    for (unsigned i = 0; i < w.ports.size(); ++i) {
      const uint16_t n = rte_eth_rx_burst(w.ports[i].id, static_cast<uint16_t>(w.id), pkts, burst);
      if (n == 0) continue;
      busy = true;
      w.stats.rx_packets[i].add(n);
      process_burst(w, *snap, i, std::span(pkts, n));
    }
    if (process_handoff(w, *snap, burst) != 0) busy = true;
    refresh_neighbors(w, *snap, rte_rdtsc());
    if (w.tcp && drain_relay(w)) busy = true;
    if (rte_ring_count(w.control_tx) != 0) {
      rte_mbuf* ctl[32];
      const unsigned n =
          rte_ring_sc_dequeue_burst(w.control_tx, reinterpret_cast<void**>(ctl), 32, nullptr);
      for (unsigned i = 0; i < n; ++i) {
        if (ctl[i]->port < w.ports.size())
          enqueue_tx(w, ctl[i]->port, ctl[i]);
        else
          rte_pktmbuf_free(ctl[i]);
      }
    }
    flush_tx(w);
    if (drain != w.seen_drain) {  // after the flush: the RSTs of phase 2 have left
      w.seen_drain = drain;
      w.drain_done.store(drain, std::memory_order_release);
    }
    w.snapshots->quiescent(w.id);
    w.stats.loops.add();
    if (busy) {
      w.stats.busy_loops.add();
      sleep_us = 0;
      continue;
    }
    w.stats.idle_loops.add();
    // Adaptive back-off: spin briefly after traffic, then sleep in growing steps up to the
    // configured ceiling so that an idle appliance (and the test machines) do not burn a core.
    if (w.idle_sleep_max_us == 0) continue;
    sleep_us = sleep_us == 0 ? 1 : std::min(sleep_us * 2, w.idle_sleep_max_us);
    if (sleep_us > 8) {
      w.stats.sleeps.add();
      w.stats.sleep_us.add(sleep_us);
      usleep(sleep_us);
    } else {
      rte_pause();
    }
  }
  if (w.tcp) w.tcp->detach_thread();
  flush_tx(w);
  w.snapshots->unregister_worker(w.id);
  w.running.store(false);
  return 0;
}

}  // namespace edge
