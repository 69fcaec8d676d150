#pragma once
// Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights. Built by the control
// thread into an immutable table; workers only call lookup(). The table depends only on the
// backends' keys and weights (not on their order in the config or on the process), so every
// node builds the same table from the same backend set.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.hh"

namespace l4::lb {

struct maglev_backend {
  std::string key;      // stable identity, e.g. "10.0.1.5:80"; must be unique in a table
  uint32_t weight = 1;  // 0 = drained or unhealthy: gets no slot
};

class maglev_table {
 public:
  static constexpr uint32_t default_size = 65537;
  static constexpr uint16_t npos = 0xffff;

  // M must be prime and at least 100 x backends.size() (so weights are honoured within ~1%).
  // A table whose weights are all zero is valid and empty: lookup() returns npos.
  static common::result<maglev_table> build(std::span<const maglev_backend> backends,
                                            uint32_t m = default_size);

  // Index into the `backends` given to build(), or npos when no backend has weight.
  uint16_t lookup(uint64_t flow_hash) const {
    return entries_.empty() ? npos : entries_[flow_hash % entries_.size()];
  }
  bool empty() const { return entries_.empty(); }
  uint32_t size() const { return static_cast<uint32_t>(entries_.size()); }
  std::span<const uint16_t> entries() const { return entries_; }

 private:
  std::vector<uint16_t> entries_;
};

bool is_prime(uint32_t n);

}  // namespace l4::lb
