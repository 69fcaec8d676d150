#include "waf_metrics.hh"

#include <map>

namespace edge {

void append_waf_service_metrics(prom_text::writer& out,
                                std::span<const waf_worker* const> workers) {
  if (workers.empty()) return;
  // Summed over workers by service name (each worker numbers its services in its own order).
  struct svc {
    uint64_t inspected = 0, blocked = 0, detected = 0;
  };
  std::map<std::string, svc, std::less<>> by_service;
  std::map<std::pair<std::string, uint32_t>, uint64_t> matches;
  uint64_t full = 0, services_full = 0;
  for (const waf_worker* w : workers) {
    const size_t n = w->services();
    for (size_t i = 0; i < n; ++i) {
      svc& s = by_service[std::string(w->service_name(i))];
      s.inspected += w->service_stats(i).inspected.get();
      s.blocked += w->service_stats(i).blocked.get();
      s.detected += w->service_stats(i).detected.get();
    }
    w->rule_counts().visit([&](uint16_t service, uint32_t rule, uint64_t count) {
      if (service < n) matches[{std::string(w->service_name(service)), rule}] += count;
    });
    full += w->rule_counts().full();
    services_full += w->services_full();
  }
  struct family {
    const char* name;
    const char* help;
    uint64_t svc::*field;
  };
  static constexpr family families[] = {
      {"edge_waf_service_inspected_total",
       "Requests inspected by service (raw services: connections)", &svc::inspected},
      {"edge_waf_service_blocked_total",
       "Requests blocked by service (403/400/413, or RST on raw services)", &svc::blocked},
      {"edge_waf_service_detected_total",
       "Requests that matched rules without being blocked, by service", &svc::detected},
  };
  for (const auto& f : families) {
    out.family(f.name, "counter", f.help);
    for (const auto& [name, s] : by_service) out.sample({{"service", name}}, s.*f.field);
  }
  out.family("edge_waf_rule_matches_total", "counter", "Rule matches by service and rule id");
  for (const auto& [key, count] : matches)
    out.sample({{"service", key.first}, {"rule", std::to_string(key.second)}}, count);
  out.family("edge_waf_rule_matches_uncounted_total", "counter",
             "Rule matches not counted by rule: a worker's table of (service, rule) keys or "
             "services was full");
  out.sample(full + services_full);
}

void append_waf_metrics(prom_text::writer& out, const waf_metrics_sources& src) {
  // Worker counters, summed; one family per WAF_STATS row.
  struct counter_row {
    const char* name;
    const char* help;
    common::counter waf::worker_stats::*field;
  };
  static constexpr counter_row rows[] = {
#define X(n) {"edge_waf_" #n "_total", "WAF worker counter " #n, &waf::worker_stats::n},
      WAF_STATS(X)
#undef X
  };
  for (const counter_row& r : rows) {
    uint64_t sum = 0;
    for (const auto* w : src.workers) sum += (w->*r.field).get();
    out.family(r.name, "counter", r.help);
    out.sample(sum);
  }
  out.family("edge_waf_parse_errors_total", "counter",
             "HTTP requests refused by the parser, by reason");
  for (size_t e = 1; e < waf::http_error_count; ++e) {
    uint64_t sum = 0;
    for (const auto* w : src.workers) sum += w->parse_errors[e].get();
    out.sample({{"reason", waf::to_string(static_cast<waf::http_error>(e))}}, sum);
  }
  out.family("edge_waf_body_errors_total", "counter",
             "Request bodies their processor could not parse, by reason");
  for (size_t e = 1; e < waf::body_error_count; ++e) {
    uint64_t sum = 0;
    for (const auto* w : src.workers) sum += w->body_errors[e].get();
    out.sample({{"reason", waf::to_string(static_cast<waf::body_error>(e))}}, sum);
  }
  if (src.control != nullptr) {
    auto m = src.control->metrics();
    out.family("edge_waf_reloads_total", "counter",
               "WAF rules loads by outcome (initial load included)");
    out.sample({{"outcome", "ok"}}, m.reloads_ok);
    out.sample({{"outcome", "failed"}}, m.reloads_failed);
    out.family("edge_waf_rules_generation", "gauge", "Generation of the serving WAF rules");
    out.sample(m.generation);
    out.family("edge_waf_rules", "gauge", "Rules in the serving WAF rule set");
    out.sample(m.rules);
    out.family("edge_waf_expressions", "gauge",
               "Hyperscan expressions in the serving WAF rule set");
    out.sample(m.expressions);
    out.family("edge_waf_last_compile_milliseconds", "gauge",
               "Load + compile time of the last rules (re)load");
    out.sample({{"from_cache", m.last_from_cache ? "1" : "0"}}, m.last_compile_ms);
    out.family(
        "edge_waf_cache_rejected_total", "counter",
        "Compiled-database cache entries ignored (other rules, Hyperscan version or platform, "
        "checksum, owner or mode) and rebuilt");
    out.sample(m.cache_rejected);
    out.family("edge_waf_cache_store_failed_total", "counter",
               "Compiled databases that could not be written to the cache");
    out.sample(m.cache_store_failed);
    out.family("edge_waf_compile_seconds_total", "counter",
               "Time spent loading and compiling rules (every attempt, failed ones included)");
    out.sample(m.compile_ms_total / 1000.0);
    out.family("edge_waf_last_reload_milliseconds", "gauge",
               "Last successful rules (re)load: compile, bind and publication to the workers");
    out.sample(m.last_reload_ms);
    out.family("edge_waf_reload_seconds_total", "counter",
               "Time of every successful rules (re)load, compile to publication");
    out.sample(m.reload_ms_total / 1000.0);
    out.family("edge_waf_last_reload_error", "gauge",
               "1 while the last rules reload failed (label: its error)");
    if (m.last_error.empty())
      out.sample(0);
    else
      out.sample({{"error", m.last_error}}, 1);
  }
  append_waf_service_metrics(out, src.worker_state);
  if (src.audit != nullptr) {
    out.family("edge_waf_rule_hits_total", "counter",
               "Audit entries by service, rule id and verdict");
    for (const auto& h : src.audit->rule_hits())
      out.sample({{"service", h.service},
                  {"rule", std::to_string(h.rule_id)},
                  {"verdict", to_string(h.verdict)}},
                 h.count);
    uint64_t dropped = 0;
    for (const auto* r : src.audit->rings()) dropped += r->dropped();
    out.family("edge_waf_audit_dropped_total", "counter",
               "Audit entries dropped because a worker's ring was full");
    out.sample(dropped);
    out.family("edge_waf_audit_written_total", "counter", "Audit entries written to the audit log");
    out.sample(src.audit->written());
  }
}

}  // namespace edge
