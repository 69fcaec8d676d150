#pragma once
// edgectl's offline WAF subcommands. argv starts at the subcommand's own arguments:
//   edgectl rules check DIR [--paranoia N] [--list-skipped] [--cache DIR]
//       → edgectl_rules_main(argc, argv) with argv = {"check", "DIR", ...}
//   edgectl waf eval --rules DIR [--paranoia N] [--detect-only] [--threshold N] [--policy FILE]
//                    [--cache DIR] (FILES... | --jsonl FILE)
//       → edgectl_waf_main(argc, argv) with argv = {"eval", "--rules", "DIR", ...}
// Both return a process exit status (0 ok, 1 findings/errors, 2 usage).
int edgectl_rules_main(int argc, char** argv);
int edgectl_waf_main(int argc, char** argv);
