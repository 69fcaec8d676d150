// SecRule (ModSecurity) importer for the subset OWASP CRS 3.x uses.
#include "rules/secrule.hh"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "waf/detect.hh"
#include "waf/ruleset.hh"
#include "waf/transform.hh"

namespace rules {
namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

struct directive {
  std::string name;
  std::vector<std::string> args;
  int line = 0;
};

// Apache-style tokens: whitespace separated, double quotes group, \" inside quotes is a quote and
// every other backslash stays (the regexes keep their escapes).
std::vector<std::string> tokenize(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i >= s.size()) break;
    std::string tok;
    if (s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '"') {
          tok.push_back('"');
          i += 2;
        } else {
          tok.push_back(s[i++]);
        }
      }
      ++i;
    } else {
      while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) tok.push_back(s[i++]);
    }
    out.push_back(std::move(tok));
  }
  return out;
}

common::result<std::vector<directive>> read_directives(const std::string& path) {
  std::ifstream in(path);
  if (!in) return common::fail("cannot open file", path);
  std::vector<directive> out;
  std::string line, acc;
  int n = 0, start = 0;
  while (std::getline(in, line)) {
    ++n;
    if (acc.empty()) {
      std::string t = trim(line);
      if (t.empty() || t[0] == '#') continue;
      start = n;
    }
    std::string part = acc.empty() ? trim(line) : trim(line);
    if (!part.empty() && part.back() == '\\') {
      part.pop_back();
      acc += part;
      continue;
    }
    acc += part;
    auto toks = tokenize(acc);
    acc.clear();
    if (toks.empty()) continue;
    directive d;
    d.name = toks[0];
    d.args.assign(toks.begin() + 1, toks.end());
    d.line = start;
    out.push_back(std::move(d));
  }
  return out;
}

struct action_item {
  std::string key, value;
};

std::vector<action_item> parse_actions(std::string_view s) {
  std::vector<action_item> out;
  size_t i = 0;
  while (i < s.size()) {
    std::string item;
    bool q = false;
    while (i < s.size() && (q || s[i] != ',')) {
      if (s[i] == '\'') q = !q;
      if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\'') {
        item.push_back('\'');
        i += 2;
        continue;
      }
      item.push_back(s[i++]);
    }
    ++i;
    std::string t = trim(item);
    if (t.empty()) continue;
    action_item a;
    size_t colon = t.find(':');
    a.key = trim(t.substr(0, colon));
    if (colon != std::string::npos) {
      a.value = trim(t.substr(colon + 1));
      if (a.value.size() >= 2 && a.value.front() == '\'' && a.value.back() == '\'')
        a.value = a.value.substr(1, a.value.size() - 2);
    }
    out.push_back(std::move(a));
  }
  return out;
}

struct skip {
  std::string reason;
};

// A tx variable a rule's setvar builds from its capture groups (`setvar:'tx.ext=.%{tx.1}/'`), for
// the chained condition that reads it. A name with a macro in it (`tx.header_name_%{tx.0}`) is
// one variable per field: kept as its prefix.
struct tx_capture {
  std::string name;  // lowercase, without "tx."
  bool prefix = false;
  std::vector<waf::value_part> value;
};

// ModSecurity's phase numbers (request is 2, response 4, logging 5).
int phase_of(const std::string& v) {
  return v == "request" ? 2 : v == "response" ? 4 : v == "logging" ? 5 : std::atoi(v.c_str());
}

struct pending {
  waf::rule r;
  bool skipped = false;
  std::string reason;
  int score = -1;  // from setvar
  bool disruptive = false;
  std::vector<std::string> notes;
  // The previous directive of the chain captured (`capture` on a regex): TX:0..9 and the tx
  // variables it built from them are what a chained condition on TX may read.
  bool captured = false;
  std::vector<tx_capture> captures;
  int phase = 2;  // ModSecurity's default
  // skipAfter:MARKER or skip:N on the chain's first rule; the range it opens is decided in
  // finish().
  bool skips = false;
  std::string skip_marker;
  int skip_n = 0;
  // Inside a skip range: one decided at import (the rule never runs: skipped) or one whose gate is
  // not imported (skipped: ModSecurity runs it only on some requests).
  bool in_range = false, in_lost_range = false;
};

// The rules a skipAfter/skip gate jumps over, from the gate to its SecMarker (or its next N rules),
// in the gate's phase: ModSecurity runs phase 1's rules, then phase 2's, each list in file order.
struct skip_range {
  enum class kind : uint8_t {
    drop,    // taken on every request (decided at import): the rules are skipped
    engine,  // decided per request: the rules get the gate in rule::skipped_by
    lost,  // the gate is not imported: the rules are skipped, they would run on some requests only
  };
  kind k = kind::engine;
  uint32_t gate = 0;
  int phase = 2;
  std::string marker;  // empty: skip:N
  int left = 0;        // skip:N: rules of the phase still to skip
  std::string why;     // drop, lost: the skipped rules' reason
};

class importer {
 public:
  explicit importer(std::string set) : set_(std::move(set)) {}
  common::result<void> prescan(const std::string& path);  // every file, before any file()
  common::result<void> file(const std::string& path);
  import_result result;

 private:
  std::optional<std::string> expand(const std::string& s, std::string& why) const;
  std::optional<std::vector<waf::value_part>> parts(const std::string& s, std::string& why) const;
  void collect_setvars(const std::vector<action_item>& acts, bool secaction,
                       const std::string& default_of);
  std::optional<bool> static_gate(const directive& d, std::string& what) const;
  bool build_condition(const directive& d, const std::string& dir, waf::condition& c,
                       std::string& why, std::vector<std::string>& notes,
                       const waf::condition* prev, const pending* chain);
  bool derive_from_tx(const std::string& key, const pending& chain, waf::condition& c,
                      std::string& why) const;
  void finish(pending& p);
  void open_range(pending& p);
  // A rule (or SecAction) of `phase` starts: the open ranges of that phase cover it.
  void enter_ranges(pending& p, int phase);

