#pragma once
// /metrics series of kind tls: the workers' TLS counters (handshakes, failures by reason, alerts
// sent by description, async offload) and the in-process offload's own counters.
#include <memory>
#include <string>
#include <vector>

#include "tls/offload.hh"
#include "tls/worker.hh"

namespace edge {

void append_tls_metrics(std::string& out, const std::vector<const tls::worker*>& workers, const tls::offload* off);

}  // namespace edge
