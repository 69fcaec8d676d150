#pragma once
// Graceful drain, run on the control thread as a state machine the admin loop ticks (the admin API
// keeps answering while a drain runs: /readyz, /metrics, undrain). In order:
//   1. /readyz fails at once (the BGP announcer polls it and withdraws the VIPs);
//   2. the announcer reports the withdrawal (POST /announcer?state=withdrawn), counted and logged;
//   3. new connections are still accepted for shutdown.grace_ms (routers converge), then refused;
//   4. established connections get shutdown.drain_timeout_ms to finish, then what is left is reset;
//   5. with exit requested (SIGTERM, `edgectl drain --exit`), the process exits 0.
// undrain reverses it at any step before the exit: workers accept again and /readyz passes.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "common/enum_text.hh"
#include "edge/prom_text.hh"

namespace edge {

// Drain counters, declared once: member, metric name, help.
#define EDGE_DRAIN_COUNTERS(X)                                                                     \
  X(started, "edge_drain_started_total", "Drains begun: /readyz fails from here on (step 1).")     \
  X(withdrawn, "edge_drain_withdrawn_total",                                                       \
    "Withdrawals of the VIPs from BGP the announcer reported during a drain (step 2).")            \
  X(refusing, "edge_drain_refusing_total",                                                         \
    "Grace periods that ended: new connections refused from here on (step 3).")                    \
  X(finished, "edge_drain_finished_total",                                                         \
    "Drains in which every established connection finished before the deadline (step 4).")         \
  X(deadline, "edge_drain_deadline_total",                                                         \
    "Drains whose deadline passed with connections open; those were reset (step 4).")              \
  X(connections_reset, "edge_drain_connections_reset_total",                                       \
    "Connections reset because the drain deadline passed.")                                        \
  X(exits, "edge_drain_exits_total", "Drains that ended the process (step 5; seen in logs only).") \
  X(undrains, "edge_drain_undrains_total", "Drains reversed by undrain.")

struct drain_counters {
#define EDGE_DRAIN_COUNTER_MEMBER(member, name, help) uint64_t member = 0;
  EDGE_DRAIN_COUNTERS(EDGE_DRAIN_COUNTER_MEMBER)
#undef EDGE_DRAIN_COUNTER_MEMBER
};

#define EDGE_DRAIN_PHASES(X) \
  X(serving, "serving")      \
  X(grace, "grace") X(refusing, "refusing") X(resetting, "resetting") X(drained, "drained")
enum class drain_phase : uint8_t { EDGE_DRAIN_PHASES(COMMON_ENUMERATOR) };
const char* to_string(drain_phase p);

// What the drain needs from the workers (the appliance provides it; tests provide fakes).
struct drain_hooks {
  // Raises the workers' phase: 0 accept, 1 refuse new connections, 2 reset what is left.
  std::function<void(uint8_t)> set_worker_phase;
  // Whether every worker has acted on `phase` (a stopped worker counts as done).
  std::function<bool(uint8_t)> workers_at;
  std::function<uint64_t()> open_connections;   // relayed connections still open, all workers
  std::function<uint64_t()> reset_connections;  // what phase 2 reset, all workers
  bool any_tcp = true;  // without tcp/tls services there is nothing to refuse or wait for
};

class drain_control {
 public:
  using clock = std::chrono::steady_clock;
  struct timing {
    uint32_t grace_ms = 0;
    uint32_t timeout_ms = 5000;
  };

  explicit drain_control(drain_hooks hooks) : hooks_(std::move(hooks)) {}

  // Begins a drain (no-op but for `exit` if one runs). `why`: "signal", "api", for the log.
  void begin(const std::string& why, bool exit, timing t, clock::time_point now);
  // Reverses a drain; fails (returns the reason) when none runs or the process is exiting.
  std::string undrain(clock::time_point now);
  // Called by the announcer: whether the VIPs are announced now.
  void announcer_report(bool announced, clock::time_point now);
  // Advances the state machine; cheap, call it every loop.
  void tick(clock::time_point now);

  drain_phase phase() const { return phase_; }
  bool draining() const { return phase_ != drain_phase::serving; }
  bool exit_requested() const { return exit_; }
  // The drain is over and the process should exit now.
  bool exit_ready() const { return exit_ && phase_ == drain_phase::drained; }
  // -1 never reported, 0 withdrawn, 1 announced.
  int announced() const { return announced_; }
  const drain_counters& counters() const { return ctr_; }
  // JSON object text for /drain and /stats.
  std::string state_json(clock::time_point now) const;
  void append_metrics(prom_text::writer& out) const;

 private:
  void to_drained(clock::time_point now);
  drain_hooks hooks_;
  drain_phase phase_ = drain_phase::serving;
  bool exit_ = false;
  bool withdrawn_this_drain_ = false;
  int announced_ = -1;
  timing t_{};
  clock::time_point began_{}, refuse_at_{}, deadline_{}, reset_wait_until_{}, linger_until_{};
  bool lingering_ = false;
  uint64_t open_at_refuse_ = 0;
  drain_counters ctr_;
};

}  // namespace edge
