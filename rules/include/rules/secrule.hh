#pragma once
// Importer for the ModSecurity SecRule subset that OWASP CRS uses: operators @rx @pm @pmFromFile
// @contains @beginsWith @endsWith @streq @within (negated too), request variables, the common
// transformations, anomaly scoring via setvar, chains, paranoia-level gating and skipAfter/skip
// (decided at import or per request, see rules/README.md). Whatever it cannot express is skipped
// and listed per rule with the reason, never dropped silently.
#include <map>
#include <string>
#include <vector>

#include "common/result.hh"
#include "rules/loader.hh"
#include "waf/rule.hh"

namespace rules {

struct import_result {
  std::vector<waf::rule> rules;
  std::vector<skipped_rule> skipped;
  // Approximations kept in imported rules (e.g. a variable the engine does not parse dropped from
  // a rule that still has others), per rule: "id: note".
  std::vector<std::string> notes;
  std::map<std::string, size_t> skipped_by_reason() const;
};

// Imports the .conf files in order (CRS's numbering matters: 901 defines the tx.* defaults that
// later rules use as %{tx.name} macros). set is the rule set name given to every rule.
common::result<import_result> import_secrules(const std::vector<std::string>& files,
                                              const std::string& set = "crs");

}  // namespace rules
