// Rule validation and compilation into Hyperscan databases, with the serialised-database cache.
#include "waf/ruleset.hh"
#include "waf/detect.hh"
#include "waf/http.hh"
#include "waf/transform.hh"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace waf {

void pcre2_code_deleter::operator()(pcre2_real_code_8* c) const {
  pcre2_code_free(c);
}
void pcre2_match_data_deleter::operator()(pcre2_real_match_data_8* m) const {
  pcre2_match_data_free(m);
}
void pcre2_match_context_deleter::operator()(pcre2_real_match_context_8* m) const {
  pcre2_match_context_free(m);
}
void pcre2_jit_stack_deleter::operator()(pcre2_real_jit_stack_8* s) const {
  pcre2_jit_stack_free(s);
}

namespace {

struct fnv {
  uint64_t h = 1469598103934665603ull;
  void bytes(const void* p, size_t n) {
    auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  void str(std::string_view s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  void u64(uint64_t v) { bytes(&v, sizeof v); }
};

std::string escape_literal(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 4);
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

struct expression {
  std::string pattern;
  unsigned flags = 0;
  uint32_t id = 0;  // entry index
  bool is_rx = false;
};

struct group_key {
  target where;
  std::vector<transform> transforms;
  bool operator<(const group_key& o) const {
    if (where != o.where) return where < o.where;
    return transforms < o.transforms;
  }
};

// "1-255", "32-36,38-126", "9,10,13,32-126": ModSecurity's @validateByteRange argument.
bool parse_byte_ranges(std::string_view s, std::array<uint64_t, 4>& bits) {
  bits = {};
  bool any = false;
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    auto num = [](std::string_view d, int& out) {
      if (d.empty() || d.size() > 3) return false;
      out = 0;
      for (char ch : d) {
        if (ch < '0' || ch > '9') return false;
        out = out * 10 + (ch - '0');
      }
      return out <= 255;
    };
    size_t dash = item.find('-');
    int lo = 0, hi = 0;
    if (dash == std::string_view::npos) {
      if (!num(item, lo)) return false;
      hi = lo;
    } else if (!num(item.substr(0, dash), lo) || !num(item.substr(dash + 1), hi) || lo > hi) {
      return false;
    }
    for (int b = lo; b <= hi; ++b) bits[static_cast<size_t>(b) >> 6] |= uint64_t(1) << (b & 63);
    any = true;
  }
  return any;
}

// ModSecurity's numeric operators read both sides with std::stoi semantics: leading blanks, an
// optional sign, digits; anything else (or nothing) is 0. Clamped to int range.
int64_t parse_number(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' ||
                          s[i] == '\v' || s[i] == '\f'))
    ++i;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  int64_t v = 0;
  bool digits = false;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    digits = true;
    if (v < (int64_t(1) << 40)) v = v * 10 + (s[i] - '0');
  }
  if (!digits) return 0;
  v = neg ? -v : v;
  return std::clamp<int64_t>(v, INT32_MIN, INT32_MAX);
}

std::string where_of(const rule& r) {
  return r.where;
}
std::string rule_tag(const rule& r) {
  return "rule " + std::to_string(r.id) + ": ";
}

// condition::derive and condition::operand: what the inspector's capture step can evaluate.
common::result<void> validate_derived(const rule& r, const condition& c) {
  auto bad = [&](const std::string& m) { return common::fail(rule_tag(r) + m, where_of(r)); };
  auto groups_ok = [](const std::vector<value_part>& ps) {
    return std::all_of(ps.begin(), ps.end(), [](const value_part& p) {
      return p.k != value_part::kind::group || p.group < worker_scratch::captures;
    });
  };
  if (!c.derived()) {
    if (!c.operand.empty()) return bad("an operand built at request time needs a derived value");
    return {};
  }
  if (&c == &r.conditions[0]) return bad("the first condition cannot be derived from a capture");
  const condition& prev = (&c)[-1];
  if (prev.oper != op::rx || prev.negate || prev.count || prev.derived())
    return bad("a derived condition follows a regex condition (not negated, counted or derived)");
  for (const auto& s : prev.selectors)
    if (is_stream_target(s.where)) return bad("captures come from block targets only");
  if (c.on_matched || c.count) return bad("a derived condition is not also on_matched or counted");
  if (c.oper == op::pm || c.oper == op::validate_byte_range)
    return bad(std::string("operator ") + to_string(c.oper) + " on a derived value");
  if (c.oper == op::rx && !c.operand.empty()) return bad("a regex cannot be built at request time");
  if (!groups_ok(c.derive) || !groups_ok(c.operand)) return bad("capture group beyond 9");
  return {};
}

common::result<void> validate(const rule& r) {
  if (r.id == 0) return common::fail("rule id must be a positive integer", where_of(r));
  if (r.conditions.empty()) return common::fail(rule_tag(r) + "has no condition", where_of(r));
  if (r.score < 0 || r.score > 1000)
    return common::fail(rule_tag(r) + "score out of range 0..1000", where_of(r));
  if (r.paranoia < 1 || r.paranoia > 4)
    return common::fail(rule_tag(r) + "paranoia must be 1..4", where_of(r));
  if (r.silent && !r.gate) return common::fail(rule_tag(r) + "silent but not a gate", where_of(r));
  if (r.gate)  // decided once the head is parsed, before any rule it skips may fire
    for (const condition& c : r.conditions)
      for (const selector& s : c.selectors)
        if (!is_head_target(s.where))
          return common::fail(
              rule_tag(r) + "a gate reads head targets only, not " + to_string(s.where),
              where_of(r));
  for (const condition& c : r.conditions) {
    if (c.on_matched && &c == &r.conditions[0])
      return common::fail(rule_tag(r) + "the first condition cannot be on the previous match",
                          where_of(r));
    if (c.count && (!is_code_op(c.oper) || c.oper == op::within || c.oper == op::detect_sqli ||
                    c.oper == op::detect_xss || c.oper == op::validate_url_encoding ||
                    c.oper == op::validate_utf8_encoding || c.on_matched))
      return common::fail(rule_tag(r) + "a count condition takes a numeric operator", where_of(r));
    if (c.on_matched && c.negate)
      return common::fail(rule_tag(r) + "a condition on the previous match cannot be negated",
                          where_of(r));
    if (auto v = validate_derived(r, c); !v) return v;
    if (c.multi_match && (c.negate || c.count || c.derived()))
      return common::fail(rule_tag(r) + "multi_match on a negated, counted or derived condition",
                          where_of(r));
    if (c.oper == op::validate_byte_range) {
      std::array<uint64_t, 4> b{};
      if (!parse_byte_ranges(c.args[0], b))
        return common::fail(rule_tag(r) + "validate_byte_range: bad range list '" + c.args[0] + "'",
                            where_of(r));
      if ((b[0] & b[1] & b[2] & b[3]) == ~uint64_t(0))
        return common::fail(rule_tag(r) + "validate_byte_range allows every byte (never matches)",
                            where_of(r));
    }
    if (c.oper == op::detect_sqli || c.oper == op::detect_xss) {
      std::string why;
      if (!libinjection_load(&why)) return common::fail(rule_tag(r) + why, where_of(r));
    }
    if (c.selectors.empty())
      return common::fail(rule_tag(r) + "condition has no target", where_of(r));
    if (c.args.empty()) return common::fail(rule_tag(r) + "condition has no pattern", where_of(r));
    if (c.oper != op::pm && c.args.size() != 1)
      return common::fail(
          rule_tag(r) + std::string("operator ") + to_string(c.oper) + " takes one pattern",
          where_of(r));
    for (const auto& a : c.args)
      if (a.empty() && c.oper != op::rx && c.oper != op::streq && c.oper != op::within &&
          !takes_no_arg(c.oper))
        return common::fail(rule_tag(r) + "empty pattern", where_of(r));
    if (c.transforms.size() > max_stream_transforms)
      return common::fail(rule_tag(r) + "too many transformations", where_of(r));
    if (c.oper == op::rx && !c.derived()) {
      std::string hmsg, pmsg;
      if (check_regex(c.args[0], c.caseless, &hmsg) == pattern_support::rejected) {
        // PCRE2 alone then runs it on each field its selectors accept, with no Hyperscan screen:
        // only on one named field or a single-valued target, never on a stream.
        if (!check_pcre2(c.args[0], c.caseless, &pmsg))
          return common::fail(
              rule_tag(r) + "pattern rejected by Hyperscan (" + hmsg + ") and PCRE2 (" + pmsg + ")",
              where_of(r));
        if (c.multi_match)
          return common::fail(rule_tag(r) + "multi_match on a regex Hyperscan rejects",
                              where_of(r));
        for (const auto& s : c.selectors)
          if (is_stream_target(s.where) || (s.name.empty() && is_multi_field(s.where)))
            return common::fail(rule_tag(r) + "pattern rejected by Hyperscan (" + hmsg +
                                    "): PCRE2 alone runs it only on one named field or a "
                                    "single-valued block target",
                                where_of(r));
      }
    }
    for (const auto& s : c.selectors) {
      if (is_stream_target(s.where)) {
        if (is_code_op(c.oper))
          return common::fail(
              rule_tag(r) + "operator " + to_string(c.oper) + " cannot apply to a stream target",
              where_of(r));
        for (transform t : c.transforms)
          if (!is_streamable(t))
            return common::fail(rule_tag(r) + "transformation " + to_string(t) +
                                    " cannot run on stream target " + to_string(s.where),
                                where_of(r));
        if (!s.name.empty())
          return common::fail(
              rule_tag(r) + "stream target " + std::string(to_string(s.where)) + " takes no name",
              where_of(r));
      }
    }
  }
  return {};
}

}  // namespace

