#include "waf_metrics.hh"

#include <array>
#include <cstdio>

namespace edge {

namespace {

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const char* name, const std::string& labels, double v) {
  char num[64];
  std::snprintf(num, sizeof num, "%.17g", v);
  out += name;
  if (!labels.empty()) out += '{' + labels + '}';
  out += ' ';
  out += num;
  out += '\n';
}

// Label values come from config (service names) and rule error text: escape per the exposition
// format.
std::string label_value(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      o += '\\';
      o += c;
    } else if (c == '\n') {
      o += "\\n";
    } else {
      o += c;
    }
  }
  return o;
}

}  // namespace

void append_waf_metrics(std::string& out, const waf_metrics_sources& src) {
  // Worker counters, summed. The X-macro keeps the list in step with waf::worker_stats.
#define X(n)                                                                   \
  {                                                                            \
    uint64_t sum = 0;                                                          \
    for (const auto* w : src.workers) sum += w->n.get();                       \
    header(out, "edge_waf_" #n "_total", "counter", "WAF worker counter " #n); \
    sample(out, "edge_waf_" #n "_total", "", static_cast<double>(sum));        \
  }
  WAF_STATS(X)
#undef X
  header(out, "edge_waf_parse_errors_total", "counter",
         "HTTP requests refused by the parser, by reason");
  for (size_t e = 1; e < waf::http_error_count; ++e) {
    uint64_t sum = 0;
    for (const auto* w : src.workers) sum += w->parse_errors[e].get();
    sample(out, "edge_waf_parse_errors_total",
           std::string("reason=\"") + waf::to_string(static_cast<waf::http_error>(e)) + "\"",
           static_cast<double>(sum));
  }
  if (src.control != nullptr) {
    auto m = src.control->metrics();
    header(out, "edge_waf_reloads_total", "counter",
           "WAF rules loads by outcome (initial load included)");
    sample(out, "edge_waf_reloads_total", "outcome=\"ok\"", static_cast<double>(m.reloads_ok));
    sample(out, "edge_waf_reloads_total", "outcome=\"failed\"",
           static_cast<double>(m.reloads_failed));
    header(out, "edge_waf_rules_generation", "gauge", "Generation of the serving WAF rules");
    sample(out, "edge_waf_rules_generation", "", static_cast<double>(m.generation));
    header(out, "edge_waf_rules", "gauge", "Rules in the serving WAF rule set");
    sample(out, "edge_waf_rules", "", static_cast<double>(m.rules));
    header(out, "edge_waf_expressions", "gauge",
           "Hyperscan expressions in the serving WAF rule set");
    sample(out, "edge_waf_expressions", "", static_cast<double>(m.expressions));
    header(out, "edge_waf_last_compile_milliseconds", "gauge",
           "Load + compile time of the last rules (re)load");
    sample(out, "edge_waf_last_compile_milliseconds",
           "from_cache=\"" + std::string(m.last_from_cache ? "1" : "0") + "\"", m.last_compile_ms);
    header(out, "edge_waf_last_reload_error", "gauge",
           "1 while the last rules reload failed (label: its error)");
    sample(out, "edge_waf_last_reload_error",
           m.last_error.empty() ? std::string() : "error=\"" + label_value(m.last_error) + "\"",
           m.last_error.empty() ? 0 : 1);
  }
  if (src.audit != nullptr) {
    header(out, "edge_waf_rule_hits_total", "counter",
           "Audit entries by service, rule id and verdict");
    for (const auto& h : src.audit->rule_hits())
      sample(out, "edge_waf_rule_hits_total",
             "service=\"" + label_value(h.service) + "\",rule=\"" + std::to_string(h.rule_id) +
                 "\",verdict=\"" + to_string(h.verdict) + "\"",
             static_cast<double>(h.count));
    uint64_t dropped = 0;
    for (const auto* r : src.audit->rings()) dropped += r->dropped();
    header(out, "edge_waf_audit_dropped_total", "counter",
           "Audit entries dropped because a worker's ring was full");
    sample(out, "edge_waf_audit_dropped_total", "", static_cast<double>(dropped));
    header(out, "edge_waf_audit_written_total", "counter",
           "Audit entries written to the audit log");
    sample(out, "edge_waf_audit_written_total", "", static_cast<double>(src.audit->written()));
  }
}

}  // namespace edge
