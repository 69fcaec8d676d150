#!/usr/bin/python3
"""Slow clients and per-client fairness (issue 13), with real Linux clients and nginx behind edged:

- one client address opens 400 connections to a WAF'd HTTP service (half idle, half slowloris: one
  byte of a request head every 300 ms) while another client's curl keeps succeeding every time;
  services[].max_connections_per_source (100) refuses the rest (relay end source_limit), and
  the held ones end with a 408 within services[].timeouts.request_head_ms (2 s);
- that flood opens no upstream connection: edged's upstream `opened` grows by the curls only, and
  the backend holds no connection while the flood waits;
- on a keep-alive connection the wait between requests is not a head timeout, but a later request
  head dribbled a byte at a time is reset request_head_ms after its first byte;
- a connection kept alive by TCP keepalive probes alone (bare ACKs) is reset at tcp.idle_timeout_ms;
- a tcp service that does not parse HTTP resets a client that sends no first byte in time;
- a client that keeps a zero window on a download is reset at tcp.persist_timeout_ms
  (relay end client_zero_window).
Runs with one worker (the source limit and counters are shared by all workers anyway)."""
import json
import os
import shutil
import subprocess
import threading
import time

import harness as h

t = h.tag("slowcl")
c = h.Check("test_slow_clients")
NET = "10.93"
topo = h.TcpTopology(t, net=NET)
cli, dut, be = topo.cli, topo.dut, topo.be
VIP = topo.vip
ATTACKER = f"{NET}.0.3"
cli.run(["ip", "addr", "add", f"{ATTACKER}/24", "dev", "cli0"])

work, www = topo.work, topo.www
with open(os.path.join(www, "index.html"), "w") as f:
    f.write("hello\n")
with open(os.path.join(www, "big"), "wb") as f:
    f.write(os.urandom(8 << 20))
rules_dir = os.path.join(work, "rules")
shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "rules", "shipped"), rules_dir)
topo.start_nginx("listen 80 proxy_protocol;")
topo.start_echo(7000)

HEAD_MS, PER_SOURCE, IDLE_MS, PERSIST_MS, FIRST_BYTE_MS = 2000, 100, 3000, 1000, 1500
config = f"""{topo.edged_head()}tcp:
  max_connections: 1024
  idle_timeout_ms: {IDLE_MS}
  persist_timeout_ms: {PERSIST_MS}
  receive_buffer: 16384
  send_buffer: 16384
waf:
  rules_dir: {rules_dir}
pools:
  - name: gw
    connect_timeout_ms: 500
    backends:
      - {{address: {NET}.1.11, port: 80}}
  - name: echo
    proxy_protocol: false
    connect_timeout_ms: 500
    backends:
      - {{address: {NET}.1.11, port: 7000}}
services:
  - name: web
    vip: {VIP}
    port: 80
    kind: tcp
    pool: gw
    max_connections_per_source: {PER_SOURCE}
    timeouts: {{request_head_ms: {HEAD_MS}}}
    waf: {{policy: {{name: enforce, mode: enforce}}}}
  - {{name: echo, vip: {VIP}, port: 7000, kind: tcp, pool: echo, timeouts: {{request_head_ms: 0}}}}
  - {{name: first, vip: {VIP}, port: 7001, kind: tcp, pool: echo, timeouts: {{request_head_ms: {FIRST_BYTE_MS}}}}}
"""
e = h.Edged(dut, config)


def metric(name, labels=""):
    return e.metrics().get(f"{name}{{{labels}}}" if labels else name, 0)


def curl_ok():
    r = cli.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                 f"http://{VIP}/index.html"], check=False, timeout=15)
    return r.stdout.strip() == "200"


def backend_established():
    r = be.run(["ss", "-Htn", "state", "established", "( sport = :80 )"], check=False)
    return len([ln for ln in r.stdout.splitlines() if ln.strip()])


c.that(curl_ok(), "a clean GET passes through the WAF'd service")
opened0 = metric("edge_upstream_conns", 'counter="opened"')

