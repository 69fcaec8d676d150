#pragma once
// The in-process private-key offload: crypto threads that run the private-key operations of
// handshakes paused in OpenSSL ASYNC jobs. Started once on the control thread and shared by every
// context_set built with it. A worker never waits on it: the key method submits a request and
// pauses its job; the crypto thread runs the operation and calls the job's ASYNC_WAIT_CTX callback,
// which puts the session on its worker's completion ring (tls::worker::poll).
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "common/result.hh"

namespace tls {

namespace detail {
template <class T>
class mpmc_ring;

// One private-key operation; it lives on the paused ASYNC job's stack until `done`.
struct offload_op {
  int (*run)(offload_op*) = nullptr;
  int (*notify)(void*) = nullptr;  // the job's ASYNC_WAIT_CTX callback
  void* notify_arg = nullptr;
  int result = 0;
  std::atomic<bool> done{false};
};
}  // namespace detail

struct offload_config {
  unsigned threads = 1;
  uint32_t queue_capacity = 4096;  // requests waiting for a crypto thread; beyond it, sign in place
  // CPUs the crypto threads may run on (empty: inherit). Keep them off the workers' cores, or a
  // burst of signatures preempts the packet loop they are meant to keep free.
  std::vector<unsigned> cpus;
};

class offload {
 public:
  static common::result<std::shared_ptr<offload>> start(const offload_config& cfg);
  ~offload();  // stops and joins the crypto threads; nothing may be in flight
  offload(const offload&) = delete;
  offload& operator=(const offload&) = delete;

  uint64_t completed() const { return completed_.load(std::memory_order_relaxed); }
  uint64_t inline_fallbacks() const { return inline_.load(std::memory_order_relaxed); }
  uint64_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  size_t thread_count() const { return threads_.size(); }
  uint64_t cpu_ns() const;  // CPU time of the crypto threads so far

  // While held, crypto threads take no requests (they queue). For tests and orderly drains.
  void hold(bool on);

  // Key-method side (worker thread, inside an ASYNC job). False: queue full, caller signs in place.
  bool submit(detail::offload_op* op);
  void note_inline() { inline_.fetch_add(1, std::memory_order_relaxed); }

 private:
  offload() = default;
  void thread_main();
  void execute(detail::offload_op* op);

  std::unique_ptr<detail::mpmc_ring<detail::offload_op*>> requests_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> hold_{false};
  std::atomic<uint32_t> wake_{0};
  std::atomic<uint32_t> sleepers_{0};
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> inline_{0};
  std::atomic<uint64_t> in_flight_{0};
};

}  // namespace tls
