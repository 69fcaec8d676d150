#pragma once
// Active health checks for upstream backends, on a control-plane thread with its own io_uring
// (this thread may wait; workers never run it). TCP connect or HTTP GET, each with interval,
// timeout, rise and fall. A state change is published through a callback on the checker thread;
// the current state of every target can be read from any thread for /metrics.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/counter.hh"
#include "common/enum_text.hh"
#include "common/result.hh"
#include "l4/ip_addr.hh"

namespace edge::upstream {

enum class health_kind : uint8_t { tcp, http };

struct health_params {
  health_kind kind = health_kind::tcp;
  std::string path = "/";      // HTTP: request target
  std::string host;            // HTTP: Host header; empty: the backend address
  uint16_t expect_status = 0;  // HTTP: exact status wanted; 0: any 2xx or 3xx
  unsigned interval_ms = 1000;
  unsigned timeout_ms = 500;  // connect + request + status line
  unsigned rise = 2;          // consecutive successes to go up
  unsigned fall = 3;          // consecutive failures to go down
  bool initially_up = true;   // state before the first verdict
  // The pool's connections start with a PROXY v2 header: so does the check, with the LOCAL command
  // (the spec's choice for a proxy's own health checks; the receiver uses the real addresses).
  bool proxy_v2 = false;
  uint16_t port = 0;  // check this port instead of the backend's (0: the backend's)
};

struct health_target {
  std::string pool;    // for the callback and metrics; the checker does not interpret it
  size_t backend = 0;  // index in the pool
  l4::ip_addr address;
  uint16_t port = 0;
  health_params params;
};

// Why a check failed, named for metrics and logs.
// proxy_rejected: HTTP 400 to a check that sent a PROXY v2 header (a backend without PROXY
// protocol).
#define EDGE_HEALTH_FAILURES(X)         \
  X(none, "none")                       \
  X(connect_refused, "connect_refused") \
  X(connect_timeout, "connect_timeout") \
  X(connect_error, "connect_error")     \
  X(send_error, "send_error")           \
  X(recv_error, "recv_error")           \
  X(timeout, "timeout")                 \
  X(closed_early, "closed_early")       \
  X(bad_response, "bad_response")       \
  X(bad_status, "bad_status")           \
  X(no_resources, "no_resources")       \
  X(proxy_rejected, "proxy_rejected")
enum class health_failure : uint8_t { EDGE_HEALTH_FAILURES(COMMON_ENUMERATOR) };
const char* to_string(health_failure f);
// What a check's outcome means for an operator (logs, /stats): names a likely PROXY protocol
// mismatch between the pool and the backend. `proxy_v2`: the check sent a PROXY v2 header.
const char* explain(health_failure f, bool proxy_v2);

struct health_change {
  size_t target;  // index into the targets given to create()
  const health_target* info;
  bool up;
  health_failure last_failure;  // for down: why the last check failed
  int last_status;              // HTTP status of the last check, 0 if none
};

// Per-target state readable from any thread.
struct health_state {
  std::atomic<bool> up{true};
  std::atomic<int> last_status{0};
  std::atomic<uint8_t> last_failure{0};  // health_failure
  common::counter checks;
  common::counter failures;
  common::counter transitions;
};

// Name/value pairs for /metrics: f(std::string_view name, uint64_t value).
template <class F>
void visit(const health_state& s, F&& f) {
  f("up", s.up.load(std::memory_order_relaxed) ? 1 : 0);
  f("last_status", static_cast<uint64_t>(s.last_status.load(std::memory_order_relaxed)));
  f("checks", s.checks.get());
  f("failures", s.failures.get());
  f("transitions", s.transitions.get());
}

class health_checker {
 public:
  using change_fn = std::function<void(const health_change&)>;

  static common::result<std::unique_ptr<health_checker>> create(std::vector<health_target> targets,
                                                                change_fn on_change,
                                                                unsigned ring_entries = 256);
  ~health_checker();  // stops the thread
  health_checker(const health_checker&) = delete;
  health_checker& operator=(const health_checker&) = delete;

  void start();  // runs the loop on its own thread
  void stop();   // joins; idempotent

  size_t size() const { return targets_.size(); }
  const health_target& target(size_t i) const { return targets_[i]; }
  const health_state& state(size_t i) const { return states_[i]; }

 private:
  struct check;
  health_checker() = default;
  void run();
  void start_check(size_t i, uint64_t now_ms);
  void on_cqe(uint64_t user_data, int res);
  void step(check& c, size_t i, int op, int res);
  void finish(check& c, size_t i, bool ok, health_failure why, int status);
  void cancel(check& c);

  std::vector<health_target> targets_;
  std::unique_ptr<health_state[]> states_;
  std::unique_ptr<check[]> checks_;
  change_fn on_change_;
  struct ring_holder;
  std::unique_ptr<ring_holder> ring_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A reload replaces the checker. Every target of the new one that a target of `old` matches (same
// pool, address and port) starts in the state the old checker had reached (params.initially_up),
// so that the tables published from that state and the new checker agree from its start: a
// backend still down goes up (and is published) after `rise` passes of the new checker, however
// the check itself changed. `old` must be stopped (or null: nothing carried). Returns each
// target's starting state.
std::vector<bool> carry_health(const health_checker* old, std::vector<health_target>& targets);

}  // namespace edge::upstream
