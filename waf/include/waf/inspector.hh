#pragma once
// The per-flow inspector: feed it request bytes as they arrive from TCP (or TLS); it parses the
// head strictly, scans head fields in block mode, streams the body (Content-Length or chunked,
// decoded on the fly) through Hyperscan stream mode without buffering it, and says what to do with
// the bytes.
//
// Data-path contract: feed() and finish() never throw, never allocate, never log. Everything they
// need is allocated by create() (per connection) and by worker_scratch (per worker).
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/counter.hh"
#include "common/result.hh"
#include "waf/body.hh"
#include "waf/http.hh"
#include "waf/policy.hh"
#include "waf/ruleset.hh"
#include "waf/transform.hh"

namespace waf {

// Per-worker counters (single writer), summed by the control plane for /metrics.
// scan_errors: Hyperscan scan/stream calls that failed (each fails the request closed);
// confirm_errors: PCRE2 confirms that ended in an error (match or depth limit, JIT stack), each
// counted as a match of its rule; blocked_engine_error: requests blocked because the engine could
// not inspect them (a Hyperscan error), whatever the rules would have said; form_truncated:
// bodies with an argument (name or value) longer than the policy's body limits (once per request;
// on_body_limit then applies: reject = 413); body_urlencoded/multipart/json: request bodies by
// processor; blocked_body_error: bodies that failed to parse or multipart bodies with a strict
// error, blocked (400) under on_body_error: block; body_inspected_raw: those scanned raw instead
// (inspect_raw); multipart_strict: multipart bodies with MULTIPART_STRICT_ERROR set; body_errors:
// failures by body_error; upgrades: WebSocket upgrades the upstream accepted (the connection became
// a tunnel); upgrades_refused: upgrade requests answered with another status (the connection stayed
// HTTP); ws_frames: client WebSocket frames unmasked and scanned (on_upgrade: inspect_raw);
// ws_refused: tunnels ended (400) on a client frame that cannot be inspected: unmasked (RFC 6455
// requires a client to mask), compressed (RSV1: permessage-deflate) or with a 64-bit length whose
// top bit is set.
#define WAF_STATS(X)      \
  X(requests)             \
  X(passed)               \
  X(detected)             \
  X(blocked_rules)        \
  X(blocked_parse)        \
  X(blocked_body_limit)   \
  X(body_partial)         \
  X(raw_blocked)          \
  X(prefilter_confirmed)  \
  X(prefilter_rejected)   \
  X(scan_errors)          \
  X(confirm_errors)       \
  X(blocked_engine_error) \
  X(form_truncated)       \
  X(body_urlencoded)      \
  X(body_multipart)       \
  X(body_json)            \
  X(blocked_body_error)   \
  X(body_inspected_raw)   \
  X(multipart_strict)     \
  X(upgrades)             \
  X(upgrades_refused)     \
  X(ws_frames)            \
  X(ws_refused)           \
  X(bytes_scanned)
struct worker_stats {
#define X(n) common::counter n;
  WAF_STATS(X)
#undef X
  std::array<common::counter, http_error_count> parse_errors;  // by http_error
  std::array<common::counter, body_error_count> body_errors;   // by body_error
};

enum class verdict_kind : uint8_t { need_more, pass, detect, block };
const char* to_string(verdict_kind k);

struct verdict {
  verdict_kind kind = verdict_kind::need_more;
  uint16_t status =
      0;  // block: 403 (rules), 400 (malformed/smuggling, unparsable body), 413 (body limit)
  size_t consumed = 0;  // input bytes used; feed the rest again
  std::span<const char>
      forward;  // pass/detect: the bytes to send upstream now (head or body slice)
  // This call completed and parsed the head: head() is this request's. Forward is the whole head,
  // unless the verdict blocks (a head-phase rule, or a body that cannot be read).
  bool head_complete = false;
  bool request_complete = false;  // the request ended at `consumed`; audit entries are final
};

// One fired rule, for the audit log. Fixed size: no allocation on the data path.
struct audit_match {
  uint32_t rule_id = 0;
  target where = target::args;
  int16_t score = 0;
  uint8_t severity = 0;
  uint8_t field_len = 0;
  uint8_t excerpt_len = 0;
  bool blocking = false;  // this rule made the block decision (action block or threshold crossed)
  bool confirm_error = false;  // PCRE2 could not decide (a limit): counted as a match (fail closed)
  char field[40] = {};         // header/argument/cookie name, if any
  char excerpt[64] = {};       // up to 64 bytes of the transformed value ending at the match
  std::string_view field_name() const { return {field, field_len}; }
  std::string_view excerpt_text() const { return {excerpt, excerpt_len}; }
};

class inspector {
 public:
  enum class mode : uint8_t { http, raw };   // raw: raw_payload rules over a non-HTTP stream
  static constexpr size_t max_matches = 16;  // audit entries kept per request (more are counted)

