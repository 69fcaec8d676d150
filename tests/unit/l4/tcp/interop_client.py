#!/usr/bin/env python3
"""Linux TCP client for interop.sh: sends N random bytes to host:port, half-closes, reads the echo
back, and checks it byte for byte. Runs `conns` connections one after another."""
import hashlib, os, socket, sys, time

host, port, size, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ok = 0
t0 = time.time()
for i in range(conns):
    data = os.urandom(size)
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = bytearray()
    sent = 0
    s.setblocking(False)
    import select
    while True:
        w = [s] if sent < size else []
        r, wr, _ = select.select([s], w, [], 30)
        if not r and not wr:
            print(f"conn {i}: stalled at sent={sent} got={len(got)}"); sys.exit(1)
        if wr:
            sent += s.send(data[sent:sent + 65536])
            if sent == size:
                s.shutdown(socket.SHUT_WR)
        if r:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    s.close()
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        print(f"conn {i}: MISMATCH sent {size} got {len(got)}"); sys.exit(1)
    ok += 1
dt = time.time() - t0
print(f"ok {ok}/{conns} connections, {size} bytes each way, {dt:.2f}s, {2 * size * conns / dt / 1e6:.1f} MB/s")
