#include "edge/ports.hh"

#include <dirent.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace edge {
namespace {

bool is_vdev(const std::string& device) {
  return device.rfind("net_", 0) == 0;
}

// "net_af_packet0,iface=x" -> "net_af_packet0"; a PCI address stays as it is.
std::string device_name(const std::string& device) {
  return device.substr(0, device.find(','));
}

bool is_af_packet(const std::string& device) {
  return device.rfind("net_af_packet", 0) == 0;
}

bool has_arg(const std::string& device, const char* key) {
  return device.find(std::string(",") + key + "=") != std::string::npos;
}

// The value of `key=` in a vdev string ("" when absent).
std::string arg_value(const std::string& device, const char* key) {
  const std::string k = std::string(",") + key + "=";
  const size_t at = device.find(k);
  if (at == std::string::npos) return "";
  const size_t from = at + k.size();
  return device.substr(from, device.find(',', from) - from);
}

std::string af_packet_args(const std::string& device, size_t queues, uint16_t mtu) {
  if (!is_af_packet(device)) return device;
  std::string d = device;
  // af_packet opens one socket per queue pair in a fanout group: exactly one per worker, or the
  // frames hashed to a socket nobody polls are lost.
  if (!has_arg(d, "qpairs")) d += ",qpairs=" + std::to_string(queues);
  // The PMD's default RX ring of 512 frames overflows when thousands of connections open or
  // close at once, and the kernel's drops there are not in DPDK's counters: 4096 frames, each
  // big enough for a frame of the port's MTU (TPACKET2 header + Ethernet + VLAN + MTU).
  if (!has_arg(d, "framecnt")) d += ",framecnt=4096";
  if (!has_arg(d, "framesz") && !has_arg(d, "blocksz")) {
    uint32_t frame = 2048;
    while (frame < mtu + 128u) frame <<= 1;
    d += ",framesz=" + std::to_string(frame) +
         ",blocksz=" + std::to_string(std::max<uint32_t>(frame, 4096));
  }
  return d;
}

// The AF_PACKET sockets the PMD opened on `ifindex` (one per queue pair). DPDK keeps them private;
// they are found among the process's descriptors by family and bound interface.
std::vector<int> packet_sockets(int ifindex) {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(dir)) continue;
    int domain = 0;
    socklen_t len = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_PACKET) continue;
    sockaddr_ll sll{};
    len = sizeof(sll);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&sll), &len) == 0 && sll.sll_ifindex == ifindex)
      fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

// The RSS key edge programs: 0x6d5a repeated makes Toeplitz symmetric (both directions of a
// flow hash alike: Woo and Park, "Scalable TCP Session Monitoring with Symmetric RSS", 2012).
void symmetric_rss_key(uint8_t* key, size_t len) {
  for (size_t i = 0; i < len; ++i) key[i] = i % 2 == 0 ? 0x6d : 0x5a;
}

// Spreads the indirection table round-robin over the workers' queues, then reads key and table
// back: a driver that accepts them but programs something else is refused, not trusted.
common::result<void> program_rss(const port_config& pc, uint16_t port, const rte_eth_dev_info& info,
                                 uint16_t workers, const uint8_t* key, uint8_t key_len) {
  const std::string where = "port '" + pc.name + "': ";
  if (info.reta_size == 0 || info.reta_size > 4096)
    return common::fail(where + "driver reports an RSS indirection table of " +
                        std::to_string(info.reta_size) + " entries");
  std::vector<rte_eth_rss_reta_entry64> reta((info.reta_size + RTE_ETH_RETA_GROUP_SIZE - 1) /
                                             RTE_ETH_RETA_GROUP_SIZE);
  for (uint16_t i = 0; i < info.reta_size; ++i) {
    reta[i / RTE_ETH_RETA_GROUP_SIZE].mask |= 1ULL << (i % RTE_ETH_RETA_GROUP_SIZE);
    reta[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = i % workers;
  }
  if (int rc = rte_eth_dev_rss_reta_update(port, reta.data(), info.reta_size); rc != 0)
    return common::fail(where + "cannot set the RSS indirection table: " + rte_strerror(-rc));
  std::vector<rte_eth_rss_reta_entry64> back(reta.size());
  for (auto& g : back) g.mask = ~0ULL;
  if (int rc = rte_eth_dev_rss_reta_query(port, back.data(), info.reta_size); rc != 0)
    return common::fail(where + "cannot read the RSS indirection table back: " + rte_strerror(-rc));
  for (uint16_t i = 0; i < info.reta_size; ++i)
    if (back[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] != i % workers)
      return common::fail(where + "RSS indirection table entry " + std::to_string(i) +
                          " reads back wrong");
  uint8_t got_key[256] = {};
  rte_eth_rss_conf conf{};
  conf.rss_key = got_key;
  conf.rss_key_len = key_len;
  if (int rc = rte_eth_dev_rss_hash_conf_get(port, &conf); rc != 0)
    return common::fail(where + "cannot read the RSS key back: " + rte_strerror(-rc));
  if (std::memcmp(got_key, key, key_len) != 0)
    return common::fail(where + "the RSS key reads back different from the one set");
  spdlog::info(
      "port {}: RSS key ({} bytes, symmetric) and indirection table ({} entries over {} "
      "queues) set and read back",
      pc.name, key_len, info.reta_size, workers);
  return {};
}

}  // namespace

