#pragma once
// Single-writer counters. A worker owns and bumps its counters without atomic read-modify-write;
// the control thread reads them with relaxed loads to sum /metrics. Each counter is written by
// exactly one thread, so load+store is race free and compiles to a plain add.
#include <atomic>
#include <cstdint>

namespace common {

class counter {
 public:
  void add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(uint64_t n = 1) {  // levels (connections open, ...)
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  void set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A gauge that several threads may move (e.g. connections held by a pool).
class gauge {
 public:
  void add(int64_t n) { v_.fetch_add(n, std::memory_order_relaxed); }
  int64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

}  // namespace common
