// JSON rendering of an inspection result (audit log line, `edgectl waf eval` output). Control side.
#include <cstdio>

#include "waf/inspector.hh"

namespace waf {
namespace {

void json_str(std::string& o, std::string_view s) {
  o.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\r':
        o += "\\r";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (c < 0x20 ||
            c >= 0x7f) {  // keep the output ASCII: raw bytes of attacks are often not UTF-8
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o.push_back(static_cast<char>(c));
        }
    }
  }
  o.push_back('"');
}

}  // namespace

std::string audit_json(const inspector& in, const verdict& v, std::string_view request_id) {
  std::string o = "{\"request_id\":";
  json_str(o, request_id);
  o += ",\"verdict\":";
  json_str(o, to_string(v.kind));
  if (v.kind == verdict_kind::block) o += ",\"status\":" + std::to_string(v.status);
  if (in.parse_error() != http_error::none) {
    o += ",\"parse_error\":";
    json_str(o, to_string(in.parse_error()));
  }
  o += ",\"detect_only\":";
  o += in.detect_only() ? "true" : "false";
  o += ",\"method\":";
  json_str(o, in.head().method);
  o += ",\"uri\":";
  json_str(o, in.head().target);
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
    json_str(o, to_string(m.where));
    o += ",\"field\":";
    json_str(o, m.field_name());
    o += ",\"excerpt\":";
    json_str(o, m.excerpt_text());
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
