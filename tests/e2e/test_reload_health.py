#!/usr/bin/python3
"""A reload must not strand a recovered backend (issue 17, item 1), on an `l4` service (Maglev) and
a `tcp` service (upstream pool) at once, with two real nginx backends:
  1. a backend stops; the health checks take it out of both pools;
  2. it comes back;
  3. `edgectl reload` runs before the checks have marked it up again (rise 8 at 250 ms: 2 s);
then /stats says it is down until the new checker has seen `rise` passes, and once /stats and
edge_backend_up say up again, it gets traffic through both VIPs.
Then the other trap of the same defect: every backend is down under an HTTP check (a path that
404s), a reload changes health_check.type to tcp; once the backends pass, clients get answers
(not resets counted as no_backend) and /stats agrees."""
import subprocess
import time

import harness as h

t = h.tag("rlhc")
c = h.Check("test_reload_health")
cli, dut, sw = h.Namespace(f"{t}c"), h.Namespace(f"{t}d"), h.Namespace(f"{t}s")
backends = [h.Namespace(f"{t}b{i}") for i in (1, 2)]
h.veth(cli, "cli0", dut, "dut0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
br = h.bridge(sw)
h.attach(sw, br, dut, "lan0", "sw-lan")    # edged's DPDK lan port: l4 full NAT
h.attach(sw, br, dut, "kern0", "sw-kern")  # the kernel's leg: health checks and tcp upstreams
dut.run(["ip", "addr", "add", "10.99.1.2/24", "dev", "kern0"])
for ns in [cli, dut, sw] + backends:
    ns.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
for i, b in enumerate(backends, 1):
    h.attach(sw, br, b, "eth0", f"sw-b{i}")
    b.run(["ip", "addr", "add", f"10.99.1.1{i}/24", "dev", "eth0"])

# Port 80: plain HTTP for the l4 service (full NAT, no header); port 81: PROXY v2 for the tcp one.
PP = "listen 81 proxy_protocol;"
servers = [h.Nginx(b, f"b{i}", extra=PP) for i, b in enumerate(backends, 1)]

L4_VIP, TCP_VIP = "10.99.0.100", "10.99.0.101"


def config(check):
    return f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [10.99.0.1/24]}}
  - {{name: lan0, role: lan, device: "net_af_packet1,iface=lan0", addresses: [10.99.1.1/24]}}
{h.workers_yaml()}
l4:
  snat_addresses: [10.99.1.100]
pools:
  - name: l4web
    health_check: {{{check}, interval_ms: 250, timeout_ms: 200, rise: 8, fall: 2}}
    backends:
      - {{address: 10.99.1.11, port: 80}}
      - {{address: 10.99.1.12, port: 80}}
  - name: tcpweb
    health_check: {{{check.replace('80', '81')}, interval_ms: 250, timeout_ms: 200, rise: 8, fall: 2}}
    backends:
      - {{address: 10.99.1.11, port: 81}}
      - {{address: 10.99.1.12, port: 81}}
services:
  - {{name: l4web, vip: {L4_VIP}, port: 80, kind: l4, pool: l4web, forwarding: fnat}}
  - {{name: tcpweb, vip: {TCP_VIP}, port: 80, kind: tcp, pool: tcpweb}}
