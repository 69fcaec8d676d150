#!/usr/bin/python3
"""The built-in demo. Namespaces: demo-client (10.99.0.2) -veth- demo-edge (edged, DPDK af_packet
ports wan0 and lan0, plus a kernel leg for health checks) -veth- demo-switch (a bridge) - three
nginx backends demo-b1..b3 (10.99.1.11-13). Shows ARP/ping answered by DPDK, a malformed frame
dropped and counted, L4 balancing (full NAT, Maglev) across the backends, with a backend
failure taken out by health checks, service kind tcp (userspace TCP relayed to the backends) with
the WAF blocking an attack, a requests/s limit answering 429 and a deny-listed source dropped (limit
files in the rules directory), and service kind tls (HTTPS terminated by edged). Run through
deploy/demo/demo.sh (installs, builds, runs this)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "e2e"))
import harness as h  # noqa: E402


def say(msg):
    print(f"\n\033[1m== {msg}\033[0m", flush=True)


def show(cmd_ns, cmd):
    print("$ " + " ".join(cmd), flush=True)
    r = cmd_ns.run(cmd, check=False)
    print((r.stdout + r.stderr).rstrip(), flush=True)
    return r


keep = "--keep" in sys.argv
say("Topology: demo-client (10.99.0.2) <-> demo-edge (edged on DPDK af_packet) <-> demo-switch <-> demo-b1..b3 (nginx)")
cli = h.Namespace("demo-client")
edge = h.Namespace("demo-edge")
switch = h.Namespace("demo-switch")
h.veth(cli, "client0", edge, "edge0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "client0"])
cli.run(["ip", "-6", "addr", "add", "fd00:99::2/64", "dev", "client0", "nodad"])
edge.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
br = h.bridge(switch)
h.attach(switch, br, edge, "lan0", "sw-lan")
h.attach(switch, br, edge, "kern0", "sw-kern")
edge.run(["ip", "addr", "add", "10.99.1.2/24", "dev", "kern0"])
servers = []
for i in (1, 2, 3):
    b = h.Namespace(f"demo-b{i}")
    h.attach(switch, br, b, "eth0", f"sw-b{i}")
    b.run(["ip", "addr", "add", f"10.99.1.1{i}/24", "dev", "eth0"])
    servers.append(h.Nginx(b, f"backend-{i}"))

say("A test PKI for the HTTPS service (tests/certs/gen.sh -> /tmp/edge-demo-certs)")
import subprocess  # noqa: E402
subprocess.run(["sh", os.path.join(os.path.dirname(__file__), "..", "..", "tests", "certs", "gen.sh"),
                "/tmp/edge-demo-certs"], check=True, capture_output=True)
print("example.test: ECDSA P-256 and RSA-2048 certificates signed by /tmp/edge-demo-certs/ca.pem")
config_path = os.path.join(os.path.dirname(__file__), "edged-demo.yaml")
say("Starting edged with deploy/demo/edged-demo.yaml")
# The harness runs edged on a copy of the file in a temporary folder: make the rules path absolute.
# The rules directory is a copy of rules/shipped plus the demo's limit file and deny list.
import shutil  # noqa: E402
shipped = os.path.abspath(os.path.join(os.path.dirname(config_path), "..", "..", "rules", "shipped"))
rules_dir = "/tmp/edge-demo-rules"
shutil.rmtree(rules_dir, ignore_errors=True)
shutil.copytree(shipped, rules_dir)
with open(os.path.join(rules_dir, "demo-deny.cidr"), "w") as f:
    f.write("# sources the demo refuses\n10.99.0.3/32\n")
with open(os.path.join(rules_dir, "demo.limits.yaml"), "w") as f:
    f.write("""limits:
  - name: demo-requests            # GET /index.html: 2 per second per client, bursts of 3
    services: [web-tcp]
    scope: requests
    key: src
    match: {method: GET, path_prefix: /index.html}
    rate: 2
    burst: 3
    action: 429
acl:
  - service: web-tcp
    deny: [demo-deny.cidr]