# --- one address, 400 idle and slowloris connections ---------------------------------------------
# Opens every connection at once (non-blocking), then for `hold` seconds: slowloris ones send one
# byte of a request head every 300 ms; every socket is read until EOF or reset. Prints one JSON
# record per connection: kind, seconds from connect to its end, how it ended, the first bytes read.
ATTACK = r"""
import errno, json, selectors, socket, sys, time
src, dst, port, n, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
head = b'GET /index.html HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\nX-a: ' + b'b' * 200
sel = selectors.DefaultSelector()
conns = []
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
    s.bind((src, 0))
    s.setblocking(False)
    s.connect_ex((dst, port))
    c = {'kind': 'idle' if i % 2 == 0 else 'slow', 's': s, 'start': None, 'end': None, 'how': '',
         'got': b'', 'sent': 0}
    conns.append(c)
    sel.register(s, selectors.EVENT_WRITE, c)
t0 = time.time()
next_byte = t0
while time.time() - t0 < hold:
    now = time.time()
    if now >= next_byte:
        next_byte = now + 0.3
        for c in conns:
            if c['kind'] == 'slow' and c['start'] is not None and c['end'] is None and c['sent'] < len(head):
                try:
                    c['s'].send(head[c['sent']:c['sent'] + 1])
                    c['sent'] += 1
                except OSError:
                    pass
    for key, ev in sel.select(timeout=0.05):
        c = key.data
        if c['start'] is None:
            err = c['s'].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                c['start'] = c['end'] = time.time()
                c['how'] = 'connect:' + errno.errorcode.get(err, str(err))
                sel.unregister(c['s'])
                continue
            c['start'] = time.time()
            sel.modify(c['s'], selectors.EVENT_READ, c)
            continue
        try:
            b = c['s'].recv(4096)
        except ConnectionResetError:
            b = None
        except BlockingIOError:
            continue
        if b:
            c['got'] += b
            continue
        c['end'] = time.time()
        c['how'] = 'reset' if b is None else 'eof'
        sel.unregister(c['s'])
for c in conns:
    print(json.dumps({'kind': c['kind'], 'start': c['start'] and c['start'] - t0,
                      'life': None if c['end'] is None or c['start'] is None else round(c['end'] - c['start'], 3),
                      'how': c['how'], 'got': c['got'][:40].decode('latin1'), 'sent': c['sent']}))
"""
N = 400
attack = cli.popen(["/usr/bin/python3", "-c", ATTACK, ATTACKER, VIP, "80", str(N), "6"],
                   stdout=subprocess.PIPE, text=True)
h._cleanups.append(attack.kill)

# While the flood waits: the other client keeps getting answers, and the backend sees no flood.
good = tries = 0
est_samples = []
t_end = time.time() + 4
time.sleep(0.5)
while time.time() < t_end:
    tries += 1
    good += curl_ok()
    est_samples.append(backend_established())
    time.sleep(0.1)
c.that(tries >= 10 and good == tries, f"the other client's curl succeeds every time during the flood: {good}/{tries}")
c.that(max(est_samples) <= 1, f"the backend holds no connection of the flood (established on :80, sampled between "
       f"curls: {est_samples})")

out, _ = attack.communicate(timeout=60)
recs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
c.that(len(recs) == N, f"the attacker reports {N} connections: {len(recs)}")
ended = [r for r in recs if r["life"] is not None]
c.that(len(ended) == N, f"every flood connection ended within the test: {len(ended)}/{N} "
       f"(left: {[r for r in recs if r['life'] is None][:3]})")
held = [r for r in ended if r["life"] >= 1.0]
refused = [r for r in ended if r["life"] < 1.0]
c.that(len(held) == PER_SOURCE, f"{PER_SOURCE} connections held (max_connections_per_source), {len(refused)} refused: "
       f"{len(held)} held")
# The refusal is a RST right after the handshake: it may beat the client's connect() completion.
reset_how = ("reset", "connect:ECONNRESET")
c.that(all(r["how"] in reset_how and r["got"] == "" for r in refused),
       f"the refused ones were reset without a byte: {[r for r in refused if r['how'] not in reset_how or r['got']][:3]}")
