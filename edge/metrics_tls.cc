#include "edge/metrics_tls.hh"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <ctime>

namespace edge {
namespace {

// "handshake failure" -> "handshake_failure"
std::string alert_label(uint8_t desc) {
  std::string s = tls::worker::alert_name(desc);
  for (char& c : s)
    c = std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  return s;
}

}  // namespace

void append_tls_metrics(prom_text::writer& out, const std::vector<const tls::worker*>& workers,
                        const tls::offload* off) {
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
    out.family(d.name, "counter", d.help);
    out.sample(v);
  }
  uint64_t open = 0, pending = 0;
  for (const auto* w : workers) {
    open += w->open_sessions();
    pending += w->async_pending();
  }
  out.family("edge_tls_sessions_active", "gauge",
             "TLS sessions open now (incl. closes deferred for the offload).");
  out.sample(open);
  out.family("edge_tls_async_pending", "gauge",
             "Handshakes waiting for an offloaded private-key operation now.");
  out.sample(pending);

  out.family("edge_tls_errors_total", "counter", "TLS sessions failed, by reason.");
  for (size_t r = 1; r < tls::error_reason_count; ++r) {
    uint64_t v = 0;
    for (const auto* w : workers) v += w->stats().errors[r].get();
    out.sample({{"reason", tls::to_string(static_cast<tls::error_reason>(r))}}, v);
  }
  // Alerts by description; only those sent at least once (256 possible codes, a dozen in use).
  out.family("edge_tls_alerts_sent_total", "counter",
             "TLS alerts sent to clients, by description.");
  for (size_t a = 0; a < 256; ++a) {
    uint64_t v = 0;
    for (const auto* w : workers) v += w->stats().alerts_sent[a].get();
    if (v != 0) out.sample({{"alert", alert_label(static_cast<uint8_t>(a))}}, v);
  }
  if (off != nullptr) {
    out.family("edge_tls_offload_completed_total", "counter",
               "Private-key operations run by the offload threads.");
    out.sample(off->completed());
    out.family("edge_tls_offload_inline_total", "counter",
               "Private-key operations signed in place: offload queue full.");
    out.sample(off->inline_fallbacks());
    out.family("edge_tls_offload_threads", "gauge",
               "Crypto threads of the offload (tls.offload_threads, or its auto count).");
    out.sample(off->thread_count());
    out.family("edge_tls_offload_in_flight", "gauge",
               "Private-key operations queued or running in the offload.");
    out.sample(off->in_flight());
    out.family("edge_tls_offload_cpu_nanoseconds_total", "counter",
               "CPU time of the offload threads.");
    out.sample(off->cpu_ns());
  }
}

}  // namespace edge

namespace edge {

std::vector<cert_expiry> read_cert_expiry(const config& c) {
  std::vector<cert_expiry> out;
  for (const auto& s : c.services) {
    if (s.kind != service_kind::tls) continue;
    for (const auto& cc : s.tls.certs) {
      FILE* f = std::fopen(cc.cert_file.c_str(), "r");
      if (f == nullptr) continue;
      X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
      std::fclose(f);
      if (x == nullptr) continue;
      std::tm tm{};
      const bool ok = ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1;
      std::string name = cc.names.empty() ? std::string() : cc.names.front();
      if (name.empty()) {
        char cn[256] = {};
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0)
          name = cn;
      }
      X509_free(x);
      if (!ok) continue;
      const int64_t not_after = static_cast<int64_t>(timegm(&tm));
      bool merged = false;
      for (auto& e : out)
        if (e.service == s.name && e.name == name) {
          e.not_after = std::min(e.not_after, not_after);
          merged = true;
        }
      if (!merged) out.push_back({s.name, name, not_after});
    }
  }
  return out;
}

void append_cert_expiry_metrics(prom_text::writer& out, const std::vector<cert_expiry>& certs,
                                int64_t now) {
  if (certs.empty()) return;
  out.family(
      "edge_tls_certificate_expiry_seconds", "gauge",
      "Seconds until the served certificate's notAfter (negative: expired), by service and name.");
  for (const auto& e : certs)
    out.sample({{"service", e.service}, {"name", e.name}}, e.not_after - now);
}

}  // namespace edge
