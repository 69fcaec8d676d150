#include "edge/flow_steer.hh"

#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_errno.h>
#include <rte_flow.h>

#include <cstdio>
#include <cstring>

namespace edge {

std::vector<steering_rule> snat_steering_rules(const l4::lb::lb_config& cfg) {
  std::vector<steering_rule> out;
  const auto& spec = cfg.spec();
  if (spec.workers < 2) return out;
  std::vector<std::vector<l4::lb::port_block>> blocks(spec.workers);
  for (uint16_t w = 0; w < spec.workers; ++w) {
    const auto range = cfg.snat_range(w);
    blocks[w] = l4::lb::port_blocks(range.first, range.second);
  }
  for (const auto* addrs : {&spec.snat_v4, &spec.snat_v6})
    for (const auto& a : *addrs)
      for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}})
        for (uint16_t w = 0; w < spec.workers; ++w)
          for (const auto& b : blocks[w]) out.push_back({a, proto, b, w});
  return out;
}

namespace {

// One rule's pattern and action, with the storage its items point into.
struct flow_spec {
  rte_flow_item_ipv4 v4{}, v4_mask{};
  rte_flow_item_ipv6 v6{}, v6_mask{};
  rte_flow_item_tcp tcp{}, tcp_mask{};
  rte_flow_item_udp udp{}, udp_mask{};
  rte_flow_item items[4]{};
  rte_flow_action_queue queue{};
  rte_flow_action actions[2]{};

  explicit flow_spec(const steering_rule& r) {
    items[0].type = RTE_FLOW_ITEM_TYPE_ETH;  // any Ethernet header
    if (r.dst.v6) {
      std::memcpy(v6.hdr.dst_addr, r.dst.b.data(), 16);
      std::memset(v6_mask.hdr.dst_addr, 0xff, 16);
      v6.hdr.proto = r.proto;
      v6_mask.hdr.proto = 0xff;
      items[1] = {RTE_FLOW_ITEM_TYPE_IPV6, &v6, nullptr, &v6_mask};
    } else {
      std::memcpy(&v4.hdr.dst_addr, r.dst.b.data(), 4);
      v4_mask.hdr.dst_addr = UINT32_MAX;
      v4.hdr.next_proto_id = r.proto;
      v4_mask.hdr.next_proto_id = 0xff;
      items[1] = {RTE_FLOW_ITEM_TYPE_IPV4, &v4, nullptr, &v4_mask};
    }
    const rte_be16_t port = rte_cpu_to_be_16(r.ports.value), mask = rte_cpu_to_be_16(r.ports.mask);
    if (r.proto == IPPROTO_TCP) {
      tcp.hdr.dst_port = port;
      tcp_mask.hdr.dst_port = mask;
      items[2] = {RTE_FLOW_ITEM_TYPE_TCP, &tcp, nullptr, &tcp_mask};
    } else {
      udp.hdr.dst_port = port;
      udp_mask.hdr.dst_port = mask;
      items[2] = {RTE_FLOW_ITEM_TYPE_UDP, &udp, nullptr, &udp_mask};
    }
    items[3].type = RTE_FLOW_ITEM_TYPE_END;
    queue.index = r.queue;
    actions[0] = {RTE_FLOW_ACTION_TYPE_QUEUE, &queue};
    actions[1] = {RTE_FLOW_ACTION_TYPE_END, nullptr};
  }
};

std::string flow_error_text(const rte_flow_error& e, int rc) {
  return e.message != nullptr ? e.message : rte_strerror(rc < 0 ? -rc : rte_errno);
}

}  // namespace

void remove_steering(std::vector<installed_flow>& made) {
  for (const auto& f : made) rte_flow_destroy(f.port, f.flow, nullptr);
  made.clear();
}

common::result<void> install_steering(uint16_t port, const std::string& port_name,
                                      const std::vector<steering_rule>& rules,
                                      std::vector<installed_flow>& made) {
  rte_flow_attr attr{};
  attr.ingress = 1;
  for (const auto& r : rules) {
    const flow_spec f(r);
    rte_flow_error err{};
    int rc = rte_flow_validate(port, &attr, f.items, f.actions, &err);
    rte_flow* flow = rc == 0 ? rte_flow_create(port, &attr, f.items, f.actions, &err) : nullptr;
    if (flow == nullptr) {
      remove_steering(made);
      char mask[8];
      std::snprintf(mask, sizeof mask, "%04x", r.ports.mask);
      return common::fail("port '" + port_name + "': the driver refuses the rte_flow rule that " +
                          "steers " + (r.proto == IPPROTO_TCP ? "TCP" : "UDP") + " to " +
                          r.dst.str() + " port block " + std::to_string(r.ports.value) + "/0x" +
                          mask + " to queue " + std::to_string(r.queue) + ": " +
                          flow_error_text(err, rc == 0 ? -rte_errno : rc) +
                          "; set workers.snat_steering: off (replies are then handed to their "
                          "owner in software)");
    }
    made.push_back({port, flow});
  }
  return {};
}

}  // namespace edge
