#!/usr/bin/python3
"""Health checks and PROXY v2 (issue 17, item 2), service kind tcp, one nginx in the backend
namespace with three listeners: 80 `proxy_protocol`, 8080 plain, 8081 plain (a status port).
  - pool pp (proxy_protocol left at its default, on) → nginx :80 proxy_protocol, HTTP check: the
    check sends PROXY v2 (LOCAL) too, the backend is up and requests through the VIP get 200 with
    the client's address in nginx's log;
  - pool plain (default on) → nginx :8080 without proxy_protocol: the check gets nginx's 400 to the
    header; the backend is down with last_failure proxy_rejected, /stats and the log say
    "proxy_protocol mismatch", and clients are reset instead of getting nginx's 400;
  - pool status → nginx :80 proxy_protocol for traffic, health_check.port 8081 with
    health_check.proxy_protocol false: up, requests 200."""
import os
import time

import harness as h

t = h.tag("hcpp")
c = h.Check("test_health_proxy")
topo = h.TcpTopology(t, net="10.99")
cli, dut = topo.cli, topo.dut
VIP, BE = topo.vip, topo.backend
with open(os.path.join(topo.www, "index.html"), "w") as f:
    f.write("hello\n")
topo.start_nginx("""
    listen 80 proxy_protocol;
    listen 8080;
    listen 8081;""", http="""log_format pp '$proxy_protocol_addr $remote_addr "$request" $status';""",
                 access_log=f"{topo.work}/access.log pp")
deadline = time.time() + 10
while time.time() < deadline and topo.be.run(["curl", "-s", "-o", "/dev/null", f"http://{BE}:8080/"],
                                             check=False).returncode != 0:
    time.sleep(0.1)

CHECK = "interval_ms: 200, timeout_ms: 150, rise: 1, fall: 1"
config = f"""{topo.edged_head()}pools:
  - name: pp
    health_check: {{type: http, path: /, {CHECK}}}
    backends: [{{address: {BE}, port: 80}}]
  - name: plain
    health_check: {{type: http, path: /, {CHECK}}}
    backends: [{{address: {BE}, port: 8080}}]
  - name: status
    health_check: {{type: http, path: /, port: 8081, proxy_protocol: false, {CHECK}}}
    backends: [{{address: {BE}, port: 80}}]
services:
  - {{name: pp, vip: {VIP}, port: 80, kind: tcp, pool: pp}}
  - {{name: plain, vip: {VIP}, port: 81, kind: tcp, pool: plain}}
  - {{name: status, vip: {VIP}, port: 82, kind: tcp, pool: status}}
"""
e = h.Edged(dut, config)


def backend(pool):
    for b in e.stats().get("backends", []):
        if b["pool"] == pool:
            return b
    return {}


def settle(pool, up, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = backend(pool)
        if b.get("up") == up and b.get("checks", 0) >= 3:
            return b
        time.sleep(0.1)
    return backend(pool)


def curl(port):
    r = cli.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                 f"http://{VIP}:{port}/"], check=False)
    return r.stdout.strip() or "000", r.returncode


b = settle("pp", True)
c.that(b.get("up") is True and b.get("failures") == 0 and b.get("last_check") == "ok",
       f"pp: the PROXY v2 check passes against nginx listen ... proxy_protocol: {b}")
codes = [curl(80)[0] for _ in range(5)]
c.that(codes == ["200"] * 5, f"pp: requests through the VIP get 200: {codes}")
c.that(f"{topo.client} " in topo.access_log(), "pp: nginx logs the client's address from the PROXY header")

b = settle("plain", False)
c.that(b.get("up") is False and b.get("last_failure") == "proxy_rejected" and b.get("last_status") == 400,
       f"plain: a backend without proxy_protocol is down, named proxy_rejected (400): {b}")
c.that("proxy_protocol mismatch" in b.get("last_check", ""), f"/stats explains it: {b.get('last_check')}")
log = e.logs()
c.that("pool plain is down (proxy_rejected 400: proxy_protocol mismatch" in log,
       "the log names the mismatch: " + next((ln for ln in log.splitlines() if "pool plain" in ln), "(none)"))
codes = [curl(81) for _ in range(3)]
c.that(all(code != "400" and rc != 0 for code, rc in codes),
       f"plain: clients are reset (no backend) rather than served nginx's 400: {codes}")
nb = e.metrics().get('edge_upstream{pool="plain",counter="no_backend"}', 0)
c.that(nb >= 3, f"plain: the resets are counted as no_backend ({nb:.0f})")

b = settle("status", True)
c.that(b.get("up") is True and b.get("check_port") == 8081 and b.get("proxy_v2_check") is False
       and b.get("backend") == f"{BE}:80", f"status: checked on its own plain port 8081: {b}")
codes = [curl(82)[0] for _ in range(3)]
c.that(codes == ["200"] * 3, f"status: requests go to port 80 with the PROXY header: {codes}")

c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
