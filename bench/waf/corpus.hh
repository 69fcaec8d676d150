#pragma once
// A deterministic corpus of benign and attack HTTP/1.1 requests for the WAF bench.
#include <cstdint>
#include <string>
#include <vector>

namespace waf_bench {

struct request {
  std::string bytes;
  bool attack = false;
  std::string kind;  // "benign", "sqli", "xss", ...
};

std::vector<request> make_corpus(size_t n, double attack_share, uint64_t seed);

}  // namespace waf_bench
