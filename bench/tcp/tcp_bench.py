#!/usr/bin/python3
"""Bench of service kind `tcp`: edged (userspace TCP on a DPDK af_packet port, io_uring relay to the
upstream, PROXY v2) against HAProxy (`mode tcp`, `send-proxy-v2`, one thread) in one run, on the
same namespaces, the same nginx backend (`listen 80 proxy_protocol`) and the same wrk client.

Topology:
  client ns  cli0 ──veth── dut0  edge ns (edged owns dut0 via af_packet; VIP A 10.99.0.100)
             cli1 ──veth── hap0  edge ns (kernel interface; HAProxy on VIP B 10.98.0.100)
                                 kern0 ──veth── eth0  backend ns (nginx 10.99.1.11:80)
Both proxies reach nginx over the same kernel veth (kern0). Every veth has checksum offload, TSO,
GSO and GRO off (the harness does that so af_packet frames carry complete checksums); the HAProxy
path gets the same treatment, so neither side gets super-packets.

Workloads (same wrk parameters for both peers; which peer goes first alternates per workload;
wrk --latency gives the keep-alive latency percentiles, p50 and p99):
  rps   keep-alive requests/s of a small page       wrk -c 50 -t 2 -d D
  cps   connections/s (Connection: close)            wrk -c 50 -t 2 -d D -H 'Connection: close'
  tput  Gbit/s of a 10 MiB file, keep-alive          wrk -c 10 -t 2 -d D
Client ceiling: the same wrk against nginx on the backend's loopback (no proxy) for rps and cps; a
proxy at 80 % of it or more is marked limited by the client.
CPU: utime+stime of the proxy's process (all its threads) from /proc/<pid>/stat around each
workload. edged's workers poll (adaptive back-off), so its figure includes polling; its CPU while
idle (during HAProxy's runs) is printed too.
Env: EDGE_BUILD (build dir), BENCH_SECS (default 10)."""
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
import harness as h  # noqa: E402

