#pragma once
// The services of a snapshot by (VIP, port, protocol): an open-addressing table built with the
// snapshot, so that a worker looks a packet's service up once, in a bounded probe, with no heap.
// An entry carries the configured service and, for kind l4, the balancer's service of the same
// key, so that one lookup serves both the balancer's stage and the delivery to tcp/tls services.
#include <cstdint>
#include <vector>

#include "l4/ip_addr.hh"

namespace l4::lb {
class lb_config;
struct service;
}  // namespace l4::lb

namespace edge {

struct service_config;

struct service_entry {
  const service_config* cfg = nullptr;  // null: a balancer service the config does not name
  const l4::lb::service* lb = nullptr;  // the balancer's service (kind l4), or null
};

class service_index {
 public:
  // Control thread: a table of bit_ceil(2n + 2) slots for the config's services and the balancer's
  // (n of both). Duplicate keys keep the first, as a scan in config order would find it.
  void build(const std::vector<service_config>& services, const l4::lb::lb_config* lb);

  // The entry for VIP:port/proto, or nullptr; probes at most max_probe() slots.
  const service_entry* find(const l4::ip_addr& vip, uint16_t port, uint8_t proto) const {
    if (slots_.empty()) return nullptr;
    uint32_t j = hash(vip, port, proto) & mask_;
    for (uint32_t k = 0; k < max_probe_; ++k, j = (j + 1) & mask_) {
      const slot& s = slots_[j];
      if (!s.used) return nullptr;
      if (s.port == port && s.proto == proto && s.vip == vip) return &s.entry;
    }
    return nullptr;
  }

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  // The longest probe sequence among the entries (1: no collision).
  uint32_t max_probe() const { return max_probe_; }

  static uint32_t hash(const l4::ip_addr& vip, uint16_t port, uint8_t proto) {
    uint64_t h = l4::ip_addr_hash{}(vip);
    h ^= (static_cast<uint64_t>(port) << 8 | proto) * 0xff51afd7ed558ccdULL;
    h ^= h >> 29;
    return static_cast<uint32_t>(h);
  }

 private:
  struct slot {
    l4::ip_addr vip;
    uint16_t port = 0;
    uint8_t proto = 0;
    bool used = false;
    service_entry entry;
  };
  void insert(const l4::ip_addr& vip, uint16_t port, uint8_t proto, const service_entry& e);

  std::vector<slot> slots_;
  uint32_t mask_ = 0;
  uint32_t max_probe_ = 0;
  size_t size_ = 0;
};

}  // namespace edge