  std::string set_;
  std::map<std::string, std::string> tx_;
  // Configuration TX variables: set by a SecAction (crs-setup's values) or by 901's default idiom
  // (`SecRule &TX:v "@eq 0" "...,setvar:tx.v=..."`, one directive) for what crs-setup left unset.
  // The first setting wins, as in ModSecurity's load order; a condition on one of them alone is
  // decided at import (static_gate).
  std::set<std::string> tx_static_;
  // TX variables some rule sets, changes or unsets at request time (anomaly scores, matched data):
  // never decided at import. Gathered from every file (prescan) before any rule is read.
  std::set<std::string> tx_dynamic_;
  std::set<uint32_t> ids_;
  std::vector<skip_range> ranges_;
  // SecMarkers not reached yet (prescan counts them; file() counts each one off as it passes it):
  // a skipAfter jumps forward, to a marker still ahead.
  std::map<std::string, int> markers_ahead_;
};

constexpr size_t max_expansion = 64 * 1024;
constexpr std::string_view off_config = "off with the imported configuration: ";

std::optional<std::string> importer::expand(const std::string& s, std::string& why) const {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t m = s.find("%{", i);
    if (m == std::string::npos) {
      out += s.substr(i);
      break;
    }
    out += s.substr(i, m - i);
    size_t e = s.find('}', m);
    if (e == std::string::npos) {
      why = "unterminated macro";
      return std::nullopt;
    }
    std::string name = lower(s.substr(m + 2, e - m - 2));
    if (!name.starts_with("tx.")) {
      why = "macro %{" + s.substr(m + 2, e - m - 2) + "} is request-dependent";
      return std::nullopt;
    }
    auto it = tx_.find(name.substr(3));
    if (it == tx_.end()) {
      why = "unresolved macro %{" + name + "}";
      return std::nullopt;
    }
    // Each tx value is stored expanded, so "b=%{tx.a}%{tx.a}", "c=%{tx.b}%{tx.b}", ... doubles per
    // directive: bound the result instead of the machine's memory.
    if (out.size() + it->second.size() > max_expansion) {
      why = "macro expansion longer than " + std::to_string(max_expansion) + " bytes";
      return std::nullopt;
    }
    out += it->second;
    i = e + 1;
  }
  return out;
}

// A macro string with request-time parts: %{tx.N} (a capture group of the previous condition),
// %{request_headers.NAME}; %{tx.name} (a configuration value) is expanded now.
std::optional<std::vector<waf::value_part>> importer::parts(const std::string& s,
                                                            std::string& why) const {
  std::vector<waf::value_part> out;
  size_t total = 0;
  auto text = [&](std::string_view t) {
    if (t.empty()) return;
    total += t.size();
    if (!out.empty() && out.back().k == waf::value_part::kind::text)
      out.back().text += t;
    else
      out.push_back({waf::value_part::kind::text, 0, std::string(t)});
  };
  size_t i = 0;
  while (i < s.size()) {
    size_t m = s.find("%{", i);
    if (m == std::string::npos) {
      text(std::string_view(s).substr(i));
      break;
    }
    text(std::string_view(s).substr(i, m - i));
    size_t e = s.find('}', m);
    if (e == std::string::npos) {
      why = "unterminated macro";
      return std::nullopt;
    }
    std::string name = lower(s.substr(m + 2, e - m - 2));
    if (name.size() == 4 && name.starts_with("tx.") &&
        std::isdigit(static_cast<unsigned char>(name[3]))) {
      out.push_back({waf::value_part::kind::group, static_cast<uint8_t>(name[3] - '0'), {}});
    } else if (name.starts_with("request_headers.") && name.size() > 16) {
      out.push_back({waf::value_part::kind::header, 0, name.substr(16)});
    } else {
      auto ex = expand(s.substr(m, e - m + 1), why);
      if (!ex) return std::nullopt;
      text(*ex);
    }
    if (total > max_expansion) {
      why = "macro expansion longer than " + std::to_string(max_expansion) + " bytes";
      return std::nullopt;
    }
    i = e + 1;
  }
  return out;
}

// A condition on TX after a capturing condition: TX:N is group N; TX:name (or TX:/^prefix/) a
// variable the capturing condition's setvar built.
bool importer::derive_from_tx(const std::string& key, const pending& chain, waf::condition& c,
                              std::string& why) const {
  std::string k = lower(key);
  if (k.size() == 1 && std::isdigit(static_cast<unsigned char>(k[0]))) {
    c.derive = {{waf::value_part::kind::group, static_cast<uint8_t>(k[0] - '0'), {}}};
    return true;
  }
  bool rx = k.size() >= 2 && k.front() == '/' && k.back() == '/';
  if (rx) {  // only a literal prefix: /^header_name_/, /rfi_parameter_.*/
    k = k.substr(1, k.size() - 2);
    if (k.starts_with("^")) k.erase(0, 1);
    if (k.ends_with(".*")) k.resize(k.size() - 2);
    if (k.empty() || !std::all_of(k.begin(), k.end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
        })) {
      why = "regex variable key TX:" + key;
      return false;
    }
  }
  for (const auto& cap : chain.captures) {
    if (rx ? cap.name.starts_with(k) : (!cap.prefix && cap.name == k)) {
      c.derive = cap.value;
      return true;
    }
  }
  why = "variable TX:" + key + " not built by the previous condition's capture";
  return false;
}

// Defaults of tx.* variables (CRS 901 sets them with setvar when the operator did not): the first
// literal assignment wins, as crs-setup.conf would be loaded before.
void importer::collect_setvars(const std::vector<action_item>& acts, bool secaction,
                               const std::string& default_of) {
  for (const auto& a : acts) {
    if (a.key != "setvar") continue;
    std::string v = a.value;
    size_t eq = v.find('=');
    if (eq == std::string::npos) continue;
    std::string name = lower(trim(v.substr(0, eq)));
    std::string val = v.substr(eq + 1);
    if (!name.starts_with("tx.") || val.starts_with("+") || val.starts_with("-")) continue;
    std::string why;
    auto ex = expand(val, why);
    if (ex && tx_.try_emplace(name.substr(3), *ex).second &&
        (secaction || name.substr(3) == default_of))
      tx_static_.insert(name.substr(3));
  }
}

// ModSecurity's numeric operands (std::stoi semantics: blanks, a sign, digits; else 0).
int64_t tx_number(const std::string& s) {
  return std::strtoll(s.c_str(), nullptr, 10);
}