# HAProxy wants ~2 fds per connection of maxconn; nginx and wrk inherit this too.
_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
HAPROXY_MAXCONN = min(20000, (_hard - 64) // 2)
SECS = int(os.environ.get("BENCH_SECS", "10"))
TICK = os.sysconf("SC_CLK_TCK")
VIP_A, VIP_B, BACKEND = "10.99.0.100", "10.98.0.100", "10.99.1.11"
BIG_MB = 10


def cpu_s(pid):
    """utime + stime of process `pid` (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def to_bytes(num, unit):
    return float(num) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[unit]


t = h.tag("btcp")
topo = h.TcpTopology(t, net="10.99")  # cli0 -- dut0 (edged), kern0 -- eth0 (nginx)
cli, dut, be = topo.cli, topo.dut, topo.be
h.veth(cli, "cli1", dut, "hap0")      # HAProxy's kernel interface
cli.run(["ip", "addr", "add", "10.98.0.2/24", "dev", "cli1"])
dut.run(["ip", "addr", "add", f"{VIP_B}/24", "dev", "hap0"])
h.tune_for_load(cli, dut, be)  # Connection: close at thousands per second

work, www = topo.work, topo.www
with open(os.path.join(www, "index.html"), "w") as f:
    f.write("hello through edge\n")
with open(os.path.join(www, "big"), "wb") as f:
    f.write(os.urandom(BIG_MB << 20))
nginx = topo.start_nginx("""
    listen 80 proxy_protocol backlog=4096;
    listen 127.0.0.1:8081 backlog=4096;
    keepalive_requests 1000000;""", http="sendfile on;", connections=16384, rlimit_nofile=65536,
                         access_log="off")

hconf = os.path.join(work, "haproxy.cfg")
with open(hconf, "w") as f:
    f.write(f"""
global
  maxconn {HAPROXY_MAXCONN}
  nbthread 1
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend vip
  bind {VIP_B}:80 backlog 4096
  default_backend gw
backend gw
  server s1 {BACKEND}:80 send-proxy-v2
""")
hlog = open(os.path.join(work, "haproxy.log"), "w")
haproxy = dut.popen(["haproxy", "-db", "-f", hconf], stdout=hlog, stderr=subprocess.STDOUT)
h._cleanups.append(lambda: haproxy.poll() is None and (haproxy.kill(), haproxy.wait()))

config = f"""{topo.edged_head()}tcp:
  max_connections: 8192
  syn_backlog: 1024
  idle_timeout_ms: 60000
pools:
  - name: gw
    connect_timeout_ms: 1000
    health_check: {{type: tcp, interval_ms: 1000, timeout_ms: 500, rise: 1, fall: 3}}
    backends:
      - {{address: {BACKEND}, port: 80}}
services:
  - {{name: web, vip: {VIP_A}, port: 80, kind: tcp, pool: gw}}
"""
e = h.Edged(dut, config)
# `ip netns exec` execs the command, so these are the proxies' own pids.
peers = {"edged": (VIP_A, e.proc.pid), "haproxy": (VIP_B, haproxy.pid)}

# Both paths answer through nginx's PROXY-protocol listener (which refuses a connection without the
# header), once the health check has marked the backend up.
deadline = time.time() + 20
ok = {}
while time.time() < deadline:
    for name, (vip, _pid) in peers.items():
        r = cli.run(["curl", "-s", "--max-time", "3", f"http://{vip}/"], check=False, timeout=10)
        ok[name] = r.stdout == "hello through edge\n" or f"{r.returncode} {r.stdout!r} {r.stderr.strip()}"
    if all(v is True for v in ok.values()):
        break
    time.sleep(0.5)
if not all(v is True for v in ok.values()):
    with open(os.path.join(work, "haproxy.log")) as f:
        print(f"---- haproxy log ----\n{f.read()}", file=sys.stderr)
    print(f"sanity request failed: {ok}\n---- edged log ----\n{e.logs()}", file=sys.stderr)
    sys.exit(1)


def wrk(vip, path, conns, extra=(), ns=None):
    cmd = ["wrk", "-c", str(conns), "-t", "2", "-d", f"{SECS}s", "--timeout", "5s", "--latency"] + \
          list(extra) + [f"http://{vip}{path}"]
    r = (ns or cli).run(["sh", "-c", "exec " + " ".join(shlex.quote(a) for a in cmd)],
                        check=False, timeout=SECS + 60)
    out = r.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", out)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({r.returncode}): {out}{r.stderr}")
    secs = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m.group(3)]
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {}  # wrk --latency's distribution, in ms
    for q, v, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[int(q)] = float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]
    return {"reqs": int(m.group(1)), "secs": secs, "bytes": to_bytes(m.group(4), m.group(5)),
            "errors": sum(int(x) for x in errs.groups()) if errs else 0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "lat": lat}


workloads = [("rps", "/", 50, ()), ("cps", "/", 50, ("-H", "Connection: close")), ("tput", "/big", 10, ())]
res = {}
edged_idle = [0.0, 0.0]  # edged's CPU seconds and wall seconds while HAProxy ran
load0 = os.getloadavg()[0]
for i, (wl, path, conns, extra) in enumerate(workloads):
    # Alternate which peer goes first, so a drift in the machine's load favours neither.
    for name, (vip, pid) in (list(peers.items()) if i % 2 == 0 else list(reversed(peers.items()))):
        c0, ec0, w0 = cpu_s(pid), cpu_s(e.proc.pid), time.time()
        r = wrk(vip, path, conns, extra)
        r["cpu"] = cpu_s(pid) - c0
        if name == "haproxy":
            edged_idle[0] += cpu_s(e.proc.pid) - ec0
            edged_idle[1] += time.time() - w0
        res[(wl, name)] = r
        print(f"  {wl:4} {name:7} {r['reqs']:8d} req in {r['secs']:.2f}s, {r['bytes'] / 1e6:9.1f} MB, "
              f"cpu {r['cpu']:.2f}s, socket errors {r['errors']}, non-2xx {r['non2xx']}", flush=True)


def metric(wl, name):
    r = res[(wl, name)]
    if wl == "rps":
        return r["reqs"] / r["secs"]
    if wl == "cps":
        return r["reqs"] / r["secs"]
    return r["bytes"] * 8 / r["secs"] / 1e9


def cpu_per(wl, name):
    r = res[(wl, name)]
    if wl == "cps":
        return r["cpu"] / (r["reqs"] / 1000)   # CPU s per 1,000 connections
    if wl == "tput":
        return r["cpu"] / (r["bytes"] / 1e9)   # CPU s per GB
    return r["cpu"] / (r["reqs"] / 1e6)        # CPU s per 1M requests


m = e.metrics()
print("edged: " + ", ".join(f"{k}={v:.0f}" for k, v in m.items()
                            if k.startswith(("edge_tcp_retransmits", "edge_tcp_rto", "edge_relay_ends", "edge_drops_total",
                                             "edge_tcp_refused", "edge_port_rx_missed")) and v))
# Both proxies stop before the client's ceiling is measured: edged's workers poll, and on a small
# machine they would take CPU from wrk and nginx.
rc = e.stop()
haproxy.kill()
haproxy.wait()
# The client's own ceiling on this machine: the same wrk against nginx on the backend's loopback (no
# proxy, no veth), for the request and connection workloads. A proxy's rate near it is limited by
# the client (and nginx), not by the proxy, and is marked so.
ceiling = {}
for wl, path, conns, extra in workloads[:2]:
    r = wrk("127.0.0.1:8081", path, conns, extra, ns=be)
    ceiling[wl] = r["reqs"] / r["secs"]
    print(f"  {wl:4} ceiling (wrk -> nginx on loopback) {ceiling[wl]:10.0f} /s", flush=True)
CLIENT_LIMITED = 0.8  # a rate at 80 % of the ceiling or more is the client's limit

rows = [("requests/s (keep-alive, -c 50)", "rps", metric),
        ("connections/s (Connection: close, -c 50)", "cps", metric),
        (f"Gbit/s ({BIG_MB} MiB file, -c 10)", "tput", metric),
        ("CPU s per 1M keep-alive requests", "rps", cpu_per),
        ("CPU s per 1,000 connections", "cps", cpu_per),
        ("CPU s per GB", "tput", cpu_per)]
print(f"\nservice kind tcp: edged vs HAProxy (mode tcp, send-proxy-v2, nbthread 1); wrk -t 2 -d {SECS}s, "
      f"same client/backend; host has {os.cpu_count()} cores shared by wrk, nginx, both proxies "
      f"(and other work); 1-min load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
print(f"{'metric':44} {'edged':>10} {'haproxy':>10} {'edged/haproxy':>14}")
for label, wl, fn in rows:
    a, b = fn(wl, "edged"), fn(wl, "haproxy")
    print(f"{label:44} {a:10.3f} {b:10.3f} {(a / b if b else float('inf')):14.3f}")
lat_rows = [(f"p{q} latency, keep-alive requests (ms)", q) for q in (50, 99)]
for label, q in lat_rows:
    a, b = res[("rps", "edged")]["lat"].get(q, 0), res[("rps", "haproxy")]["lat"].get(q, 0)
    print(f"{label:44} {a:10.3f} {b:10.3f} {(a / b if b else float('inf')):14.3f}")
notes = []
for wl in ceiling:
    print(f"wrk's ceiling, {wl}: {ceiling[wl]:.0f}/s against nginx on loopback")
    for who in ("edged", "haproxy"):
        share = metric(wl, who) / ceiling[wl]
        if share >= CLIENT_LIMITED:
            notes.append(f"{wl} {who}: {share:.0%} of wrk's ceiling: limited by the client")
for n in notes:
    print("note: " + n)
if os.environ.get("BENCH_JSON"):  # bench/run's record of this run
    with open(os.environ["BENCH_JSON"], "w") as f:
        figures = [{"metric": label, "who": who, "value": fn(wl, who)}
                   for label, wl, fn in rows for who in ("edged", "haproxy")]
        figures += [{"metric": label, "who": who, "value": res[("rps", who)]["lat"].get(q, 0), "unit": "ms"}
                    for label, q in lat_rows for who in ("edged", "haproxy")]
        figures += [{"metric": f"wrk ceiling, {wl} (nginx on loopback)", "who": "wrk", "value": v}
                    for wl, v in ceiling.items()]
        ratios = [{"metric": label, "num": "edged", "den": "haproxy",
                   "value": fn(wl, "edged") / fn(wl, "haproxy") if fn(wl, "haproxy") else None}
                  for label, wl, fn in rows]
        ratios += [{"metric": label, "num": "edged", "den": "haproxy",
                    "value": res[("rps", "edged")]["lat"].get(q, 0) / res[("rps", "haproxy")]["lat"][q]
                    if res[("rps", "haproxy")]["lat"].get(q) else None} for label, q in lat_rows]
        ratios += [{"metric": f"{wl}: share of wrk's ceiling", "num": who, "den": "wrk ceiling",
                    "value": metric(wl, who) / ceiling[wl]} for wl in ceiling for who in ("edged", "haproxy")]
        json.dump({"figures": figures, "ratios": ratios, "notes": notes,
                   "errors": sum(v["errors"] + v["non2xx"] for v in res.values())}, f, indent=1)
for wl, _p, _c, _x in workloads:
    print(f"CPU s during {wl:4}: edged {res[(wl, 'edged')]['cpu']:.2f}, haproxy {res[(wl, 'haproxy')]['cpu']:.2f} "
          f"(over ~{SECS}s each)")
print(f"edged idle (polling) while HAProxy ran: {edged_idle[0]:.2f} CPU s over {edged_idle[1]:.1f} s wall")
errs = {k: (v["errors"], v["non2xx"]) for k, v in res.items() if v["errors"] or v["non2xx"]}
print("wrk socket errors / non-2xx: " + (str(errs) if errs else "none"))
h._run_cleanups()
sys.exit(0 if rc == 0 else 1)
