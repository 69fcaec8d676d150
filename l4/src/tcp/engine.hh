#pragma once
// The stack's implementation object: pools, tables, timer wheel and the TCP machinery. Split
// over engine.cc (setup, app calls, tables), input.cc (segment arrival), output.cc (segments we
// send, congestion control) and timers.cc (wheel and timeouts).
#include <algorithm>
#include <memory>
#include <vector>

#include "l4/tcp/stack.hh"
#include "options.hh"
#include "syn_cookie.hh"
#include "tcb.hh"

namespace l4::tcp {

struct listener {
  ip_addr vip;
  uint16_t port = 0;
  uint16_t id = 0;
};

// What input() learned about one segment.
struct segment {
  const uint8_t* th = nullptr;  // TCP header
  const uint8_t* data = nullptr;
  uint32_t seq = 0, ack = 0;
  uint32_t len = 0;  // payload bytes
  uint16_t wnd = 0;  // raw window field
  uint8_t flags = 0;
  tcp_options opt;
};

// Send map records per connection: room for every segment of a full send buffer at ~1/3 of a
// 1460-byte MSS, so SACK splits and small writes rarely fill it (a full map merges records).
inline uint32_t map_records(const config& cfg) {
  return std::clamp<uint32_t>(cfg.snd_buf / 512, 32, 1u << 21);
}

// The reply route for a received frame: its addresses swapped.
route route_from(const rte_mbuf* m, const packet& p);

class engine {
 public:
  engine(const config& cfg, rte_mempool* tx_pool, app* a);

  common::result<void> add_listener(const ip_addr& vip, uint16_t port, uint16_t id);
  bool remove_listener(const ip_addr& vip, uint16_t port);
  drop input(rte_mbuf* m, const packet& p);
  drop icmp_error(rte_mbuf* m, const packet& p);
  void poll(uint64_t now_tsc);
  uint16_t drain_tx(rte_mbuf** out, uint16_t cap);
  uint16_t tx_pending() const { return static_cast<uint16_t>(tx_count_); }

  size_t send(conn_handle c, std::span<const uint8_t> bytes);
  size_t send_space(conn_handle c) const;
  void want_writable(conn_handle c);
  size_t recv(conn_handle c, std::span<uint8_t> out);
  size_t readable(conn_handle c) const;
  std::span<const uint8_t> peek(conn_handle c) const;
  void consume(conn_handle c, size_t n);
  void shutdown_write(conn_handle c);
  void abort(conn_handle c);
  void close(conn_handle c);
  void close_lingering(conn_handle c);
  size_t open_connections() const;
  size_t abort_all();
  const conn_info* info(conn_handle c) const;
  void set_context(conn_handle c, void* ctx);
  void* context(conn_handle c) const;
  const counters& stats() const { return ctr_; }

 private:
  void consume(tcb& t, size_t n);  // the app read n bytes (or the stack dropped them)
  // engine.cc: tables and pool.
  tcb* get(conn_handle c) const;
  conn_handle handle(const tcb& t) const;
  uint32_t index_of(const tcb& t) const { return static_cast<uint32_t>(&t - tcbs_.data()); }
  const listener* find_listener(const ip_addr& vip, uint16_t port) const;
  uint64_t flow_hash(const ip_addr& raddr, uint16_t rport, const ip_addr& laddr,
                     uint16_t lport) const;
  uint32_t flow_find(const ip_addr& raddr, uint16_t rport, const ip_addr& laddr,
                     uint16_t lport) const;
  void flow_insert(uint32_t idx);
  void flow_erase(uint32_t idx);
  tcb* alloc_tcb(const route& rt, uint16_t listener_id);
  void release(tcb& t);  // deferred to the end of input/poll
  void reap();
  void tw_unlink(tcb& t);
  void tw_append(tcb& t);
  void notify_closed(tcb& t, close_reason why);
  void reset_conn(tcb& t, reset_reason why, close_reason cr);

  // input.cc
  drop path_mtu(const rte_mbuf* m, const packet& p);
  drop listen_input(rte_mbuf* m, const packet& p, const segment& s, const listener& l);
  // What a passive open learnt from the handshake (the SYN, or the ACK returning a cookie).
  struct handshake {
    uint32_t irs = 0, iss = 0;
    int8_t wscale = -1;  // the peer's shift when both sides scale; -1: none
    bool sack = false;
    uint16_t peer_mss = 0, our_mss = 0;
  };
  // The TCB of a passive open in SYN_RECEIVED, set up from `h`; nullptr when the pool is full
  // (counted, and answered with a RST when so configured; `d` says why).
  tcb* open_passive(rte_mbuf* m, const packet& p, const segment& s, const listener& l,
                    const handshake& h, drop& d);
  drop conn_input(tcb& t, rte_mbuf* m, const packet& p, const segment& s);
  drop syn_received_input(tcb& t, const segment& s);
  drop synchronized_input(tcb& t, const segment& s);
  drop process_ack(tcb& t, const segment& s, bool& window_changed);
  void enter_time_wait(tcb& t);
  bool update_scoreboard(tcb& t, const segment& s);
  void receive_data(tcb& t, uint32_t seq, const uint8_t* data, uint32_t len, bool& readable);
  void insert_ooo(tcb& t, uint32_t seq, uint32_t len, bool& dropped);
  void process_fin(tcb& t);
  void challenge_ack(tcb& t, drop why);
  bool invalid_ack_allowed(tcb& t);
  void send_invalid_ack(tcb& t) {
    if (invalid_ack_allowed(t)) send_ack(t);
  }
  void rotate_cookie_key();
  uint64_t next_random();
  uint16_t send_mss(uint16_t peer_mss, uint16_t our_mss, bool timestamps);
  bool ts_echo_ok(uint32_t tsecr) const;

