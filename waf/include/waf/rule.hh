#pragma once
// The WAF rule model: what a rule file (YAML) or an imported SecRule compiles into. Plain data; the
// compiler (ruleset.hh) turns a vector of rules into Hyperscan databases.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace waf {

// Where a condition looks. Head targets are scanned in block mode once the request head is parsed;
// body and raw_payload are scanned in stream mode as bytes arrive. uri and uri_path are the raw
// request target and path; uri_decoded and path_decoded are them %XX-decoded once ('+' kept), which
// is what ModSecurity v3 calls REQUEST_URI and REQUEST_FILENAME. The body processors (body.hh)
// add fields in block mode as they complete: args / arg_names (form fields, JSON values by path),
// files (field name -> client file name), files_names, files_sizes, multipart_part_headers (part
// name -> header line), and body_vars: ModSecurity's scalar body variables by their lower-case
// names (reqbody_error, reqbody_processor_error, multipart_strict_error and each multipart_* flag,
// files_combined_size), each "0"/"1" or a decimal count, set once the body ended; and
// args_combined_size (argument names and values in bytes), set at the head and again at the body's
// end.
#define WAF_TARGETS(X)                                \
  X(request_line, "request_line")                     \
  X(method, "method")                                 \
  X(protocol, "protocol")                             \
  X(uri, "uri")                                       \
  X(uri_path, "uri_path")                             \
  X(query_string, "query_string")                     \
  X(args, "args")                                     \
  X(arg_names, "arg_names")                           \
  X(header, "header")                                 \
  X(header_names, "header_names")                     \
  X(cookies, "cookies")                               \
  X(cookie_names, "cookie_names")                     \
  X(body, "body")                                     \
  X(raw_payload, "raw_payload")                       \
  X(files, "files")                                   \
  X(files_names, "files_names")                       \
  X(files_sizes, "files_sizes")                       \
  X(multipart_part_headers, "multipart_part_headers") \
  X(body_vars, "body_vars")                           \
  X(uri_decoded, "uri_decoded")                       \
  X(path_decoded, "path_decoded")

enum class target : uint8_t {
#define X(e, s) e,
  WAF_TARGETS(X)
#undef X
};
inline constexpr size_t target_count = 0
#define X(e, s) +1
    WAF_TARGETS(X)
#undef X
    ;
static_assert(target_count <= 32, "scan groups keep one bit per target in a uint32_t");
const char* to_string(target t);
std::optional<target> parse_target(std::string_view s);
inline bool is_stream_target(target t) {
  return t == target::body || t == target::raw_payload;
}
// Targets with many fields per request (a selector without a name is each of them).
bool is_multi_field(target t);
// Targets whose fields are all known once the request head is parsed (not args: a body adds some).
bool is_head_target(target t);

#define WAF_TRANSFORMS(X)                       \
  X(url_decode, "url_decode")                   \
  X(lowercase, "lowercase")                     \
  X(normalize_path, "normalize_path")           \
  X(normalize_path_win, "normalize_path_win")   \
  X(remove_nulls, "remove_nulls")               \
  X(html_entity_decode, "html_entity_decode")   \
  X(compress_whitespace, "compress_whitespace") \
  X(remove_whitespace, "remove_whitespace")     \
  X(base64_decode, "base64_decode")             \
  X(utf8_to_unicode, "utf8_to_unicode")         \
  X(js_decode, "js_decode")                     \
  X(css_decode, "css_decode")                   \
  X(cmd_line, "cmd_line")                       \
  X(replace_comments, "replace_comments")       \
  X(trim, "trim")                               \
  X(length, "length")                           \
  X(hex_encode, "hex_encode")                   \
  X(sha1, "sha1")

enum class transform : uint8_t {
#define X(e, s) e,
  WAF_TRANSFORMS(X)
#undef X
};
const char* to_string(transform t);
std::optional<transform> parse_transform(std::string_view s);
// Transforms that can run over a byte stream with a few bytes of carried state.
bool is_streamable(transform t);

#define WAF_OPERATORS(X)                              \
  X(rx, "rx")                                         \
  X(pm, "pm")                                         \
  X(contains, "contains")                             \
  X(begins_with, "begins_with")                       \
  X(ends_with, "ends_with")                           \
  X(streq, "streq")                                   \
  X(within, "within")                                 \
  X(detect_sqli, "detect_sqli")                       \
  X(detect_xss, "detect_xss")                         \
  X(validate_byte_range, "validate_byte_range")       \
  X(validate_url_encoding, "validate_url_encoding")   \
  X(validate_utf8_encoding, "validate_utf8_encoding") \
  X(eq, "eq")                                         \
  X(ne, "ne")                                         \
  X(gt, "gt")                                         \
  X(ge, "ge")                                         \
  X(lt, "lt")                                         \
  X(le, "le")

