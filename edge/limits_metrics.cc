#include "edge/limits_metrics.hh"

#include <map>
#include <tuple>

namespace edge {

void append_limit_metrics(prom_text::writer& out, const limits::state_registry& reg) {
  // One family per LIMITS_COUNTERS row, its help from the table.
  struct counter_row {
    const char* name;
    const char* help;
    common::counter limits::limit_counts::*field;
  };
  static constexpr counter_row rows[] = {
#define X(n, d) \
  {"edge_limit_" #n "_total", "Rules-directory limits: " d ".", &limits::limit_counts::n},
      LIMITS_COUNTERS(X)
#undef X
  };
  constexpr size_t n_rows = std::size(rows);
  struct sums {
    uint64_t v[n_rows] = {};
    uint64_t evictions = 0, slots = 0;
  };
  std::map<std::tuple<std::string, std::string, std::string>, sums> lim, acl;
  for (size_t i = 0; i < reg.size(); ++i) {
    const limits::limit_state& st = reg.at(i);
    sums& s = (st.acl ? acl : lim)[{st.name, st.label2, st.label3}];
    for (size_t k = 0; k < n_rows; ++k) s.v[k] += st.sum(rows[k].field);
    if (st.table) {
      s.evictions += st.table->evictions();
      s.slots += st.table->capacity();
    }
  }
  for (size_t k = 0; k < n_rows; ++k) {
    out.family(rows[k].name, "counter", rows[k].help);
    for (const auto& [key, s] : lim)
      out.sample(
          {{"limit", std::get<0>(key)}, {"scope", std::get<1>(key)}, {"action", std::get<2>(key)}},
          s.v[k]);
  }
  out.family("edge_limit_evictions_total", "counter",
             "Keys a limit's table forgot while they were not idle (the table was full).");
  for (const auto& [key, s] : lim) out.sample({{"limit", std::get<0>(key)}}, s.evictions);
  out.family("edge_limit_table_slots", "gauge", "Keys a limit's table can hold (16 bytes each).");
  for (const auto& [key, s] : lim) out.sample({{"limit", std::get<0>(key)}}, s.slots);

  // ACL lists count denials as `limited` and the sources an allow list let in as `allowed`.
  auto row_of = [&](common::counter limits::limit_counts::*field) {
    size_t k = 0;
    while (rows[k].field != field) ++k;
    return k;
  };
  const size_t denied = row_of(&limits::limit_counts::limited);
  const size_t allowed = row_of(&limits::limit_counts::allowed);
  out.family("edge_acl_denied_total", "counter",
             "Packets dropped by a service's CIDR allow/deny list (TCP segments; any packet to a "
             "kind l4 service), by the list that matched (default_deny: no prefix matched and the "
             "service has an allow list).");
  for (const auto& [key, s] : acl)
    out.sample({{"service", std::get<1>(key)}, {"list", std::get<2>(key)}}, s.v[denied]);
  out.family("edge_acl_allowed_total", "counter",
             "SYNs a service's CIDR list let in, by the list that matched.");
  for (const auto& [key, s] : acl)
    out.sample({{"service", std::get<1>(key)}, {"list", std::get<2>(key)}}, s.v[allowed]);
}

}  // namespace edge
