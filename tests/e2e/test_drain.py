#!/usr/bin/python3
"""Graceful drain, as an operator runs it (edgectl drain / undrain, then SIGTERM), with real curl
clients and nginx behind edged, in the order issue 15 gives:
  1. /readyz fails at once (edgectl health says why);
  2. the announcer's withdrawal report is counted (POST /announcer, as edgectl bgp-announce sends);
  3. new connections are still accepted during shutdown.grace_ms, then refused;
  4. established ones finish up to the deadline (a short download ends byte-exact, one that
     cannot is reset at the deadline);
  5. with SIGTERM (or drain --exit) edged exits 0.
edgectl undrain reverses a drain (accepting again, /readyz passes). Every step is counted in
/metrics and logged. Live backend changes (edgectl backend disable/enable/weight) are checked too.
Runs with one worker; nothing here depends on the worker count."""
import json
import os
import signal
import subprocess
import time

import harness as h

t = h.tag("drn")
c = h.Check("test_drain")
topo = h.TcpTopology(t, net="10.93")
cli, dut = topo.cli, topo.dut
VIP = topo.vip
with open(os.path.join(topo.www, "index.html"), "w") as f:
    f.write("hello\n")
for name, mb in (("small", 2), ("big", 64)):
    with open(os.path.join(topo.www, name), "wb") as f:
        f.write(os.urandom(mb << 20))
topo.start_nginx("listen 80 proxy_protocol;")

GRACE_MS, DRAIN_MS = 2000, 2500
ACCESS = os.path.join(topo.work, "edge-access.log")  # access.log is nginx's
e = h.Edged(dut, f"""{topo.edged_head()}logging:
  access_log: {ACCESS}
shutdown:
  grace_ms: {GRACE_MS}
  drain_timeout_ms: {DRAIN_MS}
pools:
  - name: gw
    backends: [{{address: {topo.backend}, port: 80}}]
services:
  - {{name: web, vip: {VIP}, port: 80, kind: tcp, pool: gw}}
""")


def curl(path="/", timeout=3):
    return cli.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", str(timeout),
                    f"http://{VIP}{path}"], check=False, timeout=timeout + 5)


def metric(name):
    return e.metrics().get(name, 0)


def readyz():
    r = dut.run(["curl", "-s", "-w", " %{http_code}", f"http://{e.admin}/readyz"], check=False)
    return r.stdout.strip()


def downloads():
    cli.run(["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 65536 131072"])
    return {name: cli.popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--limit-rate",
                             "2M", "--max-time", "60", f"http://{VIP}/{name}"], stdout=subprocess.PIPE, text=True)
            for name in ("small", "big")}


