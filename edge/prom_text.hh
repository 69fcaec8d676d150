#pragma once
// Prometheus text exposition helpers shared by every metric writer (/metrics, TLS, WAF, limits).
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace edge::prom_text {

inline void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

inline void sample(std::string& out, const char* name, const std::string& labels, double v) {
  char num[64];
  std::snprintf(num, sizeof num, "%.17g", v);
  out += name;
  if (!labels.empty()) out += '{' + labels + '}';
  out += ' ';
  out += num;
  out += '\n';
}

inline void sample_u64(std::string& out, const char* name, const std::string& labels, uint64_t v) {
  char num[32];
  std::snprintf(num, sizeof num, "%" PRIu64, v);
  out += name;
  if (!labels.empty()) out += '{' + labels + '}';
  out += ' ';
  out += num;
  out += '\n';
}

// A label value escaped per the exposition format: backslash, double quote and line feed. Every
// writer escapes every value it did not write itself (names from config, rule error text, ...).
inline std::string label_value(std::string_view v) {
  std::string o;
  o.reserve(v.size());
  for (const char c : v) {
    if (c == '\\' || c == '"') {
      o += '\\';
      o += c;
    } else if (c == '\n') {
      o += "\\n";
    } else {
      o += c;
    }
  }
  return o;
}

// `name="value"`, the value escaped.
inline std::string label(std::string_view name, std::string_view value) {
  std::string o(name);
  o += "=\"";
  o += label_value(value);
  o += '"';
  return o;
}

}  // namespace edge::prom_text
