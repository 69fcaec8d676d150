#pragma once
// Per-worker connection table for service kind `l4`: 5-tuple -> backend and NAT state, so an
// established flow keeps its backend when the Maglev table changes. Bounded and allocated once:
// two-choice buckets of 8 slots, slots never move (a flow's forward and reply entries link to
// each other by slot index). Expiry is lazy: an expired slot is reused by the next insert that
// lands on it. When both candidate buckets hold only live flows, a half-open (SYN-only) flow may
// be evicted — the oldest one — so a SYN flood cannot starve the table; live established flows
// are never evicted and the new flow is refused instead (counted by the caller).
#include <cstdint>
#include <memory>

#include "common/result.hh"
#include "l4/lb/flow.hh"

namespace l4::lb {

enum class conn_state : uint8_t { tcp_syn, tcp_established, tcp_closing, udp };

// What an entry does to packets that match its key.
enum class conn_kind : uint8_t {
  encap,        // IPIP/GUE: outer header to `to_addr`
  nat_forward,  // client -> VIP: rewrite to (from_addr:from_port) -> (to_addr:to_port)
  nat_reply,    // backend -> SNAT: rewrite to (from_addr:from_port) -> (to_addr:to_port)
};

// Laid out so a lookup reads one cache line (key, expiry, kind) and a hit's rewrite the second.
struct alignas(64) conn_entry {
  flow_key key;
  uint64_t expires = 0;  // in the caller's clock (e.g. TSC cycles)
  uint32_t peer = none;  // slot of the linked reply/forward entry
  uint16_t service = 0;  // index of the service in the config that created it (informational)
  conn_kind kind = conn_kind::encap;
  conn_state state = conn_state::tcp_syn;
  uint64_t peer_expires = 0;            // what this entry last wrote into its peer's expiry
  std::array<uint8_t, 16> from_addr{};  // new source (NAT)
  std::array<uint8_t, 16> to_addr{};    // new destination (NAT) or backend (encap)
  uint16_t from_port = 0, to_port = 0;  // host order
  uint64_t created = 0;

  static constexpr uint32_t none = 0xffffffffu;
};
static_assert(sizeof(conn_entry) == 128);

struct conn_timeouts {  // in the caller's clock units
  uint64_t tcp_syn = 0, tcp_established = 0, tcp_closing = 0, udp = 0;
  // Seconds-based defaults converted with `hz` ticks per second.
  static conn_timeouts defaults(uint64_t hz) { return {5 * hz, 900 * hz, 10 * hz, 60 * hz}; }
};

struct conn_stats {
  uint64_t inserts = 0, reused_expired = 0, evicted_half_open = 0, refused_full = 0;
};

class conn_table {
 public:
  static constexpr uint32_t ways = 8;

  // `capacity` is rounded up to a power of two buckets x 8 slots. Allocates here, never again:
  // 2 MiB-aligned and advised as transparent huge pages (random lookups over tens of MiB would
  // otherwise miss the TLB on most packets); zeroed here, so create it on the worker's own lcore
  // for NUMA-local first touch.
  static common::result<std::unique_ptr<conn_table>> create(uint32_t capacity, conn_timeouts t);

  // The live entry for `k`, or nullptr. `h` is flow_hash(k).
  conn_entry* find(const flow_key& k, uint64_t h, uint64_t now);

  // Bulk lookups: prefetch the two buckets' tags, then (once they are in cache) the slots whose
  // tag matches, then find(). Each step only warms the cache.
  void prefetch_buckets(uint64_t h) const {
    __builtin_prefetch(&buckets_[bucket_a(h)]);
    __builtin_prefetch(&buckets_[bucket_b(h)]);
  }
  void prefetch_slots(uint64_t h) const {
    const uint16_t tag = tag_of(h);
    for (uint32_t b : {bucket_a(h), bucket_b(h)})
      for (uint32_t w = 0; w < ways; ++w)
        if (buckets_[b].tag[w] == tag) {
          const char* e = reinterpret_cast<const char*>(&slots_[b * ways + w]);
          __builtin_prefetch(e);       // key, expiry, kind
          __builtin_prefetch(e + 64);  // the rewrite
        }
  }

  // A fresh entry for `k` (key, created, expiry set for `state`; other fields to fill), or
  // nullptr when the table has no room. The caller must have checked find() first.
  conn_entry* insert(const flow_key& k, uint64_t h, conn_state state, uint64_t now);

  // Links a full NAT forward entry (`fwd`, kind nat_forward) and its reply entry (`rep`,
  // nat_reply): they change state together and the reply entry — which holds the SNAT port —
  // always outlives the forward one. To spare a cache miss per packet, a touch writes the peer
  // only on a state change or every quarter timeout (the reply entry gets that much slack).
  void link(conn_entry& fwd, conn_entry& rep);

  // Advances the state for a packet of the flow and pushes the expiry (of the peer too).
  // `from_client`: the packet travels client -> backend.
  void touch(conn_entry& e, uint8_t tcp_flags, bool from_client, uint64_t now);

  // Frees an entry and its peer now.
  void erase(conn_entry& e);

  uint32_t slot_of(const conn_entry& e) const { return static_cast<uint32_t>(&e - slots_.get()); }
  conn_entry& at(uint32_t slot) { return slots_[slot]; }
  uint32_t capacity() const { return nbuckets_ * ways; }
  uint32_t live(uint64_t now) const;  // walks the table: control/test use only
  const conn_stats& stats() const { return stats_; }
  const conn_timeouts& timeouts() const { return timeouts_; }

 private:
  struct bucket {
    uint16_t tag[ways];  // 0 = never used; else (hash >> 48) | 1
  };
  conn_table() = default;
  uint64_t timeout(conn_state s) const;
  static uint16_t tag_of(uint64_t h) { return static_cast<uint16_t>((h >> 48) | 1); }
  uint32_t bucket_a(uint64_t h) const { return static_cast<uint32_t>(h) & mask_; }
  uint32_t bucket_b(uint64_t h) const { return static_cast<uint32_t>(h >> 24) & mask_; }

  struct free_deleter {
    void operator()(void* p) const;
  };
  std::unique_ptr<bucket[], free_deleter> buckets_;
  std::unique_ptr<conn_entry[], free_deleter> slots_;
  uint32_t nbuckets_ = 0, mask_ = 0;
  conn_timeouts timeouts_;
  conn_stats stats_;
};

}  // namespace l4::lb
