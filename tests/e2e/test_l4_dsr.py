#!/usr/bin/python3
"""Service kind l4 with direct server return: edged encapsulates (IPIP, then GUE) to the backends,
which decapsulate and answer the client themselves over their own route. curl through each VIP gets
the backends' pages; the replies never cross edged."""
import os
import time

import harness as h

t = h.tag("dsr")
c = h.Check("test_l4_dsr")
cli, dut, sw = h.Namespace(f"{t}c"), h.Namespace(f"{t}d"), h.Namespace(f"{t}s")
backends = [h.Namespace(f"{t}b{i}") for i in (1, 2)]
h.veth(cli, "cli0", dut, "dut0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
br = h.bridge(sw)
h.attach(sw, br, dut, "lan0", "sw-lan")
h.attach(sw, br, cli, "cli1", "sw-cli")  # the return path of direct server return
cli.run(["ip", "addr", "add", "10.99.1.50/24", "dev", "cli1"])
for ns in [cli] + backends:
    for k in ("all", "default"):
        ns.run(["sysctl", "-qw", f"net.ipv4.conf.{k}.rp_filter=0"])
decap = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ipip_decap.py")
servers = []
for i, b in enumerate(backends, 1):
    h.attach(sw, br, b, "eth0", f"sw-b{i}")
    b.run(["ip", "addr", "add", f"10.99.1.1{i}/24", "dev", "eth0"])
    for vip in ("10.99.0.101", "10.99.0.102"):
        b.run(["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
    b.run(["ip", "route", "add", "10.99.0.0/24", "via", "10.99.1.50"])
    # The kernel has no ipip/fou handler here: keep it from answering with protocol-unreachable.
    b.run(["nft", "add table ip t; add chain ip t in { type filter hook input priority 0; }; add rule ip t in ip protocol 4 drop; add rule ip t in udp dport 6080 drop"])
    p = b.popen(["/usr/bin/python3", "-u", decap, "eth0", f"10.99.1.1{i}", "6080"], stdout=h.subprocess.PIPE)
    h._cleanups.append(p.kill)
    c.that(p.stdout.readline().strip() == b"ready", f"decapsulator ready in backend {i}")
    b.run(["sysctl", "-qw", "net.ipv4.conf.decap0.rp_filter=0"])
    servers.append(h.Nginx(b, f"b{i}"))

e = h.Edged(dut, f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [10.99.0.1/24]}}
  - {{name: lan0, role: lan, device: "net_af_packet1,iface=lan0", addresses: [10.99.1.1/24]}}
{h.workers_yaml()}
pools:
  - name: web
    backends: [{{address: 10.99.1.11, port: 80}}, {{address: 10.99.1.12, port: 80}}]
services:
  - {{name: ipip, vip: 10.99.0.101, port: 80, kind: l4, pool: web, forwarding: ipip}}
  - {{name: gue, vip: 10.99.0.102, port: 80, kind: l4, pool: web, forwarding: gue}}
""")

for vip, counter in (("10.99.0.101", "edge_l4_encap_ipip_total"), ("10.99.0.102", "edge_l4_encap_gue_total")):
    before = e.metrics()
    r = cli.run(["curl", "-s", "-m", "5", f"http://{vip}/"], check=False)
    c.that(r.returncode == 0 and r.stdout.strip() in ("b1", "b2"), f"curl through {vip} is served by a backend: {r.stdout.strip()!r}")
    spread = h.http_spread(cli, f"http://{vip}/", 200)
    c.that(spread.get("error", 0) == 0 and spread.get("b1", 0) > 40 and spread.get("b2", 0) > 40,
           f"200 connections through {vip} reach both backends: {spread}")
    after = e.metrics()
    c.that(after.get(counter, 0) - before.get(counter, 0) > 200, f"{counter} counts the encapsulated packets")
    c.that(after.get('edge_port_tx_packets_total{port="wan0"}', 0) - before.get('edge_port_tx_packets_total{port="wan0"}', 0) < 20,
           "the replies do not cross edged (direct server return)")
c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