  static common::result<std::unique_ptr<inspector>> create(std::shared_ptr<const bound_policy> pol,
                                                           const worker_scratch& ws,
                                                           mode m = mode::http);
  ~inspector();
  inspector(const inspector&) = delete;
  inspector& operator=(const inspector&) = delete;

  // Feeds bytes of the client stream. Loop while consumed < data.size() and the kind is not block.
  verdict feed(worker_scratch& ws, worker_stats& st, std::span<const char> data);
  // The client finished sending (FIN). http: block 400 when a request is cut short; raw:
  // end-of-stream matches of raw_payload rules.
  verdict finish(worker_scratch& ws, worker_stats& st);

  // WebSocket. A request that asks for one (GET, Upgrade: websocket, Connection: upgrade, no body)
  // passes as any other; then, until the upstream's answer is known, feed() takes no more bytes
  // (need_more, consumed 0: they stay in the caller's buffer). The caller reports the answer's
  // status: 101 switches the connection to a tunnel (the policy's on_upgrade: pass-through, or the
  // body rules over the client's bytes); any other status goes back to HTTP, so a refused upgrade
  // cannot carry uninspected requests.
  bool awaiting_upgrade() const { return tunnel_ == tunnel::wait; }
  bool tunnel_open() const { return tunnel_ == tunnel::open; }
  // HTTP: some bytes of a request head are held and the head is not complete yet (the caller
  // times a keep-alive request's head from its first byte).
  bool head_pending() const {
    return mode_ == mode::http && tunnel_ == tunnel::none && stage_ == stage::head &&
           !pending_reset_ && head_len_ > 0;
  }
  void upgrade_response(worker_stats& st, unsigned status);

  // About the current (or just completed/blocked) request.
  const request_head& head() const { return head_; }
  std::span<const char> head_bytes() const { return {head_buf_.get(), head_end_}; }
  http_error parse_error() const { return perr_; }
  // The body processor of the request and why its body did not parse (none: it did, or no body).
  body_processor processor() const { return proc_; }
  body_error body_parse_error() const { return body_err_; }
  // Multipart flags of the request (flag_bit(multipart_flag)), valid once its body ended.
  uint32_t multipart_flags() const { return mp_flags_; }
  int anomaly_score() const { return score_; }
  std::span<const audit_match> matches() const { return {matches_.data(), n_matches_}; }
  size_t matches_dropped() const { return matches_dropped_; }
  // Every rule that fired on the current (or last) request, in rule order, including those past
  // the audit list's max_matches: f(const rule&).
  template <class F>
  void for_each_fired(F&& f) const {
    for (size_t w = 0; w < rule_fired_.size(); ++w)
      for (uint64_t b = rule_fired_[w]; b; b &= b - 1)
        f(rs_->rules()[w * 64 + static_cast<size_t>(__builtin_ctzll(b))]);
  }
  uint64_t body_bytes() const { return body_seen_; }
  // The engine could not inspect this request (a Hyperscan error): it was blocked for that.
  bool engine_error() const { return engine_error_; }
  bool detect_only() const { return pol_->pol().detect_only; }
  const bound_policy& policy_in_use() const { return *pol_; }
  // Memory held for this flow: the object, head buffer, header slots, bitsets and Hyperscan
  // streams.
  size_t state_bytes() const;

