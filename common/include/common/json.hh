#pragma once
// The one JSON string escaper (log lines, access log, WAF audit records, `edgectl waf eval`).
#include <cstdio>
#include <string>
#include <string_view>

namespace common {

// What happens to bytes 0x7f and above. Attacker bytes are often not UTF-8: records that carry
// them (access log, audit) keep the output ASCII; log messages keep UTF-8 text readable.
enum class json_bytes : bool { keep_utf8, ascii };

// Appends `s` escaped for use inside a JSON string (no quotes): `"` and `\` and the short forms
// \n \r \t, every other control byte (and with json_bytes::ascii every byte >= 0x7f) as \u00XX.
inline void json_escape_to(std::string& out, std::string_view s,
                           json_bytes mode = json_bytes::ascii) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || (mode == json_bytes::ascii && c >= 0x7f)) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += ch;
        }
    }
  }
}

inline std::string json_escape(std::string_view s, json_bytes mode = json_bytes::ascii) {
  std::string out;
  out.reserve(s.size() + 8);
  json_escape_to(out, s, mode);
  return out;
}

// Appends `s` as a quoted JSON string.
inline void json_string(std::string& out, std::string_view s, json_bytes mode = json_bytes::ascii) {
  out += '"';
  json_escape_to(out, s, mode);
  out += '"';
}

}  // namespace common
