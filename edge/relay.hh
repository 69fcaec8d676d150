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
#include "common/result.hh"
#include "edge/access_log.hh"
#include "edge/config.hh"
#include "l4/packet.hh"
#include "l4/tcp/stack.hh"
#include "limits/set.hh"
#include "tls/context.hh"
#include "tls/worker.hh"
#include "upstream/upstream_conn.hh"
#include "upstream/upstream_pool.hh"
#include "upstream/uring.hh"
#include "waf/waf_conn.hh"

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

enum class relay_end : uint8_t {
#define X(name, desc) name,
  EDGE_RELAY_ENDS(X)
#undef X
      count_,
};
inline constexpr size_t relay_end_count = static_cast<size_t>(relay_end::count_);
inline constexpr std::array<const char*, relay_end_count> relay_end_names{{
#define X(name, desc) #name,
    EDGE_RELAY_ENDS(X)
#undef X
}};

struct relay_counters {
  common::counter active;  // relays in use (level)
  // Client connections the relay took (the upstream opens now, after the TLS handshake, or on
  // HTTP services once the first request head passed the WAF: edge_upstream_conns opened).
  common::counter accepted;
  common::counter bytes_from_client;   // moved client -> upstream buffer
  common::counter bytes_to_client;     // moved upstream -> client send buffer
  common::counter waf_prepare_errors;  // WAF rule generations the worker's scratch could not take
  std::array<common::counter, relay_end_count> ends;
  void end(relay_end e) {
    ends[static_cast<size_t>(e)].add();
    last_end = e;  // the access log's end reason (release() follows on the same thread)
  }
  relay_end last_end = relay_end::count_;
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
  l4::drop input(rte_mbuf* m, const l4::packet& p) { return stack_->input(m, p); }
  l4::drop icmp_error(rte_mbuf* m, const l4::packet& p) { return stack_->icmp_error(m, p); }
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
  unsigned poll_upstream(unsigned max) { return ring_->poll(max); }
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
  struct conn {
    l4::tcp::conn_handle tcp;
    upstream::upstream_conn* up = nullptr;
    uint32_t gen = 0;
    uint32_t next_free = UINT32_MAX;
    bool in_use = false;
    bool client_fin = false, client_fin_sent = false;      // client FIN seen / passed upstream
    bool upstream_fin = false, upstream_fin_sent = false;  // upstream FIN seen / passed to client
    bool tcp_closed = false;  // inside on_closed: the stack ends the TCB itself, no close() call
    std::optional<waf_conn> waf;
    bool waf_finished = false;  // waf_conn::finish() ran (client FIN)
    // Kind tls: the session, whether the handshake finished (upstream opened), the plaintext the
    // session produced and the upstream has not taken yet, and the handshake deadline list.
    tls::session* tls = nullptr;
    bool tls_ready = false;
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
    // (upstream_deferred), from the accept-time tuple kept here.
    uint16_t listener = 0;
    bool upstream_deferred = false;
    bool in_rh = false;
    uint32_t rh_prev = UINT32_MAX, rh_next = UINT32_MAX;
    uint64_t rh_deadline = 0;
    l4::tcp::conn_info info;
    limits::conn_hold hold;  // concurrent-limit counts it holds (rules directory)
  };
  // A listener id names one of these for the life of the relay (ids stay stable across reloads,
  // so a handshake that completes after a reload still finds its service).
  struct service {
    l4::ip_addr vip;
    uint16_t port = 0;
    bool active = false;
    bool listening = false;
    bool proxy_protocol = true;
    bool by_hash = false;
    upstream::upstream_pool* pool = nullptr;
    std::string name;
    std::shared_ptr<const waf::bound_policy> waf;  // null: no WAF on this service
    tls::context_set_ptr tls;  // kind tls: certificates and settings for new connections
    service_counters* counters = nullptr;  // limit and counts shared by the workers
    bool http = false;              // the WAF parses HTTP: upstream after the first head passed it
    uint64_t head_timeout_tsc = 0;  // services[].timeouts.request_head_ms; 0: none
    // Connections waiting for a request head (the first, or a later keep-alive one since its first
    // byte), oldest first (one timeout per service, so the list stays sorted but across a reload
    // that changes it, when a few expire late).
    uint32_t rh_head = UINT32_MAX, rh_tail = UINT32_MAX;
  };

  relay() = default;
  conn* from_tcp(l4::tcp::conn_handle c);
  conn* from_upstream(const upstream::upstream_conn& c);
  conn* alloc();
  void release(conn& rc);
  void to_upstream(conn& rc);
  bool waf_upgrade_answer(conn& rc, upstream::upstream_conn& c);
  bool waf_to_upstream(conn& rc);  // false: the connection was blocked and released
  void waf_block(conn& rc, const waf_action& a);
  void to_client(conn& rc);
  void maybe_finish(conn& rc);
  bool open_upstream(conn& rc, const service& s, const l4::tcp::conn_info& info,
                     const tls::peer_info* ti);
  // The client's bytes as the relay forwards them: the TCP receive buffer, or for kind tls the
  // plaintext buffer, refilled from the session when empty. src_peek returns false when the
  // connection ended (TLS failure: released).
  bool src_peek(conn& rc, std::span<const uint8_t>& out);
  void src_consume(conn& rc, size_t n);
  bool client_eof(conn& rc) const;
  // Kind tls (relay_tls.cc).
  void client_input(conn& rc);
  bool tls_accept(conn& rc, const service& s);
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
  bool open_deferred(conn& rc);  // false: failed, the connection was reset and released
  bool accept_limits(const service& s, const l4::tcp::conn_info& info, limits::conn_hold& hold);
  void refuse(const service& s, relay_end e);

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
