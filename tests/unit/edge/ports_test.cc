// EAL arguments built from the port config: the af_packet ring defaults edged adds when the
// device string does not set them, and what it leaves alone.
#include <gtest/gtest.h>

#include <string>

#include "edge/config.hh"
#include "edge/ports.hh"

namespace {

std::string vdev_arg(const std::string& device, int mtu = 1500) {
  const std::string yaml = "ports:\n  - {name: wan0, role: wan, device: \"" + device +
                           "\", mtu: " + std::to_string(mtu) + "}\nworkers:\n  lcores: [1, 2]\n";
  auto c = edge::parse_config(yaml, "test.yaml");
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().str());
  if (!c) return "";
  const auto args = edge::dataplane::eal_arguments(*c, "edged");
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--vdev") return args[i + 1];
  return "";
}

TEST(af_packet_args, ring_defaults_when_absent) {
  // 4096 frames (not the PMD's 512, which 2,000 simultaneous opens overflow), one queue pair per
  // worker, frames sized for the MTU.
  EXPECT_EQ(vdev_arg("net_af_packet0,iface=dut0"),
            "net_af_packet0,iface=dut0,qpairs=2,framecnt=4096,framesz=2048,blocksz=4096");
}

TEST(af_packet_args, frames_grow_with_the_mtu) {
  EXPECT_EQ(vdev_arg("net_af_packet0,iface=dut0", 9000),
            "net_af_packet0,iface=dut0,qpairs=2,framecnt=4096,framesz=16384,blocksz=16384");
}

TEST(af_packet_args, explicit_values_are_kept) {
  EXPECT_EQ(vdev_arg("net_af_packet0,iface=dut0,framecnt=1024,framesz=4096,qpairs=2"),
            "net_af_packet0,iface=dut0,framecnt=1024,framesz=4096,qpairs=2");
}

TEST(af_packet_args, other_vdevs_untouched) {
  EXPECT_EQ(vdev_arg("net_ring0"), "net_ring0");
}

}  // namespace
