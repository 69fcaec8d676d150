#pragma once
// Service kind `tcp` on one worker: the userspace TCP stack terminates client connections, and each
// accepted connection is relayed to an upstream L7 gateway over a kernel TCP socket driven by the
// worker's io_uring (PROXY v2 header first, unless the pool turns it off). Bytes move both ways
// through the two bounded buffers of each side and are only copied when the other side has room,
// so a slow reader holds back the writer: an unread TCP receive buffer shrinks the advertised
// window, an unconsumed upstream rx buffer stops the upstream recv. FIN and RST cross over.
//
// Shared nothing: one relay per worker, used only by its worker thread after start, except the
// counters, which the control thread reads for /metrics.
//
// Worker loop:
//   on a new snapshot:           relay.sync(snap)        (listeners, pools, backend health)
//   every iteration:             relay.poll(rte_rdtsc()) (TCP timers)
//                                while relay.poll_upstream(16) == 16: relay.drain_tx(...) (io_uring
//                                completions in small rounds, so that the segments they emit are
//                                drained before the stack's TX batch fills)
//   TCP frame for a tcp service: relay.input(m, parsed)  (consumes m)
//   after the bursts:            relay.drain_tx(out, n)  -> the client-facing port's TX
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/counter.hh"
#include "common/enum_text.hh"
#include "common/result.hh"
#include "edge/access_log.hh"
#include "edge/config.hh"
#include "edge/inspection/waf_conn.hh"
#include "edge/relay_stage.hh"
#include "l4/packet.hh"
#include "l4/tcp/stack.hh"
#include "limits/set.hh"
#include "tls/context.hh"
#include "tls/worker.hh"
#include "upstream/upstream_conn.hh"
#include "upstream/upstream_pool.hh"
#include "upstream/uring.hh"

