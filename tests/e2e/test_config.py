#!/usr/bin/python3
"""edged --check accepts the shipped example and refuses a bad config with file:line and exit 2;
edged --config with a bad file exits 2 without starting; a start failure is printed on stderr even
with logging.file set (exit 2 for a config error found at start, 3 for a runtime failure); POST
/reload with a bad file keeps the running config serving and says why; a reload that changes a
restart-only key (admin.listen, logging.level) is refused and names the keys. Then the HTTPS + WAF
example of deploy/examples runs as shipped (only the veth name, EAL prefix and paths adapted):
HTTPS answers, an attack gets 403 with an audit line carrying the rule's message, /metrics has
edge_tls_certificate_expiry_seconds, and edgectl stats carries the TLS, WAF and per-service
counters; a backend coming up is logged at info."""
import json
import os
import re
import time
import subprocess
import tempfile

import harness as h

c = h.Check("test_config")
root = os.path.join(os.path.dirname(__file__), "..", "..")
example = os.path.join(root, "deploy", "examples", "edged.yaml")

r = subprocess.run([h.EDGED, "--check", example], capture_output=True, text=True)
c.that(r.returncode == 0 and "configuration is valid" in r.stdout, "edged --check accepts deploy/examples/edged.yaml")

bad = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
bad.write("ports:\n  - {name: wan0, role: wan, device: net_ring0}\nworkers:\n  lcores: [1]\n  burts: 64\n")
bad.close()
for mode in ("--check", "--config"):
    r = subprocess.run([h.EDGED, mode, bad.name], capture_output=True, text=True, timeout=30)
    c.that(r.returncode == 2, f"edged {mode} on a bad config exits 2 (got {r.returncode})")
    c.that(f"{bad.name}:5:3: unknown key 'burts' in workers" in r.stderr, f"edged {mode} names file:line:col and the key: {r.stderr.strip()}")
c.that("EAL" not in r.stderr, "nothing was started for the bad config")

# Start failures with logging.file set: the terminal still hears of them, with distinct exits.
logdir = tempfile.mkdtemp(prefix="edge-e2e-log-")
logfile = os.path.join(logdir, "edged.log")
for what, body, want_rc, want in (
        ("a config error found at start (lcore beyond the CPUs)", "workers:\n  lcores: [1000]\n", 2,
         "lcore 1000 is not a CPU this process may run on"),
        ("a runtime failure (the port's interface does not exist)", "workers:\n  lcores: [1]\n", 3,
         "start failed")):
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(f"eal:\n  args: {h.yaml_list(h.eal_args(h.tag('cfgx')))}\n"
            "ports:\n  - {name: wan0, role: wan, device: \"net_af_packet0,iface=edge-nosuch0\"}\n"
            f"{body}logging:\n  file: {logfile}\n")
    f.close()
    r = subprocess.run([h.EDGED, "--config", f.name], capture_output=True, text=True, timeout=60)
    c.that(r.returncode == want_rc and "start failed" in r.stderr and want in r.stderr,
           f"{what}: exit {r.returncode} (want {want_rc}), stderr names it: "
           f"{[ln for ln in r.stderr.splitlines() if 'start failed' in ln]}")

