#pragma once
// What a limit file says (rules/README.md, "Limit files"): the limits and the CIDR allow/deny lists
// of the rules directory, validated by rules::load_limits_dir and compiled by limits::limit_set.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hh"

namespace limits {

// What a limit counts by.
enum class key_kind : uint8_t {
  src,         // the client's address
  src_prefix,  // the client's /prefix_v4 or /prefix_v6 network
  vip,         // the service's address and port (one bucket per VIP:port)
  sni,         // the TLS server name (requests only; kind tls)
  route,       // one bucket for every request matching method + path_prefix
  header,      // a request header's value (requests only; requests without it are not counted)
};
// What a limit counts.
enum class scope : uint8_t {
  syn,         // SYNs per second (L4, before any state is kept)
  conn,        // new connections per second (after the handshake)
  concurrent,  // connections held at once
  packets,     // packets per second (L4)
  bytes,       // bytes per second (L4, IP length)
  requests,    // HTTP requests per second (L7, once the head has passed the WAF's parser)
};
enum class action : uint8_t {
  drop,      // the packet is dropped (L4); a request's connection is closed without answer
  rst,       // the client gets a RST
  http_429,  // requests: 429 Too Many Requests with Retry-After, then the connection closes
};

const char* to_string(key_kind k);
const char* to_string(scope s);
const char* to_string(action a);
inline bool is_l4(scope s) {
  return s != scope::requests;
}
inline bool is_rate(scope s) {
  return s != scope::concurrent;
}

struct limit_spec {
  std::string name;                   // unique in the rules directory; the metrics label
  std::string where;                  // file:line:col of the entry
  std::vector<std::string> services;  // empty: every tcp/tls service
  key_kind key = key_kind::src;
  uint8_t prefix_v4 = 32, prefix_v6 = 128;  // key src_prefix
  std::string header;                       // key header: lowercase name
  std::string method, path_prefix;          // requests: only requests matching (empty: any)
  scope what = scope::requests;
  uint64_t rate = 0;   // per second; concurrent: connections held at once
  uint64_t burst = 0;  // at once; 0: max(1, rate) (bytes: rate)
  action act = action::drop;
  bool detect_only = false;
  uint64_t table_keys = 65536;  // keys tracked (16 bytes each)
};

// An address prefix, network byte order, host bits zero.
struct prefix {
  bool v6 = false;
  uint8_t len = 0;
  std::array<uint8_t, 16> addr{};
  bool operator==(const prefix&) const = default;
};
// "10.0.0.0/8", "2001:db8::/32", a bare address (/32, /128). Host bits set are an error.
common::result<prefix> parse_prefix(std::string_view text);
// A CIDR list file: one prefix per line, '#' comments and blank lines ignored; errors name
// file:line.
common::result<std::vector<prefix>> parse_cidr_text(std::string_view text, const std::string& file);

struct acl_list {
  std::string name;  // metrics label: the file name, or "inline"
  std::string where;
  bool deny = true;
  std::vector<prefix> prefixes;
};
// The allow/deny lists of one service. The longest matching prefix decides; a source no prefix
// matches is allowed, unless the service has an allow list (then it is denied: allow-list mode).
struct acl_spec {
  std::string service;
  std::string where;
  std::vector<acl_list> lists;
};

struct limits_config {
  std::vector<limit_spec> limits;
  std::vector<acl_spec> acls;
  size_t files = 0;
  // Services that take only the limits naming them, not those with no service list (the caller
  // fills it: edge puts its kind l4 services here, which the "every tcp/tls service" default
  // skips).
  std::vector<std::string> explicit_only;
};

}  // namespace limits
