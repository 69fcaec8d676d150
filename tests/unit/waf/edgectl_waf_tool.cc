// Test-only front end for edge/edgectl_waf.cc until edgectl links it:
//   edgectl_waf_tool rules check DIR ...   |   edgectl_waf_tool waf eval ...
#include <cstdio>
#include <cstring>

#include "edgectl_waf.hh"

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "rules") == 0) return edgectl_rules_main(argc - 2, argv + 2);
  if (argc >= 2 && std::strcmp(argv[1], "waf") == 0) return edgectl_waf_main(argc - 2, argv + 2);
  std::fprintf(stderr, "usage: %s rules check DIR ... | waf eval ...\n", argv[0]);
  return 2;
}
