#pragma once
// Limit files of the rules directory (`*.limits.yaml`): rate and concurrency limits and per-service
// CIDR allow/deny lists (inline prefixes or `*.cidr` files beside them), validated strictly. Every
// error is `file:line:col: limit NAME: message` (a `.cidr` file's error is `file:line: message`);
// nothing half-loads. See rules/README.md, "Limit files".
#include <string>
#include <string_view>

#include "common/result.hh"
#include "limits/spec.hh"

namespace rules {

// A limit file by its name: NAME.limits.yaml or NAME.limits.yml. load_rules_dir skips them.
bool is_limits_file(std::string_view filename);

// One limit file's text; `dir` is where its `.cidr` files are looked up.
common::result<limits::limits_config> parse_limits_file(std::string_view text,
                                                        const std::string& file,
                                                        const std::string& dir);
// Every limit file of dir (sorted by name); names unique across them.
common::result<limits::limits_config> load_limits_dir(const std::string& dir);

}  // namespace rules
