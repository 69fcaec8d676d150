#pragma once
// A keyed limiter table shared by every worker: GCRA (rate + burst) or a concurrency count per key,
// in a fixed number of 16-byte slots (a 64-bit key hash and a 64-bit state word), 4 to a 64-byte
// bucket. Memory is fixed at construction: 16 bytes per slot, so 16 bytes per key at full load
// (tests/unit/limits pins it; nginx's limit_req uses 64, HAProxy's stick tables about 50).
//
// Across workers (DESIGN §2): one table per limit, shared by the workers, each key's state one
// atomic word updated by compare-and-swap. A limit is therefore exact whichever worker the flows
// land on (no per-worker shares to rebalance); the price is a contended cache line only when
// several workers hit the same key at once. No locks, no allocation after construction.
//
// Eviction: a key's slot is found in its bucket; a new key takes an empty slot, else a slot whose
// state is idle (GCRA: its theoretical arrival time has passed, so forgetting it changes nothing;
// concurrency: count 0), else (GCRA only) the slot nearest to idle, counted as an eviction (that
// key starts over with a full burst). A concurrency key is never evicted while it holds
// connections; when its bucket is full of held keys the new key is not tracked (table_full).
// Two keys whose 64-bit hashes are equal share a slot (probability ~n²/2⁶⁵).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "common/counter.hh"

namespace limits {

// Time in the limiter's fixed-point unit: 1/16 ns (2^64 of them: 36 years). GCRA's emission
// interval T = 16e9 / rate is then exact to 0.5 / T: ≤ 0.5 % for rates up to 1.6e8 per second.
inline constexpr uint64_t units_per_ns = 16;
inline constexpr uint64_t units_per_s = 16'000'000'000ull;

// A rate: `rate` per second and a burst of `burst` (≥ 1) at once. For bytes/s the cost of a
// packet is its length, and burst is in bytes.
struct gcra_params {
  uint64_t interval = 0;   // T, units per token
  uint64_t tolerance = 0;  // burst * T
  static gcra_params of(uint64_t rate, uint64_t burst) {
    gcra_params p;
    if (rate == 0) rate = 1;
    if (burst == 0) burst = 1;
    p.interval = (units_per_s + rate / 2) / rate;
    if (p.interval == 0) p.interval = 1;
    // Saturated at 2^62 units (about 9 years): interval * burst wraps past a burst/rate of about
    // 1.15e9 s, and a wrapped tolerance would refuse everything.
    constexpr uint64_t max_tolerance = uint64_t{1} << 62;
    if (__builtin_mul_overflow(p.interval, burst, &p.tolerance) || p.tolerance > max_tolerance)
      p.tolerance = max_tolerance;
    return p;
  }
};

struct verdict {
  bool limited = false;         // over the limit (the caller acts, or only counts in detect-only)
  bool tracked = true;          // false: the table had no slot for the key (not limited, counted)
  uint64_t retry_after_ns = 0;  // limited: how long until the same request would pass
};

// 64-bit key hash of bytes with a per-limit salt (never 0: 0 marks an empty slot).
uint64_t key_hash(uint64_t salt, std::string_view bytes);

class keyed_table {
 public:
  static constexpr size_t ways = 4;
  struct slot {
    std::atomic<uint64_t> key{0};
    std::atomic<uint64_t> val{0};  // GCRA: theoretical arrival time (units); concurrency: count
  };
  static_assert(sizeof(slot) == 16);
  struct alignas(64) bucket_t {
    slot s[ways];
  };

  // `keys` rounded up to a multiple of 4 (buckets of 4 slots; any number of buckets).
  explicit keyed_table(size_t keys);
  keyed_table(const keyed_table&) = delete;
  keyed_table& operator=(const keyed_table&) = delete;

  // GCRA: takes `cost` tokens for key `h` at time `now` (units) if the rate allows; a limited
  // request takes nothing (so detect-only counts what enforcing would have refused).
  verdict gcra(uint64_t h, uint64_t now, uint64_t cost, const gcra_params& p);
  // Concurrency: one more held by key `h` if fewer than `max` are (`force`: take it even when not,
  // for detect-only; the verdict still says limited). Pair every tracked acquire that took a
  // count with release(h).
  verdict acquire(uint64_t h, uint64_t max, bool force = false);
  void release(uint64_t h);

  static size_t capacity_for(size_t keys);  // slots a table asked for `keys` gets
  size_t capacity() const { return n_buckets_ * ways; }
  size_t bytes() const { return capacity() * sizeof(slot); }
  // Slots holding a key (a scan: control thread, tests).
  size_t used() const;
  uint64_t value_of(uint64_t h) const;  // tests: the state word of a key, 0 if absent

  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  uint64_t full() const { return full_.load(std::memory_order_relaxed); }
  uint64_t release_misses() const { return release_misses_.load(std::memory_order_relaxed); }

 private:
  // Multiply-shift range reduction (Lemire's fastrange): the hash's high bits pick the bucket, so
  // the table needs no power-of-two size.
  slot* bucket(uint64_t h) const {
    return buckets_[static_cast<size_t>((static_cast<unsigned __int128>(h) * n_buckets_) >> 64)].s;
  }
  // The key's slot, inserting it (`concurrency`: only into empty or zero-count slots).
  slot* find_or_insert(uint64_t h, uint64_t now, bool concurrency);

  std::unique_ptr<bucket_t[]> buckets_;
  size_t n_buckets_ = 0;
  // Shared, but touched only on evictions and misses (not per check).
  std::atomic<uint64_t> evictions_{0}, full_{0}, release_misses_{0};
};

}  // namespace limits
