#pragma once
// The compiled limits of one rules generation (immutable, shared, published in the RCU snapshot)
// and the state that outlives generations (state_registry: one keyed table and one set of
// per-worker counters per limit name, so that a reload keeps every key's history and every count).
//
// Data path (workers): check_packet() per TCP segment to a terminated service (ACL, SYN, packets,
// bytes), check_accept() once per new connection (new connections/s, concurrent), check_request()
// once per HTTP request head. No allocation, no locks, no exceptions: lookups, atomics and
// single-writer counters.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/counter.hh"
#include "common/result.hh"
#include "limits/acl.hh"
#include "limits/spec.hh"
#include "limits/table.hh"

namespace limits {

// Per-worker counters are indexed by worker id modulo this (ids are small: one per lcore).
inline constexpr size_t max_workers = 64;

#define LIMITS_COUNTERS(X)                                                   \
  X(allowed, "checks the limit let through")                                 \
  X(limited, "checks over the limit that were refused (the limit's action)") \
  X(detected, "checks over a detect-only limit (let through)")               \
  X(untracked, "checks the table had no slot for (let through; keys held in every slot)")

struct alignas(64) limit_counts {
#define X(n, d) common::counter n;
  LIMITS_COUNTERS(X)
#undef X
};

// A limit's life-long state (or an ACL list's counters: no table; `limited` counts denials,
// `allowed` the sources an allow list let in).
struct limit_state {
  std::string name;
  std::string label2;  // limits: scope; ACL lists: service
  std::string label3;  // limits: action; ACL lists: list name
  bool acl = false;
  uint64_t salt = 0;  // limits: the key hash's salt, random per state
  std::unique_ptr<keyed_table> table;
  std::array<limit_counts, max_workers> per_worker;
  limit_counts& on(unsigned worker) { return per_worker[worker % max_workers]; }
  // Sum over the workers (control thread).
  uint64_t sum(common::counter limit_counts::*c) const {
    uint64_t n = 0;
    for (const auto& w : per_worker) n += (w.*c).get();
    return n;
  }
};

// Slots are never freed or moved; readers iterate [0, size()) without a lock.
class state_registry {
 public:
  static constexpr size_t capacity = 4096;
  state_registry() : slots_(std::make_unique<std::unique_ptr<limit_state>[]>(capacity)) {}
  // Control thread. The same (name, scope, action, table size) gets the same state back.
  common::result<limit_state*> get(const limit_spec& s);
  common::result<limit_state*> get_acl(const std::string& service, const std::string& list);
  size_t size() const { return n_.load(std::memory_order_acquire); }
  const limit_state& at(size_t i) const { return *slots_[i]; }

 private:
  common::result<limit_state*> add(std::unique_ptr<limit_state> s);
  std::mutex mu_;
  std::unique_ptr<std::unique_ptr<limit_state>[]> slots_;
  std::atomic<size_t> n_{0};
};

struct compiled_limit {
  limit_spec spec;
  gcra_params gcra;
  uint64_t salt = 0;
  limit_state* state = nullptr;
};

struct service_limits {
  std::string name;
  std::vector<const compiled_limit*> packet;   // syn, packets, bytes
  std::vector<const compiled_limit*> accept;   // conn, concurrent
  std::vector<const compiled_limit*> request;  // requests
  std::unique_ptr<acl> acl_table;
  std::vector<limit_state*> acl_states;  // per list, then one for the default verdict
};

// A flow as the limits see it. Addresses in network order (4 bytes used for IPv4).
struct flow {
  bool v6 = false;
  std::array<uint8_t, 16> src{}, vip{};
  uint16_t vip_port = 0;
};

struct request_info {
  std::string_view method, path, sni;
  // The first value of a header (lowercase name), or empty when absent.
  std::string_view (*header)(const void* ctx, std::string_view name) = nullptr;
  const void* ctx = nullptr;
};

enum class outcome : uint8_t { pass, acl_denied, limited };
struct decision {
  outcome what = outcome::pass;
  action act = action::drop;
  const compiled_limit* by = nullptr;  // limited: the limit
  uint64_t retry_after_ns = 0;
  unsigned retry_after_s() const {
    uint64_t s = (retry_after_ns + 999'999'999) / 1'000'000'000;
    return static_cast<unsigned>(s == 0 ? 1 : s > 86400 ? 86400 : s);
  }
};

// Concurrent connections a connection holds; released when it ends (any thread, any generation:
// the tables live in the registry).
struct conn_hold {
  static constexpr size_t max = 4;
  std::array<keyed_table*, max> table{};
  std::array<uint64_t, max> key{};
  uint8_t n = 0;
  void release() {
    for (uint8_t i = 0; i < n; ++i) table[i]->release(key[i]);
    n = 0;
  }
};

class limit_set {
 public:
  // Control thread: ACL tables built, limit states found or made in `reg`. Services a limit names
  // that the configuration lacks are not an error here (the config may add them later).
  static common::result<std::shared_ptr<const limit_set>> build(const limits_config& cfg,
                                                                state_registry& reg);

  const service_limits* service(std::string_view name) const;
  // Only a service some limit or ACL names (no fallback to the limits with no service list).
  const service_limits* named(std::string_view name) const;
  size_t limit_count() const { return limits_.size(); }
  const compiled_limit& limit(size_t i) const { return *limits_[i]; }
  uint64_t generation = 0;

  // One TCP segment (syn: SYN without ACK) of `bytes` IP bytes. ACL first, then the limits in
  // file order; the first enforced one that is over decides.
  static decision check_packet(const service_limits& s, const flow& f, bool syn, uint32_t bytes,
                               uint64_t now, unsigned worker);
  // A new connection after its handshake. On pass, `hold` has the concurrency counts taken.
  static decision check_accept(const service_limits& s, const flow& f, uint64_t now,
                               unsigned worker, conn_hold& hold);
  // One request head.
  static decision check_request(const service_limits& s, const flow& f, const request_info& r,
                                uint64_t now, unsigned worker);

 private:
  std::vector<std::unique_ptr<compiled_limit>> limits_;
  std::vector<std::unique_ptr<service_limits>> services_;
  std::unique_ptr<service_limits>
      all_;  // limits with no service list, for services with nothing else
};

// The limiter's clock from the TSC: units (1/16 ns) = tsc * mult >> 16.
struct tsc_clock {
  uint64_t mult = 0;
  explicit tsc_clock(uint64_t tsc_hz) : mult((units_per_s << 16) / (tsc_hz == 0 ? 1 : tsc_hz)) {}
  uint64_t units(uint64_t tsc) const {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(tsc) * mult) >> 16);
  }
};

}  // namespace limits
