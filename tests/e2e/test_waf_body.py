#!/usr/bin/python3
"""Request bodies and WebSocket through a WAF'd `tls` service (issue 14), real clients and nginx:
  - curl -F uploads a file whose bytes hold NULs, binary and attack-looking text (SQL, <script>)
    next to ordinary fields: it reaches nginx (the file's content is never an argument);
  - an SQL injection in a multipart field, and one in a JSON value, get 403; the audit log names
    the field (the multipart name, the JSON path json.user.name) and nginx never sees them;
  - a JSON body that does not parse gets 400, counted as edge_waf_body_errors_total;
  - a WebSocket upgrade through the same service works: the client gets 101 from the backend (a
    Python echo server behind nginx), and text frames go back and forth through the tunnel.
One worker (the harness's edged_head); nothing here depends on the worker count."""
import json
import os
import subprocess
import time

import harness as h

t = h.tag("wafb")
c = h.Check("test_waf_body")
topo = h.TcpTopology(t, net="10.95")
cli, dut, be = topo.cli, topo.dut, topo.be
VIP = topo.vip
here = os.path.dirname(os.path.abspath(__file__))
work = topo.work
certs = os.path.join(work, "certs")
subprocess.run(["sh", os.path.join(here, "..", "certs", "gen.sh"), certs], check=True, capture_output=True)
rules_dir = os.path.join(work, "rules")
subprocess.run(["cp", "-r", os.path.join(here, "..", "..", "rules", "shipped"), rules_dir], check=True)
audit_log = os.path.join(work, "audit.log")

