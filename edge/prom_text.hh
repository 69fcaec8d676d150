#pragma once
// Prometheus text exposition helpers for the metric writers that append to a string (TLS, WAF).
#include <cstdio>
#include <string>

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

}  // namespace edge::prom_text
