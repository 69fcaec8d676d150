#pragma once
// EAL initialisation and port set-up from the configuration: one RX and one TX queue per worker
// on every port. The control thread owns no queue: it hands frames to a worker (control ring).
#include <rte_ether.h>
#include <rte_mempool.h>

#include <string>
#include <vector>

#include "common/result.hh"
#include "edge/config.hh"

namespace edge {

struct port_state {
  uint16_t id = 0;            // DPDK port id
  std::string name;
  port_role role = port_role::wan;
  rte_ether_addr mac{};
};

class dataplane {
 public:
  // Builds the EAL argument vector from the config (lcores from workers, devices from ports).
  static std::vector<std::string> eal_arguments(const config& c, const char* argv0);

  common::result<void> init_eal(const config& c, const char* argv0);
  common::result<void> start_ports(const config& c);
  void stop_ports();

  const std::vector<port_state>& ports() const { return ports_; }
  rte_mempool* pool(unsigned worker) const { return pools_[worker]; }
  unsigned main_lcore() const { return main_lcore_; }

 private:
  std::vector<port_state> ports_;
  std::vector<rte_mempool*> pools_;
  unsigned main_lcore_ = 0;
  bool eal_up_ = false;
};

}  // namespace edge