struct ruleset_builder {
  static common::result<std::shared_ptr<const ruleset>> build(std::vector<rule> rules,
                                                              const compile_options& opts);
};

namespace {

// Hyperscan's flags for a condition's expressions. ModSecurity runs PCRE with DOTALL|MULTILINE.
unsigned flags_for(const condition& c) {
  unsigned f = HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
  if (c.oper == op::rx) f |= HS_FLAG_DOTALL | HS_FLAG_MULTILINE;
  if (c.caseless) f |= HS_FLAG_CASELESS;
  return f;
}

std::string pattern_for(const condition& c, std::string_view arg) {
  switch (c.oper) {
    case op::rx:
      return std::string(arg);
    case op::pm:
    case op::contains:
      return escape_literal(arg);
    case op::begins_with:
      return "\\A" + escape_literal(arg);
    case op::ends_with:
      return escape_literal(arg) + "\\z";
    case op::streq:
      return "\\A" + escape_literal(arg) + "\\z";
    case op::validate_byte_range: {
      // Any byte outside the allowed ranges: one negated class, so it also runs on streams.
      std::array<uint64_t, 4> b{};
      parse_byte_ranges(arg, b);
      std::string cls = "[^";
      char hex[8];
      for (int v = 0; v < 256; ++v) {
        if (!((b[static_cast<size_t>(v) >> 6] >> (v & 63)) & 1)) continue;
        int e = v;
        while (e + 1 < 256 && ((b[static_cast<size_t>(e + 1) >> 6] >> ((e + 1) & 63)) & 1)) ++e;
        std::snprintf(hex, sizeof hex, "\\x%02x", v);
        cls += hex;
        if (e > v) {
          std::snprintf(hex, sizeof hex, "-\\x%02x", e);
          cls += hex;
        }
        v = e;
      }
      return cls + "]";
    }
    default:
      break;  // code operators (is_code_op)
  }
  return {};
}

std::string hs_version_string() {
  return hs_version();
}

// Compiled databases by content: the mode and each expression's pattern and flags, in order
// (Hyperscan ids are positions, mapped to entries by the ruleset). A reload that changes a few
// rules compiles only the databases those rules are in; the others are the running set's, shared.
// Entries live as long as a ruleset holds their database, and the last compiled set's are kept
// (a set compiled again, or reloaded unchanged without a cache, costs no compile).
std::string memo_key(const std::vector<expression>& exprs, bool stream) {
  std::string k(1, stream ? 's' : 'b');
  for (const auto& e : exprs) {
    const unsigned f = e.flags & ~unsigned(HS_FLAG_PREFILTER);  // as asked, before any fallback
    const auto n = static_cast<uint32_t>(e.pattern.size());
    k.append(reinterpret_cast<const char*>(&f), sizeof f);
    k.append(reinterpret_cast<const char*>(&n), sizeof n);
    k.append(e.pattern);
  }
  return k;
}

class db_memo {
 public:
  static db_memo& get() {
    static db_memo m;
    return m;
  }
  // The database compiled from the same expressions, with their prefilter flags set as that
  // compile left them; null if none is alive.
  hs_database_ptr find(const std::string& key, std::vector<expression>& exprs) {
    std::lock_guard lk(mu_);
    auto it = memo_.find(key);
    if (it == memo_.end()) return nullptr;
    hs_database_ptr db = it->second.db.lock();
    if (!db || it->second.prefilter.size() != exprs.size()) return nullptr;
    for (size_t i = 0; i < exprs.size(); ++i)
      if (it->second.prefilter[i]) exprs[i].flags |= HS_FLAG_PREFILTER;
    return db;
  }
  void put(const std::string& key, const std::vector<expression>& exprs,
           const hs_database_ptr& db) {
    std::vector<bool> pf;
    for (const auto& e : exprs) pf.push_back((e.flags & HS_FLAG_PREFILTER) != 0);
    std::lock_guard lk(mu_);
    memo_[key] = {db, std::move(pf)};
  }
  // After a successful compile: these databases stay alive until the next one; dead entries go.
  void keep(std::vector<hs_database_ptr> dbs) {
    std::lock_guard lk(mu_);
    last_ = std::move(dbs);
    std::erase_if(memo_, [](const auto& kv) { return kv.second.db.expired(); });
  }

