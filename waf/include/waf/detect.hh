#pragma once
// libinjection's detectors (ModSecurity's @detectSQLi / @detectXSS). Debian ships no libinjection
// package; libmodsecurity3 exports libinjection_sqli and libinjection_xss (libinjection 3.9 as
// bundled in ModSecurity 3.0.x). The meson option `libinjection` picks how edge gets them:
// `dlopen` (default: libmodsecurity.so.3 is opened once, on the control thread, when a rule set
// first needs a detector; no build dependency), `link` (linked at build time), or `disabled`
// (rules using the detectors are refused with that reason). See rules/README.md.
#include <cstddef>
#include <string>
#include <string_view>

namespace waf {

// Loads the detectors if the build allows it; idempotent and thread-safe. Call off the data path
// (ruleset::compile does). False: not available, *why says why.
bool libinjection_load(std::string* why = nullptr);
// After a successful libinjection_load(): the detectors. fingerprint receives libinjection's
// token fingerprint (at most 5 chars + NUL) when non-null.
bool detect_sqli(std::string_view s, char* fingerprint = nullptr);
bool detect_xss(std::string_view s);

}  // namespace waf
