#!/usr/bin/python3
"""Connection limits of service kind tcp: a real client opens more connections than a service's
max_connections; the extra ones are reset and counted (relay end service_limit, per service in
/metrics) while the held ones keep relaying. The limit follows a reload (up, then below what is
held: nothing leaks, a released connection frees a place), and tcp.max_active_per_worker refuses
with worker_limit. Backend: a plain echo server (the pool turns the PROXY header off).
One worker, whatever EDGE_E2E_WORKERS says: tcp.max_active_per_worker is a limit per worker, and its
assertions count connections on the worker that takes them (limits across workers are checked by the
limits suite)."""
import os
import subprocess
import time

import harness as h

t = h.tag("tcplim")
c = h.Check("test_tcp_limits")
topo = h.TcpTopology(t, net="10.97")
cli, dut, be = topo.cli, topo.dut, topo.be
VIP = topo.vip
echo = topo.start_echo(7000)


def config(web_limit, max_active=""):
    return f"""{topo.edged_head(workers=1)}tcp:
  max_connections: 256
  {max_active}
pools:
  - name: echo
    proxy_protocol: false
    connect_timeout_ms: 500
    backends:
      - {{address: 10.97.1.11, port: 7000}}
services:
  - {{name: web, vip: {VIP}, port: 7000, kind: tcp, pool: echo, max_connections: {web_limit}}}
  - {{name: other, vip: {VIP}, port: 7001, kind: tcp, pool: echo}}
"""


e = h.Edged(dut, config(3))


def reload(text):
    with open(e.config_path, "w") as f:
        f.write(text)
    r = e.post("/reload")
    return r.stdout.strip().endswith("200"), " ".join(r.stdout.split())


# A client that holds connections and takes commands on stdin:
#   open PORT N -> "ok"/"reset"/"error:..." per new connection (sends a line, expects its echo)
#   check       -> how many held connections still echo
#   close N     -> closes N held connections (cleanly)
client = cli.popen(["/usr/bin/python3", "-u", "-c", f"""
import socket, sys
held = []
def probe(s, i):
    s.sendall(b'ping %d\\n' % i)
    got = b''
    while not got.endswith(b'\\n'):
        b = s.recv(100)
        if not b:
            raise EOFError('closed')
        got += b
    return got == b'ping %d\\n' % i
n = 0
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == 'open':
        out = []
        for _ in range(int(cmd[2])):
            n += 1
            s = None
            try:
                # The refusal comes right after the handshake: the RST may beat connect()'s return.
                s = socket.create_connection(('{VIP}', int(cmd[1])), timeout=5)
                out.append('ok' if probe(s, n) else 'wrong')
                held.append(s)
            except ConnectionResetError:
                out.append('reset')
                s and s.close()
            except (OSError, EOFError) as e:
                out.append('error:' + type(e).__name__)
                s and s.close()
        print(' '.join(out))
    elif cmd[0] == 'check':
        good = 0
        for s in held:
            n += 1
            try:
                good += probe(s, n)
            except (OSError, EOFError):
                pass
        print(good)
    elif cmd[0] == 'close':
        for _ in range(int(cmd[1])):
            held.pop().close()
        print(len(held))
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
h._cleanups.append(client.kill)


def ask(cmd):
    client.stdin.write(cmd + "\n")
    client.stdin.flush()
    return client.stdout.readline().strip()


def metric(name, labels):
    return e.metrics().get(f"{name}{{{labels}}}", -1)


def wait_active(service, want, timeout=5):
    deadline = time.time() + timeout
    while metric("edge_service_connections_active", f'service="{service}"') != want and time.time() < deadline:
        time.sleep(0.1)
    return metric("edge_service_connections_active", f'service="{service}"')


SVC = 'service="web"'
REFUSED = 'service="web",reason="service_limit"'

# --- the limit: 3 held, 2 more reset and counted -------------------------------------------------
got = ask("open 7000 3")
c.that(got == "ok ok ok", f"3 connections under max_connections 3 echo through edged: {got}")
got = ask("open 7000 2")
c.that(got == "reset reset", f"the 4th and 5th connections are reset: {got}")
c.that(ask("check") == "3", "the 3 held connections still echo")
c.that(metric("edge_service_connections_refused_total", REFUSED) == 2,
       f"refused per service, reason service_limit: {metric('edge_service_connections_refused_total', REFUSED)}")
c.that(metric("edge_relay_ends_total", 'outcome="service_limit"') == 2, "relay end service_limit counted twice")
c.that(wait_active("web", 3) == 3, "edge_service_connections_active{service=web} is 3")
c.that(metric("edge_service_connections_opened_total", SVC) == 3, "3 connections opened")
c.that(metric("edge_service_connections_limit", SVC) == 3, "the limit is exported")
got = ask("open 7001 2")
c.that(got == "ok ok", f"another service on the same worker is not limited by web's limit: {got}")
ask("close 2")  # the two of 'other' (last opened)

# --- the limit follows a reload: up to 5 ---------------------------------------------------------
ok, out = reload(config(5))
c.that(ok, f"reload to max_connections 5: {out}")
got = ask("open 7000 3")
c.that(got == "ok ok reset", f"after the reload, 2 more connections fit and the 6th is reset: {got}")
c.that(ask("check") == "5", "the 5 held connections echo (3 opened before the reload)")

# --- down to 2 with 5 held: nothing new until the count is below it --------------------------
ok, out = reload(config(2))
c.that(ok, f"reload to max_connections 2: {out}")
got = ask("open 7000 1")
c.that(got == "reset", f"5 held over a limit of 2: a new connection is reset: {got}")
c.that(ask("close 3") == "2", "3 connections closed by the client")
c.that(wait_active("web", 2) == 2, "connections opened under the old snapshot released against the same count")
got = ask("open 7000 1")
c.that(got == "reset", f"2 held, limit 2: still reset: {got}")
ask("close 1")
c.that(wait_active("web", 1) == 1, "1 held")
got = ask("open 7000 1")
c.that(got == "ok", f"1 held, limit 2: a new connection is accepted: {got}")
refused = metric("edge_service_connections_refused_total", REFUSED)
c.that(refused == 5, f"5 refusals counted for web over the run: {refused}")

# --- the worker limit: tcp.max_active_per_worker ---------------------------------------------
ok, out = reload(config(100, "max_active_per_worker: 4"))
c.that(ok, f"reload with tcp.max_active_per_worker 4: {out}")
got = ask("open 7001 3")
c.that(got == "ok ok reset", f"2 held + 2 new reach the worker limit of 4, the next is reset: {got}")
c.that(metric("edge_service_connections_refused_total", 'service="other",reason="worker_limit"') == 1,
       "counted for service other with reason worker_limit")
c.that(metric("edge_relay_ends_total", 'outcome="worker_limit"') == 1, "relay end worker_limit counted")
c.that(ask("check") == "4", "the 4 held connections still echo")

c.that(ask("close 4") == "0", "all closed")
c.that(wait_active("web", 0) == 0 and wait_active("other", 0) == 0,
       "no connection count leaks: both services back to 0 active")
client.stdin.close()
client.wait(10)
c.that(e.stop() == 0, "edged exits cleanly")
c.done(e)
