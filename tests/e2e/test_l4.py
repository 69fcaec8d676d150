#!/usr/bin/python3
"""Service kind l4, full NAT: a client namespace, three nginx backends behind edged's lan port.
Requests spread within 10% of even; a stopped backend leaves within the health-check window while a
download from another backend completes byte-exact; a reload that drains a backend (weight 0) keeps
its established flow and sends new flows elsewhere; the backend sees the SNAT address."""
import hashlib
import json
import subprocess
import time

import harness as h

t = h.tag("l4")
c = h.Check("test_l4")
cli, dut, sw = h.Namespace(f"{t}c"), h.Namespace(f"{t}d"), h.Namespace(f"{t}s")
backends = [h.Namespace(f"{t}b{i}") for i in (1, 2, 3)]
h.veth(cli, "cli0", dut, "dut0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
br = h.bridge(sw)
h.attach(sw, br, dut, "lan0", "sw-lan")
h.attach(sw, br, dut, "kern0", "sw-kern")  # the kernel's leg: health checks
dut.run(["ip", "addr", "add", "10.99.1.2/24", "dev", "kern0"])
for ns in (dut,):
    ns.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
servers = []
for i, b in enumerate(backends, 1):
    h.attach(sw, br, b, "eth0", f"sw-b{i}")
    b.run(["ip", "addr", "add", f"10.99.1.1{i}/24", "dev", "eth0"])
    servers.append(h.Nginx(b, f"b{i}", big_mb=8))

config = f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [10.99.0.1/24]}}
  - {{name: lan0, role: lan, device: "net_af_packet1,iface=lan0", addresses: [10.99.1.1/24]}}
{h.workers_yaml()}
l4:
  snat_addresses: [10.99.1.100]
pools:
  - name: web
    health_check: {{type: http, path: /, interval_ms: 300, timeout_ms: 200, rise: 2, fall: 2}}
    backends:
      - {{address: 10.99.1.11, port: 80, weight: W1}}
      - {{address: 10.99.1.12, port: 80}}
      - {{address: 10.99.1.13, port: 80}}
services:
  - {{name: web, vip: 10.99.0.100, port: 80, kind: l4, pool: web, forwarding: fnat}}
"""
e = h.Edged(dut, config.replace("W1", "1"))

n = 1500
spread = h.http_spread(cli, "http://10.99.0.100/", n, timeout=240)
c.that(spread.get("error", 0) == 0, f"{n} connections through the VIP all succeed: {spread}")
for name in ("b1", "b2", "b3"):
    got = spread.get(name, 0)
    c.that(abs(got - n / 3) <= 0.1 * n / 3, f"{name} got {got} of {n} (within 10% of {n // 3})")
c.that("10.99.1.100" in servers[0].access_log(), "backends see the full-NAT source address 10.99.1.100")
if h.WORKERS > 1:
    # Every worker owns flows (the software hash spreads clients, SNAT port ranges bring the
    # replies back) and the packets af_packet's fanout put on a non-owner were handed over.
    m = e.metrics()
    for wid in range(h.WORKERS):
        key = f'{{worker="{wid}",lcore="{wid}"}}'
        got_in = m.get("edge_worker_handoffs_in_total" + key, 0)
        got_out = m.get("edge_worker_handoffs_out_total" + key, 0)
        c.that(got_in > 0 and got_out > 0,
               f"worker {wid} carries traffic: {got_in:.0f} packets handed to it, {got_out:.0f} handed on")
    for reason in ("lb_no_conn_for_reply", "handoff_ring_full"):
        c.that(e.drops(reason) == 0, f"no packet dropped as {reason} with {h.WORKERS} workers")


def serving(i):
    r = backends[i].run(["ss", "-Htn", "state", "established", "( sport = :80 )"], check=False)
    return len(r.stdout.strip().splitlines())


def download():
    """A slow 8 MiB download through the VIP; returns (process, index of the backend serving it)."""
    p = cli.popen(["curl", "-s", "--limit-rate", "2M", "-o", "-", "http://10.99.0.100/big"], stdout=subprocess.PIPE)
    for _ in range(50):
        time.sleep(0.1)
        busy = [i for i in range(3) if serving(i)]
        if len(busy) == 1:
            return p, busy[0]
    raise RuntimeError("could not find the backend serving the download")


def expected_sha(i):
    with open(f"{servers[i].dir}/www/big", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def backend_up(addr):
    return e.metrics().get(f'edge_backend_up{{pool="web",backend="{addr}:80"}}')


# A backend stops while a download from another one runs.
dl, owner = download()
victim = (owner + 1) % 3
servers[victim].stop()
t0 = time.time()
while backend_up(f"10.99.1.1{victim + 1}") != 0 and time.time() - t0 < 5:
    time.sleep(0.1)
took = time.time() - t0
c.that(backend_up(f"10.99.1.1{victim + 1}") == 0, f"b{victim + 1} marked down by health checks after {took:.1f}s (interval 0.3s, fall 2)")
st = json.loads(e.edgectl("stats").stdout)
c.that(any(b["backend"] == f"10.99.1.1{victim + 1}:80" and not b["up"] for b in st.get("backends", [])),
       f"edgectl stats shows b{victim + 1} down")
after = h.http_spread(cli, "http://10.99.0.100/", 300)
c.that(after.get(f"b{victim + 1}", 0) == 0 and after.get("error", 0) == 0,
       f"new connections avoid the stopped backend b{victim + 1}: {after}")
body, _ = dl.communicate(timeout=60)
c.that(hashlib.sha256(body).hexdigest() == expected_sha(owner),
       f"the download from b{owner + 1} completed byte-exact ({len(body)} bytes)")

# Bring it back: health checks return it to the Maglev table.
servers[victim] = h.Nginx(backends[victim], f"b{victim + 1}", big_mb=8)
t0 = time.time()
while backend_up(f"10.99.1.1{victim + 1}") != 1 and time.time() - t0 < 5:
    time.sleep(0.1)
back = h.http_spread(cli, "http://10.99.0.100/", 300)
c.that(back.get(f"b{victim + 1}", 0) > 0, f"b{victim + 1} serves again after it recovers: {back}")

# Drain b1 by a reload (weight 0) while it serves a download.
dl, owner = None, None
for _ in range(30):  # Maglev sends a third of the client ports to b1: 30 tries miss with p = 5e-6
    p, o = download()
    if o == 0:
        dl, owner = p, o
        break
    p.kill()
    p.wait()
    time.sleep(0.3)
if dl is None:
    c.that(False, "could not start a download served by b1")
else:
    with open(e.config_path, "w") as f:
        f.write(config.replace("W1", "0"))
    r = e.edgectl("reload")
    c.that(r.returncode == 0, "reload with b1 at weight 0 (drain) applied: " + r.stdout.strip() + r.stderr.strip())
    drained = h.http_spread(cli, "http://10.99.0.100/", 300)
    c.that(drained.get("b1", 0) == 0 and drained.get("error", 0) == 0, f"new connections avoid drained b1: {drained}")
    body, _ = dl.communicate(timeout=60)
    c.that(hashlib.sha256(body).hexdigest() == expected_sha(0),
           f"the established download from b1 completed byte-exact across the reload ({len(body)} bytes)")

m = e.metrics()
c.that(m.get("edge_l4_nat_forward_total", 0) > 0 and m.get("edge_l4_nat_reply_total", 0) > 0,
       "l4 NAT counters move in both directions")
c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
