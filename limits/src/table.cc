#include "limits/table.hh"

#include <algorithm>

namespace limits {

uint64_t key_hash(uint64_t salt, std::string_view bytes) {
  // FNV-1a over the bytes, then a 64-bit finaliser (murmur3's fmix64) so that the low bits that
  // pick the bucket depend on every input byte.
  uint64_t h = 0xcbf29ce484222325ull ^ salt;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h == 0 ? 1 : h;
}

size_t keyed_table::capacity_for(size_t keys) {
  return std::max<size_t>(1, (keys + ways - 1) / ways) * ways;
}

keyed_table::keyed_table(size_t keys) {
  n_buckets_ = capacity_for(keys) / ways;
  buckets_ = std::make_unique<bucket_t[]>(n_buckets_);
}

keyed_table::slot* keyed_table::find_or_insert(uint64_t h, uint64_t now, bool concurrency) {
  slot* b = bucket(h);
  for (int attempt = 0; attempt < 4; ++attempt) {
    slot* victim = nullptr;
    uint64_t victim_key = 0;
    bool victim_live = false;  // evicting it loses state
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < ways; ++i) {
      const uint64_t k = b[i].key.load(std::memory_order_acquire);
      if (k == h) return &b[i];
      if (victim != nullptr && !victim_live) continue;  // an empty or idle slot is already chosen
      const uint64_t v = b[i].val.load(std::memory_order_relaxed);
      const bool idle = k == 0 || (concurrency ? v == 0 : v <= now);
      if (idle) {
        victim = &b[i], victim_key = k, victim_live = false;
      } else if (!concurrency && v < oldest) {
        oldest = v;
        victim = &b[i], victim_key = k, victim_live = true;
      }
    }
    // The rest of the bucket may still hold h (scan above stopped choosing, not looking).
    for (size_t i = 0; i < ways; ++i)
      if (b[i].key.load(std::memory_order_acquire) == h) return &b[i];
    if (victim == nullptr) {
      full_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    if (victim->key.compare_exchange_strong(victim_key, h, std::memory_order_acq_rel)) {
      if (victim_live) {
        victim->val.store(0, std::memory_order_relaxed);  // the new key starts with a full burst
        evictions_.fetch_add(1, std::memory_order_relaxed);
      }
      return victim;
    }
    // Another worker took that slot first (perhaps for h itself): look again.
  }
  full_.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

verdict keyed_table::gcra(uint64_t h, uint64_t now, uint64_t cost, const gcra_params& p) {
  verdict v;
  slot* s = find_or_insert(h, now, false);
  if (s == nullptr) {
    v.tracked = false;
    return v;
  }
  uint64_t inc = 0;
  if (__builtin_mul_overflow(cost, p.interval, &inc) || inc > p.tolerance) {
    // More than a whole burst at once never passes.
    v.limited = true;
    v.retry_after_ns = p.tolerance / units_per_ns;
    return v;
  }
  uint64_t tat = s->val.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t base = tat > now ? tat : now;
    const uint64_t next = base + inc;
    if (next - now > p.tolerance) {
      v.limited = true;
      v.retry_after_ns = (next - now - p.tolerance + units_per_ns - 1) / units_per_ns;
      return v;
    }
    if (s->val.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return v;
  }
}

verdict keyed_table::acquire(uint64_t h, uint64_t max, bool force) {
  verdict v;
  for (int attempt = 0; attempt < 4; ++attempt) {
    slot* s = find_or_insert(h, 0, true);
    if (s == nullptr) {
      v.tracked = false;
      return v;
    }
    uint64_t c = s->val.load(std::memory_order_relaxed);
    bool over = false;
    do {
      over = c >= max;
      if (over && !force) {
        v.limited = true;
        return v;
      }
    } while (!s->val.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel));
    // The slot may have been taken over by another key while its count was 0: give the count back
    // and look again.
    if (s->key.load(std::memory_order_acquire) == h) {
      v.limited = over;
      return v;
    }
    s->val.fetch_sub(1, std::memory_order_acq_rel);
  }
  full_.fetch_add(1, std::memory_order_relaxed);
  v.tracked = false;
  return v;
}

void keyed_table::release(uint64_t h) {
  slot* b = bucket(h);
  for (size_t i = 0; i < ways; ++i) {
    if (b[i].key.load(std::memory_order_acquire) != h) continue;
    uint64_t c = b[i].val.load(std::memory_order_relaxed);
    while (c > 0 && !b[i].val.compare_exchange_weak(c, c - 1, std::memory_order_acq_rel)) {
    }
    if (c > 0) return;
    break;
  }
  release_misses_.fetch_add(1, std::memory_order_relaxed);
}

size_t keyed_table::used() const {
  size_t n = 0;
  for (size_t i = 0; i < n_buckets_; ++i)
    for (size_t w = 0; w < ways; ++w)
      n += buckets_[i].s[w].key.load(std::memory_order_relaxed) != 0;
  return n;
}

uint64_t keyed_table::value_of(uint64_t h) const {
  const slot* b = bucket(h);
  for (size_t i = 0; i < ways; ++i)
    if (b[i].key.load(std::memory_order_acquire) == h)
      return b[i].val.load(std::memory_order_relaxed);
  return 0;
}

}  // namespace limits
