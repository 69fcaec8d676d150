#pragma once
// The rules directory: strict YAML rule files (and SecRule .conf files through the importer) into
// the waf rule model, and per-service policy blocks. Every error names file:line:col and, where
// there is one, the rule id. yaml-cpp exceptions never escape this module.
#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hh"
#include "waf/policy.hh"
#include "waf/rule.hh"
#include "waf/ruleset.hh"

namespace rules {

// One YAML rule file (text already read); `file` is used in diagnostics and as the default set
// name.
common::result<std::vector<waf::rule>> parse_rule_file(std::string_view text,
                                                       const std::string& file);
common::result<std::vector<waf::rule>> load_rule_file(const std::string& path);

struct skipped_rule {
  uint32_t id = 0;
  std::string where;   // file:line
  std::string reason;  // what the importer could not express
};

struct load_report {
  size_t files = 0;
  size_t yaml_rules = 0;
  size_t imported_rules = 0;          // from SecRule .conf files
  std::vector<skipped_rule> skipped;  // SecRules not imported, each with its reason
};

// Where `secrules:` directories may be: the rules directory itself and these CRS directories. The
// appliance config names no CRS directory, so this is Debian's (package modsecurity-crs).
inline const std::vector<std::string>& default_crs_dirs() {
  static const std::vector<std::string> d{"/usr/share/modsecurity-crs"};
  return d;
}

// path, with symlinks and ".." resolved, is root or lies under it (whole path components).
bool path_within(const std::string& path, const std::string& root);

// Loads every *.yaml/*.yml file of dir (sorted by name) and every *.conf file (SecRule importer,
// rule set "crs"). A YAML file may also name SecRule directories: `secrules: [DIR, ...]`, each
// confined to dir and crs_dirs (symlinks resolved; else an error at the file:line:col naming it).
// Ids must be unique across the directory.
common::result<std::vector<waf::rule>> load_rules_dir(
    const std::string& dir, load_report* report = nullptr,
    const std::vector<std::string>& crs_dirs = default_crs_dirs());

// load_rules_dir + waf::ruleset::compile in one call: what the control plane runs (on a thread of
// its own, e.g. std::async) on start and whenever the rules directory changes. The result is
// immutable and shared; bind per-service policies to it with waf::bound_policy::bind.
common::result<std::shared_ptr<const waf::ruleset>> compile_rules_dir(
    const std::string& dir, const waf::compile_options& opts = {}, load_report* report = nullptr);

// A per-service policy block (see docs in rules/README.md). Errors carry file:line:col.
common::result<waf::policy> parse_policy(const YAML::Node& node, const std::string& file);
common::result<waf::policy> load_policy_file(const std::string& path);

}  // namespace rules
