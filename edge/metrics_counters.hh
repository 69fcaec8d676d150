#pragma once
// /metrics families of the per-worker counters that the L4 components declare in their .def
// tables (l4/tcp/counters.def, l4/lb/counters.def): name, type and help come from the table, so
// a counter added there is exported without a line here.
#include <span>
#include <string>

#include "common/counter.hh"
#include "edge/prom_text.hh"
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
void append_counter_families(std::string& out, std::span<const counter_family<Counters>> families,
                             std::span<const Counters* const> per_worker) {
  for (const auto& f : families) {
    uint64_t v = 0;
    for (const Counters* c : per_worker) v += (c->*f.field).get();
    prom_text::header(out, f.name, f.type, f.help);
    prom_text::sample_u64(out, f.name, "", v);
  }
}

}  // namespace edge
