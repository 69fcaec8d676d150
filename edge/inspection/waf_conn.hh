#pragma once
// The WAF on one client connection, worker side. waf_worker holds what a worker owns once
// (Hyperscan scratch, counters, request-id sequence, its audit ring); waf_conn wraps a
// waf::inspector for one connection and turns its verdicts into what the relay does with the bytes:
// forward these spans upstream, wait for more, or send this block response (HTTP) / RST (raw) and
// close.
//
// Data path: feed() and finish() never allocate, throw, lock or log. create() allocates (~40 KB
// per HTTP connection: the inspector's head buffer and streams) and runs at accept time.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/counter.hh"
#include "common/result.hh"
#include "edge/access_log.hh"
#include "limits/set.hh"
#include "waf/inspector.hh"
#include "waf_audit.hh"

namespace edge {

// Requests of one service on one worker (single writer). A request counts once its verdict is
// known: inspected = passed + detected + blocked for HTTP; a raw service counts connections.
struct waf_service_stats {
  common::counter inspected, blocked, detected;
};

// Rule matches by (service, rule id) on one worker: a fixed open-addressing table, written by the
// worker only (no allocation, no lock), read by the control thread for /metrics. Keyed by rule id,
// not by the rule's index in a ruleset, because indexes change with every rules generation while
// the totals must carry on across reloads; the keys are bounded by services × rules.
class waf_rule_counts {
 public:
  static constexpr size_t capacity = 8192;  // power of two; ~3× the CRS import × a few services

  waf_rule_counts() : slots_(std::make_unique<slot[]>(capacity)) {}
  void add(uint16_t service, uint32_t rule_id);
  // Control thread: f(service index, rule id, count) for every key seen.
  template <class F>
  void visit(F&& f) const {
    for (size_t i = 0; i < capacity; ++i)
      if (const uint64_t k = slots_[i].key.load(std::memory_order_acquire); k != 0)
        f(static_cast<uint16_t>((k >> 32) - 1), static_cast<uint32_t>(k), slots_[i].n.get());
  }
  uint64_t full() const { return full_.get(); }  // matches not counted: the table was full

 private:
  struct slot {
    std::atomic<uint64_t> key{0};  // (service + 1) << 32 | rule id; 0: empty
    common::counter n;
  };
  std::unique_ptr<slot[]> slots_;
  common::counter full_;
};

// Per-worker WAF state. Create on the control thread (one per worker) with the first ruleset and
// hand it to the worker; the worker calls prepare() when it adopts a snapshot with a new ruleset
// (grow-only: connections still on an older ruleset stay covered).
class waf_worker {
 public:
  static common::result<std::unique_ptr<waf_worker>> create(uint16_t worker_id,
                                                            const waf::ruleset& rs,
                                                            waf_audit_ring* ring);
  common::result<void> prepare(const waf::ruleset& rs) { return scratch_.prepare(rs); }

  uint16_t id() const { return id_; }
  waf::worker_scratch& scratch() { return scratch_; }
  waf::worker_stats& stats() { return stats_; }
  const waf::worker_stats& stats() const { return stats_; }
  waf_audit_ring* ring() const { return ring_; }
  // Audit entries the inspector could not keep (more than inspector::max_matches in one request).
  uint64_t audit_truncated() const { return audit_truncated_.get(); }

  // Per-service counters. The worker adds a service the first time one of its connections is
  // created (allocates its name once); the control thread reads [0, services()).
  static constexpr uint16_t max_services = 256;
  static constexpr uint16_t no_service = UINT16_MAX;  // table full: counted in services_full()
  uint16_t service_slot(std::string_view name);
  size_t services() const { return n_services_.load(std::memory_order_acquire); }
  std::string_view service_name(size_t i) const { return services_[i].name; }
  const waf_service_stats& service_stats(size_t i) const { return services_[i].stats; }
  waf_service_stats* service_stats_at(uint16_t slot) {
    return slot < max_services ? &services_[slot].stats : nullptr;
  }
  uint64_t services_full() const { return services_full_.get(); }
  waf_rule_counts& rule_counts() { return rule_counts_; }
  const waf_rule_counts& rule_counts() const { return rule_counts_; }

