// Strict YAML loader for rule files and policies.
#include "rules/loader.hh"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "rules/limits_file.hh"
#include "rules/secrule.hh"
#include "waf/transform.hh"
#include "yaml_fields.hh"

namespace rules {

using namespace yaml_fields;
namespace {

using common::fail;

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}

common::result<waf::selector> parse_selector(const ctx& c, const YAML::Node& n,
                                             const std::string& s) {
  waf::selector sel;
  size_t colon = s.find(':');
  std::string t = s.substr(0, colon);
  auto tg = waf::parse_target(t);
  if (!tg) return c.err(n, "unknown phase '" + t + "'");
  sel.where = *tg;
  if (colon != std::string::npos) {
    std::string name = s.substr(colon + 1);
    if (name.empty()) return c.err(n, "empty field name in phase '" + s + "'");
    if (sel.where != waf::target::header && sel.where != waf::target::cookies &&
        sel.where != waf::target::args && sel.where != waf::target::files &&
        sel.where != waf::target::files_sizes && sel.where != waf::target::multipart_part_headers &&
        sel.where != waf::target::body_vars)
      return c.err(n, "phase '" + t + "' takes no field name");
    sel.name = lower(name);
  }
  return sel;
}

#define CONDITION_KEYS \
  "phase", "operator", "pattern", "patterns", "caseless", "negate", "transforms", "exclude"

common::result<waf::condition> parse_condition(const ctx& c, const YAML::Node& n) {
  waf::condition cond;
  const YAML::Node ph = n["phase"];
  if (!ph) return c.err(n, "missing 'phase'");
  auto phases = str_list(c, ph, "phase");
  if (!phases) return common::unexpected(phases.error());
  if (phases->empty()) return c.err(ph, "'phase' must name at least one phase");
  for (const auto& p : *phases) {
    auto sel = parse_selector(c, ph, p);
    if (!sel) return common::unexpected(sel.error());
    cond.selectors.push_back(std::move(*sel));
  }
  if (const YAML::Node o = n["operator"]) {
    auto s = str(c, o, "operator");
    if (!s) return common::unexpected(s.error());
    auto op = waf::parse_op(*s);
    if (!op) return c.err(o, "unknown operator '" + *s + "'");
    cond.oper = *op;
  }
  const YAML::Node pat = n["pattern"], pats = n["patterns"];
  if (pat && pats) return c.err(pats, "give either 'pattern' or 'patterns', not both");
  if (cond.oper == waf::op::pm) {
    if (!pats) return c.err(n, "operator pm needs 'patterns' (a list)");
    auto l = str_list(c, pats, "patterns");
    if (!l) return common::unexpected(l.error());
    if (l->empty()) return c.err(pats, "'patterns' is empty");
    for (const auto& s : *l)
      if (s.empty()) return c.err(pats, "'patterns' has an empty entry");
    cond.args = std::move(*l);
  } else {
    if (pats)
      return c.err(pats, std::string("operator ") + waf::to_string(cond.oper) +
                             " takes 'pattern', not 'patterns'");
    if (!pat) return c.err(n, "missing 'pattern'");
    auto s = str(c, pat, "pattern");
    if (!s) return common::unexpected(s.error());
    if (s->empty() && cond.oper != waf::op::rx) return c.err(pat, "'pattern' is empty");
    cond.args.push_back(std::move(*s));
  }
  if (const YAML::Node x = n["caseless"]) {
    auto b = boolean(c, x, "caseless");
    if (!b) return common::unexpected(b.error());
    cond.caseless = *b;
  }
  if (const YAML::Node x = n["negate"]) {
    auto b = boolean(c, x, "negate");
    if (!b) return common::unexpected(b.error());
    cond.negate = *b;
  }
  if (const YAML::Node x = n["transforms"]) {
    auto l = str_list(c, x, "transforms");
    if (!l) return common::unexpected(l.error());
    for (const auto& t : *l) {
      auto tr = waf::parse_transform(t);
      if (!tr) return c.err(x, "unknown transformation '" + t + "'");
      cond.transforms.push_back(*tr);
    }
    if (cond.transforms.size() > waf::max_stream_transforms)
      return c.err(x, "at most 8 transformations");
  }
  if (const YAML::Node x = n["exclude"]) {
    auto l = str_list(c, x, "exclude");
    if (!l) return common::unexpected(l.error());
    for (auto& s : cond.selectors)
      for (const auto& e : *l) s.exclude.push_back(lower(e));
  }
  for (const auto& s : cond.selectors) {
    if (waf::is_stream_target(s.where)) {
      for (auto t : cond.transforms)
        if (!waf::is_streamable(t))
          return c.err(n, std::string("transformation ") + waf::to_string(t) +
                              " cannot run on stream phase " + waf::to_string(s.where));
      if (cond.oper == waf::op::within)
        return c.err(n, "operator within cannot apply to a stream phase");
    }
  }
  return cond;
}

int severity_of(std::string_view s) {
  if (s == "emergency") return 0;
  if (s == "alert") return 1;
  if (s == "critical") return 2;
  if (s == "error") return 3;
  if (s == "warning") return 4;
  if (s == "notice") return 5;
  if (s == "info") return 6;
  if (s == "debug") return 7;
  return -1;
}
// CRS's anomaly points per severity.
int default_score(int severity) {
  switch (severity) {
    case 0:
    case 1:
    case 2:
      return 5;
    case 3:
      return 4;
    case 4:
      return 3;
    case 5:
      return 2;
    default:
      return 0;
  }
}

common::result<waf::rule> parse_rule(ctx c, const YAML::Node& n, const std::string& set) {
  if (!n.IsMap()) return c.err(n, "a rule must be a mapping");
  const YAML::Node idn = n["id"];
  if (!idn) return c.err(n, "rule without 'id'");
  auto id = integer<long>(c, idn, "id", 1, 4294967295L);
  if (!id) return common::unexpected(id.error());
  waf::rule r;
  r.id = static_cast<uint32_t>(*id);
  r.where = where(c.file, n);
  r.set = set;
  c.prefix = "rule " + std::to_string(r.id) + ": ";
  std::initializer_list<std::string_view> keys = {
      "id",    "message",  "action",  "score",    "severity", "paranoia", "tags",       "chain",
      "phase", "operator", "pattern", "patterns", "caseless", "negate",   "transforms", "exclude"};
  if (auto k = check_keys(c, n, keys, "rule"); !k) return common::unexpected(k.error());
  if (const YAML::Node x = n["message"]) {
    auto s = str(c, x, "message");
    if (!s) return common::unexpected(s.error());
    r.message = *s;
  }
  auto first = parse_condition(c, n);
  if (!first) return common::unexpected(first.error());
  if (first->negate) {
    // A negated first condition fires on absence; allowed, but only for one-value phases where
    // "absent" is well defined.
    for (const auto& s : first->selectors)
      if (s.where == waf::target::args || s.where == waf::target::cookies ||
          s.where == waf::target::header) {
        if (s.name.empty())
          return c.err(n, "a negated first condition needs a named field or a one-value phase");
      }
  }
  r.conditions.push_back(std::move(*first));
  if (const YAML::Node ch = n["chain"]) {
    if (!ch.IsSequence()) return c.err(ch, "'chain' must be a list of conditions");
    for (const auto& e : ch) {
      if (auto k = check_keys(c, e, {CONDITION_KEYS}, "chain condition"); !k)
        return common::unexpected(k.error());
      auto cond = parse_condition(c, e);
      if (!cond) return common::unexpected(cond.error());
      r.conditions.push_back(std::move(*cond));
    }
  }
  r.severity = 2;
  if (const YAML::Node x = n["severity"]) {
    if (!x.IsScalar()) return c.err(x, "'severity' must be a name or 0..7");
    int sv = severity_of(x.Scalar());
    if (sv < 0) {
      auto v = integer<long>(c, x, "severity", 0, 7);
      if (!v) return c.err(x, "unknown severity '" + x.Scalar() + "'");
      sv = static_cast<int>(*v);
    }
    r.severity = sv;
  }
  r.act = waf::action::score;
  if (const YAML::Node x = n["action"]) {
    auto s = str(c, x, "action");
    if (!s) return common::unexpected(s.error());
    auto a = waf::parse_action(*s);
    if (!a) return c.err(x, "unknown action '" + *s + "' (block, log, score)");
    r.act = *a;
  }
  r.score = default_score(r.severity);
  if (const YAML::Node x = n["score"]) {
    auto v = integer<long>(c, x, "score", 0, 1000);
    if (!v) return common::unexpected(v.error());
    r.score = static_cast<int>(*v);
  }
  if (const YAML::Node x = n["paranoia"]) {
    auto v = integer<long>(c, x, "paranoia", 1, 4);
    if (!v) return common::unexpected(v.error());
    r.paranoia = static_cast<int>(*v);
  }
  if (const YAML::Node x = n["tags"]) {
    auto l = str_list(c, x, "tags");
    if (!l) return common::unexpected(l.error());
    r.tags = std::move(*l);
  }
  return r;
}

// Where a rules directory's `secrules:` entries may point.
struct secrule_scope {
  const std::string& rules_dir;
  const std::vector<std::string>& crs_dirs;
  bool allows(const std::string& p) const {
    if (path_within(p, rules_dir)) return true;
    for (const auto& d : crs_dirs)
      if (path_within(p, d)) return true;
    return false;
  }
  std::string describe() const {
    std::string s = "the rules directory " + rules_dir;
    for (const auto& d : crs_dirs) s += ", " + d;
    return s;
  }
};

common::result<std::vector<waf::rule>> parse_rule_doc(const YAML::Node& doc,
                                                      const std::string& file,
                                                      std::vector<std::string>* secrule_dirs,
                                                      const secrule_scope* scope = nullptr) {
  ctx c{file, {}};
  if (auto k = check_keys(c, doc, {"set", "rules", "secrules"}, "rule file"); !k)
    return common::unexpected(k.error());
  std::string set = std::filesystem::path(file).stem().string();
  if (const YAML::Node s = doc["set"]) {
    auto v = str(c, s, "set");
    if (!v) return common::unexpected(v.error());
    if (v->empty()) return c.err(s, "'set' is empty");
    set = *v;
  }
  if (const YAML::Node s = doc["secrules"]) {
    auto l = str_list(c, s, "secrules");
    if (!l) return common::unexpected(l.error());
    if (!secrule_dirs) return c.err(s, "'secrules' is only allowed in a rules directory");
    for (size_t i = 0; i < l->size(); ++i) {
      const std::string& d = (*l)[i];
      std::filesystem::path p(d);
      if (p.is_relative()) p = std::filesystem::path(file).parent_path() / p;
      if (scope && !scope->allows(p.string()))
        return c.err(s.IsSequence() ? s[i] : s,
                     "secrules: '" + d + "' is outside " + scope->describe());
      secrule_dirs->push_back(p.string());
    }
  }
  std::vector<waf::rule> out;
  const YAML::Node rs = doc["rules"];
  if (!rs) {
    if (doc["secrules"]) return out;
    return c.err(doc, "missing 'rules'");
  }
  if (!rs.IsSequence()) return c.err(rs, "'rules' must be a list");
  std::set<uint32_t> seen;
  for (const auto& n : rs) {
    auto r = parse_rule(c, n, set);
    if (!r) return common::unexpected(r.error());
    if (!seen.insert(r->id).second)
      return fail("rule " + std::to_string(r->id) + ": duplicate id", r->where);
    out.push_back(std::move(*r));
  }
  return out;
}

common::result<YAML::Node> parse_yaml(std::string_view text, const std::string& file) {
  try {
    YAML::Node doc = YAML::Load(std::string(text));
    if (!doc || doc.IsNull()) return fail("empty document", file);
    return doc;
  } catch (const YAML::Exception& e) {
    return fail("YAML syntax: " + e.msg, where(file, e.mark));
  }
}

}  // namespace