""")
cli.run(["ip", "addr", "add", "10.99.0.3/24", "dev", "client0"])
e = h.Edged(edge, open(config_path).read().replace("../../rules/shipped", rules_dir))
print(e.logs().rstrip())

say("The client resolves edged's address by ARP and pings it: answered by the DPDK worker")
show(cli, ["ping", "-c", "3", "-i", "0.2", "10.99.0.1"])
show(cli, ["ip", "neigh", "show", "dev", "client0"])
say("IPv6: neighbour discovery and ICMPv6 echo")
show(cli, ["ping", "-6", "-c", "3", "-i", "0.2", "fd00:99::1"])

say("A malformed frame (bad IPv4 checksum) is dropped and counted")
mac = e.stats()["ports"][0]["mac"]
cli.run(["/usr/bin/python3", "-c",
         "from scapy.all import *; conf.verb=0; "
         f"sendp(Ether(dst='{mac}')/IP(src='10.99.0.2', dst='10.99.0.1', chksum=0x1234)/ICMP(), iface='client0')"])
time.sleep(0.3)

say("L4 balancing: 300 new connections to the VIP 10.99.0.100:80 (full NAT, Maglev)")
show(cli, ["curl", "-s", "http://10.99.0.100/"])
print("per backend:", h.http_spread(cli, "http://10.99.0.100/", 300))

say("backend-3 fails: health checks take it out, new connections go to the others")
servers[2].stop()
for _ in range(50):
    if e.metrics().get('edge_backend_up{pool="web",backend="10.99.1.13:80"}') == 0:
        break
    time.sleep(0.1)
for line in e.get("/metrics").splitlines():
    if line.startswith("edge_backend_up"):
        print(line)
print("per backend:", h.http_spread(cli, "http://10.99.0.100/", 300))

say("Service kind tcp: edged terminates TCP in user space on 10.99.0.101:80 and relays each connection "
    "to a backend over a kernel socket (io_uring), least connections among healthy ones")
show(cli, ["curl", "-s", "http://10.99.0.101/"])
print("per backend:", h.http_spread(cli, "http://10.99.0.101/", 60))
for line in e.get("/metrics").splitlines():
    if line.startswith(("edge_tcp_opened_total", "edge_relay_accepted_total", "edge_relay_bytes_total",
                        'edge_relay_ends_total{outcome="completed"}', 'edge_upstream{pool="gw",counter="connects"}')):
        print(line)

say("WAF on the tcp service (rules/shipped, enforce): a SQL injection gets 403 and an audit line")
show(cli, ["curl", "-s", "-i", "http://10.99.0.101/search?q=1%27%20union%20select%20password%20from%20users"])
time.sleep(0.3)
with open("/tmp/edge-demo-waf-audit.log") as f:
    print("audit:", f.read().strip().splitlines()[-1])

say("Rate limit (rules dir demo.limits.yaml): 6 quick GET /index.html from one client, 2/s with bursts of 3")
for _ in range(6):
    r = cli.run(["curl", "-s", "-o", "/dev/null", "-w", "HTTP %{http_code}  Retry-After: %header{retry-after}\n",
                 "http://10.99.0.101/index.html"], check=False)
    print(r.stdout.rstrip(), flush=True)
show(cli, ["curl", "-s", "-i", "http://10.99.0.101/index.html"])
time.sleep(0.3)
with open("/tmp/edge-demo-waf-audit.log") as f:
    print("audit:", [ln for ln in f.read().strip().splitlines() if "limit:" in ln][-1])
for line in e.get("/metrics").splitlines():
    if line.startswith(("edge_limit_allowed_total", "edge_limit_limited_total")) and "demo-requests" in line:
        print(line)

say("Deny list (rules dir demo-deny.cidr): the client's second address 10.99.0.3 is dropped and counted")
show(cli, ["curl", "-s", "-S", "--max-time", "2", "--interface", "10.99.0.3", "http://10.99.0.101/"])
for line in e.get("/metrics").splitlines():
    if line.startswith("edge_acl_denied_total") or 'reason="acl_denied"' in line:
        print(line)

say("Service kind tls: HTTPS terminated by edged on 10.99.0.101:443 (userspace TCP + OpenSSL, private key "
    "signed on a crypto thread), plaintext to the backends")
ca = ["--cacert", "/tmp/edge-demo-certs/ca.pem", "--resolve", "example.test:443:10.99.0.101"]
show(cli, ["curl", "-s", "-w", "  (HTTP %{http_code}, TLS verified, %{time_appconnect}s to handshake)\n", *ca,
           "https://example.test/"])
r = cli.run(["sh", "-c", "openssl s_client -connect 10.99.0.101:443 -servername example.test "
             "-CAfile /tmp/edge-demo-certs/ca.pem </dev/null 2>/dev/null | grep -E '^(subject|New,|Verify return)'"],
            check=False)
print(r.stdout.rstrip())
say("The WAF on the tls service: the same SQL injection over HTTPS gets 403")
show(cli, ["curl", "-s", "-o", "/dev/null", "-w", "HTTP %{http_code}\n", *ca,
           "https://example.test/search?q=1%27%20union%20select%20password%20from%20users"])
for line in e.get("/metrics").splitlines():
    if line.startswith(("edge_tls_handshakes_full_total", "edge_tls_async_pauses_total", "edge_tls_offload_completed_total")):
        print(line)

say("edgectl stats (admin API on 127.0.0.1:9180 inside demo-edge)")
show(edge, [h.EDGECTL, "stats"])
say("A few Prometheus metrics")
for line in e.get("/metrics").splitlines():
    if line.startswith(("edge_port_rx_packets_total", "edge_local_replies_total", "edge_ready",
                        "edge_l4_conn_misses_total", "edge_l4_nat_forward_total", "edge_l4_nat_reply_total")) or \
            (line.startswith("edge_drops_total") and not line.endswith(" 0")):
        print(line)

say("Where to look next (run with --keep to leave edged up and try these)")
print(f"""  edged log:          {e.log_path}
  config:             deploy/demo/edged-demo.yaml (schema: README.md, 'Configuration')
  rules + limits:     /tmp/edge-demo-rules (edit demo.limits.yaml: hot-reloaded; rules/README.md)
  admin API:          ip netns exec demo-edge curl -s 127.0.0.1:9180/metrics   (/stats /config /readyz)
  CLI:                ip netns exec demo-edge build/edge/edgectl stats
  life of a packet:   docs/packet-flow.md""")
if keep:
    say("--keep: edged keeps running; Ctrl-C tears the demo down")
    try:
        while e.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
say("Stopping edged (SIGTERM) and removing the namespaces")
rc = e.stop()
print(f"edged exited with status {rc}")
if rc != 0:
    sys.exit(1)
