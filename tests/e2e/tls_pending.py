#!/usr/bin/python3
"""Many TLS handshakes at once beside one bulk download, for the async offload e2e check.

usage: tls_pending.py VIP CA N BULK_PORT BULK_PATH HS_PORT HS_SNI

A download (TLS, VIP:BULK_PORT, GET BULK_PATH) runs with paced reads; once it is moving, N
ClientHellos (generated in memory first, so that they leave back to back) go out on N new
connections to VIP:HS_PORT with SNI HS_SNI, and every handshake is then completed. Prints one JSON
line: handshakes completed, how long the burst took, the download's bytes and its longest pause
between two reads while the burst was being served."""
import json
import select
import socket
import ssl
import sys
import os
import time

vip, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
bulk_port, bulk_path, hs_port, hs_sni = int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7]

ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3

def bulk():
    s = ctx.wrap_socket(socket.create_connection((vip, bulk_port), timeout=30), server_hostname="example.test")
    s.sendall(f"GET {bulk_path} HTTP/1.0\r\nHost: example.test\r\n\r\n".encode())
    reads = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        reads.append((time.monotonic(), len(b)))
        if len(reads) == 20:
            os.write(ready_w, b"r")
        time.sleep(0.002)  # paced: the download lasts through the burst
    s.close()
    return reads


# The download runs in its own process (CLOCK_MONOTONIC is shared), so that the burst below does not
# hold it up on the interpreter lock.
ready_r, ready_w = os.pipe()
res_r, res_w = os.pipe()
child = os.fork()
if child == 0:
    os.write(res_w, json.dumps(bulk()).encode())
    os._exit(0)
os.read(ready_r, 1)

# N handshakes as memory-BIO state machines: ClientHellos first, then all sockets at once.
conns = []
for _ in range(n):
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=hs_sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    conns.append([obj, inc, out, out.read(), None, False])
socks = []
for cn in conns:
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((vip, hs_port))
    socks.append(s)
    cn[4] = s
t_burst = time.monotonic()
pending = {cn[4].fileno(): cn for cn in conns}
unsent = {cn[4].fileno(): cn[3] for cn in conns}
deadline = t_burst + 30
done = 0
while pending and time.monotonic() < deadline:
    _, w, _ = select.select([], list(unsent), [], 0) if unsent else ([], [], [])
    for fd in w:
        cn = pending.get(fd)
        try:
            k = cn[4].send(unsent[fd])
            unsent[fd] = unsent[fd][k:]
            if not unsent[fd]:
                del unsent[fd]
                if cn[5]:  # the client Finished went out: this handshake is complete
                    done += 1
                    del pending[fd]
        except BlockingIOError:
            pass
        except OSError:
            del unsent[fd]
    r, _, _ = select.select(list(pending), [], [], 0.05)
    for fd in r:
        cn = pending[fd]
        obj, inc, out, _, s, _ = cn
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            del pending[fd]
            unsent.pop(fd, None)
            continue
        inc.write(data)
        try:
            obj.do_handshake()
            cn[5] = True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            del pending[fd]
            continue
        reply = out.read()
        if reply:
            unsent[fd] = unsent.get(fd, b"") + reply
        if cn[5] and fd not in unsent:
            done += 1
            del pending[fd]
t_end = time.monotonic()
for s in socks:
    s.close()
os.close(res_w)
raw = b""
while True:
    chunk = os.read(res_r, 1 << 20)
    if not chunk:
        break
    raw += chunk
os.waitpid(child, 0)
reads = json.loads(raw) if raw else []
window = [t for t, _ in reads if t_burst <= t <= t_end]
times = [t_burst] + window + [t_end]
gap = max(b - a for a, b in zip(times, times[1:]))
print(json.dumps({"handshakes": done, "burst_s": round(t_end - t_burst, 3), "bulk_bytes": sum(b for _, b in reads),
                  "reads_during_burst": len(window), "max_gap_s": round(gap, 3)}), flush=True)
