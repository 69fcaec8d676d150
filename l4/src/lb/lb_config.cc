#include "l4/lb/lb_config.hh"

#include "l4/lb/flow.hh"

#include <netinet/in.h>

#include <bit>

namespace l4::lb {
namespace {

uint32_t service_hash(const ip_addr& vip, uint16_t port, uint8_t proto) {
  uint64_t h = ip_addr_hash{}(vip);
  h ^= (static_cast<uint64_t>(port) << 8 | proto) * 0xff51afd7ed558ccdULL;
  h ^= h >> 29;
  return static_cast<uint32_t>(h);
}

std::string where(const service_spec& s) {
  return "service " + s.vip.str() + ":" + std::to_string(s.port) +
         (s.proto == IPPROTO_UDP ? "/udp" : "/tcp");
}

std::string backend_key(const backend_spec& b, uint16_t vport) {
  return (b.addr.v6 ? "[" + b.addr.str() + "]" : b.addr.str()) + ":" +
         std::to_string(b.port ? b.port : vport);
}

}  // namespace

common::result<std::shared_ptr<const lb_config>> lb_config::build(const lb_spec& spec,
                                                                  const lb_config* previous) {
  auto cfg = std::make_shared<lb_config>();
  cfg->spec_ = spec;
  if (spec.workers == 0) return common::fail("lb: workers must be at least 1");
  if (spec.snat_port_lo == 0 || spec.snat_port_lo > spec.snat_port_hi)
    return common::fail("lb: SNAT port range is empty");
  cfg->ports_per_worker_ = (spec.snat_port_hi - spec.snat_port_lo + 1u) / spec.workers;
  if (cfg->ports_per_worker_ < 64)
    return common::fail("lb: SNAT port range gives fewer than 64 ports per worker");
  for (const auto& a : spec.snat_v4)
    if (a.v6) return common::fail("lb: snat_v4 holds IPv6 address " + a.str());
  for (const auto& a : spec.snat_v6)
    if (!a.v6) return common::fail("lb: snat_v6 holds IPv4 address " + a.str());

  for (const auto& s : spec.services) {
    if (s.proto != IPPROTO_TCP && s.proto != IPPROTO_UDP)
      return common::fail("protocol must be tcp or udp", where(s));
    if (s.port == 0) return common::fail("port 0", where(s));
    if (s.mode == fwd_mode::fnat && (s.vip.v6 ? spec.snat_v6 : spec.snat_v4).empty())
      return common::fail("full NAT needs a SNAT address of the VIP's family", where(s));
    if (s.mode != fwd_mode::fnat) {
      const ip_addr& src = s.vip.v6 ? spec.lan.addr_v6 : spec.lan.addr_v4;
      if (src == ip_addr{} || src.v6 != s.vip.v6)
        return common::fail("encapsulation needs the lan port's address of the VIP's family",
                            where(s));
    }
    service svc;
    svc.spec = s;
    for (const auto& b : s.backends) {
      if (b.addr.v6 != s.vip.v6)
        return common::fail("backend " + b.addr.str() + " is not of the VIP's family", where(s));
      svc.maglev_input.push_back({backend_key(b, s.port), b.healthy ? b.weight : 0});
    }
    if (previous != nullptr)
      if (const service* old = previous->find(s.vip, s.port, s.proto);
          old != nullptr && old->spec.maglev_size == s.maglev_size &&
          old->maglev_input.size() == svc.maglev_input.size() &&
          std::equal(old->maglev_input.begin(), old->maglev_input.end(), svc.maglev_input.begin(),
                     [](const maglev_backend& a, const maglev_backend& b) {
                       return a.key == b.key && a.weight == b.weight;
                     }))
        svc.maglev = old->maglev;
    if (!svc.maglev) {
      auto t = maglev_table::build(svc.maglev_input, s.maglev_size);
      if (!t) return common::fail(t.error().message, where(s));
      svc.maglev = std::make_shared<const maglev_table>(std::move(*t));
    }
    cfg->services_.push_back(std::move(svc));
  }

  const uint32_t slots = std::bit_ceil(static_cast<uint32_t>(cfg->services_.size()) * 2 + 2);
  cfg->index_.assign(slots, -1);
  cfg->index_mask_ = slots - 1;
  for (size_t i = 0; i < cfg->services_.size(); ++i) {
    const auto& s = cfg->services_[i].spec;
    if (cfg->find(s.vip, s.port, s.proto) != nullptr)
      return common::fail("duplicate service", where(s));
    uint32_t j = service_hash(s.vip, s.port, s.proto) & cfg->index_mask_;
    while (cfg->index_[j] >= 0) j = (j + 1) & cfg->index_mask_;
    cfg->index_[j] = static_cast<int32_t>(i);
  }
  return std::shared_ptr<const lb_config>(std::move(cfg));
}

const service* lb_config::find(const ip_addr& vip, uint16_t port, uint8_t proto) const {
  if (index_.empty()) return nullptr;
  for (uint32_t j = service_hash(vip, port, proto) & index_mask_;; j = (j + 1) & index_mask_) {
    const int32_t i = index_[j];
    if (i < 0) return nullptr;  // the index always keeps empty slots, so this terminates
    const auto& s = services_[static_cast<size_t>(i)].spec;
    if (s.port == port && s.proto == proto && same_addr(s.vip, vip))
      return &services_[static_cast<size_t>(i)];
  }
}

bool lb_config::is_snat(const ip_addr& a) const {
  for (const auto& x : a.v6 ? spec_.snat_v6 : spec_.snat_v4)
    if (same_addr(x, a)) return true;
  return false;
}

uint16_t lb_config::snat_port_owner(uint16_t port) const {
  if (port < spec_.snat_port_lo) return 0;
  const uint32_t w = (port - spec_.snat_port_lo) / ports_per_worker_;
  return static_cast<uint16_t>(w >= spec_.workers ? spec_.workers - 1 : w);
}

std::vector<port_block> port_blocks(uint16_t lo, uint16_t hi) {
  std::vector<port_block> out;
  uint32_t cur = lo;
  while (cur <= hi) {
    // The largest power of two that `cur` is aligned to and that stays within hi.
    uint32_t size = cur == 0 ? 0x10000u : (cur & (~cur + 1));
    while (cur + size - 1 > hi) size >>= 1;
    out.push_back({static_cast<uint16_t>(cur), static_cast<uint16_t>(~(size - 1) & 0xffffu)});
    cur += size;
  }
  return out;
}

std::pair<uint16_t, uint16_t> lb_config::snat_range(uint16_t worker) const {
  const uint32_t lo = spec_.snat_port_lo + worker * ports_per_worker_;
  const uint32_t hi = worker + 1 == spec_.workers ? spec_.snat_port_hi : lo + ports_per_worker_ - 1;
  return {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
}

}  // namespace l4::lb
