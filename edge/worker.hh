#pragma once
// The per-lcore worker: rx burst → parse → local (ARP/ND/echo) → service dispatch → buffered tx,
// with adaptive idle back-off. Shared nothing: a worker owns one RX and one TX queue per port.
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/counter.hh"
#include "edge/ports.hh"
#include "edge/relay.hh"
#include "edge/snapshot.hh"
#include "l4/drop_reason.hh"
#include "l4/lb/forward.hh"
#include "l4/local.hh"

namespace edge {

inline constexpr unsigned max_ports = 8;
inline constexpr unsigned max_burst = 256;
inline constexpr unsigned max_workers = 128;
// Slots of a worker's inbound hand-off ring (a power of two; the ring holds one less).
inline constexpr unsigned handoff_ring_size = 4096;
// Closed-port RSTs per worker and second, and the burst above that rate (what a kernel's
// tcp_invalid_ratelimit-style limit would allow; far below any flood).
inline constexpr uint32_t closed_port_rst_per_s = 1000;
inline constexpr uint32_t closed_port_rst_burst = 100;

struct alignas(RTE_CACHE_LINE_SIZE) worker_stats {
  common::counter loops, busy_loops, idle_loops, sleeps, sleep_us;
  common::counter rx_packets[max_ports], tx_packets[max_ports], tx_dropped[max_ports];
  common::counter replies;  // ARP/ND/echo answered
  // Packets this worker received but another worker owns (handed over), and packets other
  // workers handed to this one (l4/lb/owner.hh).
  common::counter handoff_out, handoff_in;
  l4::drop_counters drops;
};

// Frames waiting for tx_burst on one port; flushed once per loop iteration.
struct tx_buffer {
  uint16_t n = 0;
  rte_mbuf* pkts[max_burst * 2];
};

struct worker_context {
  unsigned id = 0;  // worker index = RX/TX queue id = RCU thread id
  unsigned lcore = 0;
  unsigned built_on_lcore = UINT32_MAX;  // where start() built this state (the worker's own lcore)
  unsigned burst = 32;
  unsigned idle_sleep_max_us = 200;
  std::vector<port_state> ports;
  snapshot_publisher* snapshots = nullptr;
  const std::atomic<bool>* stop = nullptr;
  // Stopping with a drain: the control thread raises `drain` (1: stop accepting, 2: reset what is
  // left); the worker answers with what it still has open and the phase it finished, after its
  // RSTs left through the port.
  const std::atomic<uint8_t>* drain = nullptr;
  uint8_t seen_drain = 0;
  uint64_t drain_count_tsc = 0;  // next recount of drain_open (an O(TCBs) scan: once a millisecond)
  std::atomic<uint64_t> drain_open{0};
  std::atomic<uint64_t> drain_reset{0};
  std::atomic<uint8_t> drain_done{0};
  std::atomic<bool> running{false};
  std::atomic<bool> failed{false};  // the worker could not set up its thread state (start_error)
  std::string start_error;          // written before `failed` is set
  // Hand-off rings, one per worker (index = worker id), multi-producer / single-consumer: a
  // packet another worker owns goes to handoff[owner]; this worker drains handoff[id]. Empty or
  // size 1: one worker, no hand-off.
  std::vector<rte_ring*> handoff;
  uint64_t neighbor_refresh_tsc = 0;  // next scan for neighbours to refresh (worker 0)
  // Frames from the control thread (announcements, probes) to send; mbuf->port = port index.
  rte_ring* control_tx = nullptr;
  // Per-worker state of service kind l4 (connection table, neighbour tables, counters).
  std::unique_ptr<l4::lb::lb_worker> lb;
  // Per-worker state of service kind tcp (userspace TCP, io_uring, upstream pools); null when the
  // configuration had no tcp service at start. Its segments leave through port `tcp_port`.
  std::unique_ptr<relay> tcp;
  unsigned tcp_port = 0;
  common::counter tcp_sync_errors;  // snapshots whose tcp services could not all be applied
  uint64_t tsc_hz = 0;
  rte_mempool* pool = nullptr;   // this worker's mbufs (frames it originates)
  uint64_t seen_generation = 0;  // snapshot generation the worker last prepared for
  // RSTs for TCP segments to ports without a service (set up with tsc_hz at start).
  l4::reply_limiter closed_port_rsts;
  worker_stats stats;
  // The worker's TX buffers, by port index (only this worker's thread touches them).
  alignas(RTE_CACHE_LINE_SIZE) tx_buffer tx[max_ports];
};

// rte_eal_remote_launch entry point; `arg` is a worker_context*.
int worker_main(void* arg);

// Processes one received burst from `port_index` (exposed for tests and benchmarks). Packets
// another worker owns are handed to it, unless `handed` (they came over this worker's ring: an
// owner that changed meanwhile, e.g. with a new snapshot, must not bounce them back).
void process_burst(worker_context& w, const snapshot& snap, unsigned port_index,
                   std::span<rte_mbuf*> pkts, bool handed = false);

// Drains up to `max` packets other workers handed to this one and processes them. Returns how
// many.
unsigned process_handoff(worker_context& w, const snapshot& snap, unsigned max);

}  // namespace edge
