#pragma once
// Per-service connection accounting for the terminating service kinds (tcp, and tls on top of it):
// how many connections a service holds across all workers against its `services[].max_connections`,
// how many it opened and how many it refused, by reason.
//
// One service_counters per service name for the life of the appliance, so that a reload never
// loses or leaks a count: a connection opened under an old snapshot keeps a pointer to the same
// counters and releases against them, and a changed limit applies to the next connection (the held
// ones count against it). The counters are shared by the workers; they are touched once per
// connection (accept, refusal, end), never per packet, so an atomic read-modify-write is fine.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/counter.hh"
#include "common/result.hh"
#include "edge/config.hh"
#include "edge/relay.hh"
#include "l4/ip_addr.hh"

namespace edge {

// Refusals of a new client connection that are charged to its service (the relay ends that refuse
// before any byte is relayed). `no_service` has no service to charge.
inline constexpr std::array<relay_end, 8> service_refusals{
    relay_end::service_limit, relay_end::worker_limit,  relay_end::no_slot,
    relay_end::no_upstream,   relay_end::waf_no_memory, relay_end::tls_no_session,
    relay_end::source_limit,  relay_end::limited};

// Connections held per (service, source) over all workers, for
// services[].max_connections_per_source (HAProxy's `src_conn_cur` in a stick table, nginx's
// `limit_conn $binary_remote_addr`). A source is an IPv4 address or an IPv6 /64 (one subscriber's
// prefix: a /128 limit is no limit for a client that owns 2^64 addresses).
//
// Memory-bounded and lock-free: a power-of-two array of 8-byte words, each a 48-bit key tag and a
// 16-bit count, in buckets of 8 words (one cache line). A key lives in a word of its bucket whose
// tag matches and count is non-zero; a word whose count is 0 is free and any key may claim it, so
// there is no eviction to run: a source's word frees itself when its last connection ends. Every
// change is one compare-and-swap of a word. Touched once per connection (accept and end), never per
// packet. The key hash is keyed by a random secret, so that a client cannot aim its addresses at
// one bucket; a 48-bit tag collision between two live sources of a bucket is ~2^-45 per pair.
//
// Accuracy: exact, except that two first connections of one source accepted at the same instant on
// two workers may claim two words; acquire() counts every word of the key, so the limit still holds
// up to a race of at most one connection per worker while both words live.
// A bucket whose 8 words all hold other sources admits the connection untracked (fail open, counted
// in untracked()): the table is sized at 4x the appliance's connection capacity, so it is at most a
// quarter full, and even with every connection from a distinct source a bucket is full with
// p ~ 2.4e-4 (Poisson, mean 2: P(X >= 9)); the hash is keyed, so a client cannot aim at one.
class source_table {
 public:
  static constexpr uint32_t untracked_slot = UINT32_MAX;  // admitted, not counted (bucket full)
  static constexpr uint32_t refused = UINT32_MAX - 1;     // the source holds `limit` already
  static constexpr size_t bucket = 8;
  static constexpr uint32_t max_limit = 0xffff;
  static constexpr size_t bytes_per_key = sizeof(uint64_t);

  // `slots` is rounded up to a power of two (at least one bucket).
  source_table(size_t slots, uint64_t secret);
  source_table(const source_table&) = delete;
  source_table& operator=(const source_table&) = delete;

  // One more connection of `src` on service `scope` if it holds fewer than `limit` (1..max_limit):
  // returns the word to release(), untracked_slot, or refused.
  uint32_t acquire(uint32_t scope, const l4::ip_addr& src, uint32_t limit);
  void release(uint32_t slot);
  // Connections `src` holds on `scope` now (tests, /stats).
  uint32_t held(uint32_t scope, const l4::ip_addr& src) const;
  size_t slots() const { return mask_ + 1; }
  uint64_t untracked() const { return untracked_.load(std::memory_order_relaxed); }

 private:
  uint64_t hash(uint32_t scope, const l4::ip_addr& src) const;
  std::unique_ptr<std::atomic<uint64_t>[]> w_;
  size_t mask_;
  uint64_t secret_;
  std::atomic<uint64_t> untracked_{0};
};

struct service_counters {
  std::string name;                     // written once, before the slot is published
  std::atomic<uint32_t> limit{0};       // services[].max_connections; 0: no limit
  std::atomic<uint32_t> per_source{0};  // services[].max_connections_per_source; 0: no limit
  std::atomic<uint32_t> active{0};      // connections held now, all workers
  std::atomic<uint64_t> opened{0};  // connections accepted (the upstream may open later: relay.hh)
  std::array<std::atomic<uint64_t>, relay_end_count> refused{};  // by relay_end (service_refusals)

  // Takes one connection if the limit allows it. Pair with release().
  bool try_acquire() {
    const uint32_t lim = limit.load(std::memory_order_relaxed);
    uint32_t cur = active.load(std::memory_order_relaxed);
    do {
      if (lim != 0 && cur >= lim) return false;
    } while (!active.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
    return true;
  }
  void release() { active.fetch_sub(1, std::memory_order_relaxed); }
  void refuse(relay_end e) {
    refused[static_cast<size_t>(e)].fetch_add(1, std::memory_order_relaxed);
  }
};

// The appliance's table of service_counters, by name. The control thread adds names (apply());
// workers look them up when they adopt a snapshot, without a lock: slots are published with a
// release store of the count and never move or go away.
class service_registry {
 public:
  static constexpr size_t capacity = 1024;  // distinct service names over the process's life

  service_registry() : slots_(std::make_unique<service_counters[]>(capacity)) {}
  service_registry(const service_registry&) = delete;
  service_registry& operator=(const service_registry&) = delete;

  // Control thread (one at a time): a slot for every service of kind tcp/tls in `c`, and its limit
  // from the config. Fails, changing nothing, when the new names do not fit.
  common::result<void> apply(const config& c);
  // Any thread: the slot of a service, or null.
  service_counters* find(std::string_view name) const;
  size_t size() const { return n_.load(std::memory_order_acquire); }
  const service_counters& at(size_t i) const { return slots_[i]; }
  uint32_t index_of(const service_counters* sc) const {
    return static_cast<uint32_t>(sc - slots_.get());
  }
  // The per-source table (null before the first apply(); sized then from the first config's
  // workers x tcp.max_connections, which only a restart changes).
  source_table* sources() const { return sources_.load(std::memory_order_acquire); }

 private:
  std::unique_ptr<service_counters[]> slots_;
  std::atomic<size_t> n_{0};
  std::unique_ptr<source_table> sources_owner_;
  std::atomic<source_table*> sources_{nullptr};
};

}  // namespace edge
