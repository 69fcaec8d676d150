#pragma once
// Checks on peer-chosen names before they leave tls/ (PROXY v2 authority and SSL CN TLVs, logs):
// OpenSSL takes any byte but NUL in an SNI host name and any string type in a certificate CN.
#include <string_view>

namespace tls {

// An SNI host name (RFC 6066 §3: a DNS host name, no IP literal syntax checks): 1 to 253 bytes plus
// at most one trailing dot, dot-separated labels of 1 to 63 letters, digits and hyphens, a hyphen
// neither first nor last in a label (RFC 1123). Underscores are accepted: they are not LDH, but
// real clients send them for internal host names and they carry no syntax in HTTP or PROXY v2.
bool valid_host_name(std::string_view name);

// Well-formed UTF-8 (shortest form, no surrogates, at most U+10FFFF) without control characters
// (C0, DEL, C1) and not empty.
bool printable_utf8(std::string_view s);

}  // namespace tls