// A condition on one configuration TX variable alone (`&TX:max_file_size "@eq 1"`,
// `TX:crs_validate_utf8_encoding "@eq 1"`, crs-setup's switches and limits) decided now: true when
// it holds on every request (the condition is dropped), false when the rule can never fire,
// nullopt when it is not such a condition (a TX variable some rule sets at request time among
// them). `what` says what was decided, for the note or the skip reason.
std::optional<bool> importer::static_gate(const directive& d, std::string& what) const {
  if (d.args.size() < 2) return std::nullopt;
  std::string ops = trim(d.args[1]);
  const bool negate = ops.starts_with("!");
  if (negate) ops.erase(0, 1);
  const size_t sp = ops.find(' ');
  const std::string opname = ops.substr(0, sp);
  static const std::set<std::string> numeric = {"@eq", "@ne", "@gt", "@ge", "@lt", "@le"};
  if (!numeric.count(opname)) return std::nullopt;
  std::string why;
  auto rhs = expand(sp == std::string::npos ? std::string() : trim(ops.substr(sp + 1)), why);
  if (!rhs) return std::nullopt;
  // `&TX:v|TX:v` (CRS 903's gates): the condition holds when it holds on any of the variables.
  bool any = false;
  what.clear();
  const std::string vlist = upper(trim(d.args[0]));
  for (size_t i = 0; i <= vlist.size();) {
    const size_t bar = std::min(vlist.find('|', i), vlist.size());
    std::string v = trim(vlist.substr(i, bar - i));
    i = bar + 1;
    const bool count = v.starts_with("&");
    if (count) v.erase(0, 1);
    if (!v.starts_with("TX:")) return std::nullopt;
    const std::string name = lower(v.substr(3));
    if (name.empty() || name[0] == '/' || std::isdigit(static_cast<unsigned char>(name[0])))
      return std::nullopt;
    // The policy's paranoia level, not the files' default, decides at run time (rule::paranoia).
    if (name.find("paranoia_level") != std::string::npos || tx_dynamic_.count(name))
      return std::nullopt;
    const bool known = tx_static_.count(name) != 0;
    if (!known && tx_.count(name)) return std::nullopt;  // set by a rule, at request time
    const std::string var = (count ? "&TX:" : "TX:") + name;
    if (!what.empty()) what += " or ";
    if (!count && !known) {  // no such variable: ModSecurity has no value to test
      what += var + " is not set";
      continue;
    }
    const int64_t lhs = count ? (known ? 1 : 0) : tx_number(tx_.at(name)), r = tx_number(*rhs);
    bool holds = opname == "@eq"   ? lhs == r
                 : opname == "@ne" ? lhs != r
                 : opname == "@gt" ? lhs > r
                 : opname == "@ge" ? lhs >= r
                 : opname == "@lt" ? lhs < r
                                   : lhs <= r;
    any = any || holds != negate;
    what += (negate ? "!" : "") + var + " " + opname + " " + *rhs + " with " +
            (count ? std::to_string(lhs) : name + "=" + tx_.at(name));
  }
  return any;
}

struct var_map {
  const char* name;
  waf::target t;
  bool keyed;  // ":name" allowed
};
constexpr var_map vars[] = {
    {"ARGS_GET", waf::target::args, true},
    {"ARGS_GET_NAMES", waf::target::arg_names, false},
    {"ARGS_NAMES", waf::target::arg_names, false},
    {"REQUEST_HEADERS", waf::target::header, true},
    {"REQUEST_HEADERS_NAMES", waf::target::header_names, false},
    {"REQUEST_COOKIES", waf::target::cookies, true},
    {"REQUEST_COOKIES_NAMES", waf::target::cookie_names, false},
    {"REQUEST_FILENAME", waf::target::path_decoded, false},
    {"REQUEST_BASENAME", waf::target::path_decoded, false},
    {"REQUEST_URI", waf::target::uri_decoded, false},
    {"REQUEST_URI_RAW", waf::target::uri, false},
    {"REQUEST_LINE", waf::target::request_line, false},
    {"REQUEST_METHOD", waf::target::method, false},
    {"REQUEST_PROTOCOL", waf::target::protocol, false},
    {"QUERY_STRING", waf::target::query_string, false},
    {"REQUEST_BODY", waf::target::body, false},
    {"ARGS_POST", waf::target::args, true},
    {"ARGS_POST_NAMES", waf::target::arg_names, false},
    {"FILES", waf::target::files, true},
    {"FILES_NAMES", waf::target::files_names, false},
    {"FILES_SIZES", waf::target::files_sizes, true},
    {"MULTIPART_PART_HEADERS", waf::target::multipart_part_headers, true},
};
// ModSecurity's scalar body variables: fields of body_vars named by the variable (lower case).
constexpr const char* body_scalars[] = {"REQBODY_ERROR",
                                        "REQBODY_PROCESSOR_ERROR",
                                        "MULTIPART_STRICT_ERROR",
                                        "MULTIPART_BOUNDARY_QUOTED",
                                        "MULTIPART_BOUNDARY_WHITESPACE",
                                        "MULTIPART_DATA_BEFORE",
                                        "MULTIPART_DATA_AFTER",
                                        "MULTIPART_HEADER_FOLDING",
                                        "MULTIPART_LF_LINE",
                                        "MULTIPART_MISSING_SEMICOLON",
                                        "MULTIPART_INVALID_QUOTING",
                                        "MULTIPART_INVALID_PART",
                                        "MULTIPART_INVALID_HEADER_FOLDING",
                                        "MULTIPART_FILE_LIMIT_EXCEEDED",
                                        "MULTIPART_UNMATCHED_BOUNDARY",
                                        "FILES_COMBINED_SIZE",
                                        "ARGS_COMBINED_SIZE"};
// Variables for content the engine does not parse (XML, uploaded files' content); dropped from a
// rule that still has other variables.
constexpr const char* droppable[] = {"XML", "FILES_TMPNAMES", "FILES_TMP_CONTENT"};