# A WebSocket echo server (RFC 6455, stdlib only) on the backend's loopback, behind nginx.
ws_server = os.path.join(work, "ws_echo.py")
with open(ws_server, "w") as f:
    f.write(r'''
import base64, hashlib, socket, socketserver, struct, sys
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def recv_exact(s, n):
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x: raise EOFError
        b += x
    return b
class H(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            x = s.recv(4096)
            if not x: return
            head += x
        key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
        acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        try:
            while True:
                b0, b1 = recv_exact(s, 2)
                n = b1 & 0x7f
                if n == 126: n = struct.unpack("!H", recv_exact(s, 2))[0]
                mask = recv_exact(s, 4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(x ^ mask[i % 4] for i, x in enumerate(recv_exact(s, n)))
                if b0 & 0x0f == 8:
                    s.sendall(b"\x88\x00"); return
                out = b"echo:" + data
                s.sendall(bytes([0x81, len(out)]) + out)
        except EOFError:
            pass
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')
ws_proc = be.popen(["/usr/bin/python3", ws_server, "9001"], start_new_session=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
h._cleanups.append(lambda: h.stop_group(ws_proc))

topo.start_nginx(f"""
    listen 80 proxy_protocol;
    client_max_body_size 8m;
    # nginx reads the whole body before it passes a request on (proxy_request_buffering), as an
    # application would: its answer cannot overtake the WAF's verdict on the body.
    location = /upload {{ proxy_pass http://127.0.0.1:8081/ok/upload; }}
    location = /api {{ proxy_pass http://127.0.0.1:8081/ok/api; }}
    location = /ws {{
      proxy_pass http://127.0.0.1:9001;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
    }}
  }}
  server {{
    listen 127.0.0.1:8081;
    client_max_body_size 8m;
    access_log {work}/ok.log;
    location /ok/ {{ return 200 "ok\\n"; }}""")

config = f"""{topo.edged_head()}waf:
  rules_dir: {rules_dir}
  audit_log: {audit_log}
pools:
  - name: web
    backends: [{{address: {topo.backend}, port: 80}}]
services:
  - name: https
    vip: {VIP}
    port: 443
    kind: tls
    pool: web
    waf: {{policy: {{name: enforce, mode: enforce, anomaly_threshold: 5}}}}
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}
"""
e = h.Edged(dut, config)
BASE = "https://example.test"
CURL = ["curl", "-s", "-S", "--max-time", "20", "--cacert", f"{certs}/ca.pem",
        "--resolve", f"example.test:443:{VIP}", "-o", "/dev/null", "-w", "%{http_code}"]


def curl(*args):
    r = cli.run([*CURL, *args], check=False, timeout=40)
    return r.stdout.strip()


def audit(pred, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(audit_log):
            with open(audit_log) as f:
                lines = [json.loads(x) for x in f if x.strip()]
            hits = [x for x in lines if pred(x)]
            if hits:
                return hits
        time.sleep(0.1)
    return []


# --- a real multipart upload with hostile-looking file content passes ---------------------------
upload = os.path.join(work, "upload.bin")
with open(upload, "wb") as f:
    f.write(os.urandom(100_000) + b"\0\0' OR 1=1 -- union select password from users <script>alert(1)</script>"
            + os.urandom(50_000) + b"\r\n--not-the-boundary\r\n" + bytes(range(256)))
code = curl("-F", "title=Holiday photos", "-F", "note=see you soon", "-F", f"file=@{upload};type=image/png",
            f"{BASE}/upload")
c.that(code == "200", f"curl -F upload of 150 KB with attack-looking binary file content passes: {code}")
code = curl("-F", "a=1", "-F", f"f1=@{upload}", "-F", f"f2=@{upload};filename=copy.bin", f"{BASE}/upload")
c.that(code == "200", f"two files and a field in one upload pass: {code}")

# --- SQL injection in a multipart field and in a JSON value: 403 ----------------------------------
code = curl("-F", "title=x", "-F", "comment=1' OR 1=1 --", "-F", f"file=@{upload}", f"{BASE}/upload")
c.that(code == "403", f"SQLi in a multipart field (next to a file) is blocked: {code}")
hits = audit(lambda x: x.get("verdict") == "block" and x.get("field") == "comment")
c.that(bool(hits), f"the audit log names the multipart field 'comment': {hits[:1]}")
code = curl("-H", "Content-Type: application/json", "--data-binary",
            '{"user":{"name":"bob\' OR 1=1 --","tags":["a","b"]}}', f"{BASE}/api")
c.that(code == "403", f"SQLi in a JSON value is blocked: {code}")
hits = audit(lambda x: x.get("verdict") == "block" and x.get("field") == "json.user.name")
c.that(bool(hits), f"the audit log names the JSON path json.user.name: {hits[:1]}")
code = curl("-H", "Content-Type: application/json", "--data-binary", '{"user":{"name":"bob","tags":["a","b"]}}',
            f"{BASE}/api")
c.that(code == "200", f"the same JSON without the injection passes: {code}")
code = curl("-H", "Content-Type: application/json", "--data-binary", '{"user": oops}', f"{BASE}/api")
c.that(code == "400", f"a JSON body that does not parse gets 400: {code}")
m = e.metrics()
c.that(m.get('edge_waf_body_errors_total{reason="json_syntax"}', 0) >= 1,
       "edge_waf_body_errors_total{reason=json_syntax} counts it")
c.that(m.get("edge_waf_body_multipart_total", 0) >= 3 and m.get("edge_waf_body_json_total", 0) >= 3,
       f"bodies counted by processor: multipart {m.get('edge_waf_body_multipart_total')}, "
       f"json {m.get('edge_waf_body_json_total')}")
ok_log = open(os.path.join(work, "ok.log")).read()
c.that(ok_log.count("POST /ok/upload") == 2 and ok_log.count("POST /ok/api") == 1,
       f"only the two clean uploads and the clean JSON reached the application: {ok_log.count('POST')} requests")

# --- WebSocket through the WAF'd tls service -------------------------------------------------------
ws_client = os.path.join(work, "ws_client.py")
with open(ws_client, "w") as f:
    f.write(r'''
import base64, os, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.create_connection((sys.argv[1], 443), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="example.test")
key = base64.b64encode(os.urandom(16))
s.sendall(b"GET /ws HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    x = s.recv(4096)
    if not x: break
    head += x
status = head.split(b"\r\n", 1)[0].decode(errors="replace")
rest = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
got = []
for msg in (b"hello", b"GET / HTTP/1.1 is not a request here", b"' OR 1=1 -- in a frame"):
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
    while len(rest) < 2 or len(rest) < 2 + rest[1]:
        x = s.recv(4096)
        if not x: break
        rest += x
    n = rest[1] if len(rest) > 1 else 0
    got.append(rest[2:2 + n].decode(errors="replace"))
    rest = rest[2 + n:]
print(status)
for g in got: print(g)
''')
r = cli.run(["/usr/bin/python3", ws_client, VIP, f"{certs}/ca.pem"], check=False, timeout=30)
out = r.stdout.splitlines()
c.that(out[:1] == ["HTTP/1.1 101 Switching Protocols"], f"the WebSocket upgrade gets 101 through the WAF: {out[:1]} {r.stderr[-300:]}")
c.that(out[1:] == ["echo:hello", "echo:GET / HTTP/1.1 is not a request here", "echo:' OR 1=1 -- in a frame"],
       f"frames go both ways through the tunnel (passed, not parsed as HTTP): {out[1:]}")
m = e.metrics()
c.that(m.get("edge_waf_upgrades_total", 0) == 1, f"edge_waf_upgrades_total 1: {m.get('edge_waf_upgrades_total')}")
# A refused upgrade (nginx answers 404 for another path) keeps the connection HTTP: an attack sent
# after it on the same connection is still inspected.
probe = os.path.join(work, "ws_refused.py")
with open(probe, "w") as f:
    f.write(r'''
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection((sys.argv[1], 443), timeout=10), server_hostname="example.test")
s.sendall(b"GET /nows HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
          b"GET /api?q=1%27%20union%20select%20password%20from%20users HTTP/1.1\r\nHost: example.test\r\n\r\n")
data = b""
try:
    while True:
        x = s.recv(65536)
        if not x: break
        data += x
except Exception:
    pass
print(" ".join(l.split(b" ")[1].decode() for l in data.split(b"\r\n") if l.startswith(b"HTTP/1.1 ")))
''')
r = cli.run(["/usr/bin/python3", probe, VIP, f"{certs}/ca.pem"], check=False, timeout=30)
c.that(r.stdout.strip() == "404 403",
       f"after a refused upgrade (404) the next request on the connection is inspected (403): {r.stdout.strip()!r}")
c.that(e.metrics().get("edge_waf_upgrades_refused_total", 0) == 1, "edge_waf_upgrades_refused_total 1")

c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
