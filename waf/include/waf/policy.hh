#pragma once
// Per-service WAF policy: which rule sets, enforce or detect-only, anomaly threshold, paranoia
// level, exclusions, body inspection limit and HTTP limits. Bound to a compiled ruleset once
// (control thread) so that the data path only tests bits.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hh"
#include "waf/body.hh"
#include "waf/http.hh"
#include "waf/ruleset.hh"

namespace waf {

enum class body_limit_action : uint8_t { reject, inspect_partial };
// A body its processor cannot parse (ModSecurity's REQBODY_ERROR): block it (400), or scan the rest
// of it raw (as an opaque body: the body rules and the args rules' body selectors) and go on.
enum class body_error_action : uint8_t { block, inspect_raw };
// A WebSocket upgrade (GET with Upgrade: websocket and Connection: upgrade) that the upstream
// accepted (101): the connection is no longer HTTP. pass: its bytes go through uninspected;
// inspect_raw: the client's bytes go through the body rules as one stream.
enum class upgrade_action : uint8_t { pass, inspect_raw };
// What the service's bytes are: HTTP/1.x requests (parsed, every phase), or a stream that is not
// HTTP, scanned whole by the raw_payload rules only (a match resets the connection).
enum class inspect_mode : uint8_t { http, raw };
const char* to_string(inspect_mode m);

// Rule ids switched off for requests whose path starts with path_prefix (empty: every path) and,
// when arg is set, only for matches in that argument/header/cookie name.
struct exclusion {
  std::vector<uint32_t> rule_ids;
  std::string path_prefix;
  std::string arg;
};

struct policy {
  std::string name = "default";
  inspect_mode inspect = inspect_mode::http;
  std::vector<std::string> rule_sets;  // empty: every set
  bool detect_only = false;
  int anomaly_threshold = 5;
  int paranoia = 1;
  std::vector<exclusion> exclusions;
  uint64_t body_limit = 1 << 20;  // bytes of body inspected
  body_limit_action on_body_limit = body_limit_action::reject;
  // Body processors (urlencoded, multipart, JSON): per-argument and count limits. An argument
  // longer than body.max_value_bytes is handled as on_body_limit says (reject: 413;
  // inspect_partial: scanned cut to that length); the other limits are body errors (on_body_error).
  body_limits body;
  body_error_action on_body_error = body_error_action::block;
  upgrade_action on_upgrade = upgrade_action::pass;
  http_limits limits;
};

class bound_policy {
 public:
  // Errors: unknown rule set or rule id, bad threshold/paranoia/limits, a raw policy without an
  // enabled raw_payload rule (it would inspect nothing).
  static common::result<std::shared_ptr<const bound_policy>> bind(std::shared_ptr<const ruleset> rs,
                                                                  policy p);

  const ruleset& rules() const { return *rs_; }
  const std::shared_ptr<const ruleset>& rules_ptr() const { return rs_; }
  const policy& pol() const { return p_; }
  bool enabled(uint32_t rule_index) const { return enabled_[rule_index] != 0; }

  struct bound_exclusion {
    std::vector<uint8_t> rule_mask;  // by rule index
    std::string path_prefix;
    std::string arg;
  };
  const std::vector<bound_exclusion>& exclusions() const { return excl_; }
  // Enabled rules whose first condition is negated: they fire on absence, so they are evaluated
  // when their phase completes rather than on a match.
  const std::vector<uint32_t>& negated_primary() const { return negated_primary_; }

 private:
  std::shared_ptr<const ruleset> rs_;
  policy p_;
  std::vector<uint8_t> enabled_;
  std::vector<bound_exclusion> excl_;
  std::vector<uint32_t> negated_primary_;
};

}  // namespace waf
