#pragma once
// Prometheus text for the WAF: worker counters summed over workers, HTTP parse errors by reason,
// rules reloads and compile figures, audit entries by service/rule/verdict and audit drops.
// Control side (allocates); the appliance appends it to its /metrics body.
#include <span>
#include <string>

#include "edge/prom_text.hh"
#include "waf/inspector.hh"
#include "waf_audit.hh"
#include "waf_conn.hh"
#include "waf_control.hh"

namespace edge {

struct waf_metrics_sources {
  const waf_control* control = nullptr;  // reloads, compile ms, rules count, last error
  std::span<const waf::worker_stats* const> workers;  // one per worker (waf_worker::stats())
  const waf_audit_drainer* audit = nullptr;           // per-rule hits and ring drops
  // One per worker: per-service requests and per-rule matches (summed by service name).
  std::span<const waf_worker* const> worker_state;
};

void append_waf_metrics(prom_text::writer& out, const waf_metrics_sources& src);
// The per-service and per-rule part (append_waf_metrics includes it).
void append_waf_service_metrics(prom_text::writer& out, std::span<const waf_worker* const> workers);

}  // namespace edge