common::result<std::vector<waf::rule>> parse_rule_file(std::string_view text,
                                                       const std::string& file) {
  auto doc = parse_yaml(text, file);
  if (!doc) return common::unexpected(doc.error());
  try {
    return parse_rule_doc(*doc, file, nullptr);
  } catch (const YAML::Exception& e) {
    return fail("YAML: " + e.msg, where(file, e.mark));
  }
}

common::result<std::vector<waf::rule>> load_rule_file(const std::string& path) {
  auto t = read_file(path);
  if (!t) return common::unexpected(t.error());
  return parse_rule_file(*t, path);
}

bool path_within(const std::string& path, const std::string& root) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(path, ec);
  if (ec) return false;
  auto r = std::filesystem::weakly_canonical(root, ec);
  if (ec) return false;
  auto pi = p.begin();
  for (auto ri = r.begin(); ri != r.end(); ++ri, ++pi) {
    if (ri->empty() && std::next(ri) == r.end()) break;  // "dir/" ends with an empty component
    if (pi == p.end() || *pi != *ri) return false;
  }
  return true;
}

common::result<std::vector<waf::rule>> load_rules_dir(const std::string& dir, load_report* report,
                                                      const std::vector<std::string>& crs_dirs) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return fail("not a directory", dir);
  std::vector<std::filesystem::path> yamls, confs;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    auto ext = e.path().extension();
    if (is_limits_file(e.path().filename().string())) continue;  // rules::load_limits_dir
    if (ext == ".yaml" || ext == ".yml")
      yamls.push_back(e.path());
    else if (ext == ".conf")
      confs.push_back(e.path());
  }
  if (ec) return fail("cannot list directory: " + ec.message(), dir);
  std::sort(yamls.begin(), yamls.end());
  std::sort(confs.begin(), confs.end());
  load_report local;
  load_report& rep = report ? *report : local;
  std::vector<waf::rule> all;
  std::vector<std::string> secrule_dirs;
  const secrule_scope scope{dir, crs_dirs};
  for (const auto& p : yamls) {
    auto text = read_file(p.string());
    if (!text) return common::unexpected(text.error());
    auto doc = parse_yaml(*text, p.string());
    if (!doc) return common::unexpected(doc.error());
    common::result<std::vector<waf::rule>> rs;
    try {
      rs = parse_rule_doc(*doc, p.string(), &secrule_dirs, &scope);
    } catch (const YAML::Exception& e) {
      return fail("YAML: " + e.msg, where(p.string(), e.mark));
    }
    if (!rs) return common::unexpected(rs.error());
    ++rep.files;
    rep.yaml_rules += rs->size();
    for (auto& r : *rs) all.push_back(std::move(r));
  }
  std::vector<std::string> conf_files;
  for (const auto& p : confs) conf_files.push_back(p.string());
  for (const auto& d : secrule_dirs) {
    std::vector<std::string> fs;
    if (!std::filesystem::is_directory(d, ec)) return fail("secrules: not a directory", d);
    for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
      if (!e.is_regular_file() || e.path().extension() != ".conf") continue;
      // A symlinked .conf is read only where a secrules: directory itself could be.
      if (!scope.allows(e.path().string()))
        return fail("secrules: '" + e.path().string() + "' leads outside " + scope.describe(), d);
      fs.push_back(e.path().string());
    }
    std::sort(fs.begin(), fs.end());
    conf_files.insert(conf_files.end(), fs.begin(), fs.end());
  }
  if (!conf_files.empty()) {
    auto imp = import_secrules(conf_files);
    if (!imp) return common::unexpected(imp.error());
    rep.files += conf_files.size();
    rep.imported_rules += imp->rules.size();
    for (auto& s : imp->skipped) rep.skipped.push_back(std::move(s));
    for (auto& r : imp->rules) all.push_back(std::move(r));
  }
  std::set<uint32_t> ids;
  for (const auto& r : all)
    if (!ids.insert(r.id).second)
      return fail("rule " + std::to_string(r.id) + ": duplicate id in directory", r.where);
  return all;
}