 private:
  struct value {
    std::weak_ptr<hs_database_t> db;
    std::vector<bool> prefilter;
  };
  std::mutex mu_;
  std::unordered_map<std::string, value> memo_;
  std::vector<hs_database_ptr> last_;
};

// Expressions that need prefilter mode get HS_FLAG_PREFILTER in `exprs`; `entries` is read only
// (compiles run in parallel).
common::result<hs_database_ptr> compile_group(std::vector<expression>& exprs, bool stream,
                                              const std::vector<entry>& entries,
                                              const std::vector<rule>& rules) {
  // Check expressions one by one first so that an error names its rule; Hyperscan-only rejects
  // (lookarounds, backreferences) get prefilter mode where a PCRE2 confirm is possible.
  for (auto& e : exprs) {
    hs_expr_info_t* info = nullptr;
    hs_compile_error_t* err = nullptr;
    const entry& en = entries[e.id];
    if (hs_expression_info(e.pattern.c_str(), e.flags, &info, &err) == HS_SUCCESS) {
      std::free(info);
      continue;
    }
    std::string msg = err ? err->message : "unknown error";
    hs_free_compile_error(err);
    const rule& r = rules[en.rule];
    if (!e.is_rx || stream)
      return common::fail(
          "rule " + std::to_string(r.id) + ": pattern rejected by Hyperscan: " + msg +
              (stream && e.is_rx ? " (a PCRE2 confirm is not possible on a stream target)" : ""),
          r.where);
    if (hs_expression_info(e.pattern.c_str(), e.flags | HS_FLAG_PREFILTER, &info, &err) !=
        HS_SUCCESS) {
      std::string m2 = err ? err->message : "unknown error";
      hs_free_compile_error(err);
      return common::fail("rule " + std::to_string(r.id) + ": pattern rejected by Hyperscan: " + m2,
                          r.where);
    }
    std::free(info);
    e.flags |= HS_FLAG_PREFILTER;
  }
  const std::string key = memo_key(exprs, stream);
  if (auto db = db_memo::get().find(key, exprs)) return db;
  for (int attempt = 0; attempt < 64; ++attempt) {
    std::vector<const char*> pats;
    std::vector<unsigned> flags, ids;
    for (auto& e : exprs) {
      pats.push_back(e.pattern.c_str());
      flags.push_back(e.flags);
      ids.push_back(static_cast<unsigned>(ids.size()));  // local: the caller maps them to entries
    }
    hs_database_t* db = nullptr;
    hs_compile_error_t* err = nullptr;
    if (hs_compile_multi(pats.data(), flags.data(), ids.data(), static_cast<unsigned>(pats.size()),
                         stream ? HS_MODE_STREAM : HS_MODE_BLOCK, nullptr, &db,
                         &err) == HS_SUCCESS) {
      hs_database_ptr out(db, hs_database_deleter{});
      db_memo::get().put(key, exprs, out);
      return out;
    }
    std::string msg = err ? err->message : "unknown error";
    int idx = err ? err->expression : -1;
    hs_free_compile_error(err);
    if (idx < 0 || static_cast<size_t>(idx) >= exprs.size())
      return common::fail("Hyperscan compile failed: " + msg);
    auto& e = exprs[static_cast<size_t>(idx)];
    const rule& r = rules[entries[e.id].rule];
    if (!e.is_rx || stream || (e.flags & HS_FLAG_PREFILTER))
      return common::fail(
          "rule " + std::to_string(r.id) + ": pattern rejected by Hyperscan: " + msg, r.where);
    e.flags |= HS_FLAG_PREFILTER;
  }
  return common::fail("Hyperscan compile did not converge");
}

}  // namespace

bool check_pcre2(const std::string& rx, bool caseless, std::string* message) {
  int ec = 0;
  PCRE2_SIZE eo = 0;
  uint32_t f = PCRE2_DOTALL | PCRE2_MULTILINE | (caseless ? PCRE2_CASELESS : 0);
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rx.data()), rx.size(), f, &ec, &eo, nullptr);
  if (code) {
    pcre2_code_free(code);
    return true;
  }
  if (message) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof msg);
    *message = reinterpret_cast<char*>(msg);
  }
  return false;
}

pattern_support check_regex(const std::string& rx, bool caseless, std::string* message) {
  // A full single-pattern compile: hs_expression_info accepts patterns that later fail on resource
  // limits ("Pattern is too large"), which only prefilter mode gets past. Answers are remembered
  // for the process, so a reload of an unchanged CRS does not compile its regexes again.
  static std::mutex memo_mu;
  static std::map<std::pair<std::string, bool>, std::pair<pattern_support, std::string>> memo;
  {
    std::lock_guard<std::mutex> lk(memo_mu);
    auto it = memo.find({rx, caseless});
    if (it != memo.end()) {
      if (message) *message = it->second.second;
      return it->second.first;
    }
  }
  auto remember = [&](pattern_support ps, std::string msg) {
    std::lock_guard<std::mutex> lk(memo_mu);
    memo[{rx, caseless}] = {ps, msg};
    if (message) *message = std::move(msg);
    return ps;
  };
  std::string last;
  unsigned f = HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY | HS_FLAG_DOTALL | HS_FLAG_MULTILINE |
               (caseless ? HS_FLAG_CASELESS : 0u);
  for (unsigned extra : {0u, unsigned(HS_FLAG_PREFILTER)}) {
    hs_database_t* db = nullptr;
    hs_compile_error_t* err = nullptr;
    if (hs_compile(rx.c_str(), f | extra, HS_MODE_STREAM, nullptr, &db, &err) == HS_SUCCESS) {
      hs_free_database(db);
      return remember(extra ? pattern_support::prefilter : pattern_support::full, {});
    }
    if (err) last = err->message;
    hs_free_compile_error(err);
  }
  return remember(pattern_support::rejected, last);
}

namespace {

// Whether a regex needs prefilter mode in a block database: its own block-mode compile fails
// (resource limits) where the prefilter one succeeds. check_regex answers for stream mode, which
// refuses more; remembered for the process as check_regex is.
bool block_needs_prefilter(const std::string& pattern, unsigned flags) {
  static std::mutex memo_mu;
  static std::map<std::pair<std::string, unsigned>, bool> memo;
  {
    std::lock_guard<std::mutex> lk(memo_mu);
    if (auto it = memo.find({pattern, flags}); it != memo.end()) return it->second;
  }
  bool need = false;
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  if (hs_compile(pattern.c_str(), flags, HS_MODE_BLOCK, nullptr, &db, &err) == HS_SUCCESS) {
    hs_free_database(db);
  } else {
    hs_free_compile_error(err);
    err = nullptr;
    if (hs_compile(pattern.c_str(), flags | HS_FLAG_PREFILTER, HS_MODE_BLOCK, nullptr, &db, &err) ==
        HS_SUCCESS) {
      hs_free_database(db);
      need = true;
    } else {
      hs_free_compile_error(err);
    }
  }
  std::lock_guard<std::mutex> lk(memo_mu);
  memo[{pattern, flags}] = need;
  return need;
}

}  // namespace

uint64_t hash_rules(std::span<const rule> rules) {
  fnv h;
  h.str(hs_version_string());
  h.str("edge-waf-groups-4");  // bump when the database layout changes
  h.u64(ruleset::block_chunk_min);
  h.u64(ruleset::block_chunk_max);
  h.u64(ruleset::block_chunk_cut);
  h.u64(rules.size());
  for (const rule& r : rules) {
    h.u64(r.id);
    h.u64(r.conditions.size());
    for (const condition& c : r.conditions) {
      h.u64(static_cast<uint64_t>(c.oper) | (uint64_t(c.caseless) << 8) |
            (uint64_t(c.negate) << 9) | (uint64_t(c.on_matched) << 10) | (uint64_t(c.count) << 11) |
            (uint64_t(c.multi_match) << 12));
      h.u64(c.selectors.size());
      for (const selector& s : c.selectors) {
        h.u64(static_cast<uint64_t>(s.where));
        h.str(s.name);
        h.u64(s.exclude.size());
        for (const auto& x : s.exclude) h.str(x);
      }
      h.u64(c.args.size());
      for (const auto& a : c.args) h.str(a);
      h.u64(c.transforms.size());
      for (transform t : c.transforms) h.u64(static_cast<uint64_t>(t));
      for (const auto* parts : {&c.derive, &c.operand}) {
        h.u64(parts->size());
        for (const value_part& p : *parts) {
          h.u64(static_cast<uint64_t>(p.k) | (uint64_t(p.group) << 8));
          h.str(p.text);
        }
      }
    }
    h.u64(uint64_t(r.gate) | (uint64_t(r.silent) << 1));
    h.u64(r.skipped_by.size());
    for (uint32_t id : r.skipped_by) h.u64(id);
  }
  return h.h;
}

