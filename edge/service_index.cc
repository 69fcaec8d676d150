#include "edge/service_index.hh"

#include <bit>

#include "edge/config.hh"
#include "l4/lb/lb_config.hh"

namespace edge {

void service_index::build(const std::vector<service_config>& services,
                          const l4::lb::lb_config* lb) {
  const size_t n = services.size() + (lb != nullptr ? lb->services().size() : 0);
  // At most half the slots used: a miss ends on an empty slot after a short probe.
  const uint32_t cap = std::bit_ceil(static_cast<uint32_t>(n) * 2 + 2);
  slots_.assign(cap, slot{});
  mask_ = cap - 1;
  max_probe_ = 0;
  size_ = 0;
  for (const auto& s : services)
    insert(s.vip, s.port, s.protocol,
           {&s, lb != nullptr ? lb->find(s.vip, s.port, s.protocol) : nullptr});
  if (lb != nullptr)
    for (const auto& s : lb->services())
      insert(s.spec.vip, s.spec.port, s.spec.proto, {nullptr, &s});
}

void service_index::insert(const l4::ip_addr& vip, uint16_t port, uint8_t proto,
                           const service_entry& e) {
  uint32_t j = hash(vip, port, proto) & mask_;
  for (uint32_t k = 1;; ++k, j = (j + 1) & mask_) {
    slot& s = slots_[j];
    if (s.used) {
      if (s.port == port && s.proto == proto && s.vip == vip) return;  // the first one stays
      continue;
    }
    s.vip = vip;
    s.port = port;
    s.proto = proto;
    s.used = true;
    s.entry = e;
    ++size_;
    if (k > max_probe_) max_probe_ = k;
    return;
  }
}

}  // namespace edge
