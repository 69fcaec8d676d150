#pragma once
// WAF control plane: compiles the rules directory, binds each service's policy to the result, and
// hands the pair to a publish callback (the appliance puts it into its RCU snapshot). Then it
// watches the directory with inotify on a thread of its own: a change (debounced) is recompiled in
// the background through the database cache; success publishes, failure logs file:line and keeps
// serving the previous rules. Workers are never touched from here.
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hh"
#include "limits/set.hh"
#include "waf/policy.hh"
#include "waf/ruleset.hh"

namespace edge {

struct waf_service_policy {
  std::string service;
  // Either a policy file (re-read at every reload) or an inline YAML block (e.g. from the main
  // config); `where` names its file for diagnostics.
  std::string policy_file;
  YAML::Node node;
  std::string where;
};

struct waf_control_config {
  std::string rules_dir;
  std::string cache_dir;  // empty: no database cache
  std::vector<waf_service_policy> services;
  std::chrono::milliseconds debounce{200};
  // Limit files (*.limits.yaml, *.cidr) of the same directory are loaded with the rules and
  // published with them; a bad one fails the whole reload like a bad rule. With a registry they are
  // also compiled (ACL tables need the EAL); without one (edged --check) only validated.
  limits::state_registry* limit_registry = nullptr;
  // false when no service has a WAF policy: only the limit files are loaded, watched and published
  // (the snapshot's rules stay null), so that limits and ACLs do not depend on a WAF.
  bool compile_rules = true;
  // Run on every loaded limits_config before it is built: refuses limits a named service cannot
  // enforce (edge/limit_targets.hh) and marks the services that take only named limits.
  std::function<common::result<void>(limits::limits_config&)> check_limits;
};

// What one successful (re)load produced. Immutable once published.
struct waf_rules_snapshot {
  std::shared_ptr<const waf::ruleset> rules;  // null when only limits are loaded (compile_rules)
  std::map<std::string, std::shared_ptr<const waf::bound_policy>, std::less<>>
      policies;  // by service
  // Limits and ACLs of this generation (null when only validated, see limit_registry).
  std::shared_ptr<const limits::limit_set> limits;
  size_t limit_files = 0;
  uint64_t generation = 0;  // 1 for the initial load, +1 per publish
  bool same_rules = false;  // the rules hash equals the previous generation's (e.g. touched file)

  std::shared_ptr<const waf::bound_policy> policy_for(std::string_view service) const {
    auto it = policies.find(service);
    return it == policies.end() ? nullptr : it->second;
  }
};

struct waf_control_metrics {
  uint64_t reloads_ok = 0;      // initial load included
  uint64_t reloads_failed = 0;  // initial failure included
  uint64_t watch_events = 0;    // inotify events seen (before debouncing)
  double last_compile_ms = 0;   // load + compile (+ bind) of the last attempt
  double compile_ms_total = 0;  // of every attempt, failed ones included
  double last_reload_ms = 0;    // last successful one, from start to its publication returning
  double reload_ms_total = 0;   // of every successful one
  bool last_from_cache = false;
  uint64_t cache_rejected = 0;  // cache entries found but not trusted (other rules, corrupt, ...)
  uint64_t cache_store_failed = 0;
  size_t rules = 0;        // rules in the serving set
  size_t expressions = 0;  // Hyperscan expressions in the serving set
  uint64_t generation = 0;
  std::string last_error;  // "file:line:col: rule ID: message" of the last failure, or empty
};

class waf_control {
 public:
  using publish_fn = std::function<void(std::shared_ptr<const waf_rules_snapshot>)>;

  // Loads and compiles synchronously, binds every policy and publishes generation 1 (on the
  // caller's thread) before returning. An error here names file:line:col and the rule id.
  static common::result<std::unique_ptr<waf_control>> create(waf_control_config cfg,
                                                             publish_fn publish);
  ~waf_control();
  waf_control(const waf_control&) = delete;
  waf_control& operator=(const waf_control&) = delete;

  // Starts the inotify watcher thread (IN_CLOSE_WRITE, IN_MOVED_TO, IN_MOVED_FROM, IN_DELETE,
  // IN_CREATE on rules_dir); events are debounced, then reload() runs on that thread. The watch
  // itself is set up by create(), so changes made in between are not missed.
  common::result<void> start_watching();
  void stop();  // joins the watcher; safe to call twice

  // Reloads now (POST /reload; the watcher calls it too). On success publishes and returns the
  // generation; on failure keeps the serving set, counts, logs and returns the error.
  common::result<uint64_t> reload();

  std::shared_ptr<const waf_rules_snapshot> current() const;
  waf_control_metrics metrics() const;

 private:
  explicit waf_control(waf_control_config cfg, publish_fn publish);
  common::result<std::shared_ptr<waf_rules_snapshot>> build();
  common::result<void> open_watch();
  void watch_loop();

  waf_control_config cfg_;
  publish_fn publish_;
  mutable std::mutex mu_;  // guards current_ and metrics_
  std::mutex reload_mu_;   // one reload at a time (watcher vs. POST /reload)
  std::shared_ptr<const waf_rules_snapshot> current_;
  waf_control_metrics metrics_;
  int inotify_fd_ = -1, wake_fd_ = -1, wd_ = -1;
  std::thread watcher_;
};

}  // namespace edge