namespace {

std::filesystem::path cache_path(const std::string& dir, uint64_t hash) {
  char name[64];
  std::snprintf(name, sizeof name, "waf-%016llx.hsdb", static_cast<unsigned long long>(hash));
  return std::filesystem::path(dir) / name;
}

// Cache file (little-endian host layout; the platform is part of the header):
//   magic "EDGEWAF2" | header: format, rules hash, entry count, database slot count, Hyperscan
//   version, platform | per entry: prefilter flag | per slot (each group, then the block database):
//   blob size + blob | FNV-1a 64 of all before.
// An entry is used only if every header field is what this build and this rule set expect, the
// checksum holds and every blob deserialises into a database of the group's mode. The file is
// read with O_NOFOLLOW and must be a regular file owned by this user that no one else can write.
constexpr char cache_magic[8] = {'E', 'D', 'G', 'E', 'W', 'A', 'F', '2'};
constexpr uint32_t cache_format = 3;
constexpr size_t cache_max_bytes = size_t(1) << 30;

struct cache_header {
  uint32_t format = cache_format;
  uint32_t pointer_bits = sizeof(void*) * 8;
  uint64_t rules_hash = 0;
  uint64_t entries = 0;
  uint64_t groups = 0;
  char hs_version[64] = {};
  hs_platform_info_t platform{};
};

cache_header expected_header(uint64_t hash, size_t entries, size_t groups) {
  cache_header h;
  h.rules_hash = hash;
  h.entries = entries;
  h.groups = groups;
  std::snprintf(h.hs_version, sizeof h.hs_version, "%s", hs_version());
  if (hs_populate_platform(&h.platform) != HS_SUCCESS) h.platform = {};
  return h;
}

bool same_header(const cache_header& a, const cache_header& b) {
  return a.format == b.format && a.pointer_bits == b.pointer_bits && a.rules_hash == b.rules_hash &&
         a.entries == b.entries && a.groups == b.groups &&
         std::memcmp(a.hs_version, b.hs_version, sizeof a.hs_version) == 0 &&
         a.platform.tune == b.platform.tune && a.platform.cpu_features == b.platform.cpu_features;
}

uint64_t checksum(std::string_view data) {
  fnv h;
  h.bytes(data.data(), data.size());
  return h.h;
}

enum class cache_load : uint8_t { loaded, absent, rejected };

// A database the cache holds: a stream group's, or the block database (block groups' slots stay
// empty).
struct db_slot {
  hs_database_ptr* db;
  bool stream;
  bool needed;  // the set has expressions for it
};

// Why an entry was rejected goes to `why` (for the log and compile_stats::cache_rejected).
cache_load load_cache(const std::filesystem::path& p, uint64_t hash, std::vector<entry>& entries,
                      const std::vector<db_slot>& slots, std::string& why) {
  int fd = ::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return cache_load::absent;
    why = std::string("cannot open: ") + std::strerror(errno);
    return cache_load::rejected;
  }
  struct stat sb {};
  std::string data;
  bool ok = ::fstat(fd, &sb) == 0;
  if (!ok || !S_ISREG(sb.st_mode)) {
    why = "not a regular file";
  } else if (sb.st_uid != ::geteuid() || (sb.st_mode & (S_IWGRP | S_IWOTH))) {
    why = "not owned by this user, or writable by group or others";
    ok = false;
  } else if (static_cast<uint64_t>(sb.st_size) > cache_max_bytes) {
    why = "larger than 1 GiB";
    ok = false;
  } else {
    data.resize(static_cast<size_t>(sb.st_size));
    size_t got = 0;
    while (got < data.size()) {
      ssize_t r = ::read(fd, data.data() + got, data.size() - got);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    if (got != data.size()) {
      why = "short read";
      ok = false;
    }
  }
  ::close(fd);
  if (!ok) return cache_load::rejected;

  auto reject = [&](const char* w) {
    why = w;
    return cache_load::rejected;
  };
  if (data.size() < sizeof cache_magic + sizeof(cache_header) + 8) return reject("truncated");
  if (std::memcmp(data.data(), cache_magic, sizeof cache_magic) != 0) return reject("bad magic");
  uint64_t sum = 0;
  std::memcpy(&sum, data.data() + data.size() - 8, 8);
  if (sum != checksum(std::string_view(data).substr(0, data.size() - 8)))
    return reject("checksum mismatch");
  cache_header h;
  std::memcpy(&h, data.data() + sizeof cache_magic, sizeof h);
  cache_header want = expected_header(hash, entries.size(), slots.size());
  if (h.rules_hash != want.rules_hash)
    return reject("built from other rules (content hash mismatch)");
  if (!same_header(h, want))
    return reject("built by another Hyperscan version, platform or format");
  size_t off = sizeof cache_magic + sizeof h;
  const size_t end = data.size() - 8;
  auto take = [&](void* dst, size_t n) {
    if (n > end - off) return false;
    std::memcpy(dst, data.data() + off, n);
    off += n;
    return true;
  };
  std::vector<uint8_t> pf(entries.size());
  if (!take(pf.data(), pf.size())) return reject("truncated");
  std::vector<hs_database_ptr> dbs;
  for (const auto& g : slots) {
    uint64_t sz = 0;
    if (!take(&sz, 8) || sz > end - off) return reject("truncated");
    if ((sz != 0) != g.needed) return reject("database missing or unexpected");
    if (sz == 0) {
      dbs.emplace_back();
      continue;
    }
    hs_database_t* db = nullptr;
    if (hs_deserialize_database(data.data() + off, sz, &db) != HS_SUCCESS)
      return reject("database does not load");
    hs_database_ptr owned(db, hs_database_deleter{});
    off += sz;
    size_t ssz = 0;
    bool is_stream = hs_stream_size(db, &ssz) == HS_SUCCESS;
    if (is_stream != g.stream) return reject("database mode does not match its group");
    dbs.push_back(std::move(owned));
  }
  if (off != end) return reject("trailing bytes");
  for (size_t i = 0; i < entries.size(); ++i) entries[i].prefilter = pf[i] != 0;
  for (size_t i = 0; i < slots.size(); ++i) *slots[i].db = std::move(dbs[i]);
  return cache_load::loaded;
}

// Written to a mkstemp file (mode 0600) in the cache directory, then renamed over the entry: a
// concurrent reader sees the old file or the new one, never half of one. Failures are returned
// for the log; a failed store only costs the next start a compile.
common::result<void> store_cache(const std::filesystem::path& p, uint64_t hash,
                                 const std::vector<entry>& entries,
                                 const std::vector<db_slot>& slots) {
  std::string out(cache_magic, sizeof cache_magic);
  cache_header h = expected_header(hash, entries.size(), slots.size());
  out.append(reinterpret_cast<const char*>(&h), sizeof h);
  for (const auto& e : entries) out.push_back(e.prefilter ? 1 : 0);
  for (const auto& g : slots) {
    uint64_t sz = 0;
    char* blob = nullptr;
    if (*g.db && hs_serialize_database(g.db->get(), &blob, &sz) != HS_SUCCESS) {
      return common::fail("hs_serialize_database failed");
    }
    out.append(reinterpret_cast<const char*>(&sz), 8);
    if (blob) {
      out.append(blob, sz);
      std::free(blob);
    }
  }
  uint64_t sum = checksum(out);
  out.append(reinterpret_cast<const char*>(&sum), 8);

  std::error_code ec;
  const auto dir = p.parent_path();
  if (!std::filesystem::is_directory(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return common::fail("cannot create the cache directory: " + ec.message(), dir.string());
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  }
  std::string tmpl = (dir / ".waf-XXXXXX").string();
  int fd = ::mkstemp(tmpl.data());  // mode 0600, O_EXCL: never a file someone else prepared
  if (fd < 0) return common::fail(std::string("mkstemp: ") + std::strerror(errno), dir.string());
  size_t put = 0;
  while (put < out.size()) {
    ssize_t w = ::write(fd, out.data() + put, out.size() - put);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    put += static_cast<size_t>(w);
  }
  bool ok = put == out.size() && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmpl.c_str(), p.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmpl.c_str());
    return common::fail(std::string("cannot write the cache entry: ") + std::strerror(err),
                        p.string());
  }
  return {};
}

}  // namespace

