#!/usr/bin/python3
"""Defaults that broke common setups (issue 17, item 6), with real clients and nginx:
  - a `tls` service without a WAF in front of an HTTP/1.1 nginx: curl (which offers h2 first in
    ALPN) gets HTTP/1.1 200, because the pool's protocol (http1 by default) sets the ALPN default;
  - a SYN to a VIP port without a service gets a RST: the client's connect fails with
    ECONNREFUSED at once (not a timeout), counted as edge_drops_total{reason="closed_port_rst"};
  - `admin.readiness: pools`: /readyz is 503 (with the reason) while every backend of a service
    is down, and 200 again once one is back."""
import errno
import os
import socket
import subprocess
import time

import harness as h

t = h.tag("dflt")
c = h.Check("test_defaults")
topo = h.TcpTopology(t, net="10.96")
cli, dut, be = topo.cli, topo.dut, topo.be
VIP = topo.vip
here = os.path.dirname(os.path.abspath(__file__))
certs = os.path.join(topo.work, "certs")
subprocess.run(["sh", os.path.join(here, "..", "certs", "gen.sh"), certs], check=True, capture_output=True)
with open(os.path.join(topo.www, "index.html"), "w") as f:
    f.write("hello\n")
NGINX_SERVER = "listen 80 proxy_protocol;"
topo.start_nginx(NGINX_SERVER)

config = f"""{topo.edged_head()}admin:
  readiness: pools
pools:
  - name: web
    health_check: {{type: http, path: /, interval_ms: 200, timeout_ms: 150, rise: 1, fall: 1}}
    backends: [{{address: {topo.backend}, port: 80}}]
services:
  - name: https
    vip: {VIP}
    port: 443
    kind: tls
    pool: web
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}
"""
e = h.Edged(dut, config)


def backend_up():
    return e.metrics().get(f'edge_backend_up{{pool="web",backend="{topo.backend}:80"}}')


def wait_for(fn, want, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline and fn() != want:
        time.sleep(0.1)
    return fn() == want


c.that(wait_for(backend_up, 1, 5), "the nginx backend is up")

# --- ALPN follows the pool: curl (h2 offered first) speaks HTTP/1.1 to the HTTP/1.1 backend -------
for attempt in range(3):
    r = cli.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--max-time", "5",
                 "--cacert", f"{certs}/ca.pem", "--resolve", f"example.test:443:{VIP}", "https://example.test/"],
                check=False)
    c.that(r.stdout.strip() == "1.1 200",
           f"curl (ALPN h2,http/1.1) to a tls service without WAF gets HTTP/1.1 200: '{r.stdout.strip()}' rc {r.returncode}")
r = cli.run(["sh", "-c", f"echo | openssl s_client -connect {VIP}:443 -servername example.test -alpn h2,http/1.1"],
            check=False, timeout=20)
c.that("ALPN protocol: http/1.1" in r.stdout, "the service offers http/1.1 only (openssl s_client -alpn h2,http/1.1)")

# --- a closed port on the VIP answers RST -------------------------------------------------------
rst0 = e.drops("closed_port_rst")
probe = """
import errno, socket, sys, time
out = []
for _ in range(5):
    s = socket.socket(); s.settimeout(5); t0 = time.time()
    try:
        s.connect((sys.argv[1], 9999)); out.append('connected')
    except OSError as ex:
        out.append(f'{errno.errorcode.get(ex.errno, ex.errno) if ex.errno else type(ex).__name__}:{time.time() - t0:.3f}')
    s.close()
print(' '.join(out))
"""
r = cli.run(["/usr/bin/python3", "-c", probe, VIP], check=False, timeout=60)
results = r.stdout.split()
c.that(len(results) == 5 and all(x.startswith("ECONNREFUSED:") and float(x.split(":")[1]) < 0.5 for x in results),
       f"connect to {VIP}:9999 (no service) is refused at once, as by a kernel: {results}")
rst = e.drops("closed_port_rst") - rst0
c.that(rst == 5, f"the RSTs are counted: edge_drops_total{{reason=\"closed_port_rst\"}} +{rst:.0f}")
r = cli.run(["curl", "-s", "-o", "/dev/null", "--max-time", "3", f"http://{topo.port_addr}:80/"], check=False)
c.that(r.returncode == 7, f"the port's own address refuses too (curl exit 7, connection refused): {r.returncode}")

# --- readiness: pools ------------------------------------------------------------------------------
def readyz():
    r = dut.run(["curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:9180/readyz"], check=False)
    return r.stdout.strip()


c.that(readyz().endswith("200"), f"ready while the pool has a healthy backend: {readyz()}")
h.stop_group(topo.nginx_proc)
c.that(wait_for(backend_up, 0, 5), "the backend is marked down once nginx stops")
got = readyz()
c.that(got.endswith("503") and "no healthy backend in pool web" in got,
       f"admin.readiness pools: /readyz is 503 and says why while every backend is down: {got}")
c.that(e.metrics().get("edge_ready") == 0, "edge_ready 0 as well")
topo.start_nginx(NGINX_SERVER)
c.that(wait_for(backend_up, 1, 5), "the backend is up again")
c.that(readyz().endswith("200"), f"ready again: {readyz()}")

c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
