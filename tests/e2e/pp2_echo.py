#!/usr/bin/python3
"""A backend for e2e tests that reads the PROXY protocol v2 header edged sends, decodes its
addresses and TLVs (authority, ALPN, unique id, CRC32C, SSL with version / CN / cipher), then answers
each HTTP/1.x request on the connection with that as a JSON body. usage: pp2_echo.py PORT"""
import json
import socket
import struct
import sys
import threading

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def parse_tlvs(data):
    out = {}
    i = 0
    while i + 3 <= len(data):
        t, ln = data[i], struct.unpack("!H", data[i + 1:i + 3])[0]
        v = data[i + 3:i + 3 + ln]
        i += 3 + ln
        if t == 0x01:
            out["alpn"] = v.decode()
        elif t == 0x02:
            out["authority"] = v.decode()
        elif t == 0x03:
            out["crc32c"] = v.hex()
        elif t == 0x05:
            out["unique_id"] = v.hex()
        elif t == 0x20:
            out["ssl_client"] = v[0]
            out["ssl_verify"] = struct.unpack("!I", v[1:5])[0]
            sub = parse_tlvs(v[5:])
            out.update({"ssl_" + k: x for k, x in sub.items()})
        elif t == 0x21:
            out["version"] = v.decode()
        elif t == 0x22:
            out["cn"] = v.decode()
        elif t == 0x23:
            out["cipher"] = v.decode()
    return out


def serve(conn):
    try:
        head = recv_exact(conn, 16)
        if head[:12] != SIG:
            conn.close()
            return
        fam, ln = head[13], struct.unpack("!H", head[14:16])[0]
        body = recv_exact(conn, ln)
        info = {}
        if fam == 0x11:
            info["src"] = socket.inet_ntoa(body[0:4]) + ":" + str(struct.unpack("!H", body[8:10])[0])
            info["dst"] = socket.inet_ntoa(body[4:8]) + ":" + str(struct.unpack("!H", body[10:12])[0])
            info.update(parse_tlvs(body[12:]))
        elif fam == 0x21:
            info["src"] = socket.inet_ntop(socket.AF_INET6, body[0:16]) + ":" + str(struct.unpack("!H", body[32:34])[0])
            info.update(parse_tlvs(body[36:]))
        f = conn.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                break
            length = 0
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            if length:
                f.read(length)
            payload = (json.dumps(info) + "\n").encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                         str(len(payload)).encode() + b"\r\n\r\n" + payload)
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(sys.argv[1])))
    srv.listen(512)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