  // Writes the next request id ("<worker:4 hex><sequence:12 hex>", unique per worker and, with
  // distinct worker ids, per appliance) into out; returns its length (16).
  size_t next_request_id(std::span<char, 16> out);

 private:
  friend class waf_conn;
  waf_worker(uint16_t id, waf::worker_scratch ws, waf_audit_ring* ring)
      : id_(id),
        scratch_(std::move(ws)),
        ring_(ring),
        services_(std::make_unique<service_entry[]>(max_services)) {}
  struct service_entry {
    std::string name;
    waf_service_stats stats;
  };
  uint16_t id_;
  uint64_t seq_ = 0;
  waf::worker_scratch scratch_;
  waf::worker_stats stats_;
  waf_audit_ring* ring_;
  common::counter audit_truncated_;
  std::unique_ptr<service_entry[]> services_;
  std::atomic<size_t> n_services_{0};
  common::counter services_full_;
  waf_rule_counts rule_counts_;
};

struct waf_conn_info {
  waf_endpoint client, vip;
  std::string_view service;  // copied (truncated to 32 bytes) into audit records
  // Requests/s limits of the rules directory (null: none), checked once per request head.
  std::shared_ptr<const limits::limit_set> limits;
  limits::flow flow;
  // HTTP: note each request for the access log (requests()); set when an access log is open.
  bool log_requests = false;
};

struct waf_action {
  enum class kind : uint8_t {
    need_more,  // bytes were taken (buffered head); nothing to send yet
    forward,    // send `forward` upstream, in order
    block,  // http: send `response` to the client, then close; raw: `response` is empty, send RST
  };
  kind what = kind::need_more;
  size_t consumed =
      0;  // input bytes used; call feed() again with the rest (next pipelined request)
  std::span<const std::span<const char>> forward;  // valid until the next feed()/finish()
  std::span<const char> response;                  // valid as long as the waf_conn
  uint16_t status = 0;                             // block: 403, 400, 413
  bool reset = false;                              // block on a raw service: reset the connection
};

class waf_conn {
 public:
  static constexpr size_t max_spans = 8;

  static common::result<waf_conn> create(waf_worker& w,
                                         std::shared_ptr<const waf::bound_policy> pol,
                                         waf::inspector::mode m, const waf_conn_info& info);
  // The mode the policy asks for (`inspect: raw` → raw_payload rules over the whole stream).
  static common::result<waf_conn> create(waf_worker& w,
                                         std::shared_ptr<const waf::bound_policy> pol,
                                         const waf_conn_info& info);
  waf_conn(waf_conn&&) noexcept = default;
  waf_conn& operator=(waf_conn&&) noexcept = default;

  // Client bytes (plaintext). Stops at the end of a request, so the head span it returns is not
  // overwritten by the next request's head: loop while consumed < data.size() and not block.
  waf_action feed(std::span<const char> data);
  // Client sent FIN: block 400 when a request was cut short; raw services get end-of-stream rules.
  waf_action finish();

  // Back-pressure (a relay whose upstream may take fewer bytes than offered): after feed() or
  // finish(), send pending() and report sent(n) until it is empty; only then release the client
  // bytes the call consumed (take_consumed()), since body spans point into them. Do not feed()
  // while pending() is non-empty. The spans in waf_action::forward are the same bytes, for callers
  // that always send everything (writev into an unbounded buffer).
  std::span<const char> pending() const {
    return fwd_i_ < fwd_n_ ? spans_[fwd_i_].subspan(fwd_off_) : std::span<const char>{};
  }
  void sent(size_t n);
  size_t take_consumed();