common::result<std::shared_ptr<const ruleset>> ruleset_builder::build(std::vector<rule> rules,
                                                                      const compile_options& opts) {
  auto t0 = std::chrono::steady_clock::now();
  std::unordered_set<uint32_t> ids;
  for (const rule& r : rules) {
    if (auto v = validate(r); !v) return common::unexpected(v.error());
    if (!ids.insert(r.id).second)
      return common::fail("duplicate rule id " + std::to_string(r.id), r.where);
  }
  auto rs = std::make_shared<ruleset>();
  rs->rules_ = std::move(rules);
  rs->hash_ = hash_rules(rs->rules_);
  const auto& R = rs->rules_;
  std::unordered_map<uint32_t, uint32_t> gate_of;  // rule id -> index into gates_
  rs->skipped_by_.resize(R.size());
  for (uint32_t ri = 0; ri < R.size(); ++ri) {
    for (uint32_t id : R[ri].skipped_by) {
      auto g = gate_of.find(id);  // gates are decided in rule order: a gate skips later rules
      if (g == gate_of.end())
        return common::fail(
            rule_tag(R[ri]) + "skipped by " + std::to_string(id) + ", which is not an earlier gate",
            R[ri].where);
      rs->skipped_by_[ri].push_back(g->second);
    }
    if (R[ri].gate) {
      gate_of.emplace(R[ri].id, static_cast<uint32_t>(rs->gates_.size()));
      rs->gates_.push_back(ri);
    }
  }

  std::map<group_key, size_t> group_index;
  std::vector<std::vector<expression>> group_exprs;
  for (uint32_t ri = 0; ri < R.size(); ++ri) {
    rs->rule_first_condition_.push_back(static_cast<uint32_t>(rs->conditions_.size()));
    for (const condition& c : R[ri].conditions) {
      uint32_t ci = static_cast<uint32_t>(rs->conditions_.size());
      compiled_condition cc;
      cc.cond = &c;
      cc.rule = ri;
      cc.number = parse_number(c.args[0]);
      if (c.on_matched || c.derived()) {
        compiled_condition& prev = rs->conditions_.back();  // validate(): never the first condition
        if (prev.field_slot < 0) prev.field_slot = static_cast<int32_t>(rs->field_slots_++);
        cc.field_slot = static_cast<int32_t>(rs->field_slots_++);
        if (c.derived()) prev.derived_next = static_cast<int32_t>(ci);
      }
      rs->conditions_.push_back(std::move(cc));
      if (c.derived()) continue;  // evaluated when the previous condition holds on a field
      if (c.count) {              // evaluated from the parsed head, not scanned
        rs->count_conditions_.push_back(ci);
        continue;
      }
      const pattern_support support =
          c.oper == op::rx ? check_regex(c.args[0], c.caseless) : pattern_support::full;
      const bool pcre_only = support == pattern_support::rejected;
      std::vector<size_t> groups_of_cond;
      // multi_match: one group per prefix of the transformations (the value before them and after
      // each); a match in any of them is a match of the condition. A code operator (libinjection's
      // detectors: 942100) stays in the full pipeline's group and runs there on each step whose
      // transformation changed the value (entry::multi_steps), as ModSecurity does, not once per
      // prefix group on every field.
      // Hyperscan operators on block targets likewise: the full pipeline's group scans the
      // intermediate values that changed, with only multi_steps entries taking those matches
      // (scan_group::multi_steps). Stream targets have no intermediate values to rescan: they get
      // one stream group per prefix.
      const bool mm = c.multi_match && !pcre_only;  // validate(): never both
      const bool steps = mm && !c.transforms.empty();
      size_t first_prefix = mm ? 0 : c.transforms.size();
      for (size_t k = first_prefix; k <= c.transforms.size(); ++k)
        for (const selector& sel : c.selectors) {
          bool stream = is_stream_target(sel.where);
          if (steps && !stream && k < c.transforms.size()) continue;
          // Block groups share the key target::request_line (the first enumerator) as "any".
          group_key key{stream ? sel.where : target::request_line,
                        std::vector<transform>(c.transforms.begin(), c.transforms.begin() + k)};
          auto [it, fresh] = group_index.try_emplace(key, rs->groups_.size());
          if (fresh) {
            scan_group g;
            g.where = key.where;
            g.stream = stream;
            g.transforms = key.transforms;
            rs->groups_.push_back(std::move(g));
            group_exprs.emplace_back();
          }
          scan_group& grp = rs->groups_[it->second];
          grp.targets |= 1u << static_cast<unsigned>(sel.where);
          if (sel.name.empty()) {
            grp.unnamed |= 1u << static_cast<unsigned>(sel.where);
          } else if (std::find(grp.names.begin(), grp.names.end(),
                               std::make_pair(sel.where, sel.name)) == grp.names.end()) {
            grp.names.emplace_back(sel.where, sel.name);
          }
          if (std::find(groups_of_cond.begin(), groups_of_cond.end(), it->second) ==
              groups_of_cond.end())
            groups_of_cond.push_back(it->second);
        }
      for (size_t gi : groups_of_cond) {
        uint32_t ei = static_cast<uint32_t>(rs->entries_.size());
        const bool entry_steps = steps && !rs->groups_[gi].stream;
        rs->entries_.push_back(
            entry{ri, ci, false, pcre_only, entry_steps, static_cast<uint32_t>(gi)});
        if (entry_steps && !is_code_op(c.oper)) rs->groups_[gi].multi_steps = true;
        if (c.negate) rs->groups_[gi].negated.push_back(ei);
        if (is_code_op(c.oper) || pcre_only) {
          rs->groups_[gi].direct.push_back(ei);
          continue;
        }
        // A regex that alone needs prefilter mode in block mode needs it in a block database
        // too: set from the start, a database holding several such regexes is not compiled again
        // for each of them.
        for (const auto& a : c.args) {
          expression x{pattern_for(c, a), flags_for(c), ei, c.oper == op::rx};
          if (!rs->groups_[gi].stream && support == pattern_support::prefilter &&
              block_needs_prefilter(x.pattern, x.flags))
            x.flags |= HS_FLAG_PREFILTER;
          group_exprs[gi].push_back(std::move(x));
        }
      }
    }
  }
  rs->rule_first_condition_.push_back(static_cast<uint32_t>(rs->conditions_.size()));

  // Stream groups keep a database each (a stream per group and flow). Block groups' expressions
  // go into databases per target (ruleset::block_db), holding the entries whose conditions select
  // that target; a target joins another's database when that adds at most a fifth to it. Match
  // ids are entry indices in all of them.
  std::array<std::vector<uint32_t>, target_count> per_target;  // entry ids, ascending
  for (size_t gi = 0; gi < rs->groups_.size(); ++gi) {
    scan_group& g = rs->groups_[gi];
    g.hs = !group_exprs[gi].empty();
    rs->stats_.expressions += group_exprs[gi].size();
    if (g.stream) continue;
    rs->block_targets_ |= g.targets;
    rs->block_order_.push_back(static_cast<uint32_t>(gi));
  }
  std::stable_sort(rs->block_order_.begin(), rs->block_order_.end(), [&](uint32_t x, uint32_t y) {
    return rs->groups_[x].transforms < rs->groups_[y].transforms;
  });
  for (uint32_t ei = 0; ei < rs->entries_.size(); ++ei) {
    const entry& e = rs->entries_[ei];
    const scan_group& g = rs->groups_[e.group];
    if (g.stream || e.pcre_only || is_code_op(rs->conditions_[e.condition].cond->oper)) continue;
    uint32_t seen = 0;
    for (const selector& sel : rs->conditions_[e.condition].cond->selectors) {
      auto t = static_cast<unsigned>(sel.where);
      if (is_stream_target(sel.where) || (seen & (1u << t))) continue;
      seen |= 1u << t;
      per_target[t].push_back(ei);
    }
  }
  std::vector<std::vector<uint32_t>> clusters;  // entry ids per block database
  {
    std::vector<size_t> order;
    for (size_t t = 0; t < target_count; ++t)
      if (!per_target[t].empty()) order.push_back(t);
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
      return per_target[x].size() > per_target[y].size();
    });
    std::vector<size_t> cluster_of(target_count, SIZE_MAX);
    for (size_t t : order) {
      std::vector<uint32_t> u;
      size_t ci = 0;
      for (; ci < clusters.size(); ++ci) {
        u.clear();
        std::set_union(clusters[ci].begin(), clusters[ci].end(), per_target[t].begin(),
                       per_target[t].end(), std::back_inserter(u));
        if (u.size() * 5 <= std::min(clusters[ci].size(), per_target[t].size()) * 6) break;
      }
      if (ci == clusters.size()) {
        clusters.push_back(per_target[t]);
      } else {
        clusters[ci] = std::move(u);
      }
      cluster_of[t] = ci;
    }
    // Each cluster in chunks, ordered by pipeline (a block group's key) so that a chunk holds few
    // groups: a value is scanned only with the chunks of the groups that made it
    // (ruleset::block_db_groups), so a field whose pipelines all make different values costs
    // about what one database per group did. The cuts are content-defined, as rsync cuts files:
    // after an entry whose hash (rule id, condition) says so, within block_chunk_min/max. Adding
    // or removing a rule moves the cuts of its own chunk only, so a reload recompiles that chunk
    // and the compile memo gives back the rest. A target's databases are its cluster's.
    std::vector<std::pair<uint32_t, uint32_t>> span_of(clusters.size());
    std::vector<std::vector<uint32_t>> chunks;
    for (size_t ci = 0; ci < clusters.size(); ++ci) {
      std::stable_sort(clusters[ci].begin(), clusters[ci].end(), [&](uint32_t x, uint32_t y) {
        return rs->groups_[rs->entries_[x].group].transforms <
               rs->groups_[rs->entries_[y].group].transforms;
      });
      span_of[ci].first = static_cast<uint32_t>(chunks.size());
      std::vector<uint32_t> cur;
      for (uint32_t ei : clusters[ci]) {
        cur.push_back(ei);
        const entry& e = rs->entries_[ei];
        fnv h;
        h.u64(R[e.rule].id);
        h.u64(e.condition - rs->rule_first_condition_[e.rule]);
        uint64_t x = h.h ^ (h.h >> 33);  // FNV's low bits depend on the inputs' low bits alone
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        if (cur.size() >= ruleset::block_chunk_max ||
            (cur.size() >= ruleset::block_chunk_min && x % ruleset::block_chunk_cut == 0)) {
          chunks.push_back(std::move(cur));
          cur.clear();
        }
      }
      if (!cur.empty()) chunks.push_back(std::move(cur));
      span_of[ci].second = static_cast<uint32_t>(chunks.size()) - span_of[ci].first;
    }
    for (size_t t = 0; t < target_count; ++t)
      if (cluster_of[t] != SIZE_MAX) rs->target_dbs_[t] = span_of[cluster_of[t]];
    for (const auto& ch : chunks) {
      std::vector<uint32_t> gs;
      for (uint32_t ei : ch) gs.push_back(rs->entries_[ei].group);
      std::sort(gs.begin(), gs.end());
      gs.erase(std::unique(gs.begin(), gs.end()), gs.end());
      rs->block_db_groups_.push_back(std::move(gs));
    }
    clusters = std::move(chunks);
  }
  std::vector<std::vector<expression>> block_exprs(clusters.size());
  {
    std::vector<std::vector<const expression*>> of_entry(rs->entries_.size());
    for (size_t gi = 0; gi < rs->groups_.size(); ++gi)
      if (!rs->groups_[gi].stream)
        for (const auto& e : group_exprs[gi]) of_entry[e.id].push_back(&e);
    for (size_t ci = 0; ci < clusters.size(); ++ci)
      for (uint32_t ei : clusters[ci])
        for (const expression* e : of_entry[ei]) block_exprs[ci].push_back(*e);
  }
  // A block group keeps a database of its multi_steps entries alone, for the intermediate values.
  for (size_t gi = 0; gi < rs->groups_.size(); ++gi) {
    if (rs->groups_[gi].stream) continue;
    auto& ge = group_exprs[gi];
    ge.erase(std::remove_if(ge.begin(), ge.end(),
                            [&](const expression& e) { return !rs->entries_[e.id].multi_steps; }),
             ge.end());
  }
  rs->block_dbs_.resize(clusters.size());
  std::vector<db_slot> slots;
  for (size_t gi = 0; gi < rs->groups_.size(); ++gi)
    slots.push_back({&rs->groups_[gi].db, rs->groups_[gi].stream, !group_exprs[gi].empty()});
  for (size_t ci = 0; ci < clusters.size(); ++ci)
    slots.push_back({&rs->block_dbs_[ci], false, !block_exprs[ci].empty()});

  bool loaded = false;
  std::filesystem::path cp;
  if (!opts.cache_dir.empty()) {
    cp = cache_path(opts.cache_dir, rs->hash_);
    std::string why;
    auto lc = load_cache(cp, rs->hash_, rs->entries_, slots, why);
    loaded = lc == cache_load::loaded;
    if (lc == cache_load::rejected) {
      rs->stats_.cache_rejected = cp.string() + ": " + why;
      for (auto& e : rs->entries_) e.prefilter = false;  // recompiled from scratch below
      for (auto& sl : slots) sl.db->reset();
    }
  }
  size_t prefiltered = 0;
  // Databases compile independently, so they run on all cores, the block databases (the long
  // ones) first. Which expressions needed prefilter mode is read from them after the join.
  std::vector<std::vector<expression>*> job_exprs;
  std::vector<size_t> job_slot;
  for (size_t ci = 0; ci < clusters.size(); ++ci) {
    job_exprs.push_back(&block_exprs[ci]);
    job_slot.push_back(rs->groups_.size() + ci);
  }
  for (size_t gi = 0; gi < rs->groups_.size(); ++gi) {
    job_exprs.push_back(&group_exprs[gi]);
    job_slot.push_back(gi);
  }
  std::vector<common::result<hs_database_ptr>> dbs(job_exprs.size());
  if (!loaded) {
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t j; (j = next.fetch_add(1)) < job_exprs.size();) {
        if (job_exprs[j]->empty()) continue;
        dbs[j] = compile_group(*job_exprs[j], slots[job_slot[j]].stream, rs->entries_, R);
      }
    };
    size_t n = std::max(1u, std::min(std::thread::hardware_concurrency(), 16u));
    std::vector<std::thread> pool;
    for (size_t i = 1; i < n; ++i) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    // The first error in slot order (groups, then the block databases): deterministic.
    for (size_t sl = 0; sl < slots.size(); ++sl) {
      size_t j = std::find(job_slot.begin(), job_slot.end(), sl) - job_slot.begin();
      if (job_exprs[j]->empty()) continue;
      if (!dbs[j]) return common::unexpected(dbs[j].error());
      *slots[sl].db = std::move(*dbs[j]);
      for (const auto& e : *job_exprs[j])
        if (e.flags & HS_FLAG_PREFILTER) rs->entries_[e.id].prefilter = true;
    }
  } else {
    // Databases from the cache go in the memo too, so that the first reload after a start from
    // the cache compiles only what it changes. An rx entry is one expression: its flag is its own.
    for (size_t j = 0; j < job_exprs.size(); ++j) {
      auto& ex = *job_exprs[j];
      const hs_database_ptr& db = *slots[job_slot[j]].db;
      if (ex.empty() || !db) continue;
      for (auto& e : ex)
        if (rs->entries_[e.id].prefilter) e.flags |= HS_FLAG_PREFILTER;
      db_memo::get().put(memo_key(ex, slots[job_slot[j]].stream), ex, db);
    }
  }
  for (const entry& e : rs->entries_) prefiltered += e.prefilter;
  // Local Hyperscan ids to entries; the memo keeps this set's databases once it is complete.
  std::vector<hs_database_ptr> all_dbs;
  {
    auto entry_ids = [](const std::vector<expression>& ex) {
      std::vector<uint32_t> v;
      v.reserve(ex.size());
      for (const auto& e : ex) v.push_back(e.id);
      return v;
    };
    for (size_t ci = 0; ci < clusters.size(); ++ci) {
      rs->block_db_entries_.push_back(entry_ids(block_exprs[ci]));
      all_dbs.push_back(rs->block_dbs_[ci]);
    }
    for (size_t gi = 0; gi < rs->groups_.size(); ++gi) {
      rs->groups_[gi].db_entries = entry_ids(group_exprs[gi]);
      all_dbs.push_back(rs->groups_[gi].db);
    }
  }
  // PCRE2 programs: confirms for every condition that has a prefiltered entry, the capture
  // programs of conditions a derived one follows, and derived rx conditions' own.
  auto pcre = [&](compiled_condition& cc, pcre2_code_ptr& out,
                  const std::string& what) -> common::result<void> {
    if (out) return {};
    const condition& c = *cc.cond;
    int ec = 0;
    PCRE2_SIZE eo = 0;
    uint32_t f = PCRE2_DOTALL | PCRE2_MULTILINE | (c.caseless ? PCRE2_CASELESS : 0);
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(c.args[0].data()),
                                     c.args[0].size(), f, &ec, &eo, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(ec, msg, sizeof msg);
      return common::fail("rule " + std::to_string(R[cc.rule].id) + ": pattern rejected by " +
                              what + " and PCRE2 (" + reinterpret_cast<char*>(msg) + ")",
                          R[cc.rule].where);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort; the interpreter still works
    out.reset(code);
    return {};
  };
  for (const entry& e : rs->entries_) {
    if (!e.prefilter && !e.pcre_only) continue;
    compiled_condition& cc = rs->conditions_[e.condition];
    std::string hs_why;
    if (e.pcre_only) check_regex(cc.cond->args[0], cc.cond->caseless, &hs_why);
    if (auto r = pcre(cc, cc.confirm, "Hyperscan" + (hs_why.empty() ? "" : " (" + hs_why + ")"));
        !r)
      return common::unexpected(r.error());
  }
  for (auto& cc : rs->conditions_) {
    if (cc.derived_next >= 0)
      if (auto r = pcre(cc, cc.capture, "the capture step"); !r)
        return common::unexpected(r.error());
    if (cc.cond->derived() && cc.cond->oper == op::rx)
      if (auto r = pcre(cc, cc.confirm, "a derived condition"); !r)
        return common::unexpected(r.error());
  }
  for (const auto& db : rs->block_dbs_)
    if (size_t sz = 0; db && hs_database_size(db.get(), &sz) == HS_SUCCESS)
      rs->stats_.database_bytes += sz;
  for (auto& g : rs->groups_) {
    if (!g.db) continue;
    size_t sz = 0;
    if (hs_database_size(g.db.get(), &sz) == HS_SUCCESS) rs->stats_.database_bytes += sz;
    if (g.stream && hs_stream_size(g.db.get(), &sz) == HS_SUCCESS) {
      g.stream_state_bytes = sz;
      rs->stats_.stream_state_bytes += sz;
    }
  }
  if (!opts.cache_dir.empty() && !loaded)
    if (auto st = store_cache(cp, rs->hash_, rs->entries_, slots); !st)
      rs->stats_.cache_error = st.error().str();
  rs->stats_.from_cache = loaded;
  rs->stats_.prefiltered = prefiltered;
  rs->stats_.groups = rs->groups_.size();
  rs->stats_.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  db_memo::get().keep(std::move(all_dbs));
  return std::shared_ptr<const ruleset>(std::move(rs));
}

