#!/usr/bin/python3
"""A client namespace resolves edged's addresses by ARP / ND and pings them over IPv4 and IPv6;
/metrics shows the packets; edgectl reads the same counters; SIGTERM stops edged with status 0."""
import re

import harness as h

t = h.tag("ping")
c = h.Check("test_ping")
cli = h.Namespace(f"{t}c")
dut = h.Namespace(f"{t}d")
h.veth(cli, "cli0", dut, "dut0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
cli.run(["ip", "-6", "addr", "add", "fd00:99::2/64", "dev", "cli0", "nodad"])
dut.run(["sysctl", "-qw", "net.ipv6.conf.dut0.disable_ipv6=1"])

config = f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - name: wan0
    role: wan
    device: net_af_packet0,iface=dut0
    addresses: [10.99.0.1/24, fd00:99::1/64]
{h.workers_yaml()}
admin:
  listen: 127.0.0.1:9180
logging:
  level: info
"""
e = h.Edged(dut, config)

r = cli.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.0.1"], check=False)
c.that(r.returncode == 0 and " 0% packet loss" in r.stdout, "IPv4 ping to the port address is answered")
neigh = cli.run(["ip", "neigh", "show", "10.99.0.1", "dev", "cli0"]).stdout
mac = e.stats()["ports"][0]["mac"].lower()
c.that(mac in neigh.lower(), f"ARP resolved 10.99.0.1 to the DPDK port's MAC {mac} ({neigh.strip()})")

r = cli.run(["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00:99::1"], check=False)
c.that(r.returncode == 0 and " 0% packet loss" in r.stdout, "IPv6 ping answered (neighbour discovery worked)")

m = e.metrics()
rx = m.get('edge_port_rx_packets_total{port="wan0"}', 0)
replies = m.get("edge_local_replies_total", 0)
c.that(rx >= 8, f"/metrics counts received frames ({rx:.0f})")
c.that(replies >= 8, f"/metrics counts ARP/ND/echo replies ({replies:.0f})")
c.that(any(k.startswith("edge_worker_loops_total") for k in m), "/metrics has per-worker loop counters")

r = e.edgectl("stats")
c.that(r.returncode == 0 and '"ready": true' in r.stdout, "edgectl stats prints JSON with ready=true")
r = e.edgectl("health")
c.that(r.returncode == 0 and "ready: yes" in r.stdout, "edgectl health reports ready")
r = cli.run([h.EDGECTL, "--admin", "127.0.0.1:9180", "stats"], check=False)
c.that(r.returncode != 0 and "is edged running?" in r.stderr,
       "edgectl gives a clear error where no edged is running")

rc = e.stop()
c.that(rc == 0, f"SIGTERM stops edged with exit status 0 (got {rc})")
c.that(re.search(r"edged stopped", e.logs()) is not None, "edged logs a clean stop")
c.done(e)
