#include "l4/lb/maglev.hh"

#include <algorithm>
#include <numeric>
#include <set>

namespace l4::lb {
namespace {

// FNV-1a 64 with a seed folded in first: the permutation of a backend must come from its key
// alone so that two nodes agree; std::hash is not guaranteed stable across builds.
uint64_t fnv1a(std::string_view s, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ (seed * 0x100000001b3ULL);
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 31;
  h *= 0x7fb5d329728ea185ULL;
  h ^= h >> 27;
  return h;
}

}  // namespace

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; static_cast<uint64_t>(d) * d <= n; d += 2)
    if (n % d == 0) return false;
  return true;
}

common::result<maglev_table> maglev_table::build(std::span<const maglev_backend> backends,
                                                 uint32_t m) {
  if (!is_prime(m)) return common::fail("maglev table size " + std::to_string(m) + " is not prime");
  if (backends.size() >= npos) return common::fail("too many backends for one maglev table");
  if (static_cast<uint64_t>(m) < 100ULL * backends.size())
    return common::fail("maglev table size " + std::to_string(m) + " is below 100 x " +
                        std::to_string(backends.size()) + " backends");
  std::set<std::string_view> keys;
  for (const auto& b : backends)
    if (!keys.insert(b.key).second) return common::fail("duplicate maglev backend key " + b.key);

  maglev_table t;
  // Visit backends in key order so the table does not depend on config order.
  std::vector<uint16_t> order;
  uint32_t max_weight = 0;
  for (uint16_t i = 0; i < backends.size(); ++i) {
    if (backends[i].weight == 0) continue;
    order.push_back(i);
    max_weight = std::max(max_weight, backends[i].weight);
  }
  if (order.empty()) return t;
  std::sort(order.begin(), order.end(),
            [&](uint16_t a, uint16_t b) { return backends[a].key < backends[b].key; });

  const size_t n = order.size();
  std::vector<uint64_t> offset(n), skip(n), next(n, 0), credit(n, 0);
  for (size_t j = 0; j < n; ++j) {
    const auto& key = backends[order[j]].key;
    offset[j] = fnv1a(key, 0x5eed0001) % m;
    skip[j] = fnv1a(key, 0x5eed0002) % (m - 1) + 1;
  }
  t.entries_.assign(m, npos);
  uint32_t filled = 0;
  // Weighted population: each round a backend earns `weight` credit and claims one slot per
  // `max_weight` credit, so slot shares follow the weights while keeping Maglev's preference
  // lists (and hence its minimal disruption).
  while (filled < m) {
    for (size_t j = 0; j < n && filled < m; ++j) {
      credit[j] += backends[order[j]].weight;
      while (credit[j] >= max_weight && filled < m) {
        credit[j] -= max_weight;
        uint64_t c = (offset[j] + next[j] * skip[j]) % m;
        while (t.entries_[c] != npos) {
          ++next[j];
          c = (offset[j] + next[j] * skip[j]) % m;
        }
        t.entries_[c] = order[j];
        ++next[j];
        ++filled;
      }
    }
  }
  return t;
}

}  // namespace l4::lb
