#!/usr/bin/python3
"""Malformed frames sent with scapy from a client namespace are dropped by edged's parse stage and
counted under their reason in /metrics; edged keeps answering pings afterwards."""
import harness as h

t = h.tag("malf")
c = h.Check("test_malformed")
cli = h.Namespace(f"{t}c")
dut = h.Namespace(f"{t}d")
h.veth(cli, "cli0", dut, "dut0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
dut.run(["sysctl", "-qw", "net.ipv6.conf.dut0.disable_ipv6=1"])

e = h.Edged(dut, f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [10.99.0.1/24]}}
{h.workers_yaml()}
""")
mac = e.stats()["ports"][0]["mac"]

# Each case: (drop reason, count, scapy expression for one frame).
cases = [
    ("ipv4_bad_checksum", 5, "Ether(dst=M)/IP(src='10.99.0.2', dst='10.99.0.1', chksum=0x1234)/ICMP()"),
    ("ipv4_truncated", 4, "Ether(dst=M, type=0x0800)/Raw(bytes(IP(src='10.99.0.2', dst='10.99.0.1'))[:12])"),
    ("ipv4_bad_ihl", 3, "Ether(dst=M)/IP(src='10.99.0.2', dst='10.99.0.1', ihl=3)/ICMP()"),
    ("tcp_bad_checksum", 6, "Ether(dst=M)/IP(src='10.99.0.2', dst='10.99.0.1')/TCP(dport=80, chksum=0xbeef)"),
    ("tcp_truncated", 2, "Ether(dst=M)/IP(src='10.99.0.2', dst='10.99.0.1', proto=6)/Raw(b'\\x00' * 10)"),
    ("udp_bad_checksum", 3, "Ether(dst=M)/IP(src='10.99.0.2', dst='10.99.0.1')/UDP(dport=53, chksum=0x1)/Raw(b'x')"),
    # (Fragments cannot be shown here: DPDK's af_packet port joins a fanout group with the kernel's
    # defrag flag, so the kernel reassembles them first. The unit tests cover ipv4_fragment.)
    ("ipv4_ttl_expired", 2, "Ether(dst=M)/IP(src='10.99.0.2', dst='10.99.0.1', ttl=0)/UDP()/Raw(b'y' * 16)"),
    ("ipv4_bad_source", 2, "Ether(dst=M)/IP(src='127.0.0.1', dst='10.99.0.1')/UDP()/Raw(b'y' * 16)"),
    ("vlan_qinq", 2, "Ether(dst=M)/Dot1Q(vlan=10)/Dot1Q(vlan=20)/IP(src='10.99.0.2', dst='10.99.0.1')/ICMP()"),
    ("ethertype_unsupported", 3, "Ether(dst=M, type=0x88b5)/Raw(b'z' * 46)"),
]
before = {reason: e.drops(reason) for reason, _, _ in cases}
script = "from scapy.all import *\nconf.verb = 0\nM = %r\n" % mac
for reason, n, expr in cases:
    script += f"sendp([{expr}] * {n}, iface='cli0')\n"
r = cli.run(["/usr/bin/python3", "-c", script], check=False)
c.that(r.returncode == 0, "scapy sent the malformed frames " + r.stderr[-300:])

import time
time.sleep(0.5)
for reason, n, _ in cases:
    got = e.drops(reason) - before[reason]
    c.that(got == n, f"{n} frames dropped under '{reason}' (counted {got:.0f})")

r = cli.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.99.0.1"], check=False)
c.that(r.returncode == 0, "edged still answers pings after the malformed frames")
c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
