// The appliance's side of the graceful drain (edge/drain.hh): the workers' hooks, the control loop
// that ticks it, and its admin routes (POST /drain, POST /undrain, GET /drain, POST /announcer).
#include <spdlog/spdlog.h>

#include <optional>
#include <string>

#include "edge/appliance.hh"

namespace edge {

drain_hooks appliance::make_drain_hooks() {
  drain_hooks h;
  h.set_worker_phase = [this](uint8_t p) { drain_phase_.store(p, std::memory_order_release); };
  h.workers_at = [this](uint8_t p) {
    for (const auto& w : workers_)
      if (w->running.load() && w->drain_done.load(std::memory_order_acquire) < p) return false;
    return true;
  };
  h.open_connections = [this] {
    uint64_t n = 0;
    for (const auto& w : workers_) n += w->drain_open.load(std::memory_order_relaxed);
    return n;
  };
  h.reset_connections = [this] {
    uint64_t n = 0;
    for (const auto& w : workers_) n += w->drain_reset.load(std::memory_order_relaxed);
    return n;
  };
  h.any_tcp = false;
  for (const auto& w : workers_) h.any_tcp = h.any_tcp || w->tcp != nullptr;
  return h;
}

void appliance::run(const std::atomic<bool>& stop, std::atomic<bool>* reload_requested,
                    std::atomic<bool>* reopen_requested) {
  bool stop_seen = false;
  for (;;) {
    // Short polls while a drain runs: its steps are timed in milliseconds.
    admin_.poll_once(drain_ && drain_->draining() ? 10 : 100);
    if (reload_requested != nullptr && reload_requested->exchange(false)) {
      spdlog::info("SIGHUP: reloading {}", cfg_->path);
      (void)reload();  // logged and counted there, as for POST /reload
    }
    if (reopen_requested != nullptr && reopen_requested->exchange(false) && access_log_) {
      spdlog::info("SIGUSR1: reopening the access log {}", cfg_->logging.access_log);
      access_log_->request_reopen();
    }
    if (drain_ == nullptr) {
      if (stop.load()) return;
      continue;
    }
    if (stop.load() && !stop_seen) {
      stop_seen = true;
      drain_->begin(
          "SIGTERM", true,
          {.grace_ms = cfg_->shutdown.grace_ms, .timeout_ms = cfg_->shutdown.drain_timeout_ms},
          std::chrono::steady_clock::now());
    }
    drain_->tick(std::chrono::steady_clock::now());
    if (drain_->exit_ready()) return;
  }
}

void appliance::drain() {
  if (drain_ == nullptr || drain_->exit_ready()) return;
  drain_->begin(
      "stop", true,
      {.grace_ms = cfg_->shutdown.grace_ms, .timeout_ms = cfg_->shutdown.drain_timeout_ms},
      std::chrono::steady_clock::now());
  while (!drain_->exit_ready()) {
    admin_.poll_once(10);
    drain_->tick(std::chrono::steady_clock::now());
  }
}

namespace {

// A bounded non-negative integer from a query value; nullopt when malformed or above `max`.
std::optional<uint32_t> query_uint(const std::string& v, uint32_t max) {
  if (v.empty() || v.size() > 10) return std::nullopt;
  uint64_t n = 0;
  for (char ch : v) {
    if (ch < '0' || ch > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(ch - '0');
  }
  if (n > max) return std::nullopt;
  return static_cast<uint32_t>(n);
}

}  // namespace

void appliance::install_drain_routes() {
  // POST /drain[?exit=1][&grace_ms=N][&timeout_ms=N]: begins the drain (shutdown.* by default).
  admin_.route("POST", "/drain", [this](const http_request& r) {
    if (drain_ == nullptr) return http_response{503, "text/plain", "edged is starting\n"};
    drain_control::timing t{.grace_ms = cfg_->shutdown.grace_ms,
                            .timeout_ms = cfg_->shutdown.drain_timeout_ms};
    for (auto [key, field] :
         {std::pair{"grace_ms", &t.grace_ms}, std::pair{"timeout_ms", &t.timeout_ms}}) {
      const std::string v = query_param(r.query, key);
      if (v.empty()) continue;
      auto n = query_uint(v, 3600000);
      if (!n)
        return http_response{400, "text/plain", std::string(key) + ": want 0..3600000 (ms)\n"};
      *field = *n;
    }
    const std::string exit = query_param(r.query, "exit");
    if (!exit.empty() && exit != "0" && exit != "1")
      return http_response{400, "text/plain", "exit: want 0 or 1\n"};
    const auto now = std::chrono::steady_clock::now();
    const bool was = drain_->draining();
    drain_->begin("admin API", exit == "1", t, now);
    return http_response{was ? 200 : 202, "application/json", drain_->state_json(now) + "\n"};
  });
  admin_.route("POST", "/undrain", [this](const http_request&) {
    if (drain_ == nullptr) return http_response{503, "text/plain", "edged is starting\n"};
    const auto now = std::chrono::steady_clock::now();
    if (auto why = drain_->undrain(now); !why.empty())
      return http_response{409, "text/plain", "undrain refused: " + why + "\n"};
    return http_response{200, "application/json", drain_->state_json(now) + "\n"};
  });
  admin_.route("GET", "/drain", [this](const http_request&) {
    if (drain_ == nullptr) return http_response{503, "text/plain", "edged is starting\n"};
    return http_response{200, "application/json",
                         drain_->state_json(std::chrono::steady_clock::now()) + "\n"};
  });
  // The BGP announcer (edgectl bgp-announce) reports what it did: state=announced|withdrawn.
  admin_.route("POST", "/announcer", [this](const http_request& r) {
    if (drain_ == nullptr) return http_response{503, "text/plain", "edged is starting\n"};
    const std::string st = query_param(r.query, "state");
    if (st != "announced" && st != "withdrawn")
      return http_response{400, "text/plain", "state: want announced or withdrawn\n"};
    drain_->announcer_report(st == "announced", std::chrono::steady_clock::now());
    return http_response{200, "text/plain", "ok\n"};
  });
}

}  // namespace edge