bool importer::build_condition(const directive& d, const std::string& dir, waf::condition& c,
                               std::string& why, std::vector<std::string>& notes,
                               const waf::condition* prev, const pending* chain) {
  if (d.args.size() < 2) {
    why = "malformed SecRule";
    return false;
  }
  // Operator.
  std::string opstr = d.args[1];
  if (opstr.starts_with("!")) {
    c.negate = true;
    opstr.erase(0, 1);
  }
  std::string opname = "rx", oparg = opstr;
  if (opstr.starts_with("@")) {
    size_t sp = opstr.find(' ');
    opname = opstr.substr(1, sp == std::string::npos ? std::string::npos : sp - 1);
    oparg = sp == std::string::npos ? std::string() : opstr.substr(sp + 1);
  }
  // A condition on TX right after a capture is derived from it (condition::derive); its operand
  // may then be built at request time.
  std::string vl = d.args[0];
  bool on_capture = chain && chain->captured && prev && upper(vl).starts_with("TX:") &&
                    vl.find('|') == std::string::npos;
  if (on_capture) {
    auto ps = parts(oparg, why);
    if (!ps) return false;
    bool runtime = std::any_of(ps->begin(), ps->end(), [](const waf::value_part& p) {
      return p.k != waf::value_part::kind::text;
    });
    if (runtime)
      c.operand = std::move(*ps);
    else
      oparg = ps->empty() ? std::string() : ps->front().text;
  } else {
    auto ex = expand(oparg, why);
    if (!ex) return false;
    oparg = *ex;
  }
  if (on_capture && (opname == "pm" || opname == "pmFromFile" || opname == "pmf" ||
                     opname == "validateByteRange")) {
    why = "operator @" + opname + " on a captured value";
    return false;
  }
  if (on_capture && opname == "rx" && !c.operand.empty()) {
    why = "regex built at request time from a capture or a request header";
    return false;
  }
  if (opname == "rx") {
    c.oper = waf::op::rx;
    c.args = {oparg};
  } else if (opname == "pm") {
    c.oper = waf::op::pm;
    c.caseless = true;
    std::istringstream ss(oparg);
    for (std::string w; ss >> w;) c.args.push_back(w);
  } else if (opname == "pmFromFile" || opname == "pmf") {
    c.oper = waf::op::pm;
    c.caseless = true;
    std::istringstream ss(oparg);
    for (std::string f; ss >> f;) {
      std::filesystem::path p(f);
      if (p.is_relative()) p = std::filesystem::path(dir) / p;
      // Data files sit beside their .conf (as in CRS): a rule may not read /etc/... or ../...
      if (!path_within(p.string(), dir.empty() ? "." : dir)) {
        why = "data file " + p.string() + " is outside the directory of its .conf";
        return false;
      }
      std::ifstream in(p);
      if (!in) {
        why = "cannot read data file " + p.string();
        return false;
      }
      for (std::string l; std::getline(in, l);) {
        std::string t = trim(l);
        if (!t.empty() && t[0] != '#') c.args.push_back(t);
      }
    }
  } else if (opname == "contains" || opname == "beginsWith" || opname == "endsWith" ||
             opname == "streq" || opname == "within") {
    c.oper = opname == "contains"     ? waf::op::contains
             : opname == "beginsWith" ? waf::op::begins_with
             : opname == "endsWith"   ? waf::op::ends_with
             : opname == "streq"      ? waf::op::streq
                                      : waf::op::within;
    c.args = {oparg};
  } else if (opname == "detectSQLi" || opname == "detectXSS") {
    std::string lwhy;
    if (!waf::libinjection_load(&lwhy)) {
      why = "operator @" + opname + ": " + lwhy;
      return false;
    }
    c.oper = opname == "detectSQLi" ? waf::op::detect_sqli : waf::op::detect_xss;
    c.args = {std::string()};
  } else if (opname == "validateByteRange") {
    std::array<uint64_t, 4> bits{};
    (void)bits;
    c.oper = waf::op::validate_byte_range;
    c.args = {oparg};
  } else if (opname == "validateUrlEncoding" || opname == "validateUtf8Encoding") {
    c.oper = opname == "validateUrlEncoding" ? waf::op::validate_url_encoding
                                             : waf::op::validate_utf8_encoding;
    c.args = {std::string()};
  } else if (opname == "eq" || opname == "ne" || opname == "gt" || opname == "ge" ||
             opname == "lt" || opname == "le") {
    c.oper = opname == "eq"   ? waf::op::eq
             : opname == "ne" ? waf::op::ne
             : opname == "gt" ? waf::op::gt
             : opname == "ge" ? waf::op::ge
             : opname == "lt" ? waf::op::lt
                              : waf::op::le;
    c.args = {trim(oparg)};
  } else {
    why = "operator @" + opname + " not supported";
    return false;
  }
  if (c.args.empty() ||
      (c.oper != waf::op::rx && c.oper != waf::op::streq && c.oper != waf::op::within &&
       !waf::takes_no_arg(c.oper) && c.args[0].empty())) {
    why = "operator @" + opname + " without argument";
    return false;
  }
  // Variables.
  std::vector<std::pair<std::string, std::string>> excludes;
  std::string vlist = d.args[0];
  size_t n_vars = 0;
  if (prev && (upper(vlist) == "MATCHED_VAR" || upper(vlist) == "MATCHED_VARS")) {
    if (c.negate) {
      why = "negated operator on MATCHED_VAR(S)";
      return false;
    }
    c.on_matched = true;
    c.selectors = prev->selectors;
    vlist.clear();
  }
  size_t i = 0;
  while (i <= vlist.size()) {
    size_t bar = vlist.find('|', i);
    std::string v = vlist.substr(i, bar == std::string::npos ? std::string::npos : bar - i);
    i = bar == std::string::npos ? vlist.size() + 1 : bar + 1;
    if (v.empty()) continue;
    bool neg = v[0] == '!';
    if (neg) v.erase(0, 1);
    bool counted = v[0] == '&';
    if (counted) v.erase(0, 1);
    if (v.empty() || (n_vars++ > 0 && counted != c.count)) {
      why = "count and value variables mixed in one rule";
      return false;
    }
    c.count = counted;
    if (on_capture && !counted) {
      if (!derive_from_tx(v.substr(3), *chain, c, why)) return false;
      std::string pwhy;
      if (!waf::check_pcre2(prev->args[0], prev->caseless, &pwhy)) {
        why = "capture pattern rejected by PCRE2: " + pwhy;
        return false;
      }
      c.selectors = prev->selectors;  // the fields the capture ran on
      for (const auto& sel : prev->selectors)
        if (sel.name.empty() && sel.where != waf::target::path_decoded &&
            sel.where != waf::target::uri_decoded && sel.where != waf::target::method)
          notes.push_back(
              "TX from capture tested on every field the capture held on "
              "(ModSecurity: the last)");
      continue;
    }
    if (counted && upper(v).starts_with("ARGS"))
      notes.push_back("&" + v + " counts the query's arguments");
    size_t colon = v.find(':');
    std::string coll = upper(v.substr(0, colon));
    std::string key = colon == std::string::npos ? std::string() : v.substr(colon + 1);
    if (neg) {
      if (key.empty() || key.front() == '/') {
        notes.push_back("ignored exclusion !" + v);
        continue;
      }
      excludes.emplace_back(coll, lower(key));
      continue;
    }
    if (coll == "ARGS") {
      if (!key.empty()) {
        if (key.front() == '/') {
          why = "regex variable key " + v;
          return false;
        }
        c.selectors.push_back({waf::target::args, lower(key), {}});
        continue;
      }
      // ModSecurity's ARGS are parsed arguments: the query's and those the body processor makes
      // (urlencoded, and in the processors that add them, multipart fields and JSON values), never
      // the raw body (that is REQUEST_BODY).
      c.selectors.push_back({waf::target::args, {}, {}});
      continue;
    }
    if (std::find(std::begin(body_scalars), std::end(body_scalars), coll) !=
        std::end(body_scalars)) {
      c.selectors.push_back({waf::target::body_vars, lower(coll), {}});
      continue;
    }
    const var_map* m = nullptr;
    for (const auto& vm : vars)
      if (coll == vm.name) m = &vm;
    if (!m) {
      if (std::find(std::begin(droppable), std::end(droppable), coll) != std::end(droppable)) {
        notes.push_back("dropped variable " + v + " (content not parsed)");
        continue;
      }
      why = "variable " + coll + " not supported";
      return false;
    }
    if (!key.empty()) {
      if (!m->keyed) {
        why = "variable " + v + " takes no key";
        return false;
      }
      if (key.front() == '/') {
        why = "regex variable key " + v;
        return false;
      }
    }
    if (coll == "REQUEST_BASENAME") notes.push_back("REQUEST_BASENAME as the whole decoded path");
    if (coll.starts_with("ARGS_POST"))
      notes.push_back(coll + " as " + coll.substr(0, 4) + coll.substr(9) + " (query too)");
    c.selectors.push_back({m->t, lower(key), {}});
  }
  for (auto& s : c.selectors)
    for (const auto& [coll, key] : excludes) {
      bool same =
          (coll == "ARGS" && (s.where == waf::target::args || s.where == waf::target::arg_names)) ||
          (coll == "ARGS_GET" && s.where == waf::target::args) ||
          (coll == "REQUEST_HEADERS" && s.where == waf::target::header) ||
          (coll == "REQUEST_COOKIES" && s.where == waf::target::cookies) ||
          (coll == "REQUEST_COOKIES_NAMES" && s.where == waf::target::cookie_names);
      if (same) s.exclude.push_back(key);
    }
  bool numeric = c.oper == waf::op::eq || c.oper == waf::op::ne || c.oper == waf::op::gt ||
                 c.oper == waf::op::ge || c.oper == waf::op::lt || c.oper == waf::op::le;
  if (c.count && !numeric) {
    why = "count variable with operator @" + opname;
    return false;
  }
  if (c.count) {
    for (const auto& sel : c.selectors)
      if (waf::is_stream_target(sel.where)) {
        why = "count of a body variable";
        return false;
      }
  }
  // Transformations come from the actions (t:...).
  if (d.args.size() >= 3) {
    for (const auto& a : parse_actions(d.args[2])) {
      if (a.key == "multiMatch") c.multi_match = true;
      if (a.key != "t") continue;
      std::string t = a.value;
      static const std::map<std::string, waf::transform> tmap = {
          {"urlDecodeUni", waf::transform::url_decode},
          {"urlDecode", waf::transform::url_decode},
          {"lowercase", waf::transform::lowercase},
          {"normalizePath", waf::transform::normalize_path},
          {"normalisePath", waf::transform::normalize_path},
          {"normalizePathWin", waf::transform::normalize_path_win},
          {"normalisePathWin", waf::transform::normalize_path_win},
          {"removeNulls", waf::transform::remove_nulls},
          {"htmlEntityDecode", waf::transform::html_entity_decode},
          {"compressWhitespace", waf::transform::compress_whitespace},
          {"removeWhitespace", waf::transform::remove_whitespace},
          {"base64Decode", waf::transform::base64_decode},
          {"base64decode", waf::transform::base64_decode},
          {"utf8toUnicode", waf::transform::utf8_to_unicode},
          {"jsDecode", waf::transform::js_decode},
          {"cssDecode", waf::transform::css_decode},
          {"cmdLine", waf::transform::cmd_line},
          {"replaceComments", waf::transform::replace_comments},
          {"trim", waf::transform::trim},
          {"length", waf::transform::length},
          {"hexEncode", waf::transform::hex_encode},
          {"sha1", waf::transform::sha1}};
      if (t == "none") {
        c.transforms.clear();
        continue;
      }
      auto it = tmap.find(t);
      if (it == tmap.end()) {
        why = "transformation t:" + t + " not supported";
        return false;
      }
      c.transforms.push_back(it->second);
    }
  }
  if (c.on_matched) {  // MATCHED_VAR is the value after the previous condition's transformations
    std::vector<waf::transform> t = prev->transforms;
    t.insert(t.end(), c.transforms.begin(), c.transforms.end());
    c.transforms = std::move(t);
  }
  if (c.multi_match && (c.negate || c.count || c.derived() || c.on_matched)) {
    c.multi_match = false;
    notes.push_back("multiMatch ignored on a negated, counted, derived or MATCHED_VAR condition");
  }
  if (c.transforms.size() > waf::max_stream_transforms) {
    why = "more than 8 transformations";
    return false;
  }
  // A stream target takes streamable transformations and Hyperscan-only patterns; where the
  // condition needs more, the body is left out of it (noted) rather than the rule.
  bool body_ok =
      !waf::is_code_op(c.oper) && std::all_of(c.transforms.begin(), c.transforms.end(),
                                              [](auto t) { return waf::is_streamable(t); });
  std::string msg;
  // Every pattern is tried (check_regex remembers answers): one Hyperscan rejects in prefilter mode
  // too would otherwise fail the whole rule set's compile.
  if (c.oper == waf::op::rx && c.derived()) {  // run by PCRE2 on the built value
    if (!waf::check_pcre2(c.args[0], c.caseless, &msg)) {
      why = "pattern rejected by PCRE2: " + msg;
      return false;
    }
  } else if (c.oper == waf::op::rx) {
    auto sup = waf::check_regex(c.args[0], c.caseless, &msg);
    if (sup == waf::pattern_support::rejected) {
      std::string pmsg;
      if (!waf::check_pcre2(c.args[0], c.caseless, &pmsg)) {
        why = "pattern rejected by Hyperscan (" + msg + ") and PCRE2 (" + pmsg + ")";
        return false;
      }
      // PCRE2 alone, with no Hyperscan screen: one named field or a single-valued target only.
      for (const auto& sel : c.selectors)
        if (!waf::is_stream_target(sel.where) && sel.name.empty() &&
            waf::is_multi_field(sel.where)) {
          why = "pattern rejected by Hyperscan: " + msg +
                " (PCRE2 alone runs it only on named fields)";
          return false;
        }
      notes.push_back("regex run by PCRE2 alone (Hyperscan: " + msg + ")");
      if (c.multi_match) {
        c.multi_match = false;
        notes.push_back("multiMatch ignored on a regex run by PCRE2 alone");
      }
      body_ok = false;
    }
    if (sup == waf::pattern_support::prefilter) body_ok = false;
  }
  if (!body_ok) {
    auto before = c.selectors.size();
    std::erase_if(c.selectors,
                  [](const waf::selector& s) { return waf::is_stream_target(s.where); });
    if (c.selectors.size() != before)
      notes.push_back("body not inspected by this condition (needs block mode)");
  }
  if (c.selectors.empty()) {
    why = "no supported variable";
    return false;
  }
  return true;
}

