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

#include "common/result.hh"
#include "edge/config.hh"
#include "edge/relay.hh"

namespace edge {

// Refusals of a new client connection that are charged to its service (the relay ends that refuse
// before any byte is relayed). `no_service` has no service to charge.
inline constexpr std::array<relay_end, 7> service_refusals{
    relay_end::service_limit, relay_end::worker_limit,  relay_end::no_slot,
    relay_end::no_upstream,   relay_end::waf_no_memory, relay_end::tls_no_session,
    relay_end::limited};

struct service_counters {
  std::string name;                 // written once, before the slot is published
  std::atomic<uint32_t> limit{0};   // services[].max_connections; 0: no limit
  std::atomic<uint32_t> active{0};  // connections held now, all workers
  std::atomic<uint64_t> opened{0};  // connections accepted and handed to an upstream
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

 private:
  std::unique_ptr<service_counters[]> slots_;
  std::atomic<size_t> n_{0};
};

}  // namespace edge
