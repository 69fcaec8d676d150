#pragma once
// A pool of upstream L7 gateways as one worker sees it: addresses, weights, the health state the
// control thread publishes, and this worker's connection counts and counters. Each worker owns its
// own upstream_pool built from the same spec (shared nothing); only `healthy` is written by another
// thread (relaxed atomic store from the health checker's callback).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/counter.hh"
#include "common/result.hh"
#include "l4/ip_addr.hh"
#include "l4/lb/maglev.hh"

namespace edge::upstream {

struct backend_spec {
  l4::ip_addr address;
  uint16_t port = 0;
  uint32_t weight = 1;  // 0: drained, gets no new connections
};

struct pool_spec {
  std::string name;
  std::vector<backend_spec> backends;
  unsigned connect_timeout_ms = 1000;
  unsigned max_connect_attempts = 3;  // backends tried for one client connection (1..8)
};

// Counters written by the owning worker only; the control thread sums them across workers.
struct endpoint_counters {
  common::counter active;            // connections open or opening (set by the owner, a level)
  common::counter connects;          // connections established
  common::counter connect_failures;  // refused, unreachable, other errors
  common::counter connect_timeouts;  // link timeout fired
  common::counter resets;            // reset by the upstream after connect
  common::counter errors;            // other socket errors after connect
  common::counter bytes_to_upstream;
  common::counter bytes_from_upstream;
};

struct pool_counters : endpoint_counters {
  common::counter no_backend;  // nothing healthy (and untried) to pick: client reset
  common::counter gave_up;     // every attempt failed: client reset
  common::counter retries;     // a further backend tried after a failed connect
};

// Name/value pairs for /metrics: f(std::string_view name, uint64_t value).
template <class F>
void visit(const endpoint_counters& c, F&& f) {
  f("active", c.active.get());
  f("connects", c.connects.get());
  f("connect_failures", c.connect_failures.get());
  f("connect_timeouts", c.connect_timeouts.get());
  f("resets", c.resets.get());
  f("errors", c.errors.get());
  f("bytes_to_upstream", c.bytes_to_upstream.get());
  f("bytes_from_upstream", c.bytes_from_upstream.get());
}
template <class F>
void visit(const pool_counters& c, F&& f) {
  visit(static_cast<const endpoint_counters&>(c), f);
  f("no_backend", c.no_backend.get());
  f("gave_up", c.gave_up.get());
  f("retries", c.retries.get());
}

struct backend {
  backend_spec spec;
  std::atomic<bool> healthy{true};
  uint64_t active = 0;  // this worker's connections to it (open or opening)
  endpoint_counters counters;
};

// Picks a backend index from a 64-bit hash of the client tuple (e.g. a Maglev table lookup).
// Returns SIZE_MAX for "no opinion"; least-connections is used then, or when its pick is unhealthy.
using hash_selector = size_t (*)(void* ctx, uint64_t hash);

inline constexpr size_t no_backend = SIZE_MAX;

class upstream_pool {
 public:
  // Stable address: upstream_conn objects point at their pool.
  static common::result<std::unique_ptr<upstream_pool>> create(const pool_spec& spec);
  upstream_pool(const upstream_pool&) = delete;
  upstream_pool& operator=(const upstream_pool&) = delete;

  // Least connections (weighted: active/weight smallest) among healthy, weight > 0 backends not in
  // `exclude`. Ties go to the lowest index after a rotating start, so equal backends share load.
  size_t select_least_conn(std::span<const size_t> exclude = {});
  // The hash picks (hash selector if set, else weighted rendezvous hashing over healthy backends);
  // falls back to least connections when the pick is excluded or unhealthy.
  size_t select_by_hash(uint64_t hash, std::span<const size_t> exclude = {});
  // Plain stores: call on the owning worker (e.g. where it picks up a new snapshot).
  void set_hash_selector(hash_selector fn, void* ctx) {
    selector_ = fn;
    selector_ctx_ = ctx;
  }

  // Any thread (the health checker's callback); the next selection sees it.
  void set_healthy(size_t i, bool up) { backends_[i].healthy.store(up, std::memory_order_relaxed); }
  bool healthy(size_t i) const { return backends_[i].healthy.load(std::memory_order_relaxed); }
  size_t healthy_count() const;

  // Connection accounting by the owning worker (upstream_conn calls these).
  void on_attempt(size_t i);
  void on_finished(size_t i);  // the attempt's or the connection's end

  size_t size() const { return backends_.size(); }
  const backend& at(size_t i) const { return backends_[i]; }
  backend& at(size_t i) { return backends_[i]; }
  const pool_spec& spec() const { return spec_; }
  pool_counters& counters() { return counters_; }
  const pool_counters& counters() const { return counters_; }

 private:
  upstream_pool() = default;
  bool eligible(size_t i, std::span<const size_t> exclude) const;

  pool_spec spec_;
  std::vector<backend> backends_;
  size_t rotate_ = 0;
  hash_selector selector_ = nullptr;
  void* selector_ctx_ = nullptr;
  pool_counters counters_;
};

// Maglev on the client tuple. The control thread builds an l4::lb::maglev_table from
// maglev_backends(pool) (keys "addr:port", weight 0 while unhealthy) whenever health or weights
// change, publishes it with the snapshot, and each worker points its pool at it:
//   pool.set_hash_selector(&maglev_select, &table);   // on the owning worker
// A backend that went down since the table was built is skipped by select_by_hash().
std::vector<l4::lb::maglev_backend> maglev_backends(const upstream_pool& p);
size_t maglev_select(void* table /* const l4::lb::maglev_table* */, uint64_t hash);

// Weighted rendezvous (highest random weight) hashing: the backend a hash maps to moves only when
// that backend leaves, and a weight-w backend gets a w/sum(w) share. For pools without Maglev.
size_t rendezvous_pick(uint64_t hash, std::span<const backend> backends,
                       std::span<const size_t> exclude);

}  // namespace edge::upstream