common::result<std::shared_ptr<const ruleset>> ruleset::compile(std::vector<rule> rules,
                                                                const compile_options& opts) {
  return ruleset_builder::build(std::move(rules), opts);
}

int ruleset::find(uint32_t id) const {
  for (size_t i = 0; i < rules_.size(); ++i)
    if (rules_[i].id == id) return static_cast<int>(i);
  return -1;
}

std::future<common::result<std::shared_ptr<const ruleset>>> compile_in_background(
    std::vector<rule> rules, compile_options opts) {
  return std::async(std::launch::async, [r = std::move(rules), o = std::move(opts)]() mutable {
    return ruleset::compile(std::move(r), o);
  });
}

common::result<worker_scratch> worker_scratch::create(const ruleset& rs) {
  worker_scratch w;
  w.a_ = std::make_unique<char[]>(buffer_bytes);
  w.b_ = std::make_unique<char[]>(buffer_bytes);
  w.c_ = std::make_unique<char[]>(buffer_bytes);
  w.d_ = std::make_unique<char[]>(buffer_bytes);
  w.e_ = std::make_unique<char[]>(2 * buffer_bytes);
  w.arena_ = std::make_unique<char[]>(arena_bytes);
  w.levels_ = std::make_unique<char[]>(levels * buffer_bytes);
  w.md_.reset(pcre2_match_data_create(captures, nullptr));
  if (!w.md_) return common::fail("pcre2_match_data_create failed");
  w.mctx_.reset(pcre2_match_context_create(nullptr));
  if (!w.mctx_) return common::fail("pcre2_match_context_create failed");
  pcre2_set_match_limit(w.mctx_.get(), pcre_limits::match);
  pcre2_set_depth_limit(w.mctx_.get(), pcre_limits::depth);
  w.jit_stack_.reset(
      pcre2_jit_stack_create(pcre_limits::jit_stack_start, pcre_limits::jit_stack_max, nullptr));
  if (!w.jit_stack_) return common::fail("pcre2_jit_stack_create failed");
  pcre2_jit_stack_assign(w.mctx_.get(), nullptr, w.jit_stack_.get());
  if (auto p = w.prepare(rs); !p) return common::unexpected(p.error());
  return w;
}

