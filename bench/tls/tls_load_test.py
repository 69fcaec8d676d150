#!/usr/bin/python3
"""Checks the peer bench's load client (tls_load) against `openssl s_server` on loopback: it
completes full ECDSA and RSA handshakes with the certificate type it asked for, resumes with
tickets, reads bulk bodies, and counts a server that cannot serve the asked-for type as errors.
Usage: tls_load_test.py TLS_LOAD   (meson test --suite bench)"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

TLS_LOAD = sys.argv[1]
GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "certs", "gen.sh")
work = tempfile.mkdtemp(prefix="edge-tls-load-test-")
certs = os.path.join(work, "certs")
subprocess.run(["sh", GEN, certs], check=True, capture_output=True)
with open(os.path.join(work, "big"), "wb") as f:
    f.write(os.urandom(1 << 20))
failures = []
servers = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def s_server(*certargs):
    """openssl s_server on a free loopback port with the given certificates; returns the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", "-tls1_3", "-WWW",
                          *certargs], cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    servers.append(p)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("s_server did not start")


def load(port, *args):
    r = subprocess.run([TLS_LOAD, "--connect", f"127.0.0.1:{port}", "--secs", "1", "--conns", "4",
                        "--path", "/big", *args], capture_output=True, text=True, timeout=30)
    m = re.search(r"^tls_load (.*)$", r.stdout, re.M)
    out = dict(kv.split("=", 1) for kv in m.group(1).split()) if m else {}
    out = {k: (int(v) if v.isdigit() else v) for k, v in out.items()}
    out["rc"] = r.returncode
    print(f"     {' '.join(args)}: rc {r.returncode} {r.stdout.strip()} {r.stderr.strip()}")
    return out


try:
    c = lambda n: os.path.join(certs, n)  # noqa: E731
    both = s_server("-cert", c("ecdsa.pem"), "-key", c("ecdsa.key"), "-dcert", c("rsa.pem"), "-dkey", c("rsa.key"))
    for sig in ("ecdsa", "rsa"):
        r = load(both, "--mode", "full", "--sig", sig)
        check(r["rc"] == 0 and r["errors"] == 0, f"full {sig}: no errors")
        check(r["handshakes"] > 0 and r["requests"] == r["handshakes"] == r["connections"],
              f"full {sig}: every connection completed a handshake and a response")
        check(r["resumed"] == 0, f"full {sig}: no handshake resumed")
        check(r["bytes"] >= r["requests"] << 20, f"full {sig}: each response carried the 1 MiB file")
    r = load(both, "--mode", "full", "--rate", "50")
    check(r["rc"] == 0 and r["errors"] == 0 and 40 <= r["handshakes"] <= 60,
          "--rate 50 for 1 s opens about 50 connections")
    r = load(both, "--mode", "resume")
    check(r["rc"] == 0 and r["errors"] == 0, "resume: no errors")
    check(r["handshakes"] > 1 and r["resumed"] == r["handshakes"] - 1 and r["not_resumed"] == 0,
          "resume: every handshake after the priming one resumed")
    r = load(both, "--mode", "bulk")
    check(r["rc"] == 0 and r["errors"] == 0 and r["bytes"] >= 4 << 20, "bulk: several MiB read, no errors")

    ecdsa_only = s_server("-cert", c("ecdsa.pem"), "-key", c("ecdsa.key"))
    r = load(ecdsa_only, "--mode", "full", "--sig", "rsa")
    check(r["rc"] == 1 and r["requests"] == 0 and r.get("err_handshake", 0) > 0,
          "a server without an RSA certificate fails every RSA handshake, counted as err_handshake")
    r = load(ecdsa_only, "--mode", "bogus")
    check(r["rc"] == 2, "a bad --mode is a usage error")
finally:
    for p in servers:
        p.kill()
        p.wait()
print(f"tls_load_test: {'FAILED' if failures else 'passed'} ({len(failures)} failures)")
sys.exit(1 if failures else 0)
