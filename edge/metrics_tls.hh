#pragma once
// /metrics series of kind tls: the workers' TLS counters (handshakes, failures by reason, alerts
// sent by description, async offload) and the in-process offload's own counters.
#include <memory>
#include <string>
#include <vector>

#include "edge/config.hh"
#include "edge/prom_text.hh"
#include "tls/offload.hh"
#include "tls/worker.hh"

namespace edge {

void append_tls_metrics(prom_text::writer& out, const std::vector<const tls::worker*>& workers,
                        const tls::offload* off);

// When each served certificate expires: read from the leaf of every tls service's certificate
// files when the contexts are built (start, reload). `name`: the certificate's first configured
// SNI name, else its subject CN; an ECDSA and an RSA certificate of the same name give one series
// (the one that expires first).
struct cert_expiry {
  std::string service, name;
  int64_t not_after = 0;  // Unix time
};
std::vector<cert_expiry> read_cert_expiry(const config& c);
// edge_tls_certificate_expiry_seconds{service,name}: seconds from now until notAfter (negative
// once expired).
void append_cert_expiry_metrics(prom_text::writer& out, const std::vector<cert_expiry>& certs,
                                int64_t now);

}  // namespace edge
