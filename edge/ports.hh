#pragma once
// EAL initialisation and port set-up from the configuration: one RX and one TX queue per worker
// on every port. The control thread owns no queue: it hands frames to a worker (control ring).
#include <rte_ether.h>
#include <rte_mempool.h>

#include <mutex>
#include <string>
#include <vector>

#include "common/result.hh"
#include "edge/config.hh"

namespace edge {

struct port_state {
  uint16_t id = 0;  // DPDK port id
  std::string name;
  port_role role = port_role::wan;
  rte_ether_addr mac{};
  // net_af_packet only: the PMD's sockets (owned by DPDK) and the kernel's RX ring drops read
  // from them so far (PACKET_STATISTICS resets on every read).
  std::vector<int> packet_fds;
  mutable uint64_t kernel_drops = 0;
};

class dataplane {
 public:
  // Builds the EAL argument vector from the config (lcores from workers, devices from ports).
  static std::vector<std::string> eal_arguments(const config& c, const char* argv0);

  common::result<void> init_eal(const config& c, const char* argv0);
  common::result<void> start_ports(const config& c);
  void stop_ports();

  const std::vector<port_state>& ports() const { return ports_; }
  // Frames the kernel dropped because an af_packet RX ring was full (0 for other drivers).
  uint64_t kernel_rx_drops(size_t port) const;
  rte_mempool* pool(unsigned worker) const { return pools_[worker]; }
  unsigned main_lcore() const { return main_lcore_; }

 private:
  std::vector<port_state> ports_;
  std::vector<rte_mempool*> pools_;
  unsigned main_lcore_ = 0;
  bool eal_up_ = false;
  mutable std::mutex kernel_drops_mu_;  // admin threads may read the metrics at once
};

}  // namespace edge
