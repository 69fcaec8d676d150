#pragma once
// WAF audit log plumbing: a fixed-size record per fired rule (or per refused malformed request), a
// bounded single-producer/single-consumer ring per worker, and a control-side drainer that writes
// one JSON line per record to the audit log through spdlog. Workers never format or log: they copy
// a record into their ring (no allocation, no lock, no syscall) and move on.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "common/counter.hh"
#include "common/result.hh"
#include "waf/rule.hh"

namespace spdlog {
class logger;
}

namespace edge {

// A client or VIP address as the audit log shows it. Kept independent of l4::ip_addr so this module
// needs only waf/rules; the relay fills it from its connection tuple.
struct waf_endpoint {
  uint8_t family = 0;  // 4, 6, or 0 (unknown)
  uint16_t port = 0;
  std::array<uint8_t, 16> addr{};  // network order; v4 in the first 4 bytes

  static waf_endpoint v4(std::array<uint8_t, 4> a, uint16_t port);
  static waf_endpoint v6(std::array<uint8_t, 16> a, uint16_t port);
  std::string str() const;  // "1.2.3.4:80", "[::1]:443", "-" (control side, allocates)
};

enum class waf_audit_verdict : uint8_t { block, detect };
const char* to_string(waf_audit_verdict v);

// One audit entry. Trivially copyable, fixed size: what a worker may write on its fast path.
struct waf_audit_record {
  static constexpr size_t field_cap = 40, excerpt_cap = 64, request_id_cap = 24, service_cap = 32,
                          path_cap = 64;
  uint64_t unix_ms = 0;
  uint32_t rule_id = 0;  // 0: no rule (malformed request refused by the parser)
  uint16_t status = 0;   // HTTP status sent when blocked (403/400/413); 0 when passed
  waf::target where = waf::target::args;
  waf_audit_verdict verdict = waf_audit_verdict::detect;
  bool blocking = false;  // this rule made the block decision (or would have, in detect-only mode)
  bool raw = false;       // raw-payload service (block = RST)
  bool detect_only = false;
  bool confirm_error = false;  // the rule's PCRE2 confirm hit a limit: counted as a match
  uint8_t severity = 0;
  int16_t score = 0;
  int32_t anomaly_score = 0;  // the request's total when the record was written
  uint8_t field_len = 0, excerpt_len = 0, request_id_len = 0, service_len = 0, path_len = 0;
  char field[field_cap] = {};      // argument/header/cookie name, or the parse error name
  char excerpt[excerpt_cap] = {};  // transformed value ending at the match
  char request_id[request_id_cap] = {};
  char service[service_cap] = {};
  char path[path_cap] = {};  // request path (truncated); empty in raw mode
  waf_endpoint client, vip;

  std::string_view field_name() const { return {field, field_len}; }
  std::string_view excerpt_text() const { return {excerpt, excerpt_len}; }
  std::string_view request_id_text() const { return {request_id, request_id_len}; }
  std::string_view service_name() const { return {service, service_len}; }
  std::string_view path_text() const { return {path, path_len}; }
};

// Copies s into a fixed char field, truncating; returns the stored length.
uint8_t copy_bounded(std::string_view s, char* dst, size_t cap);

// One JSON object (no newline) for a record. Control side (allocates).
// `message`: the rule's message (looked up by the drainer; records stay fixed-size on the workers).
std::string waf_audit_json(const waf_audit_record& r, std::string_view message = {});

// Bounded SPSC ring: the worker pushes, the drainer pops. When full the new record is dropped and
// counted (drop-new: dropping the oldest would need the producer to move the consumer's index,
// which a lock-free SPSC ring cannot do safely). Capacity is rounded up to a power of two.
class waf_audit_ring {
 public:
  explicit waf_audit_ring(size_t capacity = 4096);
  waf_audit_ring(const waf_audit_ring&) = delete;
  waf_audit_ring& operator=(const waf_audit_ring&) = delete;

  bool push(const waf_audit_record& r);         // producer (worker) only
  size_t pop(std::span<waf_audit_record> out);  // consumer (drainer) only
  size_t capacity() const { return mask_ + 1; }
  uint64_t pushed() const { return pushed_.get(); }    // accepted records
  uint64_t dropped() const { return dropped_.get(); }  // refused because the ring was full

 private:
  std::unique_ptr<waf_audit_record[]> slots_;
  size_t mask_ = 0;
  alignas(64) std::atomic<uint64_t> head_{0};  // next write, owned by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // next read, owned by the consumer
  common::counter pushed_, dropped_;
};

// Drains every registered ring and writes one JSON line per record to the audit file (spdlog
// basic file sink, pattern "%v"). Runs on its own thread (start/stop) or by drain_once() calls.
class waf_audit_drainer {
 public:
  static common::result<std::unique_ptr<waf_audit_drainer>> create(const std::string& path);
  ~waf_audit_drainer();

  // Rings must outlive the drainer (or be removed first). Control side; takes a lock, so it is
  // safe while the drain thread runs.
  void add_ring(waf_audit_ring* ring);
  void remove_ring(waf_audit_ring* ring);
  size_t drain_once();  // records written by this call; flushes the file
  // The rule messages audit lines carry, by rule id: from the serving rules (set at start and on
  // every rules publication; a record of a rule no longer served keeps an empty message).
  void set_rule_messages(std::map<uint32_t, std::string> messages);
  void start(std::chrono::milliseconds period = std::chrono::milliseconds(50));
  void stop();  // drains what is left, then joins
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }

  // Audit entries drained so far by (service, rule id, verdict): the per-rule counters of /metrics
  // (entries a full ring dropped are not in them; waf_audit_ring::dropped() counts those).
  struct rule_hit {
    std::string service;
    uint32_t rule_id = 0;
    waf_audit_verdict verdict = waf_audit_verdict::detect;
    uint64_t count = 0;
  };
  std::vector<rule_hit> rule_hits() const;
  // The rings registered now, for summing their dropped() counters.
  std::vector<const waf_audit_ring*> rings() const;

 private:
  waf_audit_drainer() = default;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::vector<waf_audit_ring*> rings_;
  std::map<uint32_t, std::string> messages_;
  std::map<std::tuple<std::string, uint32_t, waf_audit_verdict>, uint64_t>
      hits_;  // bounded by services x rules
  std::atomic<uint64_t> written_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace edge
