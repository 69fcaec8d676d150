#pragma once
// `edgectl rules check` and `edgectl waf eval`: offline WAF tools, as CLI11 subcommands of edgectl.
#include <functional>

namespace CLI {
class App;
}

// Adds the `rules` and `waf` subcommands to `app`; the returned function, called after parsing,
// runs the one that was given and returns its exit status (-1: neither was given).
std::function<int()> edgectl_waf_subcommands(CLI::App& app);

// The same, as functions for tests: argv starts at the subcommand's own arguments
// ({"check", "DIR", ...} / {"eval", "--rules", "DIR", ...}); returns the exit status (0 ok,
// 1 findings or errors, 2 usage).
int edgectl_rules_main(int argc, char** argv);
int edgectl_waf_main(int argc, char** argv);
