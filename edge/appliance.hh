#pragma once
// The running daemon: owns the configuration, the DPDK ports, the workers, the published snapshot
// and the admin API. main() creates one, starts it, runs the control loop and shuts it down.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hh"
#include "edge/admin.hh"
#include "edge/config.hh"
#include "edge/drain.hh"
#include "edge/flow_steer.hh"
#include "edge/inspection/waf_audit.hh"
#include "edge/inspection/waf_control.hh"
#include "edge/metrics_tls.hh"
#include "edge/ports.hh"
#include "edge/service_limits.hh"
#include "edge/snapshot.hh"
#include "edge/worker.hh"
#include "tls/context.hh"
#include "tls/offload.hh"
#include "upstream/health_checker.hh"

namespace edge {

class appliance {
 public:
  explicit appliance(config c);
  ~appliance();
  appliance(const appliance&) = delete;
  appliance& operator=(const appliance&) = delete;

  // Everything --check validates without starting anything: the host (lcores), every service's
  // certificates, keys, CA and ticket key files, the WAF rules (compiled, no cache written) and
  // each policy bound to them. Errors name file:line:col.
  static common::result<void> check(const config& c);

  common::result<void> start(const char* argv0);
  // After a failed start: whether the configuration was at fault (exit 2) rather than the host
  // or the runtime (exit 3).
  bool start_failed_on_config() const { return config_error_; }
  // Control loop: serves the admin API and ticks a running drain (edge/drain.hh); a raised `reload`
  // (SIGHUP) reloads as POST /reload does. A raised `stop` (SIGTERM) begins a drain with exit;
  // returns once a drain with exit (signal or POST /drain?exit=1) is over.
  // A raised `reopen` (SIGUSR1) reopens the access log file (rotation).
  void run(const std::atomic<bool>& stop, std::atomic<bool>* reload = nullptr,
           std::atomic<bool>* reopen = nullptr);
  // The same drain, run to its end here (for a stop that did not come through run()). Logged.
  void drain();
  void shutdown();

  bool ready() const;
  std::string not_ready_reason() const;  // empty when ready
  std::string metrics_text() const;
  std::string stats_json() const;
  std::string config_json() const;
  // Re-reads the config file; applies what can change live, refuses what needs a restart.
  common::result<std::string> reload();

 private:
  common::result<std::string> reload_once();
  std::unique_ptr<snapshot> build_snapshot(std::shared_ptr<const config> c) const;
  common::result<std::shared_ptr<const l4::lb::lb_config>> build_lb(const config& c) const;
  // Builds and publishes a snapshot of cfg_ with the current backend health (any thread).
  common::result<void> republish();
  std::vector<upstream::health_target> health_targets(const config& c) const;
  static std::map<std::string, std::vector<bool>> health_map(
      const config& c, const std::vector<upstream::health_target>& targets);
  common::result<void> start_health_checks(std::vector<upstream::health_target> targets);
  void on_health_change(const upstream::health_change& ch);
  void announce();
  void install_routes();
  void install_drain_routes();  // edge/appliance_drain.cc
  drain_hooks make_drain_hooks();
  // Operator backend changes (edge/appliance_backend.cc); callers hold publish_mu_.
  void install_backend_routes();
  bool operator_disabled(const std::string& pool, const backend_config& b) const;
  std::shared_ptr<const config> effective_config() const;
  std::string backends_json() const;
  // WAF: compile the rules and bind the policies (publishes generation 1 through on_waf_rules).
  common::result<void> start_waf();
  void on_waf_rules(std::shared_ptr<const waf_rules_snapshot> s);
  // TLS: one context set per tls service, built from `c` (certificates and keys read now); sets of
  // the running config with the same service name are passed as `previous` (ticket key grace).
  common::result<std::map<std::string, tls::context_set_ptr>> build_tls(const config& c) const;

  std::shared_ptr<const config> cfg_;
  dataplane dp_;
  std::unique_ptr<snapshot_publisher> snapshots_;
  std::vector<std::unique_ptr<worker_context>> workers_;
  std::atomic<bool> stop_workers_{false};
  admin_server admin_;
  std::chrono::steady_clock::time_point started_;
  uint64_t generation_ = 0;
  uint64_t reloads_ok_ = 0, reloads_failed_ = 0;
  // Serialises snapshot publication between the admin API (reload) and the health checker.
  mutable std::mutex publish_mu_;
  std::shared_ptr<const l4::lb::lb_config> lb_;  // the published one, reused for Maglev sharing
  // Backend health by pool name and backend index; absent = healthy (no check configured).
  std::map<std::string, std::vector<bool>> healthy_;
  std::unique_ptr<upstream::health_checker> health_;
  bool started_ok_ = false;
  bool config_error_ = false;
  std::atomic<uint8_t> drain_phase_{0};     // what the workers see (0 accept, 1 refuse, 2 reset)
  std::unique_ptr<access_log> access_log_;  // null: logging.access_log unset; outlives the workers
  std::unique_ptr<drain_control> drain_;    // created at start (its hooks read workers_)
  struct backend_override {
    bool disabled = false;
    std::optional<uint32_t> weight;
  };
  std::map<std::string, backend_override> overrides_;  // "pool|addr:port"; guarded by publish_mu_
  uint64_t backend_changes_ = 0;
  // WAF (null without a service that has a policy). waf_rules_ is what republish() puts into the
  // snapshot; guarded by publish_mu_ (the rules watcher publishes from its own thread).
  std::unique_ptr<waf_control> waf_ctl_;
  std::shared_ptr<const waf_rules_snapshot> waf_rules_;
  std::unique_ptr<waf_audit_drainer> waf_audit_;
  std::vector<std::unique_ptr<waf_audit_ring>> waf_rings_;  // one per worker; outlive the workers
  // TLS: the in-process private-key offload (async on, no engine) and the published context sets
  // (guarded by publish_mu_ like waf_rules_).
  std::shared_ptr<tls::offload> tls_offload_;
  unsigned offload_threads_ = 0;  // crypto threads started (tls.offload_threads or its auto count)
  std::vector<installed_flow> steering_;  // workers.snat_steering: flow rules, removed at shutdown
  std::map<std::string, tls::context_set_ptr> tls_ctx_;
  std::vector<cert_expiry> cert_expiry_;  // of the served certificates (guarded by publish_mu_)
  // Per-service connection limits and counts (kinds tcp/tls), kept across reloads; the relays
  // point into it, so it outlives the workers.
  service_registry service_counters_;
  limits::state_registry
      limit_states_;  // limit tables and counters by limit name (rules directory)
};

}  // namespace edge
