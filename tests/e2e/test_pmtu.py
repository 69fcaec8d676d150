#!/usr/bin/python3
"""Path MTU discovery for terminated connections (kind tcp). A link between edged and the client
carries at most 1000 bytes: nftables in the client namespace drops larger frames from the VIP, as
a router with a smaller MTU would, and a responder there (scapy) quotes the first one it sees back
to the VIP in an ICMP "fragmentation needed" with MTU 1000 (from a router address, quoting the IP
header and 8 bytes as RFC 792 asks). edged lowers the connection's MSS and sends the lost segments
again cut to size: a 2 MiB download through the VIP completes byte-exact. Without that, the
full-size retransmissions never pass and the download stalls. With 2 workers the error reaches
the worker that owns the connection (the ownership rule places an ICMP error by its quoted tuple).
"""
import hashlib
import os
import subprocess

import harness as h

t = h.tag("pmtu")
c = h.Check("test_pmtu")
topo = h.TcpTopology(t, net="10.98")
cli, dut = topo.cli, topo.dut
VIP = topo.vip
MTU = 1000
body = os.urandom(2 << 20)
with open(os.path.join(topo.www, "2m"), "wb") as f:
    f.write(body)
want = hashlib.sha256(body).hexdigest()
topo.start_nginx("""
    listen 80 proxy_protocol;""")
e = h.Edged(dut, f"""{topo.edged_head()}tcp:
  max_connections: 256
  syn_backlog: 64
pools:
  - name: gw
    health_check: {{type: tcp, interval_ms: 500, timeout_ms: 300, rise: 1, fall: 2}}
    backends:
      - {{address: {topo.backend}, port: 80}}
services:
  - {{name: web, vip: {VIP}, port: 80, kind: tcp, pool: gw}}
""")


def metric(name):
    return e.metrics().get(name, 0)


# The narrow link: frames from the VIP longer than MTU bytes (IP length) never reach the client.
cli.run(["nft", "add table ip pmtu"])
cli.run(["nft", "add chain ip pmtu pre { type filter hook prerouting priority -300 ; }"])
cli.run(["nft", f"add rule ip pmtu pre ip saddr {VIP} ip length > {MTU} counter drop"])

# The router's answer: the first too-big frame (packet sockets see it before nftables drops it).
responder = cli.popen(["/usr/bin/python3", "-c", f"""
from scapy.all import IP, ICMP, Raw, sniff, send
got = sniff(iface="cli0", count=1, timeout=30,
            lfilter=lambda p: IP in p and p[IP].src == "{VIP}" and p[IP].len > {MTU})
if not got:
    print("no frame over {MTU} bytes seen", flush=True)
    raise SystemExit(1)
ip = bytes(got[0][IP])
quote = ip[:(ip[0] & 15) * 4 + 8]
send(IP(src="{topo.client.rsplit('.', 1)[0]}.254", dst="{VIP}") / ICMP(type=3, code=4, nexthopmtu={MTU}) / Raw(quote),
     verbose=False)
print("sent frag-needed quoting seq", int.from_bytes(ip[(ip[0] & 15) * 4 + 4:(ip[0] & 15) * 4 + 8], "big"), flush=True)
"""], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
h._cleanups.append(responder.kill)

dl = cli.popen(["curl", "-s", "-o", "-", "--max-time", "40", f"http://{VIP}/2m"], stdout=subprocess.PIPE)
got, _ = dl.communicate(timeout=60)
try:
    said, _ = responder.communicate(timeout=10)
except subprocess.TimeoutExpired:
    responder.kill()
    said = "responder still waiting"
dropped = int(cli.run(["nft", "list table ip pmtu"]).stdout.split("counter packets ")[1].split()[0])
c.that(dropped > 0, f"the narrow link dropped {dropped} frame(s) over {MTU} bytes")
c.that(said.startswith("sent frag-needed"), f"the router answered with frag-needed: {said.strip()}")
c.that(dl.returncode == 0 and hashlib.sha256(got).hexdigest() == want,
       f"the 2 MiB download through the {MTU}-byte link completed byte-exact "
       f"(curl exit {dl.returncode}, {len(got)} bytes)")
c.that(metric("edge_tcp_pmtu_lowered_total") >= 1,
       f"edged lowered the connection's MSS (edge_tcp_pmtu_lowered_total {metric('edge_tcp_pmtu_lowered_total'):.0f})")
c.that(e.drops("tcp_icmp_bad_seq") == 0 and e.drops("tcp_icmp_no_conn") == 0,
       "the error was accepted: its quoted sequence number in flight, on the worker with the connection")
c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