  // output.cc
  void output(tcb& t);
  enum class tx_kind : uint8_t { fresh, retransmit, probe };
  bool send_segment(tcb& t, uint32_t seq, uint32_t len, uint8_t flags, tx_kind kind);
  void send_ack(tcb& t) { send_segment(t, t.snd_nxt, 0, 0x10, tx_kind::fresh); }
  void send_synack(tcb& t);
  void send_rst_reply(const packet& p, const rte_mbuf* m, const segment& s, reset_reason why);
  void send_rst(tcb& t, reset_reason why);
  rte_mbuf* build(const route& rt, uint32_t seq, uint32_t ack, uint8_t flags, uint16_t wnd,
                  const out_options& o, const tcb* data_from, uint32_t data_off, uint32_t len);
  void push_tx(rte_mbuf* m);
  uint16_t rcv_window(tcb& t);
  uint32_t seg_room(const tcb& t) const;
  uint32_t rcv_space(const tcb& t) const;
  uint32_t ts_now(const tcb& t) const;
  void rtt_sample(tcb& t, uint64_t rtt_us);
  void send_synack_cookie(const route& rt, uint32_t isn, uint32_t irs, uint16_t mss,
                          const tcp_options& syn, uint32_t tsval);

  // recovery.cc: the send map, RACK-TLP (RFC 8985), congestion control (RFC 5681, 6582, 6675).
  uint32_t now32() const { return static_cast<uint32_t>(now_us()); }
  void map_append(tcb& t, uint32_t start, uint32_t end, uint8_t flags);
  bool map_split(tcb& t, uint32_t i, uint32_t at);
  void map_ack(tcb& t, uint32_t ack);
  uint32_t map_sack(tcb& t, seq_range b);
  void map_mark_all_lost(tcb& t, bool forget_sacks);
  void rack_advance(tcb& t, const sent_seg& r);
  uint32_t rack_reo_wnd(const tcb& t) const;
  bool rack_detect_loss(tcb& t);
  void arm_tlp(tcb& t);
  void tlp_fire(tcb& t);
  void tlp_on_ack(tcb& t, uint32_t ack, bool dsack);
  uint32_t pipe(const tcb& t) const;
  bool retransmit_seg(tcb& t, uint32_t i);
  bool retransmit_lost(tcb& t, uint32_t& budget);
  void mark_first_lost(tcb& t);
  void enter_recovery(tcb& t);
  uint32_t loss_ssthresh(tcb& t, uint32_t flight);
  void cubic_ack(tcb& t, uint32_t acked);
  void on_new_ack(tcb& t, uint32_t acked);
  void after_ack(tcb& t, bool dupack_loss);

  // timers.cc
  void schedule(tcb& t);
  void wheel_unlink(tcb& t);
  void wheel_link(tcb& t, uint32_t slot);
  void fire(tcb& t);
  void process_slot(uint32_t slot);
  void rexmit_timer(tcb& t);
  void state_timer(tcb& t);
  void arm_rto(tcb& t);
  uint64_t ms(uint64_t v) const { return v * tsc_per_ms_; }
  uint64_t now_ms() const { return now_ / tsc_per_ms_; }
  uint64_t now_us() const { return now_ * 1000 / tsc_per_ms_; }
  uint64_t us(uint64_t v) const { return v * tsc_per_ms_ / 1000; }

  friend class stack;

  config cfg_;
  rte_mempool* pool_;
  app* app_;
  sip_key secret_;  // cfg.secret, or random when that is all zero
  syn_cookies cookies_;
  sip_key flow_key_;
  uint64_t cookie_epoch_ = 0;  // cookie key period (64 s, the cookie counter's)
  bool cookie_epoch_set_ = false;
  uint64_t rng_;  // xorshift64* for the challenge ACK budget
  uint64_t tsc_per_ms_;
  uint64_t now_ = 0;
  uint16_t our_mss_v4_, our_mss_v6_;
  uint8_t our_wscale_;

  std::vector<tcb> tcbs_;
  std::unique_ptr<uint8_t[]> arena_;  // rx and tx bytes and send maps, touched on first use
  uint32_t map_cap_;                  // send map records per TCB
  uint32_t free_head_ = no_index;
  uint32_t release_head_ = no_index;
  uint32_t tw_head_ = no_index, tw_tail_ = no_index;  // TIME_WAIT FIFO
  bool busy_ = false;  // inside input()/poll(): releases are reaped on the way out
  uint32_t syn_received_ = 0;
  std::vector<uint32_t> flows_;  // open addressing, linear probing, tcb index or no_index
  uint64_t flow_mask_ = 0;
  std::vector<listener> listeners_;

  std::vector<uint32_t> wheel_;  // slot heads; last slot is the "being processed" list
  uint64_t wheel_tick_ = 0;      // last processed ms tick
  static constexpr uint32_t wheel_slots = 4096;

  // Segments waiting for drain_tx: a ring of bit_ceil(tx_batch) slots with a head index, so a
  // drain is a copy of what it takes (erasing a vector's front moved the rest on every drain).
  std::vector<rte_mbuf*> tx_;
  uint32_t tx_mask_ = 0;
  uint32_t tx_head_ = 0;   // oldest segment
  uint32_t tx_count_ = 0;  // held, at most cfg_.tx_batch
  uint64_t challenge_second_ = 0;
  uint64_t last_cookie_ms_ = 0;    // when a SYN cookie was last sent (0: never)
  uint32_t challenge_budget_ = 0;  // challenge ACKs left this second (randomised)
  counters ctr_;
};

}  // namespace l4::tcp
