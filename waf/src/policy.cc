#include "waf/policy.hh"

#include <algorithm>

namespace waf {

common::result<std::shared_ptr<const bound_policy>> bound_policy::bind(
    std::shared_ptr<const ruleset> rs, policy p) {
  if (!rs) return common::fail("policy " + p.name + ": no ruleset");
  if (p.anomaly_threshold < 1)
    return common::fail("policy " + p.name + ": anomaly_threshold must be >= 1");
  if (p.paranoia < 1 || p.paranoia > 4)
    return common::fail("policy " + p.name + ": paranoia must be 1..4");
  if (p.limits.max_head_bytes < 256 || p.limits.max_head_bytes > 64 * 1024)
    return common::fail("policy " + p.name + ": max_head_bytes must be 256..65536");
  if (p.limits.max_header_count < 1 || p.limits.max_header_count > 1000)
    return common::fail("policy " + p.name + ": max_header_count must be 1..1000");
  // The value is scanned from one worker scratch buffer, behind its name.
  if (p.body.max_value_bytes < 64 || p.body.max_value_bytes > worker_scratch::buffer_bytes - 4096)
    return common::fail("policy " + p.name + ": body max_value_bytes must be 64..126976");
  if (p.body.max_name_bytes < 16 || p.body.max_name_bytes > 4096)
    return common::fail("policy " + p.name + ": body max_name_bytes must be 16..4096");
  if (p.body.max_args < 1 || p.body.max_args > 100000)
    return common::fail("policy " + p.name + ": body max_args must be 1..100000");
  if (p.body.max_json_depth < 1 || p.body.max_json_depth > body_limits::json_max_depth)
    return common::fail("policy " + p.name + ": body max_json_depth must be 1..256");
  for (const auto& s : p.rule_sets) {
    bool found = std::any_of(rs->rules().begin(), rs->rules().end(),
                             [&](const rule& r) { return r.set == s; });
    if (!found) return common::fail("policy " + p.name + ": unknown rule set '" + s + "'");
  }
  // A raw policy with no raw_payload rule to run would pass every byte while looking protected.
  if (p.inspect == inspect_mode::raw) {
    bool any_raw = false;
    for (const rule& r : rs->rules()) {
      const bool in_set = p.rule_sets.empty() || std::find(p.rule_sets.begin(), p.rule_sets.end(),
                                                           r.set) != p.rule_sets.end();
      if (!in_set || r.paranoia > p.paranoia) continue;
      for (const auto& sel : r.conditions[0].selectors)
        any_raw = any_raw || sel.where == target::raw_payload;
    }
    if (!any_raw)
      return common::fail("policy " + p.name +
                          ": inspect raw, but none of its rules has phase raw_payload");
  }
  auto b = std::make_shared<bound_policy>();
  size_t n = rs->rules().size();
  b->enabled_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const rule& r = rs->rules()[i];
    bool in_set = p.rule_sets.empty() ||
                  std::find(p.rule_sets.begin(), p.rule_sets.end(), r.set) != p.rule_sets.end();
    b->enabled_[i] = in_set && r.paranoia <= p.paranoia;
    if (b->enabled_[i] && r.conditions[0].negate)
      b->negated_primary_.push_back(static_cast<uint32_t>(i));
  }
  for (const auto& e : p.exclusions) {
    bound_exclusion be;
    be.rule_mask.assign(n, 0);
    for (uint32_t id : e.rule_ids) {
      int idx = rs->find(id);
      if (idx < 0)
        return common::fail("policy " + p.name + ": exclusion names unknown rule id " +
                            std::to_string(id));
      be.rule_mask[static_cast<size_t>(idx)] = 1;
    }
    if (!e.path_prefix.empty()) {
      // Normalised like request paths, without a trailing '/': "/a/" and "/a" name the same tree.
      std::string buf(e.path_prefix.size() + 1, '\0');
      auto len = normalize_path(e.path_prefix, path_params::keep, true, buf);
      if (!len)
        return common::fail(
            "policy " + p.name + ": exclusion path_prefix '" + e.path_prefix +
            "' must be a path starting with '/' (no encoded '/', '\\' or bad escapes)");
      buf.resize(*len);
      while (!buf.empty() && buf.back() == '/') buf.pop_back();
      be.path_prefix = buf;  // "/" becomes "": every path
    }
    be.arg = e.arg;
    b->excl_.push_back(std::move(be));
  }
  b->rs_ = std::move(rs);
  b->p_ = std::move(p);
  return std::shared_ptr<const bound_policy>(std::move(b));
}

const char* to_string(inspect_mode m) {
  return m == inspect_mode::raw ? "raw" : "http";
}

}  // namespace waf
