#!/usr/bin/python3
"""Signals, as an operator sends them: SIGHUP reloads like POST /reload (a service added to the
file answers, the process lives on, the reload is counted and logged with what changed); SIGTERM
drains: new connections are refused at once, a download that can finish within
shutdown.drain_timeout_ms finishes byte-exact, one that cannot is reset at the deadline (curl sees
the reset quickly instead of hanging until its own timeout), and edged exits 0."""
import os
import signal
import subprocess
import time

import harness as h

t = h.tag("sig")
c = h.Check("test_signals")
topo = h.TcpTopology(t, net="10.97")
cli, dut, be = topo.cli, topo.dut, topo.be
VIP = topo.vip
with open(os.path.join(topo.www, "index.html"), "w") as f:
    f.write("hello\n")
for name, mb in (("small", 2), ("big", 64)):
    with open(os.path.join(topo.www, name), "wb") as f:
        f.write(os.urandom(mb << 20))
topo.start_nginx("listen 80 proxy_protocol;")

DRAIN_MS = 2500
base = f"""{topo.edged_head()}shutdown:
  drain_timeout_ms: {DRAIN_MS}
pools:
  - name: gw
    backends: [{{address: {topo.backend}, port: 80}}]
services:
  - {{name: web, vip: {VIP}, port: 80, kind: tcp, pool: gw}}
"""
e = h.Edged(dut, base)


def curl(url, *extra, timeout=10):
    return cli.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", str(timeout)]
                   + list(extra) + [url], check=False, timeout=timeout + 5)


def metric(name):
    return e.metrics().get(name, 0)


# SIGHUP: the file gains a service on port 8080; the signal applies it.
r = curl(f"http://{VIP}:8080/", timeout=2)
c.that(r.stdout.split()[0] == "000", f"before SIGHUP nothing answers on port 8080 ({r.stdout})")
with open(e.config_path, "w") as f:
    f.write(base + f"  - {{name: web2, vip: {VIP}, port: 8080, kind: tcp, pool: gw}}\n")
e.proc.send_signal(signal.SIGHUP)
deadline, ok = time.time() + 10, False
while time.time() < deadline and not ok:
    ok = curl(f"http://{VIP}:8080/", timeout=2).stdout.startswith("200")
    time.sleep(0.2)
c.that(ok, "after SIGHUP the added service answers on port 8080")
c.that(e.proc.poll() is None, "edged is still running after SIGHUP")
c.that(metric('edge_config_reloads_total{outcome="ok"}') == 1, "the SIGHUP reload is counted as an applied reload")
logs = e.logs()
c.that("SIGHUP: reloading" in logs and "services: +web2" in logs,
       "the log says SIGHUP reloaded and what changed: " +
       " | ".join(line for line in logs.splitlines() if "SIGHUP" in line or "reloaded" in line))

# SIGTERM during two downloads (client reads at 2 MB/s): the 2 MiB one ends inside the drain
# window, the 64 MiB one cannot and is reset at the deadline. The client's receive buffer is kept
# small: Linux hands an application the bytes it already holds before the reset, and several MiB
# of autotuned buffer read at 2 MB/s would hide when the RST arrived.
cli.run(["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 65536 131072"])
dl = {}
for name in ("small", "big"):
    dl[name] = cli.popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--limit-rate", "2M",
                          "--max-time", "60", f"http://{VIP}/{name}"], stdout=subprocess.PIPE, text=True)
time.sleep(0.5)
t0 = time.time()
e.proc.send_signal(signal.SIGTERM)
time.sleep(0.3)
r = curl(f"http://{VIP}/", timeout=3)
c.that(r.returncode == 7, f"during the drain a new connection is refused at once (curl exit {r.returncode}, want 7)")
ends = {}
for name, p in dl.items():
    try:
        out, _ = p.communicate(timeout=DRAIN_MS / 1000 + 10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    ends[name] = (p.returncode, time.time() - t0, out.strip())
rc, took, out = ends["small"]
c.that(rc == 0 and out == f"200 {2 << 20}", f"the 2 MiB download finishes during the drain (curl exit {rc}, {out}, {took:.1f} s)")
rc, took, out = ends["big"]
c.that(rc == 56 and took < DRAIN_MS / 1000 + 2,
       f"the 64 MiB download is reset at the drain deadline: curl exit {rc} (56: reset) after {took:.1f} s "
       f"(deadline {DRAIN_MS / 1000:.1f} s), {out}")
try:
    code = e.proc.wait(10)
except subprocess.TimeoutExpired:
    code = None
c.that(code == 0, f"edged exits 0 after the drain (got {code})")
logs = e.logs()
c.that("draining 2 connection(s)" in logs and "connection(s) reset" in logs,
       "the log tells the drain: " + " | ".join(line for line in logs.splitlines() if "drain" in line))
c.done(e)
