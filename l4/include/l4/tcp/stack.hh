#pragma once
// The userspace TCP stack, server side: one `stack` per worker lcore, shared nothing. It owns a
// pool of TCBs and their byte buffers (sized once from `config`), a flow table, a listener table
// and a TSC timer wheel. The worker feeds it parsed TCP frames with input(), drives its timers
// with poll(now_tsc), and drains the segments it emits with drain_tx(). An `app` (the relay / TLS
// layer) receives connection events and reads and writes bytes through the stack's calls.
//
// Call order in a worker loop iteration:
//   stack.poll(now_tsc);                          // sets the clock, fires due timers
//   for each TCP frame for a tcp/tls service:  stack.input(m, parsed);   // consumes m
//   n = stack.drain_tx(out, cap); tx_burst(out, n) (free what tx_burst refused)
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "common/counter.hh"
#include "common/result.hh"
#include "l4/drop_reason.hh"
#include "l4/ip_addr.hh"
#include "l4/packet.hh"

namespace l4::tcp {

enum class cookie_mode : uint8_t {
  off,          // never; a full SYN backlog drops SYNs (counted)
  on_pressure,  // when SYN_RECEIVED TCBs reach syn_backlog
  always,       // no TCB until the handshake completes
};

enum class pool_full_action : uint8_t { rst, drop };

// Congestion avoidance after slow start: NewReno (RFC 5681, 6582: +1 MSS per RTT, halve on loss)
// or CUBIC (RFC 9438: window a cubic function of the time since the last loss, 0.7 on loss).
enum class congestion : uint8_t { newreno, cubic };

// Floor of the peer's MSS option (RFC 9293's IPv4 default, RFC 879): a smaller value is used as
// this. l4/tcp/README.md "Hostile peers" says why 536 rather than Linux's 48.
inline constexpr uint16_t min_peer_mss = 536;

struct config {
  uint32_t max_connections = 1024;  // TCB pool; includes SYN_RECEIVED and TIME_WAIT
  uint32_t snd_buf = 64 * 1024;     // bytes per connection
  uint32_t rcv_buf = 64 * 1024;     // bytes per connection; bounds the advertised window
  uint8_t ooo_max_ranges = 16;      // out-of-order byte ranges held per connection (<= 16)
  uint32_t syn_backlog = 256;       // SYN_RECEIVED TCBs before cookies / SYN drops
  cookie_mode cookies = cookie_mode::on_pressure;
  pool_full_action on_pool_full = pool_full_action::rst;
  uint16_t mtu = 1500;  // port MTU: our MSS is clamped to it
  uint64_t tsc_hz = 0;  // unit of now_tsc; 0 = rte_get_tsc_hz()
  uint32_t handshake_timeout_ms = 5'000;
  uint32_t idle_timeout_ms = 300'000;
  uint32_t fin_wait_timeout_ms = 30'000;  // FIN_WAIT_1/2, CLOSING, LAST_ACK
  uint32_t time_wait_ms = 2'000;          // short and bounded (not 2*MSL)
  // close_lingering(): the peer's data is taken and dropped this long after the close, then a RST
  // (as after close()).
  uint32_t linger_ms = 2'000;
  // A peer that keeps its window closed on our data (zero-window probes answered, nothing ACKed)
  // this long from the first probe is reset (close_reason::persist_timeout); 0: probe forever.
  uint32_t persist_timeout_ms = 120'000;
  uint32_t rto_initial_ms = 1'000, rto_min_ms = 200,
           rto_max_ms = 60'000;  // RFC 6298; Linux's floor
  uint32_t delayed_ack_ms = 40;
  congestion cc = congestion::newreno;
  uint8_t max_retransmits = 8;  // consecutive RTOs before the connection is reset
  uint8_t max_synack_retries = 4;
  // RFC 5961 §7 per-worker budget; each second's is drawn in [limit/2, 3*limit/2).
  uint32_t challenge_acks_per_s = 1000;
  // ACKs answering invalid segments (PAWS, out of window, bad ACK, challenges): at most one per
  // connection per this interval (Linux's tcp_invalid_ratelimit); 0: no per-connection limit.
  uint32_t invalid_ack_interval_ms = 500;
  uint16_t tx_batch = 512;  // segments held until drain_tx
  bool sack = true, timestamps = true, window_scale = true;
  // Master secret (random per boot; all zero: drawn at start). SYN cookies, ISNs (RFC 6528) and
  // the flow hash each use their own key derived from it; the cookie key rotates every 64 s.
  std::array<uint8_t, 16> secret{};
};

// A connection as the app sees it: a TCB slot and its generation. A stale handle (the slot was
// reused) is ignored by every call.
struct conn_handle {
  uint32_t index = UINT32_MAX;
  uint32_t gen = 0;
  bool valid() const { return index != UINT32_MAX; }
  friend bool operator==(const conn_handle&, const conn_handle&) = default;
};

struct conn_info {
  uint16_t listener = 0;  // id given to add_listener
  ip_addr remote, local;
  uint16_t remote_port = 0, local_port = 0;
  uint16_t mss = 0;  // bytes of payload per segment we send
  uint8_t snd_wscale = 0, rcv_wscale = 0;
  bool sack = false, timestamps = false, wscale = false, from_cookie = false;
};

enum class close_reason : uint8_t {
  normal,            // FINs exchanged both ways
  peer_reset,        // valid RST from the peer
  retransmit_limit,  // max_retransmits RTOs in a row
  idle_timeout,      // no payload either way, no FIN, no new data ACKed (bare ACKs do not count)
  fin_wait_timeout,
  persist_timeout,   // the peer's window stayed closed on our data beyond persist_timeout_ms
  data_after_close,  // peer sent data the app will never read
};

// Reset reasons (RSTs we send), one X(name, description) line each.
enum class reset_reason : uint8_t {
#define X(name, desc) name,
#include "l4/tcp/resets.def"
#undef X
  count_,
};
inline constexpr size_t reset_reason_count = static_cast<size_t>(reset_reason::count_);
inline constexpr std::array<std::string_view, reset_reason_count> reset_reason_names{{
#define X(name, desc) #name,
#include "l4/tcp/resets.def"
#undef X
}};

// Event interface of the layer above. Callbacks run inside input()/poll() or inside an app call
// (send after a window opens); the app may call any stack function from them, including close or
// abort on the connection the event is about. After close() or abort() no further callback
// arrives for that handle; otherwise on_closed arrives exactly once per accepted connection.
class app {
 public:
  virtual ~app() = default;
  // Handshake completed. Return false to refuse (the stack resets the connection).
  virtual bool on_accept(conn_handle c, const conn_info& info) = 0;
  // New in-order bytes are in the receive buffer (read them with recv/peek+consume).
  virtual void on_readable(conn_handle c) = 0;
  // Send buffer space was freed after send() accepted less than offered.
  virtual void on_writable(conn_handle c) = 0;
  // The peer closed its direction (FIN); buffered bytes stay readable.
  virtual void on_peer_fin(conn_handle c) = 0;
  virtual void on_closed(conn_handle c, close_reason why) = 0;
};

// Per-worker counters; the plain ones are declared in counters.def (field, type, metric, help).
struct counters {
#define X(field, type, metric, help) common::counter field;
#include "l4/tcp/counters.def"
#undef X
  std::array<common::counter, reset_reason_count> resets_sent;
  drop_counters drops;  // tcp_* reasons from drops_tcp.def

