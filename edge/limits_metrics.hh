#pragma once
// /metrics for the rules directory's limits and ACLs: allowed, limited and detected by limit name,
// scope and action; denials by service and list. Summed over workers from limits::state_registry.
#include <string>

#include "edge/prom_text.hh"
#include "limits/set.hh"

namespace edge {

void append_limit_metrics(prom_text::writer& out, const limits::state_registry& reg);

}  // namespace edge