 private:
  inspector() = default;
  struct scan_ctx;
  struct body_fields;
  enum class stage : uint8_t { head, body_length, body_chunked, blocked };

  void reset_request();
  verdict on_head(worker_scratch& ws, worker_stats& st, size_t consumed);
  verdict on_body(worker_scratch& ws, worker_stats& st, std::span<const char> data);
  verdict end_request(worker_scratch& ws, worker_stats& st, verdict v);
  verdict block(worker_stats& st, uint16_t status, size_t consumed);
  void scan_head(worker_scratch& ws, worker_stats& st);
  void scan_target(worker_scratch& ws, worker_stats& st, target where);
  void scan_pair(worker_scratch& ws, worker_stats& st, target where, std::string_view n,
                 std::string_view v);
  void body_start(worker_stats& st);
  void body_parse(worker_scratch& ws, worker_stats& st, const char* p, size_t n);
  void body_finish(worker_scratch& ws, worker_stats& st);
  void body_failed(worker_stats& st, body_error e);
  void flush_open_field(worker_scratch& ws, worker_stats& st);  // inspect_partial at the limit
  void body_vars(worker_scratch& ws, worker_stats& st);
  void arg_truncated(worker_stats& st);
  void emit_field(worker_scratch& ws, worker_stats& st, target where, std::string_view name,
                  std::string_view value);
  void scan_stream(worker_scratch& ws, worker_stats& st, const char* p, size_t n, bool final);
  bool evaluate(worker_stats& st, bool head_done, bool body_done);        // true: block decided
  bool holds(uint32_t rule_index, bool head_done, bool body_done) const;  // all its conditions
  bool skipped(uint32_t rule_index) const;  // a gate that skips it fired (rule::gate)
  void engine_failed(worker_stats& st);
  void mark_path_exclusions(worker_scratch& ws);
  void inspect_body(worker_scratch& ws, worker_stats& st, const char* p, size_t n);
  void match_entry(uint32_t entry_id, scan_ctx& x, unsigned long long to);
  // The condition after `prev` is derived (condition::derive): build its value from prev's capture
  // groups on the field being scanned (rc: prev's capture run, its groups in the match data) and
  // evaluate it there.
  void derive_on(scan_ctx& x, const compiled_condition& prev, uint64_t fbit, int rc);
  // entry::multi_steps: the code operator on `raw` and after each transformation that changed it.
  bool eval_steps(const compiled_condition& cc, std::string_view raw, worker_scratch& ws) const;
  void scan_steps(worker_scratch& ws, worker_stats& st, const scan_group& g, const scan_ctx& last,
                  std::string_view raw);
  void record_hit(uint32_t condition, const scan_ctx& x, std::string_view excerpt,
                  bool confirm_error);
  verdict block_again() const;
  bool rule_excluded(uint32_t rule_index, std::string_view field) const;
  static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                      void* ctx);

  std::shared_ptr<const bound_policy> pol_;
  const ruleset* rs_ = nullptr;
  mode mode_ = mode::http;
  stage stage_ = stage::head;

  std::unique_ptr<char[]> head_buf_;
  size_t head_len_ = 0, head_end_ = 0;
  head_scan_state head_scan_;
  std::unique_ptr<http_header[]> header_slots_;
  request_head head_;
  http_error perr_ = http_error::none;