namespace edge {

struct snapshot;
struct service_counters;
class service_registry;

// Why a relayed connection ended, counted once per client connection.
#define EDGE_RELAY_ENDS(X)                                                                         \
  X(completed, "both directions closed with FIN")                                                  \
  X(no_service, "refused: the listener's service is gone (reload)")                                \
  X(no_slot, "refused: every relay slot of the worker is in use")                                  \
  X(worker_limit, "refused: the worker holds tcp.max_active_per_worker relayed connections")       \
  X(service_limit, "refused: the service holds services[].max_connections over all workers")       \
  X(source_limit,                                                                                  \
    "refused: the client's address (IPv6: /64) holds services[].max_connections_per_source")       \
  X(request_head_timeout,                                                                          \
    "no request head (HTTP: 408 then FIN) or no first byte (RST) in "                              \
    "services[].timeouts.request_head_ms")                                                         \
  X(no_request, "the client closed before a request head passed the WAF: no upstream was opened")  \
  X(no_upstream, "refused: no healthy upstream, or no upstream connection object/socket")          \
  X(connect_failed, "client reset: every upstream attempt was refused or unreachable")             \
  X(connect_timeout, "client reset: the last upstream attempt timed out")                          \
  X(upstream_reset, "client reset: the upstream reset the connection or failed after connect")     \
  X(client_reset, "upstream reset: the client reset the connection")                               \
  X(client_timeout, "upstream reset: the client side hit a TCP timeout or retransmission limit")   \
  X(client_zero_window,                                                                            \
    "upstream reset: the client kept a zero window beyond tcp.persist_timeout_ms")                 \
  X(client_data_after_close, "upstream reset: the client sent data after its side was closed")     \
  X(waf_blocked,                                                                                   \
    "the WAF blocked a request: block response (or RST) to the client, upstream reset")            \
  X(waf_no_memory, "refused: the WAF inspector state could not be allocated")                      \
  X(tls_no_session, "refused: no TLS session or plaintext buffer free on the worker")              \
  X(tls_handshake_failed, "the TLS handshake failed: alert sent, then FIN (reason in edge_tls_*)") \
  X(tls_handshake_timeout,                                                                         \
    "client reset: the TLS handshake did not finish in tls.handshake_timeout_ms")                  \
  X(tls_handshake_aborted, "the client closed the connection before the TLS handshake finished")   \
  X(tls_error, "a TLS error after the handshake: alert sent to the client, upstream reset")        \
  X(shutdown, "client and upstream reset: edged stopped and the drain deadline passed")            \
  X(limited, "refused: a conn/concurrent limit of the rules directory (edge_limit_limited_total)")

enum class relay_end : uint8_t { EDGE_RELAY_ENDS(COMMON_ENUMERATOR) count_ };
inline constexpr size_t relay_end_count = static_cast<size_t>(relay_end::count_);
inline constexpr std::array<const char*, relay_end_count> relay_end_names{
    {EDGE_RELAY_ENDS(COMMON_ENUM_NAME)}};

// The phase of a relayed connection: one value per slot, changed only through relay::enter(), which
// checks the move against relay_state_moves. Whatever is not a phase is a fact kept beside it (a
// FIN seen, the TCB gone, timer-list membership) or belongs to a stage (relay_stage.hh).
#define EDGE_RELAY_STATES(X)                                                                 \
  X(free, "the slot is unused")                                                              \
  X(handshake, "kind tls: the TLS handshake is running; no upstream yet")                    \
  X(awaiting_request, "HTTP through the WAF: no request head passed yet; no upstream yet")   \
  X(streaming, "the upstream is open (or opening): bytes move both ways")                    \
  X(client_closed, "the client's FIN went upstream; the upstream's bytes still flow")        \
  X(upstream_closed, "the upstream's FIN went to the client; the client's bytes still flow") \
  X(ended, "the outcome is counted; the slot is freed at the end of the event")

enum class relay_state : uint8_t { EDGE_RELAY_STATES(COMMON_ENUMERATOR) count_ };
inline constexpr size_t relay_state_count = static_cast<size_t>(relay_state::count_);
inline constexpr std::array<const char*, relay_state_count> relay_state_names{
    {EDGE_RELAY_STATES(COMMON_ENUM_NAME)}};

// The legal moves, as a bit set of target states per source state. Accept moves a free slot into
// its first phase (or straight to ended: refused by a stage); every phase can end; ended goes back
// to free only through the release at the end of the event.
constexpr uint8_t relay_state_bit(relay_state s) {
  return uint8_t(1u << static_cast<unsigned>(s));
}
inline constexpr std::array<uint8_t, relay_state_count> relay_state_moves{{
    /* free */ uint8_t(
        relay_state_bit(relay_state::handshake) | relay_state_bit(relay_state::awaiting_request) |
        relay_state_bit(relay_state::streaming) | relay_state_bit(relay_state::ended)),
    /* handshake */
    uint8_t(relay_state_bit(relay_state::awaiting_request) |
            relay_state_bit(relay_state::streaming) | relay_state_bit(relay_state::ended)),
    /* awaiting_request */
    uint8_t(relay_state_bit(relay_state::streaming) | relay_state_bit(relay_state::ended)),
    /* streaming */
    uint8_t(relay_state_bit(relay_state::client_closed) |
            relay_state_bit(relay_state::upstream_closed) | relay_state_bit(relay_state::ended)),
    /* client_closed */ relay_state_bit(relay_state::ended),
    /* upstream_closed */ relay_state_bit(relay_state::ended),
    /* ended */ relay_state_bit(relay_state::free),
}};
constexpr bool relay_state_move_ok(relay_state from, relay_state to) {
  return (relay_state_moves[static_cast<size_t>(from)] & relay_state_bit(to)) != 0;
}

struct relay_counters {
  common::counter active;  // relays in use (level)
  // Client connections the relay took (the upstream opens now, after the TLS handshake, or on
  // HTTP services once the first request head passed the WAF: edge_upstream_conns opened).
  common::counter accepted;
  common::counter bytes_from_client;   // moved client -> upstream buffer
  common::counter bytes_to_client;     // moved upstream -> client send buffer
  common::counter waf_prepare_errors;  // WAF rule generations the worker's scratch could not take
  std::array<common::counter, relay_end_count> ends;
  // Connections by phase (levels; free is not counted).
  std::array<common::counter, relay_state_count> states;
  // Moves relay_state_moves does not allow (a bug; refused, the connection stays where it was).
  common::counter bad_moves;
  void end(relay_end e) { ends[static_cast<size_t>(e)].add(); }
};

struct relay_setup {
  unsigned worker = 0;
  tcp_config tcp;
  uint16_t mtu = 1500;
  rte_mempool* tx_pool = nullptr;    // mbufs for the segments the stack emits
  std::array<uint8_t, 16> secret{};  // SYN cookies and ISNs; random per boot
  // Kind tls: the worker's TLS sessions (created on the worker thread by attach_thread()).
  bool tls = false;
  tls::worker_config tls_worker;
  uint32_t tls_handshake_timeout_ms = 10000;
  service_registry* services = nullptr;  // per-service limits and counters (outlives the relay)
};

// One relayed connection (a slot of the relay; stages see it through their hooks).
struct relay_conn {
  l4::tcp::conn_handle tcp;
  upstream::upstream_conn* up = nullptr;
  uint32_t gen = 0;
  uint32_t next_free = UINT32_MAX;  // free list, or (ended) the list released after the event
  relay_state state = relay_state::free;
  relay_state ended_from = relay_state::free;  // the phase it ended in (access log)
  relay_end why = relay_end::count_;           // its outcome, once ended
  bool client_fin = false;    // the client's FIN arrived (passed upstream: client_closed)
  bool upstream_fin = false;  // the upstream's FIN arrived (passed on: upstream_closed)
  bool tcp_closed = false;    // inside on_closed: the stack ends the TCB itself, no close() call
  // Stage waf: the inspector, and whether waf_conn::finish() ran (client FIN).
  std::optional<waf_conn> waf;
  bool waf_finished = false;
  // Stage tls: the session, the plaintext it produced and the upstream has not taken yet, and the
  // handshake deadline list.
  tls::session* tls = nullptr;
  bool tls_close_queued = false;  // our close_notify is queued (upstream FIN)
  uint32_t plain = UINT32_MAX;    // index of the plaintext buffer
  uint32_t plain_head = 0, plain_tail = 0;
  uint32_t hs_prev = UINT32_MAX, hs_next = UINT32_MAX;
  bool in_hs = false;
  uint64_t hs_deadline = 0;
  service_counters* svc = nullptr;  // the service's shared count this connection holds
  uint32_t src_slot = UINT32_MAX;   // its word in the per-source table (source_table::release)
  // Until the first request head passed the WAF (HTTP) or the first byte came (other services):
  // the request-head deadline list of its service. HTTP services open the upstream only then
  // (awaiting_request), from the accept-time tuple kept here.
  uint16_t listener = 0;
  bool http = false;  // the service parsed HTTP at accept: the upstream waits for a request
  bool in_rh = false;
  uint32_t rh_prev = UINT32_MAX, rh_next = UINT32_MAX;
  uint64_t rh_deadline = 0;
  l4::tcp::conn_info info;
  limits::conn_hold hold;  // concurrent-limit counts it holds (rules directory)
  uint8_t stages = 0;      // the chain stages it runs through (bit i: stage i of EDGE_RELAY_CHAIN)
  uint8_t filter = UINT8_MAX;  // the stage that moves the client's bytes (none: copied as they are)
  uint32_t slot = 0;           // its index in the relay (per-connection arrays of a stage)
};

// A listener id names one of these for the life of the relay (ids stay stable across reloads,
// so a handshake that completes after a reload still finds its service).
struct relay_service {
  l4::ip_addr vip;
  uint16_t port = 0;
  bool active = false;
  bool listening = false;
  bool proxy_protocol = true;
  bool by_hash = false;
  upstream::upstream_pool* pool = nullptr;
  std::string name;
  std::shared_ptr<const waf::bound_policy> waf;  // null: no WAF on this service
  tls::context_set_ptr tls;              // kind tls: certificates and settings for new connections
  service_counters* counters = nullptr;  // limit and counts shared by the workers
  bool http = false;              // the WAF parses HTTP: upstream after the first head passed it
  uint64_t head_timeout_tsc = 0;  // services[].timeouts.request_head_ms; 0: none
  // Connections waiting for a request head (the first, or a later keep-alive one since its first
  // byte), oldest first (one timeout per service, so the list stays sorted but across a reload
  // that changes it, when a few expire late).
  uint32_t rh_head = UINT32_MAX, rh_tail = UINT32_MAX;
};

class relay final : public l4::tcp::app, public upstream::upstream_events {
 public:
  // Upstream pool objects per worker; a reload that changes a pool adds one, the old one stays
  // (its connections point at it). Bounded: past this, a changed pool is refused (logged by sync).
  static constexpr size_t max_pools = 64;
  // Plaintext held per TLS connection between the session and the upstream: one record's worth.
  static constexpr size_t plain_size = 16384;

