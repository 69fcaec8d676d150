#pragma once
// The access log: one JSON line per relayed connection, with the field names of Envoy's (Istio's
// default JSON format) access log, so EFK/Datadog pipelines that parse Envoy's parse these.
//
// Workers never block on it and never allocate: at a connection's end the relay fills one
// fixed-size access_record and pushes it into its worker's single-producer ring; a full ring drops
// the record and counts it. One log thread drains every ring, formats and writes the lines (a file
// opened O_APPEND, or stdout for Kubernetes), and reopens the file when asked (SIGUSR1, for
// logrotate's copy-less rotation: rename, then signal).
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
#include "l4/ip_addr.hh"

namespace edge {

// The access log's "waf" and "limit" fields (empty text: the field is null).
#define EDGE_ACCESS_WAF(X) X(none, "") X(pass, "pass") X(detect, "detect") X(block, "block")
enum class access_waf : uint8_t { EDGE_ACCESS_WAF(COMMON_ENUMERATOR) };
#define EDGE_ACCESS_LIMIT(X) X(none, "") X(pass, "pass") X(limited, "limited")
enum class access_limit : uint8_t { EDGE_ACCESS_LIMIT(COMMON_ENUMERATOR) };

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

// What the relay notes when it accepts a connection (per connection slot), for its record.
struct access_start {
  l4::ip_addr client, vip;
  uint16_t client_port = 0, vip_port = 0, listener = 0;
  uint64_t start_unix_us = 0;
  uint64_t start_ns = 0;  // CLOCK_MONOTONIC
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
  uint64_t pushed() const { return pushed_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<access_record[]> slots_;
  size_t mask_;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
  alignas(64) std::atomic<uint64_t> full_{0}, pushed_{0};
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
  void append_metrics(std::string& out) const;

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
