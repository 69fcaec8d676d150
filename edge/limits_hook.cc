#include "edge/limits_hook.hh"

#include <netinet/in.h>
#include <rte_cycles.h>
#include <rte_tcp.h>

namespace edge {

uint64_t limits_now(uint64_t tsc) {
  static const limits::tsc_clock clock(rte_get_tsc_hz());
  return clock.units(tsc);
}

limits::flow limits_flow(const l4::ip_addr& src, const l4::ip_addr& vip, uint16_t vip_port) {
  limits::flow f;
  f.v6 = src.v6;
  f.src = src.b;
  f.vip = vip.b;
  f.vip_port = vip_port;
  return f;
}

segment_verdict limits_packet(const limits::service_limits& sl, const l4::packet& p,
                              uint64_t now_tsc, unsigned worker) {
  const bool syn = p.proto == IPPROTO_TCP &&
                   (p.tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG;
  const uint32_t bytes = uint32_t{p.l3_len} + p.l4_len + p.payload_len;
  const limits::decision d = limits::limit_set::check_packet(
      sl, limits_flow(p.src, p.dst, p.dport), syn, bytes, limits_now(now_tsc), worker);
  switch (d.what) {
    case limits::outcome::pass:
      return segment_verdict::pass;
    case limits::outcome::acl_denied:
      return segment_verdict::acl_denied;
    case limits::outcome::limited:
      return d.act == limits::action::rst && syn ? segment_verdict::limited_rst
                                                 : segment_verdict::limited_drop;
  }
  return segment_verdict::pass;
}

segment_verdict limits_segment(const limits::limit_set* set, std::string_view service,
                               const l4::packet& p, uint64_t now_tsc, unsigned worker) {
  if (set == nullptr) return segment_verdict::pass;
  const limits::service_limits* sl = set->service(service);
  if (sl == nullptr) return segment_verdict::pass;
  return limits_packet(*sl, p, now_tsc, worker);
}

}  // namespace edge