lives = sorted(r["life"] for r in held)
c.that(bool(lives) and lives[0] >= HEAD_MS / 1000 - 0.2 and lives[-1] <= HEAD_MS / 1000 + 1.5,
       f"the held ones end {HEAD_MS} ms after their accept (+ scheduling): "
       f"{lives[:1] + lives[-1:] if lives else []} s")
c.that(all(r["got"].startswith("HTTP/1.1 408") for r in held),
       f"each held one got a 408 before its FIN: {[r['got'] for r in held if not r['got'].startswith('HTTP/1.1 408')][:3]}")
kinds = {k: sum(1 for r in held if r["kind"] == k) for k in ("idle", "slow")}
c.that(kinds["idle"] > 0 and kinds["slow"] > 0 and all(r["sent"] > 0 for r in held if r["kind"] == "slow"),
       f"idle and one-byte (slowloris) connections both timed out: {kinds}")
refused_n = N - PER_SOURCE
got = metric("edge_relay_ends_total", 'outcome="source_limit"')
c.that(got == refused_n, f"relay end source_limit counted {refused_n}: {got}")
c.that(metric("edge_service_connections_refused_total", 'service="web",reason="source_limit"') == refused_n,
       "per service: refused with reason source_limit")
got = metric("edge_relay_ends_total", 'outcome="request_head_timeout"')
c.that(got == PER_SOURCE, f"relay end request_head_timeout counted {PER_SOURCE}: {got}")
opened = metric("edge_upstream_conns", 'counter="opened"') - opened0
c.that(opened == good, f"upstream connections opened during the flood = the curls that passed ({good}): {opened}")
c.that(metric("edge_service_connections_per_source_limit", 'service="web"') == PER_SOURCE
       and metric("edge_source_table_untracked_total") == 0,
       "the per-source limit is exported, and no connection went untracked")
c.that(curl_ok(), "after the flood, a GET passes")

# --- a keep-alive connection: idle between requests is fine, a later head has HEAD_MS too ----------
# Two requests with a pause longer than HEAD_MS (under IDLE_MS) between them both pass; then a third
# head is dribbled one byte every 300 ms (which keeps the idle timer fresh): reset HEAD_MS after its
# first byte, counted as request_head_timeout.
LATER_HEAD = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=5)
req = b'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n'
def ask():
    s.sendall(req)
    got = b''
    while not got.endswith(b'hello\n'):
        b = s.recv(4096)
        if not b:
            break
        got += b
    return got.startswith(b'HTTP/1.1 200')
ok1 = ask()
time.sleep(float(sys.argv[2]))
ok2 = ask()
head = b'GET /index.html HTTP/1.1\r\nHost: x\r\nX-a: ' + b'b' * 100
s.setblocking(False)
t0 = time.time()
how, i = 'alive', 0
while time.time() - t0 < 8 and how == 'alive':
    if i < len(head):
        s.send(head[i:i + 1])
        i += 1
    time.sleep(0.3)
    try:
        b = s.recv(100)
        how = 'eof' if not b else 'data'
    except BlockingIOError:
        pass
    except ConnectionResetError:
        how = 'reset'