enum class op : uint8_t {
#define X(e, s) e,
  WAF_OPERATORS(X)
#undef X
};
const char* to_string(op o);
std::optional<op> parse_op(std::string_view s);
// Operators evaluated in code over each transformed field (not by Hyperscan): within,
// libinjection's detectors, the validators and the numeric comparisons. Block targets only.
bool is_code_op(op o);
// Operators that take no argument (the validators' argument is optional for utf8/url encoding).
bool takes_no_arg(op o);

enum class action : uint8_t { block, log, score };
const char* to_string(action a);
std::optional<action> parse_action(std::string_view s);

// A place a condition looks: a target, optionally restricted to one field name (a header, cookie
// or argument name, case-insensitive) and with field names excluded.
struct selector {
  target where = target::args;
  std::string name;                  // empty: every field of the target
  std::vector<std::string> exclude;  // field names skipped (lowercase)
};

// A piece of a value built at request time (ModSecurity's capture and macros): literal text, a
// capture group of the previous condition's regex, or the first request header of a name.
struct value_part {
  enum class kind : uint8_t { text, group, header };
  kind k = kind::text;
  uint8_t group = 0;  // kind::group: 0..9 (ModSecurity's TX:0..TX:9)
  std::string text;   // kind::text: the text; kind::header: the header name (lowercase)
};

// One test: an operator over the transformed value of any of the selectors (an OR over selectors).
struct condition {
  std::vector<selector> selectors;
  op oper = op::rx;
  std::vector<std::string> args;  // rx: one regex; pm: phrases; others: one literal
  bool caseless = false;
  bool negate = false;  // only allowed after the first condition of a chain
  std::vector<transform> transforms;
  // ModSecurity's MATCHED_VAR(S) in a chain: the condition holds only on a field where the previous
  // condition of the chain held (same target and field name). The importer copies the previous
  // condition's selectors and prepends its transformations (MATCHED_VAR is the transformed value).
  bool on_matched = false;
  // ModSecurity's &VAR: the operator (a numeric one) tests the number of fields the selectors
  // accept, once per request when the head is parsed (arguments: the query's).
  bool count = false;
  // ModSecurity's multiMatch: the operator also runs on the value before the transformations and
  // after each of them; the condition holds if any of those values matches. Not negated.
  bool multi_match = false;
  // ModSecurity's `capture` followed by a condition on TX:N, or on a tx variable the previous
  // condition's setvar built from %{tx.N}: the condition tests, instead of fields, the value built
  // from `derive` with the capture groups of the previous condition's regex (rx, not negated, block
  // targets) on each field where that condition held; then the chain goes on over those fields,
  // as with on_matched. Its own transformations apply to the built value; it may be negated. Its
  // operand may be built at request time too (`operand`, e.g. %{request_headers.host} or
  // %{tx.1}); args[0] holds the operand's text for diagnostics.
  std::vector<value_part> derive;
  std::vector<value_part> operand;
  bool derived() const { return !derive.empty(); }
};

// A rule fires when all its conditions hold (the first is the rule itself, the rest its chain).
struct rule {
  uint32_t id = 0;
  std::string message;
  std::vector<condition> conditions;
  action act = action::score;
  int score = 5;     // added to the request's anomaly score when the rule fires
  int severity = 2;  // 0 emergency .. 7 debug (syslog numbering, as in CRS)
  int paranoia = 1;  // active when the policy's paranoia level >= this
  std::string set;   // rule set name (a policy selects sets); default: the file stem
  std::vector<std::string> tags;
  std::string where;  // "file:line:col" of the definition, for diagnostics
  // ModSecurity's skipAfter / skip (imported SecRules). A gate reads head targets alone, so it is
  // decided before any rule it skips could fire; when it fires, the rules that list its id in
  // skipped_by (later ones, of the gate's phase) do not fire for that request. A silent gate
  // (pass,nolog: no score, no disruptive action) only skips; it is neither scored nor audited.
  bool gate = false;
  bool silent = false;
  std::vector<uint32_t> skipped_by;
};

}  // namespace waf
