#pragma once
// Stage 1: validate and parse received frames (Ethernet, one 802.1Q tag, ARP, IPv4, IPv6 with
// extension headers, TCP, UDP, ICMP, ICMPv6), verifying every checksum the NIC did not.
#include <span>

#include <rte_mbuf.h>

#include "l4/drop_reason.hh"
#include "l4/packet.hh"

namespace l4 {

// Parses one frame. Returns drop::none and fills `p`, or the reason the frame is invalid.
drop parse(const rte_mbuf* m, packet& p);

// Parses a burst: out[i] and verdict[i] for pkts[i].
void parse_burst(std::span<rte_mbuf* const> pkts, std::span<packet> out, std::span<drop> verdict);

}  // namespace l4