  // WebSocket: after a request asking for one, the inspector takes no client bytes until the
  // upstream's answer is known (feed() returns need_more with consumed 0). The relay holds that
  // answer and shows its start to upstream_answer(): true once decided, from the status line's
  // first 12 bytes ("HTTP/1.1 101": a tunnel) or, with `last` (no more bytes will come, or no more
  // fit the view), from what there is (anything but 101: the connection stays HTTP).
  bool awaiting_upgrade() const { return in_->awaiting_upgrade(); }
  bool head_pending() const { return !blocked_ && in_->head_pending(); }
  bool upstream_answer(std::span<const char> head, bool last);
  // Kind tls: the server name the handshake settled on (requests limits keyed by SNI).
  void set_sni(std::string_view sni) {
    sni_len_ = static_cast<uint16_t>(std::min(sni.size(), sni_.size()));
    std::copy_n(sni.data(), sni_len_, sni_.data());
  }

  bool blocked() const { return blocked_; }
  // A requests/s limit refused a request (429, RST or drop).
  bool limited() const { return limited_; }
  // HTTP with log_requests: the requests waiting for their responses (relay: access log lines).
  request_log* requests() { return reqlog_.get(); }
  std::string_view last_request_id() const { return {rid_.data(), rid_len_}; }
  const waf::inspector& inspector() const { return *in_; }
  const waf::bound_policy& policy() const { return in_->policy_in_use(); }

 private:
  waf_conn() = default;
  std::string_view request_id();  // the current request's id, assigned on first use
  waf_action on_block(const waf::verdict& v, size_t consumed);
  // A requests/s limit refused the request whose head just completed: 429 + Retry-After (or RST).
  waf_action on_limit(const limits::decision& d, size_t consumed);
  void audit_new_matches(waf_audit_verdict verdict, uint16_t status);
  void audit_parse_error(uint16_t status);
  void fill_common(waf_audit_record& r, waf_audit_verdict verdict, uint16_t status);
  void end_request();
  void set_pending(size_t n, size_t consumed);
  void count(common::counter waf_service_stats::*c) {
    if (waf_service_stats* s = w_->service_stats_at(svc_)) (s->*c).add();
  }

  waf_worker* w_ = nullptr;
  std::unique_ptr<waf::inspector> in_;
  waf::inspector::mode mode_ = waf::inspector::mode::http;
  waf_endpoint client_, vip_;
  std::array<char, waf_audit_record::service_cap> service_{};
  uint8_t service_len_ = 0;
  std::array<char, 16> rid_{};
  uint8_t rid_len_ = 0;
  bool rid_fresh_ = false;  // rid_ belongs to the current request
  size_t audited_ = 0;      // matches of the current request already pushed
  bool blocked_ = false;
  std::array<std::span<const char>, max_spans> spans_{};
  size_t fwd_n_ = 0, fwd_i_ = 0, fwd_off_ = 0;  // pending(): span index and offset into it
  size_t consumed_ = 0;                         // of the last feed(), until take_consumed()
  std::array<char, 256> response_{};
  size_t response_len_ = 0;
  uint16_t status_ = 0;
  uint16_t svc_ = waf_worker::no_service;  // this connection's slot in the worker's service stats
  bool raw_detected_ = false;              // raw: the connection was counted as detected
  std::shared_ptr<const limits::limit_set> limits_;
  const limits::service_limits* lim_svc_ = nullptr;  // this service's limits in limits_ (requests)
  limits::flow flow_;
  bool limit_reset_ = false;     // a limit with action rst/drop ended the connection
  std::array<char, 255> sni_{};  // a host name is at most 253 bytes
  uint16_t sni_len_ = 0;
  bool limited_ = false;
  // Access log (log_requests): the notes, the current request's bytes so far, whether it has a
  // note yet (its head passed the parser), and when its first byte came.
  std::unique_ptr<request_log> reqlog_;
  uint64_t req_bytes_ = 0;
  bool req_noted_ = false;
  uint64_t req_start_ns_ = 0, req_start_unix_us_ = 0;
  request_note* note_current() { return reqlog_ && req_noted_ ? reqlog_->back() : nullptr; }
  void note_bytes(size_t n);
  void note_head();
  request_note*
  note_for_block();  // the current request's note (a bare one if its head never parsed)
};

}  // namespace edge