"""


TCP_CHECK = "type: tcp"
e = h.Edged(dut, config(TCP_CHECK))


def write_config(text):
    with open(e.config_path, "w") as f:
        f.write(text)


def up(pool, backend):
    return e.metrics().get(f'edge_backend_up{{pool="{pool}",backend="{backend}"}}')


def stats_up(pool, backend):
    for b in e.stats().get("backends", []):
        if b["pool"] == pool and b["backend"] == backend:
            return b["up"]
    return None


def wait_for(fn, want, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn() == want:
            return True
        time.sleep(0.1)
    return fn() == want


def spread(vip, n=40):
    try:
        return h.http_spread(cli, f"http://{vip}/", n, timeout=3 * n + 10)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}


B2 = {"l4web": "10.99.1.12:80", "tcpweb": "10.99.1.12:81"}
VIPS = {"l4web": L4_VIP, "tcpweb": TCP_VIP}

for pool, vip in VIPS.items():
    s = spread(vip)
    c.that(s.get("b1", 0) > 0 and s.get("b2", 0) > 0 and s.get("error", 0) == 0,
           f"{pool}: both backends serve before anything happens: {s}")

# 1. b2 goes down; the checks take it out of both pools.
servers[1].stop()
for pool, b in B2.items():
    c.that(wait_for(lambda: up(pool, b), 0, 5), f"{pool}: b2 marked down (edge_backend_up 0)")
for pool, vip in VIPS.items():
    s = spread(vip, 20)
    c.that(s.get("b2", 0) == 0 and s.get("error", 0) == 0, f"{pool}: traffic avoids the stopped b2: {s}")

# 2. b2 comes back; 3. the reload runs before `rise` passes (8 x 250 ms) mark it up.
servers[1] = h.Nginx(backends[1], "b2", extra=PP)
t_back = time.time()
before = {pool: up(pool, b) for pool, b in B2.items()}
r = e.edgectl("reload")
t_reload = time.time() - t_back
c.that(r.returncode == 0, "edgectl reload applied: " + r.stdout.strip() + r.stderr.strip())
c.that(all(v == 0 for v in before.values()) and t_reload < 1.5,
       f"the reload ran {t_reload:.2f}s after b2 came back, while it was still marked down: {before}")
after = {pool: stats_up(pool, b) for pool, b in B2.items()}
c.that(all(v is False for v in after.values()),
       f"right after the reload /stats still says b2 is down in both pools (as the tables do): {after}")

# Once the new checker has seen `rise` passes, /stats and the metric say up, and b2 serves again.
for pool, b in B2.items():
    c.that(wait_for(lambda: up(pool, b), 1, 6) and stats_up(pool, b) is True,
           f"{pool}: b2 marked up again after the reload (edge_backend_up 1, /stats up)")
for pool, vip in VIPS.items():
    s = spread(vip)
    c.that(s.get("b2", 0) > 0 and s.get("error", 0) == 0,
           f"{pool}: b2, up in /stats, gets traffic again after the reload: {s}")

# Every backend down under an HTTP check that 404s; a reload switches the check to tcp.
write_config(config("type: http, path: /missing"))
r = e.edgectl("reload")
c.that(r.returncode == 0, "reload to an HTTP check on a missing path: " + r.stdout.strip() + r.stderr.strip())
for pool in VIPS:
    for b in ("10.99.1.11", "10.99.1.12"):
        addr = f"{b}:{B2[pool].split(':')[1]}"
        c.that(wait_for(lambda: up(pool, addr), 0, 5), f"{pool}: {addr} down under the failing HTTP check")
write_config(config(TCP_CHECK))
r = e.edgectl("reload")
c.that(r.returncode == 0, "reload back to a tcp check: " + r.stdout.strip() + r.stderr.strip())
for pool in VIPS:
    for b in ("10.99.1.11", "10.99.1.12"):
        addr = f"{b}:{B2[pool].split(':')[1]}"
        c.that(wait_for(lambda: up(pool, addr), 1, 6) and stats_up(pool, addr) is True,
               f"{pool}: {addr} up again under the tcp check")
no_backend0 = e.metrics().get('edge_upstream{pool="tcpweb",counter="no_backend"}', 0)
for pool, vip in VIPS.items():
    s = spread(vip, 20)
    c.that(s.get("error", 0) == 0 and s.get("b1", 0) > 0 and s.get("b2", 0) > 0,
           f"{pool}: after the check type changed, both backends (up in /stats) serve: {s}")
no_backend = e.metrics().get('edge_upstream{pool="tcpweb",counter="no_backend"}', 0) - no_backend0
c.that(no_backend == 0, f"tcpweb: no client reset for no_backend while /stats says up ({no_backend:.0f})")

c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