  // Allocates every pool (TCBs, buffers, io_uring, upstream connection objects) up front.
  static common::result<std::unique_ptr<relay>> create(const relay_setup& s);
  ~relay() override;
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  // On the worker, when it sees a new snapshot: listeners for the tcp services, their pools, and
  // the backends' health. Not per packet (may allocate). Returns false if something was refused.
  bool sync(const snapshot& snap);
  // A TCP frame to a tcp service's VIP:port (parsed, checksums verified). Consumes m.
  l4::drop input(rte_mbuf* m, const l4::packet& p);
  l4::drop icmp_error(rte_mbuf* m, const l4::packet& p);
  // TCP timers.
  void poll(uint64_t now_tsc);
  // Stopping (worker thread). stop_accepting: every listener goes (new SYNs get the stack's
  // no_listener RST; later snapshots add none back). open_connections: what is left to drain,
  // TIME_WAIT aside. abort_all: resets every relayed connection both ways (relay end shutdown)
  // and every TCB still open in the stack; returns how many client connections were reset.
  void stop_accepting();
  void resume_accepting();  // undrain: the active services' listeners come back
  size_t open_connections() const { return stack_->open_connections(); }
  size_t abort_all();
  // Up to `max` io_uring completions (upstream connects, sends, recvs); returns how many ran.
  unsigned poll_upstream(unsigned max);
  uint16_t drain_tx(rte_mbuf** out, uint16_t cap) { return stack_->drain_tx(out, cap); }
  // On the worker thread, before its loop and after it: the TLS worker state (OpenSSL's ASYNC job
  // pool is per thread) is created and destroyed there. Kind tls only; no-ops otherwise.
  common::result<void> attach_thread();
  void detach_thread();
  // Handshakes whose private-key operation finished in the offload (or that may retry after
  // job-pool back-pressure): resumed here. Returns how many.
  unsigned poll_tls(unsigned max);