void importer::enter_ranges(pending& p, int phase) {
  for (auto& g : ranges_) {
    if (g.phase != phase) continue;
    if (g.k == skip_range::kind::engine) {
      p.r.skipped_by.push_back(g.gate);
    } else if (!p.skipped) {  // a rule already skipped (no id, a paranoia gate) keeps its reason
      p.in_range = true;
      p.in_lost_range = g.k == skip_range::kind::lost;
      p.skipped = true;
      p.reason = g.why;
    }
    if (g.marker.empty()) --g.left;
  }
  std::erase_if(ranges_, [](const skip_range& g) { return g.marker.empty() && g.left <= 0; });
}

// The gate's range, as ModSecurity takes it: decided at import when the gate's conditions are
// configuration TX variables alone, per request when they read the request head, else lost.
void importer::open_range(pending& p) {
  const std::string what =
      p.skip_marker.empty() ? "skip:" + std::to_string(p.skip_n) : "skipAfter:" + p.skip_marker;
  const std::string gate = std::to_string(p.r.id) + " " + what;
  // Never runs (inside a range taken at import), or runs in another phase: no range of its own.
  if ((p.in_range && !p.in_lost_range) || (p.phase != 1 && p.phase != 2) ||
      (p.skip_marker.empty() && p.skip_n <= 0))
    return;
  skip_range g;
  g.gate = p.r.id;
  g.phase = p.phase;
  g.marker = p.skip_marker;
  g.left = p.skip_n;
  g.k = skip_range::kind::lost;
  const bool never = p.skipped && !p.in_range && p.reason.starts_with(off_config);
  if (!p.skip_marker.empty() && markers_ahead_[p.skip_marker] <= 0) {
    // ModSecurity then skips the rest of the phase whenever the gate holds.
    const std::string why = what + ": no SecMarker " + p.skip_marker + " after it";
    p.reason =
        never ? why + "; never taken (decided at import): " + p.reason.substr(off_config.size())
              : why;
    p.skipped = true;
    if (never) return;
    g.why = "in the range of a skipAfter/skip gate not imported (" + gate + ": " + p.reason + ")";
  } else if (never) {
    p.reason = "skipAfter/skip never taken (decided at import): " + gate + ": " +
               p.reason.substr(off_config.size());
    return;
  } else if (p.skipped) {
    g.why = "in the range of a skipAfter/skip gate not imported (" + gate + ": " + p.reason + ")";
  } else if (p.r.conditions.empty()) {  // only configuration TX conditions, all holding
    std::string cond;
    for (const auto& n : p.notes)
      if (n.starts_with("decided at import: "))
        cond += (cond.empty() ? "" : ", ") + n.substr(19, n.size() - 19 - 6);
    p.skipped = true;
    p.reason = "skipAfter/skip taken on every request (decided at import): " + gate + ": " + cond;
    if (p.r.skipped_by.empty()) {
      g.k = skip_range::kind::drop;
      g.why =
          "in the range of a skipAfter/skip taken on every request (" + gate + ": " + cond + ")";
    } else {  // itself skipped on some requests: its range holds on the others only
      g.why = "in the range of a skipAfter/skip gate not imported (" + gate +
              ": taken at import, but itself skipped per request)";
    }
  } else {
    for (const auto& c : p.r.conditions)
      for (const auto& sel : c.selectors)
        if (!p.skipped && !waf::is_head_target(sel.where)) {
          p.skipped = true;
          p.reason = std::string("skipAfter/skip gate on ") + waf::to_string(sel.where) +
                     " (a gate reads the request head only)";
        }
    if (p.skipped) {
      g.why = "in the range of a skipAfter/skip gate not imported (" + gate + ": " + p.reason + ")";
    } else {
      p.r.gate = true;
      p.r.silent = p.score < 0 && !p.disruptive;  // pass,nolog: it only skips
      g.k = skip_range::kind::engine;
    }
  }
  ranges_.push_back(std::move(g));
}

