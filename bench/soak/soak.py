#!/usr/bin/python3
"""Soak: edged's resident memory over time under a steady mixed load, as an operator would run it.

One edged (workers from EDGE_E2E_WORKERS, default 1 here: the soak is about memory, not scaling) with
  - a tcp service with the WAF (shipped rules, enforce) to nginx, under
      wrk -c 50 keep-alive requests, and
      wrk -c 20 with `Connection: close` (a connection per request);
  - a tls service (ECDSA certificate) to the same nginx, under a loop of `curl https://...`
    (a full handshake per request), 2 at a time.
About 70 connections are open at any time, as in the soak that found RSS growing (issue 16).

Every SOAK_SAMPLE seconds: edged's RSS (VmRSS), its connections opened so far and the requests the
clients finished. The first WARMUP share of the run fills the pools and caches; after it RSS must be
flat. Printed: RSS at the end of warm-up and at the end, the slope after warm-up by least squares
(MB per minute), and growth = end / warm-up RSS. A JSON report goes to BENCH_JSON when set.

Env: SOAK_SECS (default 1800), SOAK_SAMPLE (default 10, 1 when SOAK_SECS < 120), EDGE_BUILD."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tests", "e2e"))
os.environ.setdefault("EDGE_E2E_WORKERS", "1")
import harness as h  # noqa: E402

SECS = int(os.environ.get("SOAK_SECS", "1800"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE", "10" if SECS >= 120 else "1"))
WARMUP = 0.25

t = h.tag("soak")
topo = h.TcpTopology(t, net="10.95")
cli, dut, be = topo.cli, topo.dut, topo.be
h.tune_for_load(cli, dut, be)
VIP = topo.vip
work, www = topo.work, topo.www
with open(os.path.join(www, "index.html"), "w") as f:
    f.write("hello through edge\n")
certs = os.path.join(work, "certs")
subprocess.run(["sh", os.path.join(here, "..", "..", "tests", "certs", "gen.sh"), certs], check=True,
               capture_output=True)
rules_dir = os.path.join(work, "rules")
shutil.copytree(os.path.join(here, "..", "..", "rules", "shipped"), rules_dir)
nginx = topo.start_nginx("""
    listen 80 proxy_protocol backlog=4096;
    keepalive_requests 1000000;""", connections=16384, rlimit_nofile=65536, access_log="off")

config = f"""{topo.edged_head()}tcp:
  max_connections: 4096
  syn_backlog: 1024
tls:
  async: true
waf:
  rules_dir: {rules_dir}
pools:
  - name: gw
    connect_timeout_ms: 1000
    backends: [{{address: {topo.backend}, port: 80}}]
services:
  - name: web
    vip: {VIP}
    port: 80
    kind: tcp
    pool: gw
    waf: {{policy: {{name: enforce, mode: enforce}}}}
  - name: tls
    vip: {VIP}
    port: 443
    kind: tls
    pool: gw
    tls:
      certificates: [{{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}]
"""
e = h.Edged(dut, config)
pid = e.proc.pid


def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# The paths answer before the load starts.
for url in (f"http://{VIP}/", f"https://{VIP}/"):
    r = cli.run(["curl", "-sk", "--max-time", "5", "--resolve", f"soak.test:443:{VIP}", url], check=False, timeout=10)
    if r.stdout != "hello through edge\n":
        print(f"sanity request to {url} failed: rc={r.returncode} {r.stdout!r} {r.stderr}\n{e.logs()}", file=sys.stderr)
        sys.exit(1)

stop = threading.Event()
tls_done = [0, 0]  # ok, failed


def tls_loop():
    while not stop.is_set():
        r = cli.run(["curl", "-sk", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", f"https://{VIP}/"],
                    check=False, timeout=10)
        tls_done[0 if r.stdout == "200" else 1] += 1


wrk_args = ["wrk", "-t", "1", "-d", f"{SECS}s", "--timeout", "5s"]
keep = cli.popen(wrk_args + ["-c", "50", f"http://{VIP}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
close = cli.popen(wrk_args + ["-c", "20", "-H", "Connection: close", f"http://{VIP}/"], stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT, text=True)
loops = [threading.Thread(target=tls_loop, daemon=True) for _ in range(2)]
for th in loops:
    th.start()

samples = []  # (seconds, rss MB, connections opened)
t0 = time.time()
while time.time() - t0 < SECS:
    time.sleep(SAMPLE)
    m = e.metrics()
    samples.append((time.time() - t0, rss_mb(), m.get("edge_tcp_opened_total", 0)))
    s = samples[-1]
    print(f"  t={s[0]:7.1f} s  rss {s[1]:7.1f} MB  connections {s[2]:.0f}", flush=True)
stop.set()
outs = [p.communicate(timeout=SECS + 30)[0] for p in (keep, close)]
for th in loops:
    th.join(timeout=10)


def requests_of(out):
    for line in out.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    return 0


def errors_of(out):
    return sum(int(x) for line in out.splitlines() if "Socket errors" in line
               for x in line.replace(",", " ").split() if x.isdigit()) + \
        sum(int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line)


alive = e.proc.poll() is None
for name, p in (("keep-alive", keep), ("close", close)):
    if p.returncode != 0:
        print(f"wrk ({name}) exited {p.returncode}", file=sys.stderr)
        sys.exit(1)
after = [s for s in samples if s[0] >= WARMUP * SECS]
if len(after) < 2:
    print("too few samples after warm-up", file=sys.stderr)
    sys.exit(1)
n = len(after)
mx = sum(s[0] for s in after) / n
my = sum(s[1] for s in after) / n
slope = sum((s[0] - mx) * (s[1] - my) for s in after) / max(1e-9, sum((s[0] - mx) ** 2 for s in after))
warm, end, peak = after[0][1], after[-1][1], max(s[1] for s in samples)
reqs = [requests_of(o) for o in outs]
errs = [errors_of(o) for o in outs]
print(f"soak {SECS} s: requests keep-alive {reqs[0]}, close {reqs[1]}, tls {tls_done[0]} "
      f"(errors {errs[0]}, {errs[1]}, {tls_done[1]}); connections opened {samples[-1][2]:.0f}")
print(f"soak rss: warm-up end {warm:.1f} MB, end {end:.1f} MB, peak {peak:.1f} MB; "
      f"slope after warm-up {slope * 60:.2f} MB/min; growth {end / warm:.3f}")
if os.environ.get("BENCH_JSON"):
    with open(os.environ["BENCH_JSON"], "w") as f:
        json.dump({"figures": [
            {"metric": "RSS at the end of warm-up", "who": "edged", "value": warm, "unit": "MB"},
            {"metric": "RSS at the end", "who": "edged", "value": end, "unit": "MB"},
            {"metric": "RSS drift after warm-up, |slope|", "who": "edged", "value": abs(slope * 60) + 1e-6,
             "unit": "MB/min"},
            {"metric": "requests (all clients)", "who": "edged", "value": sum(reqs) + tls_done[0]}],
            "ratios": [{"metric": "RSS end / warm-up end", "num": "end", "den": "warm-up", "value": end / warm}],
            "errors": sum(errs) + tls_done[1], "samples": samples}, f)
if not alive:
    print(f"edged exited during the soak\n{e.logs()}", file=sys.stderr)
    sys.exit(1)
if min(reqs) == 0 or tls_done[0] == 0:
    print(f"a load did not run (requests {reqs}, tls {tls_done[0]}): the RSS figures mean nothing",
          file=sys.stderr)
    sys.exit(1)
