#!/usr/bin/python3
"""edged --check accepts the shipped example and refuses a bad config with file:line and exit 2;
edged --config with a bad file exits 2 without starting; POST /reload with a bad file keeps the
running config serving and says why."""
import os
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

# A bad reload leaves the running configuration serving.
t = h.tag("cfg")
cli = h.Namespace(f"{t}c")
dut = h.Namespace(f"{t}d")
h.veth(cli, "cli0", dut, "dut0")
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
good = f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [10.99.0.1/24]}}
workers:
  lcores: [1]
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
c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