void importer::finish(pending& p) {
  if (p.skips) open_range(p);
  if (p.skipped && p.score < 0 && !p.disruptive && p.reason.starts_with(off_config))
    p.reason = "no anomaly score or disruptive action (sets variables only)";  // 901's defaults
  if (!p.skipped && p.score < 0 && !p.disruptive && !p.r.silent) {
    p.skipped = true;
    p.reason = "no anomaly score or disruptive action (sets variables only)";
  }
  // Decided by configuration alone (901001 without crs-setup): never a verdict on every request.
  if (!p.skipped && p.r.conditions.empty()) {
    p.skipped = true;
    p.reason = "only configuration TX conditions (decided at import)";
  }
  if (p.skipped) {
    result.skipped.push_back({p.r.id, p.r.where, p.reason});
    return;
  }
  if (p.r.silent) {
    p.r.act = waf::action::log;
    p.r.score = 0;
  } else if (p.score >= 0) {
    p.r.act = waf::action::score;
    p.r.score = p.score;
  } else {
    p.r.act = waf::action::block;
  }
  for (const auto& n : p.notes) result.notes.push_back(std::to_string(p.r.id) + ": " + n);
  result.rules.push_back(std::move(p.r));
}

// The variable of 901's default idiom, `SecRule &TX:v "@eq 0"` (lower case), or empty.
std::string default_var(const directive& d) {
  if (d.args.size() < 2 || trim(d.args[1]) != "@eq 0") return {};
  std::string v = upper(trim(d.args[0]));
  if (!v.starts_with("&TX:") || v.find('|') != std::string::npos) return {};
  return lower(v.substr(4));
}

