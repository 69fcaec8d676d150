#pragma once
// The transmission control block and its per-connection state. Private to l4/src/tcp.
#include <rte_ether.h>

#include <cstdint>

#include "l4/tcp/stack.hh"
#include "seq.hh"

namespace l4::tcp {

enum class tcp_state : uint8_t {
  closed,  // slot free (or being released)
  syn_received,
  established,
  close_wait,
  last_ack,
  fin_wait_1,
  fin_wait_2,
  closing,
  time_wait,
};

inline constexpr uint32_t no_index = UINT32_MAX;
inline constexpr uint8_t max_ooo_ranges = 16;

// One transmission of the sequence range [start, end) (a FIN counts as the last byte): the send
// map. Records are kept in sequence order and cover [snd_una, snd_max) without gaps; RACK
// (RFC 8985) reads their transmit times, SACK recovery their flags.
inline constexpr uint8_t seg_sacked = 1;  // the peer holds it (SACK)
inline constexpr uint8_t seg_lost = 2;    // marked lost, waiting to be sent again
inline constexpr uint8_t seg_rexmit = 4;  // sent more than once; xmit_us is the latest time
struct sent_seg {
  uint32_t start = 0, end = 0;
  uint32_t xmit_us = 0;  // microsecond clock, wrapping (compared by difference)
  uint8_t flags = 0;
  uint32_t len() const { return end - start; }
};

// Where replies go: the peer's L2 address and tag as seen on its frames.
struct route {
  rte_ether_addr peer_mac{}, own_mac{};
  uint16_t vlan_tci = 0;
  bool has_vlan = false;
  bool v6 = false;
  ip_addr local, remote;
  uint16_t local_port = 0, remote_port = 0;  // host order
};

struct tcb {
  // Identity and wiring.
  uint32_t gen = 0;
  tcp_state state = tcp_state::closed;
  bool accepted = false;    // on_accept returned true: the app owns a handle
  bool app_closed = false;  // close()/abort(): no more callbacks, no more reads
  bool app_want_write = false;
  bool peer_fin = false;
  bool fin_queued = false;  // shutdown_write/close: FIN after the queued data
  bool in_recovery = false;
  bool ack_now = false;
  bool rtt_timing = false;
  bool release_pending = false;
  uint8_t dupacks = 0;
  uint8_t backoff = 0;  // consecutive RTOs / persist probes
  uint8_t synack_retries = 0;
  uint8_t unacked_segs = 0;  // full segments received since our last ACK
  uint8_t n_ooo = 0;
  bool persist = false;  // t_rexmit is the zero-window probe timer
  bool from_cookie = false;
  route rt;
  conn_info info;
  void* ctx = nullptr;

  // Send sequence space. snd_nxt == snd_max: lost data is sent again from the send map, not by
  // rewinding snd_nxt.
  uint32_t iss = 0, snd_una = 0, snd_nxt = 0, snd_max = 0;
  uint32_t snd_wnd = 0, max_snd_wnd = 0, snd_wl1 = 0, snd_wl2 = 0;
  uint32_t cwnd = 0, ssthresh = 0, recover = 0;
  bool fast_rexmit_due = false;  // the first retransmission of a recovery goes out past cwnd
  // RACK (RFC 8985): the most recently sent segment known delivered, and the RTT it measured.
  bool rack_valid = false, reord_seen = false;
  bool tlp_out = false, tlp_rexmit = false;  // a loss probe awaits its ACK (RFC 8985 §7)
  uint32_t rack_xmit_us = 0, rack_end = 0, rack_rtt_us = 0;
  uint32_t min_rtt_us = UINT32_MAX;
  uint32_t fack = 0;     // highest sequence the peer SACKed or ACKed
  uint32_t tlp_end = 0;  // snd_max when the probe went out
  // CUBIC (RFC 9438): window before the last reduction, start of the current epoch (TSC, 0: none),
  // the Reno-friendly estimate, and K (µs) to climb back to w_max from the epoch's start.
  uint32_t cubic_wmax = 0, cubic_west = 0, cubic_k_us = 0, cubic_origin = 0;
  uint64_t cubic_epoch = 0;
  // The send map: map[map_head .. map_head + map_n) of the engine's map_cap_ slots.
  sent_seg* map = nullptr;
  uint32_t map_head = 0, map_n = 0;
  uint32_t rtt_seq = 0;
  uint64_t rtt_start = 0;
  int64_t srtt_us = -1, rttvar_us = 0;
  uint64_t pmtu_resend_at = 0;
  uint64_t linger_until = 0;  // TSC: close_lingering() drops the peer's data until then  // TSC:
                              // before it, a lowered path MTU resends nothing at once
  uint32_t rto_ms = 0;
  uint16_t mss = 536;  // payload per segment we send (peer MSS minus our option overhead)
  uint8_t snd_wscale = 0, rcv_wscale = 0;

  // Receive sequence space. rcv_read: sequence of the first byte the app has not read.
  uint32_t irs = 0, rcv_nxt = 0, rcv_read = 0, rcv_adv = 0, last_ack_sent = 0;
  uint32_t ts_recent = 0, ts_offset = 0;
  uint64_t ts_recent_tsc = 0;
  seq_range ooo[max_ooo_ranges];  // sorted, disjoint, above rcv_nxt
  uint32_t last_ooo_seq = 0;      // reported first in SACK (RFC 2018 §4)
  seq_range dsack{};              // a duplicate to report first in the next ACK (RFC 2883)

  // Byte buffers (slices of the engine's arena). tx holds [snd_una, snd_una + tx_len).
  uint8_t* rx = nullptr;
  uint8_t* tx = nullptr;
  uint32_t rx_head = 0;  // ring index of rcv_read
  uint32_t tx_head = 0;  // ring index of snd_una's byte
  uint32_t tx_len = 0;

  // Timers (absolute TSC; 0 = off) and the wheel links.
  uint64_t t_rexmit = 0;  // RTO, SYN-ACK retransmit or persist
  uint64_t t_delack = 0;
  uint64_t t_reo = 0;        // RACK reordering window expiry
  uint64_t t_tlp = 0;        // tail loss probe (PTO)
  uint64_t t_state = 0;      // handshake, idle, FIN-wait or TIME_WAIT
  uint64_t last_rx_tsc = 0;  // last progress: payload or FIN in, or new data ACKed (idle timer)
  // First zero-window probe since the peer last ACKed new data (persist bound); 0: none.
  uint64_t persist_since = 0;
  uint64_t last_invalid_ack_tsc = 0;  // last ACK answering an invalid segment (0: none)
  uint64_t wheel_at = 0;
  uint32_t wheel_prev = no_index, wheel_next = no_index, wheel_slot = no_index;
  uint32_t free_next = no_index;
  uint32_t release_next = no_index;
  uint32_t tw_prev = no_index, tw_next = no_index;  // TIME_WAIT FIFO, oldest first
  bool in_tw_list = false;

  bool synchronized() const {
    return state != tcp_state::closed && state != tcp_state::syn_received;
  }
  bool fin_sent() const { return fin_queued && seq_gt(snd_max, snd_una + tx_len); }
  uint32_t data_end() const { return snd_una + tx_len; }
  sent_seg& seg(uint32_t i) { return map[map_head + i]; }
};

}  // namespace l4::tcp