std::vector<std::string> dataplane::eal_arguments(const config& c, const char* argv0) {
  std::vector<std::string> a{argv0};
  // The main lcore runs the control thread; give it an id above the workers', floating over all
  // CPUs, so that worker lcores map 1:1 to the configured CPUs.
  const unsigned main = *std::max_element(c.workers.lcores.begin(), c.workers.lcores.end()) + 1;
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  std::string lcores;
  for (unsigned l : c.workers.lcores) lcores += std::to_string(l) + ",";
  lcores += std::to_string(main) + "@(0-" + std::to_string(cpus - 1) + ")";
  a.insert(a.end(), {"--lcores", lcores, "--main-lcore", std::to_string(main)});
  const size_t queues = c.workers.lcores.size();
  for (const auto& p : c.ports) {
    if (is_vdev(p.device))
      a.insert(a.end(), {"--vdev", af_packet_args(p.device, queues, p.mtu)});
    else
      a.insert(a.end(), {"-a", p.device});
  }
  a.insert(a.end(), c.eal_args.begin(), c.eal_args.end());
  return a;
}

common::result<void> dataplane::init_eal(const config& c, const char* argv0) {
  auto args = eal_arguments(c, argv0);
  std::string joined;
  std::vector<char*> argv;
  for (auto& s : args) {
    argv.push_back(s.data());
    joined += s + " ";
  }
  spdlog::info("EAL arguments: {}", joined);
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0)
    return common::fail(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
  eal_up_ = true;
  main_lcore_ = rte_get_main_lcore();
  for (size_t w = 0; w < c.workers.lcores.size(); ++w) {
    const std::string name = "edge_pool_" + std::to_string(w);
    const int socket = rte_lcore_to_socket_id(c.workers.lcores[w]);
    // Data room for a full frame at the largest configured MTU, so frames stay single-segment.
    uint16_t mtu = 1500;
    for (const auto& p : c.ports) mtu = std::max(mtu, p.mtu);
    const uint16_t room = std::max<uint16_t>(
        RTE_MBUF_DEFAULT_BUF_SIZE, mtu + RTE_ETHER_HDR_LEN + 4 + 4 + RTE_PKTMBUF_HEADROOM);
    rte_mempool* mp = rte_pktmbuf_pool_create(name.c_str(), c.workers.mbufs, 256, 0, room,
                                              socket < 0 ? SOCKET_ID_ANY : socket);
    if (mp == nullptr)
      return common::fail("cannot create mbuf pool " + name + ": " + rte_strerror(rte_errno));
    pools_.push_back(mp);
  }
  return {};
}

