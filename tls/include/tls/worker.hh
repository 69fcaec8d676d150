#pragma once
// Per-worker TLS state: a fixed pool of sessions, this thread's OpenSSL ASYNC job pool, the ring on
// which crypto threads report finished private-key operations, and the counters. Create and destroy
// it on the worker thread it serves (ASYNC job pools are per thread); call poll() every loop.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "common/counter.hh"
#include "common/result.hh"
#include "tls/context.hh"
#include "tls/session.hh"

namespace tls {

namespace detail {
template <class T>
class mpmc_ring;
}

#define TLS_WORKER_COUNTERS(X)                                                             \
  X(sessions_opened, "sessions created")                                                   \
  X(sessions_refused, "sessions refused: pool full or SSL_new failed")                     \
  X(handshakes_full, "full handshakes completed")                                          \
  X(handshakes_resumed, "resumed handshakes completed")                                    \
  X(handshake_failures, "handshakes failed")                                               \
  X(async_pauses, "handshakes paused on an offloaded private-key operation")               \
  X(async_completions, "offload completions received")                                     \
  X(async_job_backpressure, "SSL_ERROR_WANT_ASYNC_JOB: job pool exhausted, retried later") \
  X(deferred_frees, "closes deferred until an in-flight operation completed")              \
  X(close_notify_received, "close_notify received")                                        \
  X(key_updates, "KeyUpdate messages received")                                            \
  X(renegotiation_attempts, "renegotiation attempts refused")                              \
  X(input_bounded, "feed() calls cut short by the input bound")                            \
  X(client_cn_omitted, "client certificate CNs not passed on: not printable UTF-8")

struct worker_stats {
#define TLS_X(name, text) common::counter name;
  TLS_WORKER_COUNTERS(TLS_X)
#undef TLS_X
  std::array<common::counter, 256> alerts_sent;  // by AlertDescription (0 = close_notify)
  std::array<common::counter, error_reason_count> errors;
};

struct worker_config {
  uint32_t max_sessions = 4096;
  uint32_t async_jobs = 1024;      // ASYNC job pool size (each job has its own stack, ~32 KiB)
  size_t max_input = 64 * 1024;    // buffered ciphertext per session not yet consumed
  size_t max_output = 256 * 1024;  // pending ciphertext per session before write() says want_write
};

class worker {
 public:
  static common::result<std::unique_ptr<worker>> create(const worker_config& cfg);
  // Waits for in-flight private-key operations (bounded by the offload), then frees every session.
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  // A server session on `ctx` (kept alive by the session). nullptr when the pool is full or
  // OpenSSL cannot allocate (counted in sessions_refused).
  session* open(context_set_ptr ctx, void* user = nullptr);
  // Returns the session to the pool; while a private-key operation is in flight the free is
  // deferred until its completion arrives (the session must not be used after close).
  void close(session* s);
  // Sessions whose async operation finished, or that got SSL_ERROR_WANT_ASYNC_JOB and may retry:
  // call handshake()/read() on each. Returns how many were written to `ready`.
  size_t poll(std::span<session*> ready);

  const worker_stats& stats() const { return stats_; }
  size_t open_sessions() const { return open_; }
  size_t async_pending() const { return async_pending_; }
  const worker_config& config() const { return cfg_; }
  static const char* alert_name(uint8_t desc);

 private:
  friend class session;
  friend struct session_callbacks;
  worker() = default;
  void add_retry(session* s);
  void finish_close(session* s);

  worker_config cfg_;
  std::unique_ptr<session[]> sessions_;
  std::vector<uint32_t> free_;
  std::unique_ptr<detail::mpmc_ring<session*>> completions_;
  session* retry_head_ = nullptr;
  session* retry_tail_ = nullptr;
  size_t open_ = 0;
  size_t async_pending_ = 0;
  bool async_thread_init_ = false;
  std::thread::id thread_;  // ASYNC job pools are per thread: every call comes from this one
  worker_stats stats_;
};

}  // namespace tls