common::result<void> worker_scratch::prepare(const ruleset& rs) {
  auto grow = [&](const hs_database_t* db) -> common::result<void> {
    hs_scratch_t* s = hs_.release();
    hs_error_t e = hs_alloc_scratch(db, &s);
    hs_.reset(s);
    if (e != HS_SUCCESS) return common::fail("hs_alloc_scratch failed: " + std::to_string(e));
    return {};
  };
  for (const auto& g : rs.groups())
    if (g.db)
      if (auto r = grow(g.db.get()); !r) return r;
  for (const auto& db : rs.block_dbs())
    if (db)
      if (auto r = grow(db.get()); !r) return r;
  if (rs.groups().size() > group_slots_) {
    group_slots_ = rs.groups().size();
    group_serial_ = std::make_unique<uint64_t[]>(group_slots_);  // zero: no value yet
  }
  return {};
}

}  // namespace waf

namespace waf {
namespace {

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// @validateUrlEncoding: a '%' not followed by two hex digits (ModSecurity: a match).
bool bad_url_encoding(std::string_view v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') continue;
    if (i + 2 >= v.size() || !is_hex(v[i + 1]) || !is_hex(v[i + 2])) return true;
    i += 2;
  }
  return false;
}

// @validateUtf8Encoding: truncated or invalid sequences, overlong forms, surrogates and code
// points above U+10FFFF are a match (as ModSecurity's detect_utf8_character).
bool bad_utf8(std::string_view v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  size_t n = v.size();
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > n) return true;
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return true;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
      return true;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return true;
    i += len;
  }
  return false;
}

}  // namespace