// tx_dynamic_: every TX variable a SecRule sets, changes (+=, -=) or unsets, but a one-directive
// default idiom's own variable.
common::result<void> importer::prescan(const std::string& path) {
  auto ds = read_directives(path);
  if (!ds) return common::unexpected(ds.error());
  bool in_chain = false;
  for (const auto& d : *ds) {
    if (d.name == "SecMarker" && !d.args.empty()) ++markers_ahead_[d.args[0]];
    if (d.name != "SecRule") continue;
    auto acts = d.args.size() >= 3 ? parse_actions(d.args[2]) : std::vector<action_item>{};
    const bool chained =
        std::any_of(acts.begin(), acts.end(), [](auto& a) { return a.key == "chain"; });
    const std::string dflt = !in_chain && !chained ? default_var(d) : std::string();
    for (const auto& a : acts) {
      if (a.key != "setvar") continue;
      std::string v = lower(trim(a.value));
      if (v.starts_with("!tx.")) {
        tx_dynamic_.insert(trim(v.substr(4)));
        continue;
      }
      if (!v.starts_with("tx.")) continue;
      const size_t eq = v.find('=');
      std::string name = trim(v.substr(3, eq == std::string::npos ? std::string::npos : eq - 3));
      std::string val = eq == std::string::npos ? std::string() : v.substr(eq + 1);
      if (name != dflt || val.starts_with("+") || val.starts_with("-")) tx_dynamic_.insert(name);
    }
    in_chain = chained;
  }
  return {};
}

