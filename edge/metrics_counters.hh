#pragma once
// /metrics families of the per-worker counters that the L4 components declare in their .def
// tables (l4/tcp/counters.def, l4/lb/counters.def) and of the relay's (EDGE_RELAY_ENDS): name,
// type and help come from the table, so a counter added there is exported without a line here.
#include <span>

#include "common/counter.hh"
#include "edge/prom_text.hh"
#include "edge/relay.hh"
#include "l4/lb/forward.hh"
#include "l4/tcp/stack.hh"

namespace edge {

template <class Counters>
struct counter_family {
  const char* name;
  const char* type;
  const char* help;
  common::counter Counters::*field;
};

inline constexpr counter_family<l4::tcp::counters> tcp_counter_families[] = {
#define X(field, type, metric, help) {metric, #type, help, &l4::tcp::counters::field},
#include "l4/tcp/counters.def"
#undef X
};

inline constexpr counter_family<l4::lb::lb_counters> lb_counter_families[] = {
#define X(field, type, metric, help) {metric, #type, help, &l4::lb::lb_counters::field},
#include "l4/lb/counters.def"
#undef X
};

// One family per table row, its one sample the sum over `per_worker`.
template <class Counters>
void append_counter_families(prom_text::writer& w,
                             std::span<const counter_family<Counters>> families,
                             std::span<const Counters* const> per_worker) {
  for (const auto& f : families) {
    uint64_t v = 0;
    for (const Counters* c : per_worker) v += (c->*f.field).get();
    w.family(f.name, f.type, f.help);
    w.sample(v);
  }
}

// The relay's counters summed over workers; edge_relay_ends_total has one sample per
// EDGE_RELAY_ENDS row.
inline void append_relay_families(prom_text::writer& w,
                                  std::span<const relay_counters* const> per_worker) {
  auto sum = [&](const common::counter relay_counters::*field) {
    uint64_t v = 0;
    for (const relay_counters* c : per_worker) v += (c->*field).get();
    return v;
  };
  w.family("edge_relay_active", "gauge", "Client connections relayed to an upstream now.");
  w.sample(sum(&relay_counters::active));
  w.family("edge_relay_accepted_total", "counter",
           "Client connections accepted by the relay (HTTP services open the upstream after the "
           "first head).");
  w.sample(sum(&relay_counters::accepted));
  w.family("edge_relay_bytes_total", "counter", "Bytes relayed, by direction.");
  w.sample({{"direction", "client_to_upstream"}}, sum(&relay_counters::bytes_from_client));
  w.sample({{"direction", "upstream_to_client"}}, sum(&relay_counters::bytes_to_client));
  w.family("edge_relay_ends_total", "counter", "Relayed connections ended, by outcome.");
  for (size_t r = 0; r < relay_end_count; ++r) {
    uint64_t v = 0;
    for (const relay_counters* c : per_worker) v += c->ends[r].get();
    w.sample({{"outcome", relay_end_names[r]}}, v);
  }
  w.family("edge_relay_connections", "gauge",
           "Relayed connections by state (edge/relay.hh relay_state; ended: awaiting the end of "
           "the event that ended them).");
  for (size_t st = 0; st < relay_state_count; ++st) {
    if (static_cast<relay_state>(st) == relay_state::free) continue;
    uint64_t v = 0;
    for (const relay_counters* c : per_worker) v += c->states[st].get();
    w.sample({{"state", relay_state_names[st]}}, v);
  }
  w.family("edge_relay_bad_moves_total", "counter",
           "State moves outside relay_state_moves, refused (a bug: report it).");
  w.sample(sum(&relay_counters::bad_moves));
}

}  // namespace edge
