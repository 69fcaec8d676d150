// The frames the appliance originates to announce its addresses and resolve next hops (ARP
// requests, ICMPv6 neighbour advertisements and solicitations), checked byte by byte against
// RFC 826 / RFC 4861 layouts written out here, with the ICMPv6 checksum verified independently.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <vector>

#include "l4/lb/neighbor_table.hh"
#include "l4/local.hh"
#include "test_eal.hh"

namespace {

const rte_ether_addr own{{0x02, 0, 0, 0, 0, 0x01}};

std::vector<uint8_t> bytes_of(const char* addr) {
  uint8_t b[16];
  const bool v6 = std::string_view(addr).find(':') != std::string_view::npos;
  EXPECT_EQ(inet_pton(v6 ? AF_INET6 : AF_INET, addr, b), 1);
  return {b, b + (v6 ? 16 : 4)};
}

void put(std::vector<uint8_t>& f, const std::vector<uint8_t>& b) {
  f.insert(f.end(), b.begin(), b.end());
}

std::vector<uint8_t> arp(const char* sip, const char* tip) {
  std::vector<uint8_t> f(6, 0xff);
  f.insert(f.end(), own.addr_bytes, own.addr_bytes + 6);
  f.insert(f.end(), {0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1});
  f.insert(f.end(), own.addr_bytes, own.addr_bytes + 6);
  put(f, bytes_of(sip));
  f.insert(f.end(), 6, 0);
  put(f, bytes_of(tip));
  return f;
}

// Checksum bytes (offset 56, 57) left zero: checked apart.
std::vector<uint8_t> nd(std::vector<uint8_t> dmac, const char* src, const char* dst, uint8_t type,
                        uint8_t flags0, const char* target, uint8_t option) {
  std::vector<uint8_t> f = dmac;
  f.insert(f.end(), own.addr_bytes, own.addr_bytes + 6);
  f.insert(f.end(), {0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255});
  put(f, bytes_of(src));
  put(f, bytes_of(dst));
  f.insert(f.end(), {type, 0, 0, 0, flags0, 0, 0, 0});
  put(f, bytes_of(target));
  f.insert(f.end(), {option, 1});
  f.insert(f.end(), own.addr_bytes, own.addr_bytes + 6);
  return f;
}

// RFC 4443 §2.3: the one's-complement sum over the pseudo-header and the message is all ones.
bool icmpv6_checksum_ok(const std::vector<uint8_t>& f) {
  uint32_t sum = 0;
  auto add = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  };
  add(f.data() + 22, 32);  // source and destination
  const size_t len = f.size() - 54;
  sum += static_cast<uint32_t>(len) + 58;
  add(f.data() + 54, len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

struct row {
  const char* what;
  bool announce;  // build_announcement(src) or build_neighbor_request(src, target)
  const char* src;
  const char* target;
  std::vector<uint8_t> want;
};

TEST(neighbor_frame, byte_exact) {
  const row rows[] = {
      {"gratuitous ARP", true, "10.0.0.100", nullptr, arp("10.0.0.100", "10.0.0.100")},
      {"ARP request for a next hop", false, "10.0.0.1", "10.0.0.2", arp("10.0.0.1", "10.0.0.2")},
      {"unsolicited NA to all nodes, override set", true, "fd00::1", nullptr,
       nd({0x33, 0x33, 0, 0, 0, 1}, "fd00::1", "ff02::1", 136, 0x20, "fd00::1", 2)},
      {"NS to the solicited-node group", false, "fd00::1", "fd00::ab:cdef",
       nd({0x33, 0x33, 0xff, 0xab, 0xcd, 0xef}, "fd00::1", "ff02::1:ffab:cdef", 135, 0,
          "fd00::ab:cdef", 1)},
  };
  for (const row& r : rows) {
    rte_mbuf* m = rte_pktmbuf_alloc(edge_test::mempool());
    ASSERT_NE(m, nullptr);
    const l4::ip_addr src = *l4::ip_addr::parse(r.src);
    ASSERT_TRUE(r.announce
                    ? l4::build_announcement(m, own, src)
                    : l4::lb::build_neighbor_request(m, own, src, *l4::ip_addr::parse(r.target)))
        << r.what;
    const auto* d = rte_pktmbuf_mtod(m, const uint8_t*);
    std::vector<uint8_t> got(d, d + rte_pktmbuf_pkt_len(m));
    rte_pktmbuf_free(m);
    if (src.v6) {
      ASSERT_EQ(got.size(), 86u) << r.what;
      EXPECT_TRUE(icmpv6_checksum_ok(got)) << r.what;
      got[56] = got[57] = 0;
    }
    EXPECT_EQ(got, r.want) << r.what;
  }
}

}  // namespace
