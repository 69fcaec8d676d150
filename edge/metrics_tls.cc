#include "edge/metrics_tls.hh"

#include "prom_text.hh"

#include <array>
#include <cctype>

namespace edge {
namespace {

void family(std::string& out, const char* name, const char* type, const char* help) {
  prom_text::header(out, name, type, help);
}

void sample(std::string& out, const char* name, const std::string& labels, uint64_t v) {
  prom_text::sample(out, name, labels, static_cast<double>(v));
}

// "handshake failure" -> "handshake_failure"
std::string alert_label(uint8_t desc) {
  std::string s = tls::worker::alert_name(desc);
  for (char& c : s) c = std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  return s;
}

}  // namespace

void append_tls_metrics(std::string& out, const std::vector<const tls::worker*>& workers, const tls::offload* off) {
  if (workers.empty()) return;
  struct counter_def {
    const char* name;
    const char* help;
    common::counter tls::worker_stats::*field;
  };
  using ws = tls::worker_stats;
  static constexpr counter_def defs[] = {
#define TLS_X(n, text) {"edge_tls_" #n "_total", text, &ws::n},
      TLS_WORKER_COUNTERS(TLS_X)
#undef TLS_X
  };
  for (const auto& d : defs) {
    uint64_t v = 0;
    for (const auto* w : workers) v += (w->stats().*d.field).get();
    family(out, d.name, "counter", d.help);
    sample(out, d.name, "", v);
  }
  uint64_t open = 0, pending = 0;
  for (const auto* w : workers) {
    open += w->open_sessions();
    pending += w->async_pending();
  }
  family(out, "edge_tls_sessions_active", "gauge", "TLS sessions open now (incl. closes deferred for the offload).");
  sample(out, "edge_tls_sessions_active", "", open);
  family(out, "edge_tls_async_pending", "gauge", "Handshakes waiting for an offloaded private-key operation now.");
  sample(out, "edge_tls_async_pending", "", pending);

  family(out, "edge_tls_errors_total", "counter", "TLS sessions failed, by reason.");
  for (size_t r = 1; r < tls::error_reason_count; ++r) {
    uint64_t v = 0;
    for (const auto* w : workers) v += w->stats().errors[r].get();
    sample(out, "edge_tls_errors_total", std::string("reason=\"") + tls::to_string(static_cast<tls::error_reason>(r)) + "\"", v);
  }
  // Alerts by description; only those sent at least once (256 possible codes, a dozen in use).
  family(out, "edge_tls_alerts_sent_total", "counter", "TLS alerts sent to clients, by description.");
  for (size_t a = 0; a < 256; ++a) {
    uint64_t v = 0;
    for (const auto* w : workers) v += w->stats().alerts_sent[a].get();
    if (v != 0) sample(out, "edge_tls_alerts_sent_total", "alert=\"" + alert_label(static_cast<uint8_t>(a)) + "\"", v);
  }
  if (off != nullptr) {
    family(out, "edge_tls_offload_completed_total", "counter", "Private-key operations run by the offload threads.");
    sample(out, "edge_tls_offload_completed_total", "", off->completed());
    family(out, "edge_tls_offload_inline_total", "counter", "Private-key operations signed in place: offload queue full.");
    sample(out, "edge_tls_offload_inline_total", "", off->inline_fallbacks());
    family(out, "edge_tls_offload_in_flight", "gauge", "Private-key operations queued or running in the offload.");
    sample(out, "edge_tls_offload_in_flight", "", off->in_flight());
    family(out, "edge_tls_offload_cpu_nanoseconds_total", "counter", "CPU time of the offload threads.");
    sample(out, "edge_tls_offload_cpu_nanoseconds_total", "", off->cpu_ns());
  }
}

}  // namespace edge
