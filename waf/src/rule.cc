// Names of the rule model's enums, shared by the YAML loader, the SecRule importer and the audit
// log.
#include "waf/rule.hh"

namespace waf {

const char* to_string(target t) {
  switch (t) {
#define X(e, s)   \
  case target::e: \
    return s;
    WAF_TARGETS(X)
#undef X
  }
  return "?";
}
std::optional<target> parse_target(std::string_view s) {
#define X(e, n) \
  if (s == n) return target::e;
  WAF_TARGETS(X)
#undef X
  return std::nullopt;
}

const char* to_string(transform t) {
  switch (t) {
#define X(e, s)      \
  case transform::e: \
    return s;
    WAF_TRANSFORMS(X)
#undef X
  }
  return "?";
}
std::optional<transform> parse_transform(std::string_view s) {
#define X(e, n) \
  if (s == n) return transform::e;
  WAF_TRANSFORMS(X)
#undef X
  return std::nullopt;
}

const char* to_string(op o) {
  switch (o) {
#define X(e, s) \
  case op::e:   \
    return s;
    WAF_OPERATORS(X)
#undef X
  }
  return "?";
}
std::optional<op> parse_op(std::string_view s) {
#define X(e, n) \
  if (s == n) return op::e;
  WAF_OPERATORS(X)
#undef X
  return std::nullopt;
}

bool is_code_op(op o) {
  switch (o) {
    case op::rx:
    case op::pm:
    case op::contains:
    case op::begins_with:
    case op::ends_with:
    case op::streq:
    case op::validate_byte_range:  // a negated byte class for Hyperscan
      return false;
    default:
      return true;
  }
}

bool is_head_target(target t) {
  switch (t) {
    case target::request_line:
    case target::method:
    case target::protocol:
    case target::uri:
    case target::uri_path:
    case target::query_string:
    case target::header:
    case target::header_names:
    case target::cookies:
    case target::cookie_names:
    case target::uri_decoded:
    case target::path_decoded:
      return true;
    default:
      return false;
  }
}

bool is_multi_field(target t) {
  switch (t) {
    case target::args:
    case target::arg_names:
    case target::header:
    case target::header_names:
    case target::cookies:
    case target::cookie_names:
    case target::files:
    case target::files_names:
    case target::files_sizes:
    case target::multipart_part_headers:
    case target::body_vars:
      return true;
    default:
      return false;
  }
}

bool takes_no_arg(op o) {
  return o == op::detect_sqli || o == op::detect_xss || o == op::validate_url_encoding ||
         o == op::validate_utf8_encoding;
}

const char* to_string(action a) {
  switch (a) {
    case action::block:
      return "block";
    case action::log:
      return "log";
    case action::score:
      return "score";
  }
  return "?";
}
std::optional<action> parse_action(std::string_view s) {
  if (s == "block") return action::block;
  if (s == "log") return action::log;
  if (s == "score") return action::score;
  return std::nullopt;
}

}  // namespace waf
