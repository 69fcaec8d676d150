#include "edge/limits_metrics.hh"

#include <map>
#include <tuple>

#include "edge/prom_text.hh"

namespace edge {
namespace {

using prom_text::label_value;

}  // namespace

void append_limit_metrics(std::string& out, const limits::state_registry& reg) {
  struct sums {
    uint64_t v[4] = {};
    uint64_t evictions = 0, slots = 0;
  };
  std::map<std::tuple<std::string, std::string, std::string>, sums> lim, acl;
  for (size_t i = 0; i < reg.size(); ++i) {
    const limits::limit_state& st = reg.at(i);
    sums& s = (st.acl ? acl : lim)[{st.name, st.label2, st.label3}];
    s.v[0] += st.sum(&limits::limit_counts::allowed);
    s.v[1] += st.sum(&limits::limit_counts::limited);
    s.v[2] += st.sum(&limits::limit_counts::detected);
    s.v[3] += st.sum(&limits::limit_counts::untracked);
    if (st.table) {
      s.evictions += st.table->evictions();
      s.slots += st.table->capacity();
    }
  }
  static const char* const names[4] = {"allowed", "limited", "detected", "untracked"};
  static const char* const help[4] = {
#define X(n, d) d,
      LIMITS_COUNTERS(X)
#undef X
  };
  for (int k = 0; k < 4; ++k) {
    out += std::string("# HELP edge_limit_") + names[k] +
           "_total Rules-directory limits: " + help[k] + ".\n# TYPE edge_limit_" + names[k] +
           "_total counter\n";
    for (const auto& [key, s] : lim)
      out += std::string("edge_limit_") + names[k] + "_total{limit=\"" +
             label_value(std::get<0>(key)) + "\",scope=\"" + label_value(std::get<1>(key)) +
             "\",action=\"" + label_value(std::get<2>(key)) + "\"} " + std::to_string(s.v[k]) +
             "\n";
  }
  out +=
      "# HELP edge_limit_evictions_total Keys a limit's table forgot while they were not idle (the "
      "table was "
      "full).\n# TYPE edge_limit_evictions_total counter\n";
  for (const auto& [key, s] : lim)
    out += "edge_limit_evictions_total{limit=\"" + label_value(std::get<0>(key)) + "\"} " +
           std::to_string(s.evictions) + "\n";
  out +=
      "# HELP edge_limit_table_slots Keys a limit's table can hold (16 bytes each).\n"
      "# TYPE edge_limit_table_slots gauge\n";
  for (const auto& [key, s] : lim)
    out += "edge_limit_table_slots{limit=\"" + label_value(std::get<0>(key)) + "\"} " +
           std::to_string(s.slots) + "\n";
  out +=
      "# HELP edge_acl_denied_total Packets dropped by a service's CIDR allow/deny list (TCP "
      "segments; any packet to a kind l4 service), by the list "
      "that matched (default_deny: no prefix matched and the service has an allow list).\n"
      "# TYPE edge_acl_denied_total counter\n";
  for (const auto& [key, s] : acl)
    out += "edge_acl_denied_total{service=\"" + label_value(std::get<1>(key)) + "\",list=\"" +
           label_value(std::get<2>(key)) + "\"} " + std::to_string(s.v[1]) + "\n";
  out +=
      "# HELP edge_acl_allowed_total SYNs a service's CIDR list let in, by the list that matched.\n"
      "# TYPE edge_acl_allowed_total counter\n";
  for (const auto& [key, s] : acl)
    out += "edge_acl_allowed_total{service=\"" + label_value(std::get<1>(key)) + "\",list=\"" +
           label_value(std::get<2>(key)) + "\"} " + std::to_string(s.v[0]) + "\n";
}

}  // namespace edge