bool eval_code_op(const compiled_condition& cc, std::string_view v) {
  const condition& c = *cc.cond;
  switch (c.oper) {
    case op::within:
      return c.args[0].find(v) != std::string::npos;
    case op::rx:  // a pcre_only entry: the candidate is confirmed by PCRE2 in the inspector
      return true;
    case op::detect_sqli:
      return detect_sqli(v);
    case op::detect_xss:
      return detect_xss(v);
    case op::validate_url_encoding:
      return bad_url_encoding(v);
    case op::validate_utf8_encoding:
      return bad_utf8(v);
    case op::eq:
      return parse_number(v) == cc.number;
    case op::ne:
      return parse_number(v) != cc.number;
    case op::gt:
      return parse_number(v) > cc.number;
    case op::ge:
      return parse_number(v) >= cc.number;
    case op::lt:
      return parse_number(v) < cc.number;
    case op::le:
      return parse_number(v) <= cc.number;
    default:
      return false;
  }
}

bool eval_derived_op(const compiled_condition& cc, std::string_view v, std::string_view operand,
                     const worker_scratch& ws, bool* error) {
  const condition& c = *cc.cond;
  auto eq = [&](std::string_view a, std::string_view b) {
    return c.caseless ? iequals(a, b) : a == b;
  };
  switch (c.oper) {
    case op::within:
      return operand.find(v) != std::string_view::npos;
    case op::streq:
      return eq(v, operand);
    case op::begins_with:
      return v.size() >= operand.size() && eq(v.substr(0, operand.size()), operand);
    case op::ends_with:
      return v.size() >= operand.size() && eq(v.substr(v.size() - operand.size()), operand);
    case op::contains:
      return v.find(operand) != std::string_view::npos;
    case op::rx: {
      int rc = pcre2_match(cc.confirm.get(), reinterpret_cast<PCRE2_SPTR>(v.data()), v.size(), 0, 0,
                           ws.match_data(), ws.match_context());
      if (rc == PCRE2_ERROR_NOMATCH) return false;
      if (rc < 0) *error = true;
      return true;
    }
    case op::eq:
      return parse_number(v) == parse_number(operand);
    case op::ne:
      return parse_number(v) != parse_number(operand);
    case op::gt:
      return parse_number(v) > parse_number(operand);
    case op::ge:
      return parse_number(v) >= parse_number(operand);
    case op::lt:
      return parse_number(v) < parse_number(operand);
    case op::le:
      return parse_number(v) <= parse_number(operand);
    default:
      return eval_code_op(cc, v);  // libinjection's detectors, the encoding validators
  }
}

namespace {

bool name_ok(const selector& sel, std::string_view name) {
  if (!sel.name.empty() && !iequals(sel.name, name)) return false;
  for (const auto& ex : sel.exclude)
    if (iequals(ex, name)) return false;
  return true;
}

// Fields of one target that a selector accepts, in a parsed head.
uint64_t count_target(const selector& sel, const request_head& h) {
  uint64_t n = 0;
  switch (sel.where) {
    case target::header:
    case target::header_names:
      for (const auto& x : h.headers) n += name_ok(sel, x.name);
      return n;
    case target::args:
    case target::arg_names: {
      std::string_view q = h.query;
      char dec[256];
      while (!q.empty()) {
        size_t amp = q.find('&');
        std::string_view pair = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (pair.empty()) continue;
        std::string_view name = pair.substr(0, pair.find('='));
        size_t l = std::min(name.size(), sizeof dec);
        if (l) std::memcpy(dec, name.data(), l);
        l = apply_transform(transform::url_decode, dec, l, l, nullptr);
        n += name_ok(sel, std::string_view(dec, l));
      }
      return n;
    }
    case target::cookies:
    case target::cookie_names:
      for (const auto& x : h.headers) {
        if (!iequals(x.name, "cookie")) continue;
        std::string_view c = x.value;
        while (!c.empty()) {
          size_t semi = c.find(';');
          std::string_view kv = c.substr(0, semi);
          c = semi == std::string_view::npos ? std::string_view{} : c.substr(semi + 1);
          while (!kv.empty() && kv.front() == ' ') kv.remove_prefix(1);
          if (!kv.empty()) n += name_ok(sel, kv.substr(0, kv.find('=')));
        }
      }
      return n;
    default:
      return 1;  // single-valued: the request line, method, URI, path, query, protocol
  }
}

}  // namespace

// As ModSecurity: &A|&B are two values, the count of A and the count of B, each tested.
bool eval_count_condition(const compiled_condition& cc, const request_head& h) {
  for (const auto& sel : cc.cond->selectors) {
    char buf[24];
    int len = std::snprintf(buf, sizeof buf, "%llu",
                            static_cast<unsigned long long>(count_target(sel, h)));
    if (eval_code_op(cc, std::string_view(buf, len > 0 ? static_cast<size_t>(len) : 0)))
      return true;
  }
  return false;
}

uint64_t field_bit(target where, std::string_view name) {
  uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(where);
  for (char ch : name) {
    h ^= static_cast<unsigned char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    h *= 1099511628211ull;
  }
  h ^= h >> 29;
  return uint64_t(1) << (h & 63);
}

}  // namespace waf
