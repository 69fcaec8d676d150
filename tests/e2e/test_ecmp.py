#!/usr/bin/python3
"""Two edge nodes behind a router that runs BIRD, as a fleet runs (issue 15):

  client ns ── router ns (BIRD 2 from deploy/bird/router.conf.example: BGP + BFD to each node,
                │          `merge paths`: one ECMP route per VIP in its kernel; L4 multipath hash)
                ├── dut0 ═ node 1: edged (af_packet; wan NET.1.10, lan NET.5.31), BIRD rendered by
                │          deploy/bird/render-bird-conf.py, `edgectl bgp-announce`; BGP over ctl0
                ├── dut0 ═ node 2: the same (wan NET.2.10, lan NET.5.32)
                └── br0 ── backends b1, b2 (nginx; IPIP decapsulation for direct return)

Each node serves a `tls` service (VIP NET.0.100:443, both nodes share one ticket key file) and an
`l4` service with direct server return (VIP NET.0.101:80, IPIP). The nodes' BIRDs announce the VIPs
with their edged's wan address as the next hop (--next-hop: BGP runs over the kernel's ctl0, the
traffic goes to the port edged owns).

Checks: the router installs an ECMP route over both nodes and clients reach the VIPs through
both; draining the node that carries a long-lived DSR connection withdraws its routes within the
grace period; meanwhile new connections (a client loop) and that connection keep succeeding with
no client error, and the connection keeps its backend (the survivor's Maglev picks the same one
for a flow it never saw open); a TLS session from the drained node resumes on the survivor with
the shared ticket key; the drained node exits 0.

Not covered, and said so in deploy/README.md: a terminated (tcp/tls) connection still open on
the drained node when its route goes is moved by the router to the survivor, which resets it:
nodes do not forward each other's stray segments."""
import json
import os
import re
import shutil
import subprocess
import time

import harness as h

t = h.tag("ecmp")
c = h.Check("test_ecmp")
NET = "10.86"
VIP_T, VIP_L4, CLIENT = f"{NET}.0.100", f"{NET}.0.101", f"{NET}.9.2"
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GRACE_MS = 3000

cli, rtr = h.Namespace(f"{t}c"), h.Namespace(f"{t}r")
nodes = [h.Namespace(f"{t}n{i}") for i in (1, 2)]
backends = [h.Namespace(f"{t}b{i}") for i in (1, 2)]
for ns in [cli, rtr] + nodes + backends:
    ns.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
    for k in ("all", "default"):
        ns.run(["sysctl", "-qw", f"net.ipv4.conf.{k}.rp_filter=0"])