  uint64_t body_remaining_ = 0, body_seen_ = 0;
  uint64_t args_size_ = 0;  // ARGS_COMBINED_SIZE so far: argument names and values, in bytes
  chunked_decoder chunked_;
  bool body_partial_ = false;
  // Body processing: the processor, its parser, the field it collects (a per-connection buffer of
  // body.max_name_bytes + body.max_value_bytes, allocated by create()), and whether the raw body
  // goes through the stream scan (no processor: yes; urlencoded, multipart and JSON: no, their
  // fields are the arguments, as in ModSecurity, where ARGS rules never see the raw body: a raw
  // scan matched across '&' and part headers; after a parse error under inspect_raw: yes, from
  // there).
  body_processor proc_ = body_processor::none;
  using body_parser =
      std::variant<std::monostate, urlencoded_parser, multipart_parser, json_parser>;
  std::unique_ptr<body_parser> parser_;  // http mode only (raw flows stay small)
  std::unique_ptr<char[]> field_mem_;
  field_buffer field_;
  body_error body_err_ = body_error::none;
  uint32_t mp_flags_ = 0;
  bool raw_stream_ = true;
  bool body_parsing_ = false;   // the parser takes bytes (no error, no limit reached)
  bool body_block_ = false;     // a parse error under on_body_error: block → 400
  bool arg_truncated_ = false;  // an argument did not fit (counted once per request)
  enum class tunnel : uint8_t { none, wait, open };
  tunnel tunnel_ = tunnel::none;
  // inspect_raw on a WebSocket tunnel: the client frame being read. A header is 2 to 14 bytes
  // (kept until whole); its payload is unmasked as it streams through, never buffered.
  struct ws_reader {
    uint8_t hdr[14] = {};
    uint8_t hdr_len = 0;
    uint8_t mask[4] = {};
    uint8_t mask_pos = 0;  // payload offset modulo 4
    uint64_t payload = 0;  // payload bytes of the current frame still to come
  };
  ws_reader ws_;
  // false: a frame that cannot be inspected (the tunnel is refused).
  bool ws_scan(worker_scratch& ws, worker_stats& st, const char* p, size_t n);
  bool upgrade_asked_ = false;  // the current request asks for a WebSocket
  verdict tunnel_feed(worker_scratch& ws, worker_stats& st, std::span<const char> data);

  struct stream_slot {
    uint32_t group = 0;
    hs_stream_ptr stream;
    stream_transform_state tstate;
    bool used = false;
    unsigned long long offset = 0;  // transformed bytes scanned so far in this request
  };
  std::vector<stream_slot> streams_;

  std::vector<uint64_t> cond_matched_, cond_seen_, rule_fired_, rule_candidate_;
  std::vector<uint64_t> gates_fired_;  // by index into ruleset::gates()
  bool gates_decided_ = false;
  std::vector<uint64_t> field_sets_;  // MATCHED_VAR chains: per field slot, field_bit()s matched
  std::vector<uint32_t> candidates_;
  std::vector<uint8_t> path_excl_;  // exclusions whose path prefix matches this request
  int score_ = 0;
  bool decided_block_ = false, any_fired_ = false, pending_reset_ = false, limit_hit_ = false;
  bool engine_error_ = false;  // a Hyperscan call failed: the request is blocked (fail closed)
  uint16_t status_ = 0;
  std::array<audit_match, max_matches> matches_{};
  size_t n_matches_ = 0, matches_dropped_ = 0;
  // Where recent conditions matched, so an audit entry can name the field and show an excerpt;
  // a small ring, not one slot per condition, to keep per-flow state small.
  struct hit {
    uint32_t condition;
    target where;
    uint8_t field_len, excerpt_len;
    bool confirm_error;
    char field[40];
    char excerpt[64];
  };
  static constexpr size_t hit_ring = 16;
  std::array<hit, hit_ring> hits_{};
  size_t n_hits_ = 0;
};

// Writes the response sent to a blocked client (status line, headers incl. X-Request-Id, short
// body, Connection: close) into out; returns the length, or 0 if out is too small (256 is enough
// for a request id of up to 64 bytes).
size_t format_block_response(uint16_t status, std::string_view request_id, std::span<char> out);

// One JSON object (no newline) describing the inspected request and its matches: for audit logs
// and `edgectl waf eval`. Control-side helper (allocates).
std::string audit_json(const inspector& in, const verdict& v, std::string_view request_id);

}  // namespace waf
