#pragma once
// The access log: one JSON line per relayed connection, with the field names of Envoy's (Istio's
// default JSON format) access log, so EFK/Datadog pipelines that parse Envoy's parse these.
//
// Workers never block on it and never allocate: at a connection's end the relay fills one
// fixed-size access_record and pushes it into its worker's single-producer ring; a full ring drops
// the record and counts it. One log thread drains every ring, formats and writes the lines (a file
// opened O_APPEND, or stdout for Kubernetes), and reopens the file when asked (SIGUSR1, for
// logrotate's copy-less rotation: rename, then signal).
#include <time.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/enum_text.hh"
#include "common/result.hh"
#include "edge/prom_text.hh"
#include "l4/ip_addr.hh"
#include "waf/http.hh"

namespace edge {

// The access log's "waf" and "limit" fields (empty text: the field is null).
#define EDGE_ACCESS_WAF(X) X(none, "") X(pass, "pass") X(detect, "detect") X(block, "block")
enum class access_waf : uint8_t { EDGE_ACCESS_WAF(COMMON_ENUMERATOR) };
#define EDGE_ACCESS_LIMIT(X) X(none, "") X(pass, "pass") X(limited, "limited")
enum class access_limit : uint8_t { EDGE_ACCESS_LIMIT(COMMON_ENUMERATOR) };

// One request of an HTTP service (a service whose WAF policy parses HTTP), noted by the WAF
// wrapper from its first byte until its response ends (the relay follows the upstream's answers
// with waf::response_framer) or the connection does. Strings are cut to their arrays (NUL-ended).
struct request_note {
  uint64_t start_unix_us = 0, start_ns = 0;  // the request's first byte (CLOCK_REALTIME, MONOTONIC)
  uint64_t first_byte_ns = 0;                // the response's first byte
  uint64_t bytes_in = 0;                     // request bytes (head and body) the WAF took
  uint64_t bytes_out = 0;                    // edge's own answer (status != 0)
  uint16_t status = 0;          // edge's own answer (400, 403, 413, 429); 0: upstream's
  bool head_method = false;     // HEAD: the response has no body
  uint8_t minor_version = 255;  // HTTP/1.x; 255: no head was parsed (protocol null)
  access_waf waf = access_waf::pass;
  access_limit limit = access_limit::none;
  std::array<char, 12> method{};
  std::array<char, 192> path{};  // the request target, query included
  std::array<char, 96> authority{}, user_agent{};
  std::array<char, 17> request_id{};
};

// A connection's requests waiting for their responses, oldest first (HTTP/1.1 pipelining), and the
// framer that finds where each response ends. Bounded: a request past `depth` waiting ones is not
// noted (the relay counts it as an access-log drop).
class request_log {
 public:
  static constexpr size_t depth = 4;
  request_note* begin() {
    if (n_ == depth) {
      // Its response would then be matched to the next request noted: stop matching. The ones
      // waiting are written at the connection's end, with no status.
      ++overflow_;
      lost = true;
      return nullptr;
    }
    request_note& r = q_[(head_ + n_++) % depth];
    r = request_note{};
    return &r;
  }
  request_note* front() { return n_ != 0 ? &q_[head_] : nullptr; }
  request_note* back() { return n_ != 0 ? &q_[(head_ + n_ - 1) % depth] : nullptr; }
  void pop_front() {
    if (n_ == 0) return;
    head_ = (head_ + 1) % depth;
    --n_;
  }
  size_t size() const { return n_; }
  uint64_t overflow() const { return overflow_; }
  waf::response_framer framer;
  bool lost = false;  // the framer gave up, or the FIFO overflowed: the rest are logged at the end

 private:
  std::array<request_note, depth> q_{};
  size_t head_ = 0, n_ = 0;
  uint64_t overflow_ = 0;
};

// A clock's reading in nanoseconds (vDSO: no syscall).
inline uint64_t clock_now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Copies v into a NUL-terminated array, cut to fit.
template <size_t N>
void copy_cut(std::array<char, N>& dst, std::string_view v) {
  const size_t n = v.size() < N - 1 ? v.size() : N - 1;
  for (size_t i = 0; i < n; ++i) dst[i] = v[i];
  dst[n] = '\0';
}

// One connection, as the relay knows it at the end. Strings are copied, bounded and
// NUL-terminated (a longer SNI is cut; it was validated as a host name by the TLS layer).
// Durations are microseconds from accept, -1 when unknown or the step did not happen.
struct access_record {
  uint64_t start_unix_us = 0;  // 0: unknown (then "start_time" is the end time)
  uint64_t end_unix_us = 0;
  int64_t handshake_us = -1, upstream_connect_us = -1, first_byte_us = -1, duration_us = -1;
  int64_t bytes_received = -1, bytes_sent = -1;  // from / to the client; -1 unknown
  l4::ip_addr client, vip, upstream;
  uint16_t client_port = 0, vip_port = 0, upstream_port = 0;
  bool has_upstream = false;
  uint16_t worker = 0;
  access_waf waf = access_waf::none;
  access_limit limit = access_limit::none;
  const char* end_reason = "";  // a static name (relay_end_names)
  std::array<char, 32> service{}, pool{};
  std::array<char, 64> sni{};
  std::array<char, 16> tls_version{};
  std::array<char, 48> tls_cipher{};
  // A request's line (HTTP services) rather than the connection's: the note's fields, and the
  // response's status (0: none came).
  bool request = false;
  uint16_t response_code = 0;
  request_note req;
  void set(std::array<char, 32>& f, std::string_view v) { copy(f.data(), f.size(), v); }
  void set_sni(std::string_view v) { copy(sni.data(), sni.size(), v); }
  void set_tls(std::string_view version, std::string_view cipher) {
    copy(tls_version.data(), tls_version.size(), version);
    copy(tls_cipher.data(), tls_cipher.size(), cipher);
  }

