#include "upstream_pool.hh"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace edge::upstream {
namespace {

bool contains(std::span<const size_t> s, size_t v) {
  return std::find(s.begin(), s.end(), v) != s.end();
}

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t backend_key(const backend_spec& b) {
  uint64_t x, y;
  std::memcpy(&x, b.address.b.data(), 8);
  std::memcpy(&y, b.address.b.data() + 8, 8);
  return mix64(x ^ mix64(y ^ (static_cast<uint64_t>(b.port) << 1 | b.address.v6)));
}

}  // namespace

common::result<std::unique_ptr<upstream_pool>> upstream_pool::create(const pool_spec& spec) {
  if (spec.backends.empty()) return common::fail("pool '" + spec.name + "' has no backends");
  if (spec.max_connect_attempts < 1 || spec.max_connect_attempts > 8)
    return common::fail("pool '" + spec.name + "': max_connect_attempts must be in 1..8");
  if (spec.connect_timeout_ms == 0)
    return common::fail("pool '" + spec.name + "': connect_timeout_ms must be > 0");
  for (const auto& b : spec.backends)
    if (b.port == 0)
      return common::fail("pool '" + spec.name + "': backend " + b.address.str() + " has port 0");
  std::unique_ptr<upstream_pool> p(new upstream_pool());
  p->spec_ = spec;
  p->backends_ = std::vector<backend>(spec.backends.size());
  for (size_t i = 0; i < spec.backends.size(); ++i) p->backends_[i].spec = spec.backends[i];
  return p;
}

bool upstream_pool::eligible(size_t i, std::span<const size_t> exclude) const {
  return backends_[i].spec.weight > 0 && healthy(i) && !contains(exclude, i);
}

size_t upstream_pool::healthy_count() const {
  size_t n = 0;
  for (size_t i = 0; i < backends_.size(); ++i) n += healthy(i);
  return n;
}

size_t upstream_pool::select_least_conn(std::span<const size_t> exclude) {
  const size_t n = backends_.size();
  size_t best = no_backend;
  const size_t start = rotate_++ % n;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (start + k) % n;
    if (!eligible(i, exclude)) continue;
    if (best == no_backend) {
      best = i;
      continue;
    }
    // active_i / w_i < active_best / w_best, without division.
    const auto& a = backends_[i];
    const auto& b = backends_[best];
    if (static_cast<unsigned __int128>(a.active) * b.spec.weight <
        static_cast<unsigned __int128>(b.active) * a.spec.weight)
      best = i;
  }
  return best;
}

size_t rendezvous_pick(uint64_t hash, std::span<const backend> backends,
                       std::span<const size_t> exclude) {
  size_t best = no_backend;
  double best_score = 0;
  for (size_t i = 0; i < backends.size(); ++i) {
    const backend& b = backends[i];
    if (b.spec.weight == 0 || !b.healthy.load(std::memory_order_relaxed) || contains(exclude, i))
      continue;
    // u in (0,1); score = -w / ln(u) gives each backend a w/sum(w) share (weighted HRW).
    uint64_t h = mix64(hash ^ backend_key(b.spec));
    double u = (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double score = -static_cast<double>(b.spec.weight) / std::log(u);
    if (best == no_backend || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

size_t upstream_pool::select_by_hash(uint64_t hash, std::span<const size_t> exclude) {
  size_t pick =
      selector_ ? selector_(selector_ctx_, hash) : rendezvous_pick(hash, backends_, exclude);
  if (pick < backends_.size() && eligible(pick, exclude)) return pick;
  return select_least_conn(exclude);
}

std::vector<l4::lb::maglev_backend> maglev_backends(const upstream_pool& p) {
  std::vector<l4::lb::maglev_backend> out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const backend_spec& s = p.at(i).spec;
    std::string key = s.address.v6 ? "[" + s.address.str() + "]" : s.address.str();
    out.push_back({key + ":" + std::to_string(s.port), p.healthy(i) ? s.weight : 0});
  }
  return out;
}

size_t maglev_select(void* table, uint64_t hash) {
  uint16_t i = static_cast<const l4::lb::maglev_table*>(table)->lookup(hash);
  return i == l4::lb::maglev_table::npos ? no_backend : i;
}

void upstream_pool::on_attempt(size_t i) {
  backend& b = backends_[i];
  ++b.active;
  b.counters.active.set(b.active);
  counters_.active.set(counters_.active.get() + 1);
}

void upstream_pool::on_finished(size_t i) {
  backend& b = backends_[i];
  if (b.active) --b.active;
  b.counters.active.set(b.active);
  uint64_t a = counters_.active.get();
  counters_.active.set(a ? a - 1 : 0);
}

}  // namespace edge::upstream