  // Readers for /metrics (any thread: single-writer counters).
  const l4::tcp::counters& tcp_stats() const { return stack_->stats(); }
  const upstream::uring_counters& ring_stats() const { return ring_->counters(); }
  const upstream::conn_pool_counters& conn_stats() const { return conns_->counters(); }
  const relay_counters& stats() const { return ctr_; }
  // Connections ended in the current event whose slots are not free yet (0 between events).
  size_t ending() const { return n_ending_; }
  // The worker's TLS counters; null without tls services or once the worker stopped. Control
  // thread.
  const tls::worker* tls_worker() const { return tls_.get(); }
  // The worker's WAF state (scratch, counters, audit ring); null when no service has a policy.
  // Set once before the worker starts.
  void set_waf(std::unique_ptr<waf_worker> w) { waf_ = std::move(w); }
  const waf_worker* waf() const { return waf_.get(); }
  // The access log ring of this worker (null: no access log). Set once before the worker starts.
  void set_access_ring(access_ring* r);  // edge/access_log_relay.cc
  size_t pool_count() const { return n_pools_.load(std::memory_order_acquire); }
  const upstream::upstream_pool& pool(size_t i) const { return *pools_[i]; }

  // l4::tcp::app
  bool on_accept(l4::tcp::conn_handle c, const l4::tcp::conn_info& info) override;
  void on_readable(l4::tcp::conn_handle c) override;
  void on_writable(l4::tcp::conn_handle c) override;
  void on_peer_fin(l4::tcp::conn_handle c) override;
  void on_closed(l4::tcp::conn_handle c, l4::tcp::close_reason why) override;

