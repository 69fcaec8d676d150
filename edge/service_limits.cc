#include "edge/service_limits.hh"

#include <algorithm>
#include <bit>
#include <cstring>
#include <random>

namespace edge {
namespace {

constexpr uint64_t count_mask = 0xffff;
constexpr uint64_t tag_of(uint64_t w) {
  return w >> 16;
}
constexpr uint32_t count_of(uint64_t w) {
  return static_cast<uint32_t>(w & count_mask);
}

uint64_t mix(uint64_t h) {  // splitmix64's finaliser
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

}  // namespace

source_table::source_table(size_t slots, uint64_t secret)
    : mask_(std::bit_ceil(std::max(slots, bucket)) - 1), secret_(secret) {
  w_ = std::make_unique<std::atomic<uint64_t>[]>(mask_ + 1);
  for (size_t i = 0; i <= mask_; ++i) w_[i].store(0, std::memory_order_relaxed);
}

uint64_t source_table::hash(uint32_t scope, const l4::ip_addr& src) const {
  uint64_t a = 0;
  std::memcpy(&a, src.b.data(), 8);  // IPv4: the address (rest zero); IPv6: the /64
  return mix(mix(secret_ ^ a) ^ (uint64_t{scope} << 1 | (src.v6 ? 1 : 0)));
}

uint32_t source_table::acquire(uint32_t scope, const l4::ip_addr& src, uint32_t limit) {
  const uint64_t h = hash(scope, src);
  const uint64_t tag = h >> 16;
  const size_t first = static_cast<size_t>(h) & mask_ & ~(bucket - 1);
  limit = std::min(limit, max_limit);
  for (;;) {
    uint32_t held = 0;
    size_t mine = SIZE_MAX, free_w = SIZE_MAX;
    uint64_t mine_w = 0, free_v = 0;
    for (size_t i = first; i < first + bucket; ++i) {
      const uint64_t w = w_[i].load(std::memory_order_acquire);
      if (count_of(w) == 0) {
        if (free_w == SIZE_MAX) free_w = i, free_v = w;
      } else if (tag_of(w) == tag) {
        held += count_of(w);
        if (mine == SIZE_MAX) mine = i, mine_w = w;
      }
    }
    if (held >= limit) return refused;
    if (mine != SIZE_MAX) {
      if (w_[mine].compare_exchange_weak(mine_w, mine_w + 1, std::memory_order_acq_rel))
        return static_cast<uint32_t>(mine);
      continue;  // another worker changed the word: look again
    }
    if (free_w == SIZE_MAX) {
      untracked_.fetch_add(1, std::memory_order_relaxed);
      return untracked_slot;
    }
    if (w_[free_w].compare_exchange_weak(free_v, tag << 16 | 1, std::memory_order_acq_rel))
      return static_cast<uint32_t>(free_w);
  }
}

void source_table::release(uint32_t slot) {
  if (slot > mask_) return;  // untracked_slot, refused
  // The word's count is ours (non-zero), so its tag cannot change under us.
  w_[slot].fetch_sub(1, std::memory_order_acq_rel);
}

uint32_t source_table::held(uint32_t scope, const l4::ip_addr& src) const {
  const uint64_t h = hash(scope, src);
  const size_t first = static_cast<size_t>(h) & mask_ & ~(bucket - 1);
  uint32_t n = 0;
  for (size_t i = first; i < first + bucket; ++i) {
    const uint64_t w = w_[i].load(std::memory_order_acquire);
    if (count_of(w) != 0 && tag_of(w) == h >> 16) n += count_of(w);
  }
  return n;
}

common::result<void> service_registry::apply(const config& c) {
  const size_t n = n_.load(std::memory_order_relaxed);
  size_t added = 0;
  for (const auto& s : c.services)
    if (s.kind != service_kind::l4 && find(s.name) == nullptr) ++added;
  if (n + added > capacity)
    return common::fail("more than " + std::to_string(capacity) +
                            " distinct tcp/tls service names since start: restart edged to reset "
                            "the per-service counters",
                        c.path);
  if (sources_.load(std::memory_order_relaxed) == nullptr) {
    const size_t capacity = std::max<size_t>(c.workers.lcores.size(), 1) * c.tcp.max_connections;
    std::random_device rd;
    sources_owner_ = std::make_unique<source_table>(std::min<size_t>(4 * capacity, size_t{1} << 24),
                                                    static_cast<uint64_t>(rd()) << 32 | rd());
    sources_.store(sources_owner_.get(), std::memory_order_release);
  }
  size_t next = n;
  for (const auto& s : c.services) {
    if (s.kind == service_kind::l4) continue;
    service_counters* sc = find(s.name);
    if (sc == nullptr) {
      // Not yet visible to readers (n_ is stored below): the name can be written plainly.
      sc = &slots_[next++];
      sc->name = s.name;
      sc->limit.store(s.max_connections, std::memory_order_relaxed);
      sc->per_source.store(s.max_connections_per_source, std::memory_order_relaxed);
      n_.store(next, std::memory_order_release);
    } else {
      sc->limit.store(s.max_connections, std::memory_order_relaxed);  // a reload's new limit
      sc->per_source.store(s.max_connections_per_source, std::memory_order_relaxed);
    }
  }
  return {};
}

service_counters* service_registry::find(std::string_view name) const {
  const size_t n = n_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i)
    if (slots_[i].name == name) return &slots_[i];
  return nullptr;
}

}  // namespace edge
