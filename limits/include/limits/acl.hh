#pragma once
// A service's CIDR allow/deny lists as DPDK longest-prefix-match tables (rte_fib DIR-24-8, the
// rte_lpm algorithm with a trie for its rules, for IPv4; rte_lpm6 for IPv6). Built on the control
// thread (100,000 prefixes in well under a second, see tests/unit/limits), published inside the RCU
// snapshot and freed with it, so that a reload never stalls a worker. Lookups are read-only and
// lock-free.
#include <cstdint>
#include <memory>

#include "common/result.hh"
#include "limits/spec.hh"

struct rte_fib;
struct rte_lpm6;

namespace limits {

struct acl_verdict {
  bool denied = false;
  int16_t list = -1;  // index of the list whose prefix matched; -1: none (the default applied)
};

class acl {
 public:
  // Needs the EAL (the tables come from DPDK memory: 32 MiB for an IPv4 table with any prefix).
  static common::result<std::unique_ptr<acl>> build(const acl_spec& spec);
  ~acl();
  acl(const acl&) = delete;
  acl& operator=(const acl&) = delete;

  acl_verdict lookup_v4(uint32_t addr_host_order) const;
  acl_verdict lookup_v6(const uint8_t* addr16) const;
  acl_verdict lookup(bool v6, const uint8_t* addr) const;
  bool default_deny() const { return default_deny_; }
  size_t prefixes() const { return prefixes_; }

 private:
  acl() = default;
  rte_fib* v4_ = nullptr;
  rte_lpm6* v6_ = nullptr;
  bool default_deny_ = false;
  size_t prefixes_ = 0;
};

}  // namespace limits