  // upstream::upstream_events
  void on_upstream_connected(upstream::upstream_conn& c) override;
  void on_upstream_data(upstream::upstream_conn& c) override;
  void on_upstream_fin(upstream::upstream_conn& c) override;
  void on_upstream_writable(upstream::upstream_conn& c) override;
  void on_upstream_error(upstream::upstream_conn& c, upstream::upstream_error e,
                         int sys_errno) override;

 private:
  using conn = relay_conn;
  using service = relay_service;
#define EDGE_RELAY_STAGE_FRIEND(name) friend class name##_stage;
  EDGE_RELAY_CHAIN(EDGE_RELAY_STAGE_FRIEND)
#undef EDGE_RELAY_STAGE_FRIEND

  relay() = default;
  // An event is one call into the relay from the worker (a frame, a timer round, io_uring or TLS
  // completions) with every callback it causes. A connection that ends during an event keeps its
  // slot until the event is over, so no caller up the chain ever holds a freed slot: it checks
  // ended() instead.
  class event {
   public:
    explicit event(relay& r) : r_(r) { ++r_.depth_; }
    ~event() {
      if (--r_.depth_ == 0 && r_.ending_head_ != UINT32_MAX) r_.release_ended();
    }
    event(const event&) = delete;
    event& operator=(const event&) = delete;

   private:
    relay& r_;
  };
  static bool live(const conn& rc) {
    return rc.state != relay_state::free && rc.state != relay_state::ended;
  }
  static bool ended(const conn& rc) {
    return rc.state == relay_state::ended;
  }
  conn* from_tcp(l4::tcp::conn_handle c);
  conn* from_upstream(const upstream::upstream_conn& c);
  conn* alloc();
  void enter(conn& rc, relay_state to);
  // The connection's outcome (the first one counts): it leaves its timer lists now and its slot
  // at the end of the event.
  void end(conn& rc, relay_end why);
  void release_ended();
  void release(conn& rc);
  void to_upstream(conn& rc);
  void to_client(conn& rc);
  bool upstream_ready(conn& rc);
  void sent_to_client(conn& rc, std::span<const std::byte> sent);
  void reset_client(conn& rc);
  void answer_client(conn& rc, std::span<const char> response);
  void fin_passed(conn& rc, relay_state half);
  bool open_upstream(conn& rc, const service& s, const l4::tcp::conn_info& info,
                     const tls::peer_info* ti);
  // The client's bytes as the relay forwards them: the TCP receive buffer, or for kind tls the
  // plaintext buffer, refilled from the session when empty. src_peek returns false when the
  // connection ended (TLS failure).
  bool src_peek(conn& rc, std::span<const uint8_t>& out);
  void src_consume(conn& rc, size_t n);
  bool client_eof(conn& rc) const;
  // Kind tls (relay_tls.cc).
  void client_input(conn& rc);
  bool tls_accept(conn& rc, const service& s);
  void tls_close(conn& rc);
  bool tls_handshake(conn& rc);  // true: finished now and the upstream is open
  bool tls_pull(conn& rc);       // false: the connection ended
  void tls_flush(conn& rc);
  void tls_fail(conn& rc, relay_end why, bool reset);
  void tls_to_client(conn& rc);
  void tls_block(conn& rc, std::span<const char> response);
  void hs_link(conn& rc, uint64_t now);
  void hs_unlink(conn& rc);
  void expire_handshakes(uint64_t now);
  upstream::upstream_pool* pool_for(const pool_config& pc);
  // Connection limits: a slot for a new connection of `s`, or null (refusal counted).
  conn* admit(const service& s, const l4::tcp::conn_info& info);
  // Request-head deadlines (relay.cc).
  void rh_link(conn& rc, service& s, uint64_t now);
  void rh_unlink(conn& rc);
  void expire_heads(uint64_t now);
  void head_timeout(conn& rc);
  bool open_deferred(conn& rc);  // false: failed, the connection was reset and ended
  void refuse(const service& s, relay_end e);
  void refuse(const service& s, conn& rc, relay_end e);  // with a slot taken: ends it