# A bad reload leaves the running configuration serving.
t = h.tag("cfg")
cli = h.Namespace(f"{t}c")
dut = h.Namespace(f"{t}d")
h.veth(cli, "cli0", dut, "dut0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
# Two workers on a port without RSS (af_packet) and no dispatch mode: refused at start, naming
# the fix, rather than every flow silently landing on whatever queue the port picks.
f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
f.write(f"eal:\n  args: {h.yaml_list(h.eal_args(t + 'x'))}\n"
        "ports:\n  - {name: wan0, role: wan, device: \"net_af_packet0,iface=dut0\"}\n"
        "workers:\n  lcores: [0, 1]\n")
f.close()
r = dut.run([h.EDGED, "--config", f.name], check=False, timeout=60)
c.that(r.returncode == 3 and "has no RSS" in r.stderr and "workers.dispatch: software" in r.stderr,
       f"2 workers on af_packet without workers.dispatch: exit {r.returncode} (want 3), "
       f"{[ln for ln in r.stderr.splitlines() if 'RSS' in ln]}")
# NIC steering of full-NAT replies on a port that cannot do it (af_packet has no rte_flow): the start
# is refused, naming the port, the rule and the way back to software hand-off. (The rules themselves
# need a NIC with rte_flow; their contents are checked by l4_lb_test's port-block tests.)
h.veth(cli, "cli1", dut, "dut1")
f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
f.write(f"eal:\n  args: {h.yaml_list(h.eal_args(t + 'y'))}\n"
        "ports:\n  - {name: wan0, role: wan, device: \"net_af_packet0,iface=dut0\", addresses: [10.99.0.1/24]}\n"
        "  - {name: lan0, role: lan, device: \"net_af_packet1,iface=dut1\", addresses: [10.99.1.1/24]}\n"
        "workers:\n  lcores: [0, 1]\n  dispatch: software\n  snat_steering: flow\n"
        "l4:\n  snat_addresses: [10.99.1.50]\n"
        "pools:\n  - {name: web, backends: [{address: 10.99.1.3, port: 80}]}\n"
        "services:\n  - {name: web, vip: 10.99.0.100, port: 80, kind: l4, pool: web, forwarding: fnat}\n")
f.close()
r = dut.run([h.EDGED, "--config", f.name], check=False, timeout=60)
c.that(r.returncode == 3 and "port 'lan0': the driver refuses the rte_flow rule" in r.stderr and
       "10.99.1.50" in r.stderr and "workers.snat_steering: off" in r.stderr,
       f"workers.snat_steering: flow on af_packet: exit {r.returncode} (want 3), "
       f"{[ln for ln in r.stderr.splitlines() if 'rte_flow' in ln]}")
good = f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [10.99.0.1/24]}}
{h.workers_yaml()}
"""
e = h.Edged(dut, good)
with open(e.config_path, "w") as f:
    f.write(good.replace("addresses: [10.99.0.1/24]", "addresses: [10.99.0.1/24], colour: blue"))
r = e.post("/reload")
c.that(r.stdout.strip().endswith("409") and "unknown key 'colour'" in r.stdout, "a bad reload is refused with the reason: " + r.stdout.strip().replace("\n", " "))
c.that(cli.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.99.0.1"], check=False).returncode == 0,
       "the running configuration keeps serving after the refused reload")
with open(e.config_path, "w") as f:
    f.write(good.replace("addresses: [10.99.0.1/24]", "addresses: [10.99.0.1/24, 10.99.0.7/24]"))
r = e.edgectl("reload")
c.that(r.returncode == 0 and "generation 2" in r.stdout, "edgectl reload applies a good change: " + r.stdout.strip())
c.that(cli.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.99.0.7"], check=False).returncode == 0,
       "the address added by the reload answers pings")
m = e.metrics()
c.that(m.get('edge_config_reloads_total{outcome="refused"}') == 1 and m.get('edge_config_reloads_total{outcome="ok"}') == 1,
       "/metrics counts one refused and one applied reload")
# A restart-only key is not reported as applied: the reply and the log name it.
with open(e.config_path, "w") as f:
    f.write(good.replace("addresses: [10.99.0.1/24]", "addresses: [10.99.0.1/24, 10.99.0.7/24]")
            + "admin:\n  listen: 127.0.0.1:9181\nlogging:\n  level: debug\n")
r = e.post("/reload")
c.that(r.stdout.strip().endswith("409") and "admin.listen" in r.stdout and "logging.level" in r.stdout
       and "restart" in r.stdout, "a reload changing admin.listen and logging.level is refused and names them: "
       + r.stdout.strip().replace("\n", " "))
c.that(any("admin.listen" in ln and "restart" in ln for ln in e.logs().splitlines()), "the log names the restart-only keys")
m = e.metrics()
c.that(m.get('edge_config_reloads_total{outcome="refused"}') == 2 and m.get('edge_config_generation') == 2,
       "it is counted as refused and the generation stays 2")
c.that(e.stop() == 0, "edged stops cleanly")

# --- the HTTPS + WAF example, as shipped -----------------------------------------------------------
t2 = h.tag("cfgs")
topo = h.TcpTopology(t2, net="10.99")
with open(os.path.join(topo.www, "index.html"), "w") as f:
    f.write("hello https\n")
topo.start_nginx("listen 80 proxy_protocol;")
ex_dir = os.path.abspath(os.path.join(root, "deploy", "examples"))
subprocess.run(["sh", os.path.join(ex_dir, "certs", "make-certs.sh")], check=True)  # as its README says
with open(os.path.join(ex_dir, "https-waf.yaml")) as f:
    ex = f.read()
audit = os.path.join(topo.work, "audit.log")
ex = re.sub(r"args: \[.*\]", "args: " + h.yaml_list(h.eal_args(t2)), ex, count=1)
ex = (ex.replace("iface=edge0", "iface=dut0").replace("../../rules/shipped", os.path.join(root, "rules", "shipped"))
      .replace("certs/", ex_dir + "/certs/").replace("/tmp/edge-https-audit.log", audit))
e = h.Edged(topo.dut, ex)


def wait_backend(up, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if e.metrics().get('edge_backend_up{pool="web",backend="10.99.1.12:80"}') == up:
            return True
        time.sleep(0.2)
    return False


# The second backend's address appears only now: the checks take it out, then bring it back.
c.that(wait_backend(0), "the backend without an address is marked down")
topo.be.run(["ip", "addr", "add", "10.99.1.12/24", "dev", "eth0"])
c.that(wait_backend(1), "it is marked up once it answers")
logs = e.logs()
c.that(re.search(r"\bwarning backend 10\.99\.1\.12:80 of pool web is down \(", logs) is not None
       and re.search(r"\binfo backend 10\.99\.1\.12:80 of pool web is up", logs) is not None,
       "backend down is logged at warning with the reason, up at info: "
       + " | ".join(ln for ln in logs.splitlines() if "10.99.1.12:80 of pool" in ln))
resolve = ["--resolve", f"www.example.test:443:{topo.vip}", "--cacert", os.path.join(ex_dir, "certs", "example.crt")]
r = topo.cli.run(["curl", "-s", "--max-time", "10"] + resolve + ["https://www.example.test/"], check=False)
c.that(r.returncode == 0 and r.stdout == "hello https\n", f"the HTTPS example serves through the WAF: {r.returncode} {r.stdout!r}")
r = topo.cli.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"] + resolve +
                 ["https://www.example.test/?id=1%27%20union%20select%20password%20from%20users--"], check=False)
c.that(r.stdout == "403", f"a SQL injection gets 403 ({r.stdout})")
lines = []
for _ in range(50):
    if os.path.exists(audit):
        with open(audit) as f:
            lines = [json.loads(x) for x in f if x.strip()]
    if lines:
        break
    time.sleep(0.1)
c.that(any(x.get("rule_id", 0) > 0 and x.get("message", "").startswith("SQL") for x in lines),
       f"the audit line carries the rule's message: {[(x.get('rule_id'), x.get('message')) for x in lines][:3]}")
m = e.metrics()
exp = m.get('edge_tls_certificate_expiry_seconds{service="www",name="www.example.test"}')
c.that(exp is not None and 0 < exp <= 3650 * 86400, f"edge_tls_certificate_expiry_seconds for www.example.test: {exp}")
st = json.loads(e.edgectl("stats").stdout)
c.that(st.get("tls", {}).get("handshakes_full_total", 0) >= 2, f"edgectl stats has the TLS counters: {str(st.get('tls'))[:120]}")
c.that(st.get("waf", {}).get("reloads_total{outcome=\"ok\"}", 0) >= 1 or len(st.get("waf", {})) > 5,
       f"edgectl stats has the WAF counters: {len(st.get('waf', {}))} series")
www = st.get("services", {}).get("www", {})
c.that(www.get("service_connections_opened_total", 0) >= 2 and www.get("waf_service_blocked_total", 0) >= 1,
       f"edgectl stats has the per-service counters of www: {str(www)[:200]}")
c.that(e.stop() == 0, "the HTTPS example stops cleanly")
c.done(e)
