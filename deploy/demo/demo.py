#!/usr/bin/python3
"""The built-in demo: a client namespace and an edge namespace joined by a veth; edged runs on a
DPDK af_packet port in the edge namespace and answers for its addresses. Prints what it does and
where to look next. Run through deploy/demo/demo.sh (installs, builds, then runs this)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "e2e"))
import harness as h  # noqa: E402


def say(msg):
    print(f"\n\033[1m== {msg}\033[0m", flush=True)


def show(cmd_ns, cmd):
    print("$ " + " ".join(cmd), flush=True)
    r = cmd_ns.run(cmd, check=False)
    print((r.stdout + r.stderr).rstrip(), flush=True)
    return r


keep = "--keep" in sys.argv
say("Topology: namespace demo-client (10.99.0.2) <-veth-> namespace demo-edge (edged on DPDK af_packet)")
cli = h.Namespace("demo-client")
edge = h.Namespace("demo-edge")
h.veth(cli, "client0", edge, "edge0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "client0"])
cli.run(["ip", "-6", "addr", "add", "fd00:99::2/64", "dev", "client0", "nodad"])
edge.run(["sysctl", "-qw", "net.ipv6.conf.edge0.disable_ipv6=1"])

config = open(os.path.join(os.path.dirname(__file__), "..", "examples", "edged.yaml")).read()
say("Starting edged with deploy/examples/edged.yaml")
e = h.Edged(edge, config)
print(e.logs().rstrip())

say("The client resolves edged's address by ARP and pings it: answered by the DPDK worker")
show(cli, ["ping", "-c", "3", "-i", "0.2", "10.99.0.1"])
show(cli, ["ip", "neigh", "show", "dev", "client0"])
say("IPv6: neighbour discovery and ICMPv6 echo")
show(cli, ["ping", "-6", "-c", "3", "-i", "0.2", "fd00:99::1"])

say("A malformed frame (bad IPv4 checksum) is dropped and counted")
mac = e.stats()["ports"][0]["mac"]
cli.run(["/usr/bin/python3", "-c",
         "from scapy.all import *; conf.verb=0; "
         f"sendp(Ether(dst='{mac}')/IP(src='10.99.0.2', dst='10.99.0.1', chksum=0x1234)/ICMP(), iface='client0')"])
time.sleep(0.3)

say("edgectl stats (admin API on 127.0.0.1:9180 inside demo-edge)")
show(edge, [h.EDGECTL, "stats"])
say("A few Prometheus metrics")
for line in e.get("/metrics").splitlines():
    if line.startswith(("edge_port_rx_packets_total", "edge_local_replies_total", "edge_ready")) or \
            (line.startswith("edge_drops_total") and not line.endswith(" 0")):
        print(line)

say("Where to look next (run with --keep to leave edged up and try these)")
print(f"""  edged log:          {e.log_path}
  config:             deploy/examples/edged.yaml (schema: README.md, 'Configuration')
  admin API:          ip netns exec demo-edge curl -s 127.0.0.1:9180/metrics   (/stats /config /readyz)
  CLI:                ip netns exec demo-edge build/edge/edgectl stats
  life of a packet:   docs/packet-flow.md""")
if keep:
    say("--keep: edged keeps running; Ctrl-C tears the demo down")
    try:
        while e.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
say("Stopping edged (SIGTERM) and removing the namespaces")
print(f"edged exited with status {e.stop()}")