  unsigned worker_ = 0;
  uint64_t id_base_ = 0;  // unique-id prefix: boot random and worker
  uint64_t id_seq_ = 0;
  std::array<std::unique_ptr<upstream::upstream_pool>, max_pools> pools_;
  std::atomic<size_t> n_pools_{0};
  std::unique_ptr<upstream::uring> ring_;
  std::unique_ptr<upstream::upstream_conns> conns_;
  std::unique_ptr<conn[]> slots_;
  uint32_t n_slots_ = 0;
  uint32_t free_head_ = UINT32_MAX;
  std::vector<service> services_;
  access_ring* alog_ = nullptr;
  std::unique_ptr<access_start[]> alog_start_;                      // per slot: who connected, when
  void log_accept(const conn& rc, const l4::tcp::conn_info& info);  // edge/access_log_relay.cc
  void log_access(conn& rc);
  // The connection's steps and bytes for its access record (no-ops without an access log).
  access_start* log_slot(const conn& rc) {
    const size_t slot = static_cast<size_t>(&rc - slots_.get());
    return alog_ != nullptr && slot < n_slots_ ? &alog_start_[slot] : nullptr;
  }
  void log_step(const conn& rc, uint64_t access_start::*step);
  // HTTP services: `sent` upstream bytes went to the client; each response that ends there
  // becomes its request's line. log_request writes one request's line.
  void log_responses(conn& rc, std::span<const std::byte> sent);
  void log_request(const conn& rc, const request_note& n, uint16_t status, int64_t bytes_out,
                   const char* end_reason);
  void fill_access(const conn& rc, access_record& r) const;
  void log_bytes(const conn& rc, size_t in, size_t out) {
    if (access_start* a = log_slot(rc)) {
      a->bytes_in += in;
      a->bytes_out += out;
      if (out != 0 && a->first_byte_ns == 0) log_step(rc, &access_start::first_byte_ns);
    }
  }
  relay_counters ctr_;
  std::array<std::unique_ptr<relay_stage>, relay_stage_max> stages_;
  size_t n_stages_ = 0;
  unsigned depth_ = 0;                 // nested events (event)
  uint32_t ending_head_ = UINT32_MAX;  // connections ended in this event, via next_free
  size_t n_ending_ = 0;
  service_registry* registry_ = nullptr;
  uint32_t max_active_ = 0;  // tcp.max_active_per_worker (or the pool size)
  std::unique_ptr<waf_worker> waf_;
  uint64_t seen_waf_gen_ = 0;
  std::shared_ptr<const limits::limit_set> limits_;  // the snapshot's, from sync()
  // Kind tls.
  bool tls_enabled_ = false;
  bool stopped_accepting_ = false;
  tls::worker_config tls_cfg_;
  std::unique_ptr<tls::worker> tls_;
  uint8_t* plain_arena_ = nullptr;  // mmap'd, n_slots_ buffers of plain_size; pages touched on use
  std::vector<uint32_t> plain_free_;
  uint64_t hs_timeout_tsc_ = 0;
  uint32_t rh_waiting_ = 0;  // connections on a request-head list
  uint32_t hs_head_ = UINT32_MAX, hs_tail_ = UINT32_MAX;
  std::unique_ptr<l4::tcp::stack> stack_;  // last: destroyed first, it calls back into us
};

}  // namespace edge