 private:
  static void copy(char* dst, size_t cap, std::string_view v) {
    const size_t n = v.size() < cap - 1 ? v.size() : cap - 1;
    for (size_t i = 0; i < n; ++i) dst[i] = v[i];
    dst[n] = '\0';
  }
};

// What the relay notes of a connection while it runs (per connection slot), for its record:
// who connected and when (accept), when each step happened (CLOCK_MONOTONIC, 0: not yet), and
// the bytes relayed each way.
struct access_start {
  l4::ip_addr client, vip;
  uint16_t client_port = 0, vip_port = 0, listener = 0;
  uint64_t start_unix_us = 0;
  uint64_t start_ns = 0;  // CLOCK_MONOTONIC
  uint64_t handshake_ns = 0, upstream_ns = 0, first_byte_ns = 0;
  uint64_t bytes_in = 0, bytes_out = 0;  // from the client to the upstream; to the client
};

// The JSON line of a record (no newline).
std::string format_access_json(const access_record& r);

// Single producer (the worker), single consumer (the log thread); never blocks, never allocates.
class access_ring {
 public:
  explicit access_ring(size_t capacity_pow2 = 4096);
  bool push(const access_record& r);  // false (and counted) when full
  size_t pop(access_record* out, size_t max);
  uint64_t full_drops() const { return full_.load(std::memory_order_relaxed); }
  // Requests that got no line: past request_log::depth waiting on their connection (producer).
  void count_unlogged(uint64_t n) {
    unlogged_.store(unlogged_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t unlogged() const { return unlogged_.load(std::memory_order_relaxed); }
  uint64_t pushed() const { return pushed_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<access_record[]> slots_;
  size_t mask_;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
  alignas(64) std::atomic<uint64_t> full_{0}, pushed_{0}, unlogged_{0};
};

// Access log counters, declared once: member, metric name, help.
#define EDGE_ACCESS_LOG_COUNTERS(X)                                                           \
  X(lines, "edge_access_log_lines_total", "Access log lines written.")                        \
  X(write_errors, "edge_access_log_write_errors_total",                                       \
    "Access log writes that failed (disk full, closed stdout); those lines are lost.")        \
  X(reopens, "edge_access_log_reopens_total", "Access log file reopens (SIGUSR1, rotation).") \
  X(reopen_errors, "edge_access_log_reopen_errors_total",                                     \
    "Reopens that failed; the previous file stays open.")

class access_log {
 public:
  // `target`: a file path (created 0640, appended), or "stdout".
  static common::result<std::unique_ptr<access_log>> open(const std::string& target);
  ~access_log();
  access_log(const access_log&) = delete;
  access_log& operator=(const access_log&) = delete;

  // One ring per worker, before start(); the rings belong to the log (they outlive the workers).
  access_ring* add_ring(size_t capacity_pow2 = 4096);
  void start();
  // Writes what the rings still hold, then stops the thread. Call after the workers stopped.
  void stop();
  // Async-signal-safe: the log thread reopens the file at its next round.
  void request_reopen() { reopen_.store(true, std::memory_order_relaxed); }
  // Drains every ring once, writes, handles a pending reopen (the thread's round; tests call it).
  void flush_once();

  uint64_t full_drops() const;
#define EDGE_ACCESS_LOG_MEMBER(member, name, help)    \
  uint64_t member() const {                           \
    return member##_.load(std::memory_order_relaxed); \
  }
  EDGE_ACCESS_LOG_COUNTERS(EDGE_ACCESS_LOG_MEMBER)
#undef EDGE_ACCESS_LOG_MEMBER
  void append_metrics(prom_text::writer& out) const;

 private:
  access_log() = default;
  void reopen();
  std::string target_;
  int fd_ = -1;
  bool is_stdout_ = false;
  std::vector<std::unique_ptr<access_ring>> rings_;
  std::thread thread_;
  std::mutex flush_mu_;  // the thread's round against stop()'s last round (not the workers)
  std::atomic<bool> stop_{false}, reopen_{false};
#define EDGE_ACCESS_LOG_ATOMIC(member, name, help) std::atomic<uint64_t> member##_{0};
  EDGE_ACCESS_LOG_COUNTERS(EDGE_ACCESS_LOG_ATOMIC)
#undef EDGE_ACCESS_LOG_ATOMIC
};

}  // namespace edge