common::result<std::shared_ptr<const waf::ruleset>> compile_rules_dir(
    const std::string& dir, const waf::compile_options& opts, load_report* report) {
  auto rs = load_rules_dir(dir, report);
  if (!rs) return common::unexpected(rs.error());
  return waf::ruleset::compile(std::move(*rs), opts);
}

common::result<waf::policy> parse_policy(const YAML::Node& n, const std::string& file) {
  try {
    ctx c{file, {}};
    if (auto k = check_keys(
            c, n,
            {"name", "rule_sets", "mode", "inspect", "anomaly_threshold", "paranoia", "exclusions",
             "body_limit", "on_body_limit", "limits", "body", "on_body_error"},
            "policy");
        !k)
      return common::unexpected(k.error());
    waf::policy p;
    if (const YAML::Node x = n["name"]) {
      auto s = str(c, x, "name");
      if (!s) return common::unexpected(s.error());
      p.name = *s;
    }
    c.prefix = "policy " + p.name + ": ";
    if (const YAML::Node x = n["rule_sets"]) {
      auto l = str_list(c, x, "rule_sets");
      if (!l) return common::unexpected(l.error());
      p.rule_sets = *l;
    }
    if (const YAML::Node x = n["mode"]) {
      auto s = str(c, x, "mode");
      if (!s) return common::unexpected(s.error());
      if (*s == "enforce")
        p.detect_only = false;
      else if (*s == "detect_only")
        p.detect_only = true;
      else
        return c.err(x, "unknown mode '" + *s + "' (enforce, detect_only)");
    }
    if (const YAML::Node x = n["inspect"]) {
      auto s = str(c, x, "inspect");
      if (!s) return common::unexpected(s.error());
      if (*s == "http")
        p.inspect = waf::inspect_mode::http;
      else if (*s == "raw")
        p.inspect = waf::inspect_mode::raw;
      else
        return c.err(x, "unknown inspect '" + *s + "' (http, raw)");
    }
    if (const YAML::Node x = n["anomaly_threshold"]) {
      auto v = integer<long>(c, x, "anomaly_threshold", 1, 10000);
      if (!v) return common::unexpected(v.error());
      p.anomaly_threshold = static_cast<int>(*v);
    }
    if (const YAML::Node x = n["paranoia"]) {
      auto v = integer<long>(c, x, "paranoia", 1, 4);
      if (!v) return common::unexpected(v.error());
      p.paranoia = static_cast<int>(*v);
    }
    if (const YAML::Node x = n["body_limit"]) {
      auto v = integer<long>(c, x, "body_limit", 0, 1L << 40);
      if (!v) return common::unexpected(v.error());
      p.body_limit = static_cast<uint64_t>(*v);
    }
    if (const YAML::Node x = n["on_body_limit"]) {
      auto v = choice<waf::body_limit_action>(
          c, x, "on_body_limit",
          {{"reject", waf::body_limit_action::reject},
           {"inspect_partial", waf::body_limit_action::inspect_partial}});
      if (!v) return common::unexpected(v.error());
      p.on_body_limit = *v;
    }
    if (const YAML::Node x = n["on_body_error"]) {
      auto v =
          choice<waf::body_error_action>(c, x, "on_body_error",
                                         {{"block", waf::body_error_action::block},
                                          {"inspect_raw", waf::body_error_action::inspect_raw}});
      if (!v) return common::unexpected(v.error());
      p.on_body_error = *v;
    }
    if (const YAML::Node x = n["on_upgrade"]) {
      auto v = choice<waf::upgrade_action>(
          c, x, "on_upgrade",
          {{"pass", waf::upgrade_action::pass}, {"inspect_raw", waf::upgrade_action::inspect_raw}});
      if (!v) return common::unexpected(v.error());
      p.on_upgrade = *v;
    }
    if (const YAML::Node l = n["body"]) {
      if (auto k = check_keys(
              c, l,
              {"max_name_bytes", "max_value_bytes", "max_args", "max_json_depth", "max_files"},
              "body");
          !k)
        return common::unexpected(k.error());
      struct f {
        const char* key;
        uint32_t* dst;
        long lo, hi;
      } fields[] = {{"max_name_bytes", &p.body.max_name_bytes, 16, 4096},
                    {"max_value_bytes", &p.body.max_value_bytes, 64, 126976},
                    {"max_args", &p.body.max_args, 1, 100000},
                    {"max_json_depth", &p.body.max_json_depth, 1, waf::body_limits::json_max_depth},
                    {"max_files", &p.body.max_files, 0, 100000}};
      for (auto& fd : fields)
        if (const YAML::Node x = l[fd.key]) {
          auto v = integer<long>(c, x, fd.key, fd.lo, fd.hi);
          if (!v) return common::unexpected(v.error());
          *fd.dst = static_cast<uint32_t>(*v);
        }
    }
    if (const YAML::Node l = n["limits"]) {
      if (auto k = check_keys(
              c, l, {"max_request_line", "max_header_line", "max_header_count", "max_head_bytes"},
              "limits");
          !k)
        return common::unexpected(k.error());
      struct f {
        const char* key;
        uint32_t* dst;
        long lo, hi;
      } fields[] = {{"max_request_line", &p.limits.max_request_line, 16, 65536},
                    {"max_header_line", &p.limits.max_header_line, 16, 65536},
                    {"max_header_count", &p.limits.max_header_count, 1, 1000},
                    {"max_head_bytes", &p.limits.max_head_bytes, 256, 65536}};
      for (auto& fd : fields)
        if (const YAML::Node x = l[fd.key]) {
          auto v = integer<long>(c, x, fd.key, fd.lo, fd.hi);
          if (!v) return common::unexpected(v.error());
          *fd.dst = static_cast<uint32_t>(*v);
        }
    }
    if (const YAML::Node ex = n["exclusions"]) {
      if (!ex.IsSequence()) return c.err(ex, "'exclusions' must be a list");
      for (const auto& e : ex) {
        if (auto k = check_keys(c, e, {"rules", "path_prefix", "arg"}, "exclusion"); !k)
          return common::unexpected(k.error());
        waf::exclusion x;
        const YAML::Node r = e["rules"];
        if (!r || !r.IsSequence() || r.size() == 0)
          return c.err(e, "an exclusion needs 'rules' (a list of ids)");
        for (const auto& id : r) {
          auto v = integer<long>(c, id, "rules", 1, 4294967295L);
          if (!v) return common::unexpected(v.error());
          x.rule_ids.push_back(static_cast<uint32_t>(*v));
        }
        if (const YAML::Node pp = e["path_prefix"]) {
          auto s = str(c, pp, "path_prefix");
          if (!s) return common::unexpected(s.error());
          x.path_prefix = *s;
        }
        if (const YAML::Node a = e["arg"]) {
          auto s = str(c, a, "arg");
          if (!s) return common::unexpected(s.error());
          x.arg = *s;
        }
        p.exclusions.push_back(std::move(x));
      }
    }
    return p;
  } catch (const YAML::Exception& e) {
    return fail("YAML: " + e.msg, where(file, e.mark));
  }
}

common::result<waf::policy> load_policy_file(const std::string& path) {
  auto t = read_file(path);
  if (!t) return common::unexpected(t.error());
  auto doc = parse_yaml(*t, path);
  if (!doc) return common::unexpected(doc.error());
  return parse_policy(*doc, path);
}

}  // namespace rules