print(ok1, ok2, how, round(time.time() - t0, 2))
"""
heads0 = metric("edge_relay_ends_total", 'outcome="request_head_timeout"')
r = cli.run(["/usr/bin/python3", "-c", LATER_HEAD, VIP, str(HEAD_MS / 1000 + 0.5)], check=False, timeout=30)
ok1, ok2, how, secs = (r.stdout.strip().split() + ["", "", "", "0"])[:4]
c.that(ok1 == "True" and ok2 == "True",
       f"two keep-alive requests {HEAD_MS / 1000 + 0.5} s apart both pass (the wait between requests is not a "
       f"head timeout): {r.stdout.strip()} {r.stderr.strip()[-200:]}")
c.that(how == "reset" and HEAD_MS / 1000 - 0.2 <= float(secs) <= HEAD_MS / 1000 + 1.0,
       f"a later head dribbled one byte at a time is reset {HEAD_MS} ms after its first byte: {r.stdout.strip()}")
c.that(metric("edge_relay_ends_total", 'outcome="request_head_timeout"') == heads0 + 1,
       "counted as relay end request_head_timeout")

# --- bare ACKs (TCP keepalive) do not keep a connection alive ---------------------------------
KEEPALIVE = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
s.sendall(b'x\n')
assert s.recv(10) == b'x\n'
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 30)
t0 = time.time()
s.settimeout(12)
try:
    b = s.recv(10)
    how = 'eof' if not b else 'data'
except ConnectionResetError:
    how = 'reset'
except socket.timeout:
    how = 'alive'
print(how, round(time.time() - t0, 2))
"""
resets0 = metric("edge_tcp_resets_sent_total", 'reason="idle_timeout"')
r = cli.run(["/usr/bin/python3", "-c", KEEPALIVE, VIP], check=False, timeout=30)
how, _, secs = r.stdout.strip().partition(" ")
c.that(how == "reset" and IDLE_MS / 1000 - 0.5 <= float(secs or 0) <= IDLE_MS / 1000 + 1.5,
       f"a connection kept up by keepalive probes alone is reset at tcp.idle_timeout_ms ({IDLE_MS} ms): "
       f"{r.stdout.strip()} {r.stderr.strip()[-200:]}")
c.that(metric("edge_tcp_resets_sent_total", 'reason="idle_timeout"') == resets0 + 1, "counted as an idle_timeout reset")

# --- a service that does not parse HTTP: a first-byte timeout ------------------------------------
FIRST = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7001), timeout=5)
t0 = time.time()
s.settimeout(10)
try:
    how = 'eof' if not s.recv(10) else 'data'
except ConnectionResetError:
    how = 'reset'
except socket.timeout:
    how = 'alive'
print(how, round(time.time() - t0, 2))
"""
heads0 = metric("edge_relay_ends_total", 'outcome="request_head_timeout"')
r = cli.run(["/usr/bin/python3", "-c", FIRST, VIP], check=False, timeout=30)
how, _, secs = r.stdout.strip().partition(" ")
c.that(how == "reset" and FIRST_BYTE_MS / 1000 - 0.2 <= float(secs or 0) <= FIRST_BYTE_MS / 1000 + 1.0,
       f"a raw tcp client that sends nothing is reset at timeouts.request_head_ms ({FIRST_BYTE_MS} ms): {r.stdout.strip()}")
c.that(metric("edge_relay_ends_total", 'outcome="request_head_timeout"') == heads0 + 1,
       "counted as relay end request_head_timeout")

# --- a zero window held on a download: the persist bound -----------------------------------------
ZERO = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((sys.argv[1], 80))
s.sendall(b'GET /big HTTP/1.1\r\nHost: x\r\n\r\n')
time.sleep(6)  # never read: the receive buffer fills and the window stays at zero
s.settimeout(5)
got, how = 0, 'alive'
try:
    while True:
        b = s.recv(65536)
        if not b:
            how = 'eof'
            break
        got += len(b)
except ConnectionResetError:
    how = 'reset'
except socket.timeout:
    pass
print(how, got)
"""
zw0 = metric("edge_relay_ends_total", 'outcome="client_zero_window"')
r = cli.run(["/usr/bin/python3", "-c", ZERO, VIP], check=False, timeout=30)
how, _, got = r.stdout.strip().partition(" ")
c.that(how == "reset" and 0 < int(got or 0) < (8 << 20),
       f"a client that keeps a zero window is reset (after the bytes it had buffered): {r.stdout.strip()}")
c.that(metric("edge_relay_ends_total", 'outcome="client_zero_window"') == zw0 + 1,
       "counted as relay end client_zero_window")
c.that(metric("edge_tcp_resets_sent_total", 'reason="persist_timeout"') == 1, "counted as a persist_timeout reset")
c.that(curl_ok(), "a GET still passes at the end")

c.done(e)