common::result<void> importer::file(const std::string& path) {
  auto ds = read_directives(path);
  if (!ds) return common::unexpected(ds.error());
  std::string dir = std::filesystem::path(path).parent_path().string();
  int gate = 1;
  std::optional<pending> cur;
  for (const auto& d : *ds) {
    std::string where = path + ":" + std::to_string(d.line);
    if (d.name == "SecMarker") {
      if (d.args.empty()) continue;
      --markers_ahead_[d.args[0]];
      std::erase_if(ranges_, [&](const skip_range& g) { return g.marker == d.args[0]; });
      continue;
    }
    if (d.name == "SecAction") {
      if (d.args.empty()) continue;
      auto acts = parse_actions(d.args[0]);
      pending a;  // a SecAction is a rule of its phase too: a range may skip it
      for (const auto& x : acts)
        if (x.key == "phase") a.phase = phase_of(x.value);
      enter_ranges(a, a.phase);
      if (!a.skipped && a.r.skipped_by.empty()) {
        collect_setvars(acts, true, {});
        continue;
      }
      // Run on some requests only, or never: what it sets is no configuration.
      for (const auto& x : acts)
        if (x.key == "setvar" && lower(x.value).starts_with("tx."))
          tx_dynamic_.insert(lower(trim(x.value.substr(3, x.value.find('=') - 3))));
      continue;
    }
    if (d.name != "SecRule") continue;  // SecComponentSignature, engine settings
    auto acts = d.args.size() >= 3 ? parse_actions(d.args[2]) : std::vector<action_item>{};
    bool chained_next =
        std::any_of(acts.begin(), acts.end(), [](auto& a) { return a.key == "chain"; });
    // 901's default idiom sets configuration; its setvars are collected after its condition is
    // decided (ModSecurity tests the condition first).
    const std::string dflt = !cur && !chained_next ? default_var(d) : std::string();
    const bool skip_action = std::any_of(
        acts.begin(), acts.end(), [](auto& a) { return a.key == "skipAfter" || a.key == "skip"; });
    if (cur && skip_action && !cur->skipped) {
      cur->skipped = true;
      cur->reason =
          "skipAfter/skip inside a chain (ModSecurity takes it on the chain's first rule)";
    }
    if (!cur) {
      cur.emplace();
      pending& p = *cur;
      p.r.where = where;
      p.r.set = set_;
      p.r.paranoia = gate;
      for (const auto& a : acts) {
        if (a.key == "id")
          p.r.id = static_cast<uint32_t>(std::strtoul(a.value.c_str(), nullptr, 10));
      }
      if (p.r.id == 0) {
        p.skipped = true;
        p.reason = "no id";
      } else if (!ids_.insert(p.r.id).second) {
        p.skipped = true;
        p.reason = "duplicate id";
      }
      std::string vars0 = d.args.empty() ? std::string() : upper(d.args[0]);
      if (!p.skipped &&
          (vars0 == "TX:EXECUTING_PARANOIA_LEVEL" || vars0 == "TX:DETECTION_PARANOIA_LEVEL") &&
          d.args.size() >= 2 && d.args[1].starts_with("@lt ")) {
        gate = std::max(gate, std::atoi(d.args[1].c_str() + 4));
        p.skipped = true;
        p.reason = "paranoia gate (level applied to the following rules)";
      }
      for (const auto& a : acts) {
        if (a.key == "phase") {
          p.phase = phase_of(a.value);
        } else if (a.key == "skipAfter" && !p.skipped) {  // a paranoia gate: its level, above
          p.skips = true;
          p.skip_marker = a.value;
        } else if (a.key == "skip" && !p.skipped) {
          p.skips = true;
          p.skip_n = std::atoi(a.value.c_str());
        }
      }
      enter_ranges(p, p.phase);
      for (const auto& a : acts) {
        if (p.skipped) break;
        if (a.key == "phase") {
          if (a.value != "1" && a.value != "2" && a.value != "request") {
            p.skipped = true;
            p.reason = "response phase";
          }
        } else if (a.key == "msg") {
          p.r.message = a.value;
        } else if (a.key == "severity") {
          static const std::map<std::string, int> sev = {
              {"EMERGENCY", 0}, {"ALERT", 1},  {"CRITICAL", 2}, {"ERROR", 3},
              {"WARNING", 4},   {"NOTICE", 5}, {"INFO", 6},     {"DEBUG", 7}};
          auto it = sev.find(upper(a.value));
          p.r.severity = it != sev.end() ? it->second : std::atoi(a.value.c_str());
        } else if (a.key == "tag") {
          p.r.tags.push_back(a.value);
          if (a.value.starts_with("paranoia-level/"))
            p.r.paranoia = std::atoi(a.value.c_str() + 15);
        } else if (a.key == "ctl" && !a.value.starts_with("auditLogParts")) {
          p.skipped = true;
          p.reason = "ctl action (runtime exclusion or engine control)";
        }
      }
      if (p.r.paranoia < 1 || p.r.paranoia > 4) p.r.paranoia = std::clamp(p.r.paranoia, 1, 4);
    }
    pending& p = *cur;
    std::string gate_what;
    std::optional<bool> tx_gate;
    if (!p.skipped && !p.captured) tx_gate = static_gate(d, gate_what);
    if (tx_gate && *tx_gate) {
      p.notes.push_back("decided at import: " + gate_what + " holds");
    } else if (tx_gate) {
      p.skipped = true;
      p.reason = std::string(off_config) + gate_what;
    } else if (!p.skipped) {
      waf::condition c;
      std::string why;
      const waf::condition* prev = p.r.conditions.empty() ? nullptr : &p.r.conditions.back();
      if (!d.args.empty() && upper(d.args[0]).starts_with("MATCHED_VAR") && !prev) {
        p.skipped = true;
        p.reason = "MATCHED_VAR(S) outside a chain";
      } else if (!build_condition(d, dir, c, why, p.notes, prev, &p)) {
        p.skipped = true;
        p.reason = why;
      } else {
        p.r.conditions.push_back(std::move(c));
      }
    }
    // A rule in a skip range runs on some requests or none: its setvars are no configuration.
    if ((!tx_gate || *tx_gate) && !p.in_range)
      collect_setvars(acts, false, p.r.skipped_by.empty() ? dflt : std::string());
    // What this directive captures, for the next condition of the chain.
    p.captured =
        !p.skipped && !p.r.conditions.empty() && p.r.conditions.back().oper == waf::op::rx &&
        !p.r.conditions.back().negate && !p.r.conditions.back().count &&
        !p.r.conditions.back().derived() &&
        std::none_of(p.r.conditions.back().selectors.begin(), p.r.conditions.back().selectors.end(),
                     [](const waf::selector& sel) { return waf::is_stream_target(sel.where); }) &&
        std::any_of(acts.begin(), acts.end(), [](auto& a) { return a.key == "capture"; });
    p.captures.clear();
    for (const auto& a : acts) {
      if (!p.captured || a.key != "setvar") continue;
      size_t eq = a.value.find('=');
      if (eq == std::string::npos || !lower(a.value).starts_with("tx.")) continue;
      std::string val = a.value.substr(eq + 1), why;
      if (val.starts_with("+") || val.starts_with("-")) continue;
      auto ps = parts(val, why);
      if (!ps) continue;
      tx_capture cap;
      cap.name = lower(trim(a.value.substr(3, eq - 3)));
      if (size_t m = cap.name.find("%{"); m != std::string::npos) {
        cap.name.resize(m);
        cap.prefix = true;
      }
      cap.value = std::move(*ps);
      if (!cap.value.empty()) p.captures.push_back(std::move(cap));
    }

    for (const auto& a : acts) {
      if (a.key == "setvar") {
        std::string v = lower(a.value);
        size_t eq = v.find("=+");
        if (eq == std::string::npos) continue;
        std::string name = v.substr(0, eq);
        if (name.find("anomaly_score") == std::string::npos)
          continue;  // per-attack counters are not scored
        std::string why;
        auto val = expand(a.value.substr(eq + 2), why);
        if (val) p.score = std::max(p.score, std::atoi(val->c_str()));
      } else if (a.key == "deny" || a.key == "drop") {
        p.disruptive = true;
      }
    }
    if (!chained_next) {
      finish(p);
      cur.reset();
    }
  }
  if (cur) {
    cur->skipped = true;
    cur->reason = "chain not terminated";
    finish(*cur);
  }
  return {};
}

}  // namespace

std::map<std::string, size_t> import_result::skipped_by_reason() const {
  std::map<std::string, size_t> m;
  for (const auto& s : skipped) {
    // Group "operator @eq not supported" style reasons by their leading words.
    std::string key = s.reason;
    if (key.starts_with("pattern rejected")) key = "pattern rejected by Hyperscan";
    if (key.starts_with("unresolved macro")) key = "unresolved macro";
    // skipAfter/skip: the gate and the range it names.
    for (std::string_view g : {"in the range of a skipAfter/skip taken on every request",
                               "in the range of a skipAfter/skip gate not imported",
                               "skipAfter/skip taken on every request (decided at import)",
                               "skipAfter/skip never taken (decided at import)"})
      if (key.starts_with(g)) key = g;
    if (key.starts_with("skipAfter:") && key.find(": no SecMarker ") != std::string::npos)
      key = "skipAfter: no SecMarker after it";
    if (key.starts_with("count variable &TX"))
      key = "count variable &TX:* not supported";
    else if (key.starts_with("count variable &ARGS"))
      key = "count variable &ARGS(:name) not supported";
    ++m[key];
  }
  return m;
}

common::result<import_result> import_secrules(const std::vector<std::string>& files,
                                              const std::string& set) {
  importer im(set);
  for (const auto& f : files)
    if (auto r = im.prescan(f); !r) return common::unexpected(r.error());
  for (const auto& f : files)
    if (auto r = im.file(f); !r) return common::unexpected(r.error());
  return std::move(im.result);
}

}  // namespace rules