common::result<void> dataplane::start_ports(const config& c) {
  const uint16_t workers = static_cast<uint16_t>(c.workers.lcores.size());
  for (const auto& pc : c.ports) {
    port_state ps;
    ps.name = pc.name;
    ps.role = pc.role;
    const std::string dev = device_name(pc.device);
    if (rte_eth_dev_get_port_by_name(dev.c_str(), &ps.id) != 0)
      return common::fail("port '" + pc.name + "': DPDK has no device '" + dev +
                          "' (is the driver loaded and the interface present?)");
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(ps.id, &info); rc != 0)
      return common::fail("port '" + pc.name + "': cannot read device info: " + rte_strerror(-rc));
    const uint16_t txq = workers;
    if (info.max_rx_queues < workers || info.max_tx_queues < txq)
      return common::fail("port '" + pc.name + "' supports " + std::to_string(info.max_rx_queues) +
                          " RX / " + std::to_string(info.max_tx_queues) + " TX queues; " +
                          std::to_string(workers) + " workers need " + std::to_string(workers) +
                          " / " + std::to_string(txq));
    rte_eth_conf conf{};
    conf.rxmode.mtu = pc.mtu;
    const bool rss = workers > 1 && info.flow_type_rss_offloads != 0 &&
                     c.workers.dispatch == worker_config::dispatch_mode::rss;
    uint8_t rss_key[256];
    const uint8_t rss_key_len = info.hash_key_size != 0 ? info.hash_key_size : 40;
    if (workers > 1 && info.flow_type_rss_offloads == 0 &&
        c.workers.dispatch != worker_config::dispatch_mode::software)
      return common::fail("port '" + pc.name + "' (driver " + info.driver_name +
                          ") has no RSS, so it cannot spread flows over " +
                          std::to_string(workers) +
                          " workers; set workers.dispatch: software (each worker hands the packets "
                          "it does not own to their owner)");
    if (rss) {
      symmetric_rss_key(rss_key, rss_key_len);
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_key = rss_key;
      conf.rx_adv_conf.rss_conf.rss_key_len = rss_key_len;
      conf.rx_adv_conf.rss_conf.rss_hf =
          info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
    }
    if (int rc = rte_eth_dev_configure(ps.id, workers, txq, &conf); rc != 0)
      return common::fail("port '" + pc.name + "': configure failed: " + rte_strerror(-rc));
    uint16_t rxd = pc.rx_descriptors, txd = pc.tx_descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(ps.id, &rxd, &txd);
    const int socket = rte_eth_dev_socket_id(ps.id);
    for (uint16_t q = 0; q < workers; ++q) {
      if (int rc = rte_eth_rx_queue_setup(ps.id, q, rxd, socket, nullptr, pools_[q]); rc != 0)
        return common::fail("port '" + pc.name + "': RX queue " + std::to_string(q) + ": " +
                            rte_strerror(-rc));
    }
    for (uint16_t q = 0; q < txq; ++q) {
      if (int rc = rte_eth_tx_queue_setup(ps.id, q, txd, socket, nullptr); rc != 0)
        return common::fail("port '" + pc.name + "': TX queue " + std::to_string(q) + ": " +
                            rte_strerror(-rc));
    }
    if (int rc = rte_eth_dev_start(ps.id); rc != 0)
      return common::fail("port '" + pc.name + "': start failed: " + rte_strerror(-rc));
    if (rss)
      if (auto r = program_rss(pc, ps.id, info, workers, rss_key, rss_key_len); !r) return r;
    // Own addresses and VIPs are answered by the local stage; multicast is needed for IPv6 ND.
    rte_eth_promiscuous_enable(ps.id);
    rte_eth_allmulticast_enable(ps.id);
    rte_eth_macaddr_get(ps.id, &ps.mac);
    if (is_af_packet(pc.device)) {
      const std::string iface = arg_value(pc.device, "iface");
      if (const unsigned ifindex = if_nametoindex(iface.c_str()); ifindex != 0)
        ps.packet_fds = packet_sockets(static_cast<int>(ifindex));
      if (ps.packet_fds.empty())
        spdlog::warn("port {}: no AF_PACKET socket found on {}; kernel ring drops are not counted",
                     pc.name, iface);
    }
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof(mac), &ps.mac);
    spdlog::info("port {} ({}) up: dpdk port {}, driver {}, mac {}, {} queue pair(s), mtu {}",
                 pc.name, to_string(pc.role), ps.id, info.driver_name, mac, workers, pc.mtu);
    ports_.push_back(ps);
  }
  return {};
}

uint64_t dataplane::kernel_rx_drops(size_t port) const {
  if (port >= ports_.size()) return 0;
  std::lock_guard lock(kernel_drops_mu_);
  const port_state& ps = ports_[port];
  for (const int fd : ps.packet_fds) {
    // Reading the statistics resets them in the kernel: the sum is kept here.
    tpacket_stats st{};
    socklen_t len = sizeof(st);
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
      ps.kernel_drops += st.tp_drops;
  }
  return ps.kernel_drops;
}

void dataplane::stop_ports() {
  for (auto& p : ports_) p.packet_fds.clear();  // DPDK closes them with the port
  for (const auto& p : ports_) {
    rte_eth_dev_stop(p.id);
    rte_eth_dev_close(p.id);
  }
  ports_.clear();
  for (auto* mp : pools_) rte_mempool_free(mp);
  pools_.clear();
  if (eal_up_) rte_eal_cleanup();
  eal_up_ = false;
}

}  // namespace edge