rtr.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
rtr.run(["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])  # L4 hash: flows spread by port

h.veth(cli, "cli0", rtr, "r-cli")
cli.run(["ip", "addr", "add", f"{CLIENT}/24", "dev", "cli0"])
cli.run(["ip", "route", "add", "default", "via", f"{NET}.9.1"])
rtr.run(["ip", "addr", "add", f"{NET}.9.1/24", "dev", "r-cli"])
br = h.bridge(rtr)
rtr.run(["ip", "addr", "add", f"{NET}.5.1/24", "dev", br])
for i, n in enumerate(nodes, 1):
    h.veth(n, "dut0", rtr, f"r-d{i}")      # edged's wan port (DPDK af_packet)
    rtr.run(["ip", "addr", "add", f"{NET}.{i}.1/24", "dev", f"r-d{i}"])
    h.veth(n, "ctl0", rtr, f"r-k{i}")      # the node's kernel: BGP, and the tls upstream sockets
    n.run(["ip", "addr", "add", f"{NET}.1{i}.2/24", "dev", "ctl0"])
    n.run(["ip", "route", "add", "default", "via", f"{NET}.1{i}.1"])
    rtr.run(["ip", "addr", "add", f"{NET}.1{i}.1/24", "dev", f"r-k{i}"])
    h.attach(rtr, br, n, "lan0", f"sw-n{i}")  # edged's lan port (DPDK af_packet): DSR to backends
for ns in [rtr] + nodes:
    for ifc in ns.run(["ls", "/proc/sys/net/ipv4/conf"]).stdout.split():
        ns.run(["sysctl", "-qw", f"net.ipv4.conf.{ifc}.rp_filter=0"])

decap = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ipip_decap.py")
for i, b in enumerate(backends, 1):
    h.attach(rtr, br, b, "eth0", f"sw-b{i}")
    b.run(["ip", "addr", "add", f"{NET}.5.1{i}/24", "dev", "eth0"])
    b.run(["ip", "addr", "add", f"{VIP_L4}/32", "dev", "lo"])
    b.run(["ip", "route", "add", "default", "via", f"{NET}.5.1"])  # direct return, via the router
    b.run(["nft", "add table ip t; add chain ip t in { type filter hook input priority 0; }; "
                  "add rule ip t in ip protocol 4 drop"])
    p = b.popen(["/usr/bin/python3", "-u", decap, "eth0", f"{NET}.5.1{i}"], stdout=subprocess.PIPE)
    h._cleanups.append(p.kill)
    c.that(p.stdout.readline().strip() == b"ready", f"decapsulator ready in backend b{i}")
    b.run(["sysctl", "-qw", "net.ipv4.conf.decap0.rp_filter=0"])
    h.Nginx(b, f"b{i}")

work = h.tempfile.mkdtemp(prefix=f"edge-e2e-{t}-")
certs = os.path.join(work, "certs")
subprocess.run(["sh", os.path.join(SRC, "tests", "certs", "gen.sh"), certs], check=True, capture_output=True)
ticket_key = os.path.join(work, "tickets.key")  # one file for the fleet
shutil.copy(os.path.join(certs, "ticket1.key"), ticket_key)
os.chmod(ticket_key, 0o600)


def node_config(i):
    return f"""
eal:
  args: {h.yaml_list(h.eal_args(f"{t}n{i}"))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [{NET}.{i}.10/24],
     gateways: [{NET}.{i}.1]}}
  - {{name: lan0, role: lan, device: "net_af_packet1,iface=lan0", addresses: [{NET}.5.3{i}/24]}}
{h.workers_yaml()}
shutdown:
  grace_ms: {GRACE_MS}
  drain_timeout_ms: 4000
pools:
  - name: web
    proxy_protocol: false
    connect_timeout_ms: 500
    backends: [{{address: {NET}.5.11, port: 80}}, {{address: {NET}.5.12, port: 80}}]
  - name: l4web
    backends: [{{address: {NET}.5.11, port: 80}}, {{address: {NET}.5.12, port: 80}}]
services:
  - name: https
    vip: {VIP_T}
    port: 443
    kind: tls
    pool: web
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}
      ticket_key_file: {ticket_key}
  - {{name: dsr, vip: {VIP_L4}, port: 80, kind: l4, pool: l4web, forwarding: ipip}}
"""


def start_bird(ns, conf_text, name):
    conf, sock = os.path.join(work, f"{name}.conf"), os.path.join(work, f"{name}.ctl")
    with open(conf, "w") as f:
        f.write(conf_text)
    r = subprocess.run(["bird", "-p", "-c", conf], capture_output=True, text=True)
    c.that(r.returncode == 0, f"bird -p accepts {name}'s configuration {r.stderr.strip()}")
    log = open(os.path.join(work, f"{name}.log"), "w")
    p = ns.popen(["bird", "-f", "-c", conf, "-s", sock, "-P", os.path.join(work, f"{name}.pid")],
                 stdout=log, stderr=subprocess.STDOUT)
    h._cleanups.append(lambda: (p.terminate(), p.wait(5)))
    for _ in range(50):
        if os.path.exists(sock):
            break
        time.sleep(0.1)
    return sock


# The router: the shipped example, with this topology's addresses.
router_conf = open(os.path.join(SRC, "deploy", "bird", "router.conf.example")).read()
router_conf = (router_conf.replace("router id 192.0.2.1;", f"router id {NET}.9.1;")
               .replace("192.0.2.11", f"{NET}.11.2").replace("192.0.2.12", f"{NET}.12.2"))
start_bird(rtr, router_conf, "router")

edgeds, announcers = [], []
for i, n in enumerate(nodes, 1):
    cfg = node_config(i)
    e = h.Edged(n, cfg)
    edgeds.append(e)
    r = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "deploy", "bird", "render-bird-conf.py"),
                        "--edged-config", e.config_path, "--router-id", f"{NET}.1{i}.2", "--local-as", "65010",
                        "--peer", f"{NET}.1{i}.1:65000", "--bfd", "--next-hop", f"{NET}.{i}.10"],
                       capture_output=True, text=True, check=True)
    sock = start_bird(n, r.stdout, f"node{i}")
    a = n.popen([h.EDGECTL, "--admin", e.admin, "bgp-announce", "--bird-socket", sock, "--interval-ms", "100"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    h._cleanups.append(a.kill)
    announcers.append(a)


def next_hops(vip):
    """The router's kernel next hops for `vip` (the ECMP route BIRD installed)."""
    out = rtr.run(["ip", "route", "show", vip], check=False).stdout
    return sorted(set(re.findall(r"via (\S+)", out)))


both = [f"{NET}.1.10", f"{NET}.2.10"]
ok = h.wait_until(lambda: next_hops(VIP_T) == both and next_hops(VIP_L4) == both, 40)
c.that(ok, f"the router has one ECMP route per VIP over both nodes: {VIP_T} via {next_hops(VIP_T)}, "
           f"{VIP_L4} via {next_hops(VIP_L4)}")
if not ok:
    print(open(os.path.join(work, "router.log")).read()[-3000:])
    c.done(edgeds[0])


def metric(e, name):
    return e.metrics().get(name, 0.0)


def curl_tls(n, extra=""):
    """`n` HTTPS requests, each on a new connection, from the client: [status, ...]."""
    r = cli.run(["sh", "-c", f"for i in $(seq {n}); do curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 5 "
                 f"--cacert {certs}/ca.pem --resolve example.test:443:{VIP_T} {extra} https://example.test/; done"],
                check=False, timeout=20 + 6 * n)
    return [int(x) for x in r.stdout.split()]


# --- both nodes carry traffic -------------------------------------------------------------------------
full0 = [metric(e, "edge_tls_handshakes_full_total") for e in edgeds]
statuses = curl_tls(30)
full = [metric(e, "edge_tls_handshakes_full_total") - f0 for e, f0 in zip(edgeds, full0)]
c.that(statuses == [200] * 30 and min(full) >= 3 and sum(full) == 30,
       f"30 HTTPS connections are served, spread over both nodes by the router: handshakes {full}")
miss0 = [metric(e, "edge_l4_conn_misses_total") for e in edgeds]
spread = h.http_spread(cli, f"http://{VIP_L4}/", 60)
miss = [metric(e, "edge_l4_conn_misses_total") - m0 for e, m0 in zip(edgeds, miss0)]
c.that(spread.get("error", 0) == 0 and spread.get("b1", 0) > 10 and spread.get("b2", 0) > 10 and min(miss) >= 6,
       f"60 DSR connections reach both backends {spread} through both nodes (new flows per node {miss})")

# --- a long-lived DSR connection, and which node carries it --------------------------------------------
LONG_S = 14
keep = cli.popen(["/usr/bin/python3", "-c", f"""
import json, socket, time
s = socket.create_connection(("{VIP_L4}", 80), timeout=3)
bodies, errors, end = [], [], time.time() + {LONG_S}
while time.time() < end:
    try:
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        data = b""
        while b"\\r\\n\\r\\n" not in data or len(data.split(b"\\r\\n\\r\\n", 1)[1]) < 3:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("closed")
            data += chunk
        bodies.append(data.split(b"\\r\\n\\r\\n", 1)[1].strip().decode())
    except OSError as e:
        errors.append(str(e))
        break
    time.sleep(0.05)
print(json.dumps({{"bodies": bodies, "errors": errors}}))
"""], stdout=subprocess.PIPE, text=True)
h._cleanups.append(keep.kill)
time.sleep(0.5)
enc0 = [metric(e, "edge_l4_encap_ipip_total") for e in edgeds]
time.sleep(1.0)
enc = [metric(e, "edge_l4_encap_ipip_total") - x for e, x in zip(edgeds, enc0)]
N = 0 if enc[0] > enc[1] else 1   # the node that carries it: the one to drain
S = 1 - N
c.that(enc[N] >= 10 and enc[S] == 0, f"the long-lived DSR connection runs through node {N + 1} (encapsulated {enc})")

# --- a TLS session from the node to be drained -----------------------------------------------------------
sess = os.path.join(work, "sess.pem")


def s_client(*args):
    return cli.run(["sh", "-c", "(printf 'GET / HTTP/1.0\\r\\nHost: example.test\\r\\n\\r\\n'; sleep 1) | "
                    f"openssl s_client -connect {VIP_T}:443 -servername example.test -CAfile {certs}/ca.pem "
                    + " ".join(args) + " 2>&1"], check=False, timeout=20).stdout


on_n = False
for _ in range(16):
    f0 = metric(edgeds[N], "edge_tls_handshakes_full_total")
    out = s_client(f"-sess_out {sess}")
    if metric(edgeds[N], "edge_tls_handshakes_full_total") > f0 and "Verify return code: 0" in out:
        on_n = True
        break
c.that(on_n, f"a TLS session was made on node {N + 1}")

# --- new connections in a loop across the drain --------------------------------------------------------
LOOP_S = 9
loop = cli.popen(["/usr/bin/python3", "-c", f"""
import collections, json, socket, time
seen, end = collections.Counter(), time.time() + {LOOP_S}
while time.time() < end:
    try:
        s = socket.create_connection(("{VIP_L4}", 80), timeout=3)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        seen["ok" if b" 200 OK" in data else "bad"] += 1
    except OSError as e:
        seen["error: " + str(e)] += 1
    time.sleep(0.01)
print(json.dumps(seen))
"""], stdout=subprocess.PIPE, text=True)
h._cleanups.append(loop.kill)
time.sleep(1.5)

# --- drain node N ------------------------------------------------------------------------------------------
t0 = time.time()
r = edgeds[N].edgectl("drain")
c.that(r.returncode == 0, f"edgectl drain on node {N + 1}: {r.stdout.strip()} {r.stderr.strip()}")
survivor = [f"{NET}.{S + 1}.10"]
gone = h.wait_until(lambda: next_hops(VIP_T) == survivor and next_hops(VIP_L4) == survivor, GRACE_MS / 1000)
took = time.time() - t0
c.that(gone, f"node {N + 1}'s routes are withdrawn within the grace period: {took:.2f} s "
             f"(now {VIP_T} via {next_hops(VIP_T)}, {VIP_L4} via {next_hops(VIP_L4)})")

# New HTTPS connections go to the survivor; the session from node N resumes there.
full0 = [metric(e, "edge_tls_handshakes_full_total") for e in edgeds]
statuses = curl_tls(10)
full = [metric(e, "edge_tls_handshakes_full_total") - f0 for e, f0 in zip(edgeds, full0)]
c.that(statuses == [200] * 10 and full[S] == 10 and full[N] == 0,
       f"after the withdrawal new HTTPS connections are served by node {S + 1} alone: {statuses}, handshakes {full}")
res0 = metric(edgeds[S], "edge_tls_handshakes_resumed_total")
out = s_client(f"-sess_in {sess}")
c.that("Reused, TLSv1." in out and metric(edgeds[S], "edge_tls_handshakes_resumed_total") == res0 + 1,
       f"the TLS session from node {N + 1} resumes on node {S + 1} with the shared ticket key file")

seen = json.loads(loop.communicate(timeout=LOOP_S + 30)[0])
c.that(set(seen) == {"ok"} and seen["ok"] >= 50,
       f"new DSR connections in a loop across the drain: every one succeeded {seen}")
kept = json.loads(keep.communicate(timeout=LONG_S + 30)[0])
bodies = kept["bodies"]
c.that(not kept["errors"] and len(bodies) >= 100 and len(set(bodies)) == 1,
       f"the long-lived DSR connection ran across the drain ({len(bodies)} requests, errors {kept['errors']}) "
       f"and kept its backend: {sorted(set(bodies))}")
log = edgeds[N].logs()
c.that("drain" in log.lower(), "the drained node logged its drain")
c.that(edgeds[N].stop() == 0, f"the drained node {N + 1} exits 0")
for a in announcers:
    a.terminate()
c.that(edgeds[S].stop() == 0, f"node {S + 1} exits 0")
c.done(edgeds[S])