def finish(dl, t0):
    ends = {}
    for name, p in dl.items():
        try:
            out, _ = p.communicate(timeout=(GRACE_MS + DRAIN_MS) / 1000 + 10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        ends[name] = (p.returncode, time.time() - t0, out.strip())
    return ends


c.that(curl().stdout == "200 6" and readyz().endswith("200"), "serving before the drain")


# --- the access log: one JSON line per connection, rotated by SIGUSR1 under load, none lost --
def access_lines(*paths):
    out = []
    for p in paths:
        if os.path.exists(p):
            with open(p) as f:
                out += [json.loads(line) for line in f if line.strip()]
    return out


def wait_lines(n, *paths, secs=5):
    end = time.time() + secs
    while time.time() < end and len(access_lines(*paths)) < n:
        time.sleep(0.05)
    return access_lines(*paths)


lines = wait_lines(1, ACCESS)
c.that(len(lines) == 1, f"one access log line for the one connection so far ({len(lines)})")
if lines:
    a = lines[0]
    c.that(a.get("downstream_remote_address", "").startswith(topo.client + ":") and
           a.get("downstream_local_address") == f"{VIP}:80" and a.get("upstream_host") == f"{topo.backend}:80" and
           a.get("upstream_cluster") == "gw" and a.get("route_name") == "web" and
           a.get("connection_termination_details") == "completed" and a.get("response_flags") == "-",
           f"the line names client, VIP, upstream, pool, service and how it ended: {a}")
N = 120
load = cli.popen(["sh", "-c", f"for i in $(seq {N}); do curl -s -o /dev/null --max-time 3 http://{VIP}/; done"])
time.sleep(0.8)
os.rename(ACCESS, ACCESS + ".1")
e.proc.send_signal(signal.SIGUSR1)
load.wait(120)
lines = wait_lines(N + 1, ACCESS + ".1", ACCESS)
new = access_lines(ACCESS)
c.that(len(lines) == N + 1 and len(new) > 0 and metric("edge_access_log_reopens_total") == 1,
       f"SIGUSR1 under load: {len(lines)} lines for {N + 1} connections over the rotated file and the new one "
       f"({len(new)} in the new one), 1 reopen counted")
c.that(metric("edge_access_log_ring_full_total") == 0 and metric("edge_access_log_lines_total") == N + 1,
       "no access log record dropped; the lines are counted")

# --- edgectl drain (no exit): the whole sequence, the process stays up, drained ---------------
dl = downloads()
time.sleep(0.5)
t0 = time.time()
r = e.edgectl("drain")
c.that(r.returncode == 0 and "phase: grace" in r.stdout, f"edgectl drain starts the grace period: {r.stdout.strip()}")
rz = readyz()
c.that(rz.endswith("503") and "draining" in rz, f"step 1: /readyz fails at once ({rz!r})")
r = e.edgectl("health")
c.that(r.returncode == 1 and "ready: no (draining)" in r.stdout, f"edgectl health says draining: {r.stdout.strip()!r}")
r = e.edgectl("--json", "health")
j = json.loads(r.stdout)
c.that(j == {"live": True, "ready": False, "reason": "draining"}, f"edgectl --json health: {j}")
c.that(metric("edge_drain_started_total") == 1 and metric("edge_drain_phase") == 1,
       "the drain's start is counted and the phase gauge says grace")
e.post("/announcer?state=withdrawn")
c.that(metric("edge_drain_withdrawn_total") == 1 and metric("edge_bgp_announced") == 0,
       "step 2: the announcer's withdrawal is counted")
ok = [curl().stdout for _ in range(3)]
c.that(all(x == "200 6" for x in ok) and time.time() - t0 < GRACE_MS / 1000,
       f"step 3: during the grace period new connections are still served ({ok}, {time.time() - t0:.1f} s in)")
time.sleep(max(0.0, GRACE_MS / 1000 + 0.4 - (time.time() - t0)))
r = curl(timeout=3)
c.that(r.returncode == 7, f"step 3: after the grace period a new connection is refused (curl exit {r.returncode}, want 7)")
c.that(metric("edge_drain_refusing_total") == 1, "the end of the grace period is counted")
ends = finish(dl, t0)
rc, took, out = ends["small"]
c.that(rc == 0 and out == f"200 {2 << 20}", f"step 4: the 2 MiB download finishes during the drain ({rc}, {out}, {took:.1f} s)")
rc, took, out = ends["big"]
limit = (GRACE_MS + DRAIN_MS) / 1000
c.that(rc == 56 and took < limit + 2,
       f"step 4: the 64 MiB download is reset at the deadline: curl exit {rc} after {took:.1f} s (deadline {limit:.1f} s)")
deadline = time.time() + 5
while time.time() < deadline and metric("edge_drain_phase") != 4:
    time.sleep(0.1)
st = json.loads(e.edgectl("--json", "drain-status").stdout)
c.that(st.get("phase") == "drained" and e.proc.poll() is None,
       f"drained, and edged (no --exit) is still running: {st.get('phase')}")
c.that(metric("edge_drain_deadline_total") == 1 and metric("edge_drain_connections_reset_total") >= 1,
       "the deadline and the reset connection are counted")

# --- edgectl undrain -------------------------------------------------------------------------
r = e.edgectl("undrain")
c.that(r.returncode == 0 and "phase: serving" in r.stdout, f"edgectl undrain: {r.stdout.strip()}")
ok = False
for _ in range(20):
    ok = curl().stdout == "200 6"
    if ok:
        break
    time.sleep(0.1)
c.that(ok and readyz().endswith("200"), "after undrain new connections are served and /readyz passes")
c.that(metric("edge_drain_undrains_total") == 1, "the undrain is counted")
r = e.edgectl("undrain")
c.that(r.returncode == 1, f"undrain when not draining is refused ({r.returncode}: {r.stderr.strip()})")

# --- backend live changes --------------------------------------------------------------------
r = e.edgectl("backend", "disable", "gw", f"{topo.backend}:80")
c.that(r.returncode == 0, f"edgectl backend disable: {r.stdout.strip()} {r.stderr.strip()}")
r = curl()
c.that(not r.stdout.startswith("200"), f"with its only backend disabled the service serves nothing ({r.stdout})")
lst = json.loads(e.edgectl("--json", "backend", "list").stdout)
c.that(lst and lst[0]["disabled"] is True and lst[0]["healthy"] is True, f"backend list shows it disabled: {lst}")
r = e.edgectl("backend", "enable", "gw", f"{topo.backend}:80")
c.that(r.returncode == 0 and curl().stdout == "200 6", "edgectl backend enable puts it back at once")
r = e.edgectl("backend", "weight", "gw", f"{topo.backend}:80", "5")
lst = json.loads(e.edgectl("--json", "backend", "list").stdout)
c.that(r.returncode == 0 and lst[0]["weight"] == 5 and lst[0]["configured_weight"] == 1 and curl().stdout == "200 6",
       f"edgectl backend weight sets the weight live: {lst}")
r = e.edgectl("backend", "disable", "gw", "10.9.9.9:80")
c.that(r.returncode == 1 and "no backend" in r.stderr, f"an unknown backend is refused: {r.stderr.strip()}")

# --- SIGTERM: the same sequence, then exit 0 ---------------------------------------------------
dl = downloads()
time.sleep(0.5)
t0 = time.time()
e.proc.send_signal(signal.SIGTERM)
time.sleep(0.2)
rz = readyz()
r = curl()
c.that(rz.endswith("503") and r.stdout == "200 6",
       f"SIGTERM: /readyz fails at once ({rz!r}) while new connections are served in the grace period ({r.stdout})")
r = e.edgectl("undrain")
c.that(r.returncode == 1 and "stopping" in r.stderr, f"a SIGTERM drain cannot be undrained: {r.stderr.strip()}")
time.sleep(max(0.0, GRACE_MS / 1000 + 0.4 - (time.time() - t0)))
r = curl()
c.that(r.returncode == 7, f"SIGTERM: after the grace period a new connection is refused (curl exit {r.returncode})")
ends = finish(dl, t0)
c.that(ends["small"][0] == 0 and ends["big"][0] == 56, f"SIGTERM: the short download finishes, the long one is reset: {ends}")
try:
    code = e.proc.wait(10)
except subprocess.TimeoutExpired:
    code = None
c.that(code == 0, f"step 5: edged exits 0 after the drain (got {code})")
logs = e.logs()
for step in ("step 1", "step 2", "step 3", "step 4", "step 5", "undrain"):
    c.that(step in logs, f"the log tells {step}: " + " | ".join(x for x in logs.splitlines() if step in x)[:300])
c.done(e)
