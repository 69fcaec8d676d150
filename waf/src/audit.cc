// JSON rendering of an inspection result (audit log line, `edgectl waf eval` output). Control side.
#include "common/json.hh"
#include "waf/inspector.hh"

namespace waf {

std::string audit_json(const inspector& in, const verdict& v, std::string_view request_id) {
  std::string o = "{\"request_id\":";
  common::json_string(o, request_id);
  o += ",\"verdict\":";
  common::json_string(o, to_string(v.kind));
  if (v.kind == verdict_kind::block) o += ",\"status\":" + std::to_string(v.status);
  if (in.parse_error() != http_error::none) {
    o += ",\"parse_error\":";
    common::json_string(o, to_string(in.parse_error()));
  }
  o += ",\"detect_only\":";
  o += in.detect_only() ? "true" : "false";
  o += ",\"method\":";
  common::json_string(o, in.head().method);
  o += ",\"uri\":";
  common::json_string(o, in.head().target);
  o += ",\"anomaly_score\":" + std::to_string(in.anomaly_score());
  o += ",\"rule_ids\":[";
  bool first = true;
  for (const auto& m : in.matches()) {
    if (!first) o.push_back(',');
    first = false;
    o += std::to_string(m.rule_id);
  }
  o += "],\"matches\":[";
  first = true;
  for (const auto& m : in.matches()) {
    if (!first) o.push_back(',');
    first = false;
    o += "{\"rule_id\":" + std::to_string(m.rule_id) + ",\"variable\":";
    common::json_string(o, to_string(m.where));
    o += ",\"field\":";
    common::json_string(o, m.field_name());
    o += ",\"excerpt\":";
    common::json_string(o, m.excerpt_text());
    o += ",\"score\":" + std::to_string(m.score) + ",\"severity\":" + std::to_string(m.severity);
    if (m.blocking) o += ",\"blocking\":true";
    if (m.confirm_error) o += ",\"confirm_error\":true";
    o.push_back('}');
  }
  o += "]";
  if (in.engine_error()) o += ",\"engine_error\":true";
  if (in.matches_dropped()) o += ",\"matches_dropped\":" + std::to_string(in.matches_dropped());
  o.push_back('}');
  return o;
}

}  // namespace waf
