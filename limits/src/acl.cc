#include "limits/acl.hh"

#include <rte_errno.h>
#include <rte_fib.h>
#include <rte_lpm6.h>
#include <rte_memory.h>

#include <atomic>
#include <unordered_set>

namespace limits {
namespace {

std::atomic<uint64_t> lpm_seq{0};  // rte_lpm names are global to the EAL

// tbl8 groups a set of prefixes needs: one per distinct (depth, network) for every 8-bit stride
// boundary a prefix goes past (24 for IPv4 and IPv6's first level, then every 8 bits).
template <size_t N>
uint32_t tbl8_groups(const std::vector<const prefix*>& ps) {
  std::unordered_set<std::string> seen;
  for (const prefix* p : ps) {
    for (unsigned d = 24; d < p->len; d += 8) {
      std::string k(1 + N, '\0');
      k[0] = static_cast<char>(d);
      for (unsigned b = 0; b < d / 8 && b < N; ++b) k[1 + b] = static_cast<char>(p->addr[b]);
      seen.insert(std::move(k));
    }
  }
  return static_cast<uint32_t>(seen.size());
}

}  // namespace

common::result<std::unique_ptr<acl>> acl::build(const acl_spec& spec) {
  if (spec.lists.size() > 16000)
    return common::fail("more than 16000 lists for one service", spec.where);
  std::unique_ptr<acl> a(new acl());
  std::vector<const prefix*> v4, v6;
  std::vector<uint32_t> hop4, hop6;
  for (size_t i = 0; i < spec.lists.size(); ++i) {
    const acl_list& l = spec.lists[i];
    if (!l.deny) a->default_deny_ = true;
    const uint32_t hop = static_cast<uint32_t>(i) << 1 | (l.deny ? 1u : 0u);
    for (const prefix& p : l.prefixes) {
      (p.v6 ? v6 : v4).push_back(&p);
      (p.v6 ? hop6 : hop4).push_back(hop);
    }
  }
  a->prefixes_ = v4.size() + v6.size();
  const uint64_t id = lpm_seq.fetch_add(1);
  if (!v4.empty()) {
    // rte_fib's DIR-24-8 (rte_lpm's algorithm, with a RIB trie for the rules): rte_lpm_add scans
    // the rules of a depth linearly, which makes 100,000 prefixes take seconds.
    rte_fib_conf c{};
    c.type = RTE_FIB_DIR24_8;
    c.default_nh = 0;  // no prefix matched
    c.max_routes = static_cast<int>(v4.size());
    c.rib_ext_sz = 0;
    c.dir24_8.nh_sz = RTE_FIB_DIR24_8_2B;  // 32 MiB tbl24
    c.dir24_8.num_tbl8 = tbl8_groups<4>(v4) + 1;
    const std::string name = "acl4_" + std::to_string(id);
    a->v4_ = rte_fib_create(name.c_str(), SOCKET_ID_ANY, &c);
    if (a->v4_ == nullptr)
      return common::fail(std::string("rte_fib_create: ") + rte_strerror(rte_errno) + " (" +
                              std::to_string(v4.size()) + " IPv4 prefixes)",
                          spec.where);
    for (size_t i = 0; i < v4.size(); ++i) {
      const auto& b = v4[i]->addr;
      const uint32_t ip = uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
      if (rte_fib_add(a->v4_, ip, v4[i]->len, hop4[i] + 1) != 0)
        return common::fail("rte_fib_add failed", spec.where);
    }
  }
  if (!v6.empty()) {
    rte_lpm6_config c{};
    c.max_rules = static_cast<uint32_t>(v6.size());
    c.number_tbl8s = tbl8_groups<16>(v6) + 1;
    const std::string name = "acl6_" + std::to_string(id);
    a->v6_ = rte_lpm6_create(name.c_str(), SOCKET_ID_ANY, &c);
    if (a->v6_ == nullptr)
      return common::fail(std::string("rte_lpm6_create: ") + rte_strerror(rte_errno) + " (" +
                              std::to_string(v6.size()) + " IPv6 prefixes)",
                          spec.where);
    for (size_t i = 0; i < v6.size(); ++i) {
      uint8_t ip[16];
      std::copy(v6[i]->addr.begin(), v6[i]->addr.end(), ip);
      if (rte_lpm6_add(a->v6_, ip, v6[i]->len, hop6[i]) != 0)
        return common::fail("rte_lpm6_add failed", spec.where);
    }
  }
  return a;
}

acl::~acl() {
  if (v4_ != nullptr) rte_fib_free(v4_);
  if (v6_ != nullptr) rte_lpm6_free(v6_);
}

acl_verdict acl::lookup_v4(uint32_t ip) const {
  uint64_t hop = 0;
  if (v4_ != nullptr) {
    rte_fib_lookup_bulk(v4_, &ip, &hop, 1);
    if (hop != 0)
      return {.denied = ((hop - 1) & 1) != 0, .list = static_cast<int16_t>((hop - 1) >> 1)};
  }
  return {.denied = default_deny_, .list = -1};
}

acl_verdict acl::lookup_v6(const uint8_t* ip) const {
  uint32_t hop = 0;
  if (v6_ != nullptr && rte_lpm6_lookup(v6_, ip, &hop) == 0)
    return {.denied = (hop & 1) != 0, .list = static_cast<int16_t>(hop >> 1)};
  return {.denied = default_deny_, .list = -1};
}

acl_verdict acl::lookup(bool v6, const uint8_t* a) const {
  if (v6) return lookup_v6(a);
  return lookup_v4(uint32_t{a[0]} << 24 | uint32_t{a[1]} << 16 | uint32_t{a[2]} << 8 | a[3]);
}

}  // namespace limits