  uint64_t resets(reset_reason r) const {
    return resets_sent[static_cast<size_t>(r)].get();
  }
};

class engine;

class stack {
 public:
  // `tx_pool` supplies the mbufs of emitted segments (its data room must hold MTU + L2 header);
  // `a` receives events and must outlive the stack. Allocates every pool up front.
  static common::result<std::unique_ptr<stack>> create(const config& cfg, rte_mempool* tx_pool,
                                                       app* a);
  ~stack();
  stack(const stack&) = delete;
  stack& operator=(const stack&) = delete;

  // Listener table: segments to vip:port open connections tagged with `id`.
  common::result<void> add_listener(const ip_addr& vip, uint16_t port, uint16_t id);
  bool remove_listener(const ip_addr& vip, uint16_t port);

  // A TCP frame addressed to a listener or an existing connection, parsed and checksum-verified
  // by l4::parse (single-segment mbuf). Always consumes `m`. Returns drop::none if it was used.
  drop input(rte_mbuf* m, const packet& p);
  // An ICMP "fragmentation needed" (IPv4 type 3 code 4) or "packet too big" (ICMPv6 type 2) to a
  // listener's address, parsed by l4::parse. If it quotes a segment of a connection with the
  // quoted sequence number in flight (RFC 5927 §4.1), the connection's MSS is lowered to the
  // path MTU (never below min_peer_mss; IPv6: 1280) and the too-big segments are sent again.
  // Always consumes `m`. Returns drop::none if the error was used.
  drop icmp_error(rte_mbuf* m, const packet& p);
  // Advances the clock (TSC ticks of config.tsc_hz) and fires due timers. Time never goes back.
  void poll(uint64_t now_tsc);
  // Moves up to `cap` emitted frames to `out`; the caller transmits or frees them.
  uint16_t drain_tx(rte_mbuf** out, uint16_t cap);
  uint16_t tx_pending() const;

  // App calls. Bytes are copied; a stale handle returns 0 / does nothing.
  size_t send(conn_handle c, std::span<const uint8_t> bytes);  // accepted bytes
  size_t send_space(conn_handle c) const;
  // on_writable once ACKs free send-buffer space, for an app that checked send_space() and chose
  // to wait rather than make a short send() (which asks for it implicitly).
  void want_writable(conn_handle c);
  size_t recv(conn_handle c, std::span<uint8_t> out);  // bytes copied out; opens the window
  size_t readable(conn_handle c) const;
  std::span<const uint8_t> peek(conn_handle c) const;  // first contiguous readable chunk
  void consume(conn_handle c, size_t n);               // drop n bytes after peek
  void shutdown_write(conn_handle c);                  // FIN after queued data
  void abort(conn_handle c);                           // RST now, no more events
  void close(conn_handle c);  // FIN after queued data, no more events; RST if unread data
  // As close(), but unread data is dropped, and so is what the peer still sends for linger_ms
  // (ACKed): an answer sent before the close (an error to a request whose body is still coming)
  // reaches the peer instead of being lost to the RST that data after close() draws (nginx's
  // lingering_close, HAProxy's lingering on errors).
  void close_lingering(conn_handle c);
  // Stopping: connections not yet closed or in TIME_WAIT (the app's and those it closed whose
  // FIN exchange is still running), and a RST to each of them now (reason shutdown; as abort()
  // on every handle: no more events). O(max_connections): not for the fast path.
  size_t open_connections() const;
  size_t abort_all();
  const conn_info* info(conn_handle c) const;
  void set_context(conn_handle c, void* ctx);
  void* context(conn_handle c) const;

  const counters& stats() const;
  // Bytes of memory a connection holds while idle (TCB + buffers + flow table share).
  static size_t bytes_per_connection(const config& cfg);

 private:
  explicit stack(std::unique_ptr<engine> e);
  std::unique_ptr<engine> e_;
};

}  // namespace l4::tcp
