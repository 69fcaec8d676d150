#!/usr/bin/python3
"""Service kind tls: client -> edged (userspace TCP + TLS on a DPDK af_packet port) -> nginx with
PROXY v2, and a PROXY v2 echo backend that shows the TLVs edged sends (SNI, ALPN, SSL version,
cipher, client certificate CN). Checks, with curl and openssl s_client: SNI picks the certificate
(exact, wildcard, default), an RSA-only client gets the RSA certificate, ALPN, resumption with a
ticket after the ticket key file rotated (reload), mTLS required (no certificate: refused and counted;
with one: the backend sees its subject), a worker keeps a bulk transfer moving while 200 handshakes
wait in the offload, garbage and malformed ClientHellos get an alert and a close (counted), a
handshake that never finishes is reset, the WAF blocks an attack over HTTPS, and testssl.sh finds
no old protocol, weak cipher or vulnerability."""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import harness as h

t = h.tag("tls")
c = h.Check("test_tls")
topo = h.TcpTopology(t, net="10.97")
cli, dut, be = topo.cli, topo.dut, topo.be

VIP = topo.vip
here = os.path.dirname(os.path.abspath(__file__))
work, www = topo.work, topo.www
certs = os.path.join(work, "certs")
subprocess.run(["sh", os.path.join(here, "..", "certs", "gen.sh"), certs], check=True, capture_output=True)
with open(os.path.join(www, "index.html"), "w") as f:
    f.write("hello over tls\n")
big = os.path.join(www, "big")
with open(big, "wb") as f:
    f.write(os.urandom(32 << 20))
with open(big, "rb") as f:
    big_sha = hashlib.sha256(f.read()).hexdigest()

topo.start_nginx("""
    listen 80 proxy_protocol backlog=4096;
    location = /search { return 200 "search ok\\n"; }""",
                 http="log_format pp '$proxy_protocol_addr $remote_addr \"$request\" $status $body_bytes_sent';",
                 connections=4096, access_log=f"{work}/access.log pp")
echo = be.popen(["/usr/bin/python3", os.path.join(here, "pp2_echo.py"), "9000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
h._cleanups.append(echo.kill)

rules_dir = os.path.join(work, "rules")
shutil.copytree(os.path.join(here, "..", "..", "rules", "shipped"), rules_dir)
# An RSA-4096 certificate: its signatures are slow enough (several ms) that 200 handshakes really
# queue up in the offload.
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-keyout", f"{certs}/rsa4k.key",
                "-out", f"{certs}/rsa4k.pem", "-days", "30", "-subj", "/CN=slow.test",
                "-addext", "subjectAltName=DNS:slow.test"], check=True, capture_output=True)
ticket_key = os.path.join(work, "tickets.key")
shutil.copy(os.path.join(certs, "ticket1.key"), ticket_key)


def config_text():
    return f"""{topo.edged_head()}tcp:
  max_connections: 2048
  syn_backlog: 1024
tls:
  async: true
  offload_threads: 1
  handshake_timeout_ms: 8000
waf:
  rules_dir: {rules_dir}
pools:
  - name: web
    connect_timeout_ms: 500
    backends: [{{address: 10.97.1.11, port: 80}}]
  - name: echo
    connect_timeout_ms: 500
    protocol: any  # its services offer h2 (the echo backend answers whatever comes)
    backends: [{{address: 10.97.1.11, port: 9000}}]
services:
  - name: https
    vip: {VIP}
    port: 443
    kind: tls
    pool: web
    waf: {{policy: {{name: enforce, mode: enforce, anomaly_threshold: 5}}}}
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key, ocsp: {certs}/ecdsa.ocsp}}
        - {{cert: {certs}/rsa.pem, key: {certs}/rsa.key}}
        - {{cert: {certs}/wild.pem, key: {certs}/wild.key}}
        - {{cert: {certs}/default.pem, key: {certs}/default.key}}
      default_name: default.test
      ticket_key_file: {ticket_key}
  - name: echo
    vip: {VIP}
    port: 8443
    kind: tls
    pool: echo
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}
        - {{cert: {certs}/rsaonly.pem, key: {certs}/rsaonly.key}}
        - {{cert: {certs}/rsa4k.pem, key: {certs}/rsa4k.key}}
      alpn: [h2, http/1.1]
  - name: mtls
    vip: {VIP}
    port: 9443
    kind: tls
    pool: echo
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}
      client_auth: {{ca: {certs}/client-ca.pem, required: true}}
"""


e = h.Edged(dut, config_text())


def metric(name, labels=""):
    key = name + ("{" + labels + "}" if labels else "")
    return e.metrics().get(key, 0)


def curl(url, *extra, timeout=30):
    host = url.split("/")[2].split(":")[0]
    port = url.split("/")[2].split(":")[1] if ":" in url.split("/")[2] else "443"
    return cli.run(["curl", "-s", "-S", "--max-time", str(timeout - 5), "--cacert", f"{certs}/ca.pem",
                    "--resolve", f"{host}:{port}:{VIP}", *extra, url], check=False, timeout=timeout)


def s_client(port, *args, stdin="Q\n", timeout=20):
    return cli.run(["sh", "-c", f"printf '{stdin}' | openssl s_client -connect {VIP}:{port} -CAfile {certs}/ca.pem "
                    + " ".join(args) + " 2>&1"], check=False, timeout=timeout)


def subject_cn(out):
    m = re.search(r"subject=.*?CN\s*=\s*([^,\n/]+)", out)
    return m.group(1).strip() if m else None


# A page over HTTPS, and the client address nginx learnt from PROXY v2.
r = curl("https://example.test/")
c.that(r.returncode == 0 and r.stdout == "hello over tls\n", f"GET https://example.test/ through the tls VIP: rc={r.returncode} {r.stdout!r} {r.stderr.strip()}")
with open(os.path.join(work, "access.log")) as f:
    log = f.read()
c.that(log.startswith("10.97.0.2 "), f"nginx logs the real client address from PROXY v2: {log.strip()}")

# SNI selects the certificate: exact name, wildcard, and the default without SNI or for unknown names.
for sni, want in (("www.example.test", "example.test"), ("a.wild.test", "*.wild.test"),
                  (None, "default.test"), ("unknown.test", "default.test")):
    out = s_client(443, *(["-servername", sni] if sni else ["-noservername"])).stdout
    c.that(subject_cn(out) == want, f"SNI {sni}: certificate CN {subject_cn(out)} (want {want})")

# ECDSA by default; a client that only signs with RSA gets the RSA certificate of the same name.
out = s_client(443, "-servername example.test").stdout
c.that("Server public key is 256 bit" in out, "an ECDSA-capable client gets the P-256 certificate")
out = s_client(443, "-servername example.test", "-sigalgs RSA-PSS+SHA256:RSA+SHA256").stdout
c.that("Server public key is 2048 bit" in out and subject_cn(out) == "example.test",
       "an RSA-only client gets the RSA-2048 certificate of example.test")

# ALPN, and what the upstream learns from the PROXY v2 TLVs.
out = s_client(8443, "-servername example.test", "-alpn h2,http/1.1").stdout
c.that("ALPN protocol: h2" in out, "ALPN h2 negotiated when the service offers it and the client too")
out = s_client(443, "-servername example.test", "-alpn h2,http/1.1").stdout
c.that("ALPN protocol: http/1.1" in out, "a service with a WAF policy offers http/1.1 only (the WAF parses HTTP/1.x)")
r = curl("https://example.test:8443/", "--http1.1")
info = json.loads(r.stdout) if r.returncode == 0 and r.stdout.startswith("{") else {}
c.that(info.get("authority") == "example.test" and info.get("alpn") == "http/1.1" and
       info.get("ssl_version") == "TLSv1.3" and info.get("ssl_cipher", "").startswith("TLS_") and
       info.get("src", "").startswith("10.97.0.2:") and info.get("dst") == f"{VIP}:8443" and
       info.get("ssl_client") == 1 and "unique_id" in info and "crc32c" in info,
       f"the upstream's PROXY v2 header carries SNI, ALPN, SSL version and cipher: {info} {r.stderr.strip()}")
out = s_client(8443, "-servername example.test", "-tls1_2").stdout
c.that("Protocol  : TLSv1.2" in out and "ECDHE-ECDSA" in out, "TLS 1.2 with an ECDHE-ECDSA AEAD suite")
for old in ("-tls1_1", "-tls1"):
    out = s_client(8443, "-servername example.test", old).stdout
    c.that("Cipher is (NONE)" in out or "alert" in out or "no protocols available" in out,
           f"{old} refused: {out.strip().splitlines()[-1:]}")
# OCSP stapling.
out = s_client(443, "-servername example.test", "-status").stdout
c.that("OCSP Response Status: successful" in out, "OCSP response stapled for example.test")

# Resumption with a ticket, after the ticket key file rotated (key 2 encrypts, key 1 still decrypts).
sess = os.path.join(work, "sess.pem")
r0 = s_client(443, "-servername example.test", "-ign_eof", f"-sess_out {sess}", stdin="GET / HTTP/1.0\\r\\n\\r\\n")
c.that("hello over tls" in r0.stdout and os.path.exists(sess), "a first connection gets a ticket (s_client -sess_out)")
with open(ticket_key, "wb") as f, open(os.path.join(certs, "ticket21.key"), "rb") as g:
    f.write(g.read())
rr = e.post("/reload")
c.that(rr.stdout.strip().endswith("200"), f"reload with the rotated ticket key file: {rr.stdout.strip()}")
out = s_client(443, "-servername example.test", f"-sess_in {sess}").stdout
c.that("Reused, TLSv1.3" in out, "a ticket issued before the rotation still resumes after it")
c.that(metric("edge_tls_handshakes_resumed_total") >= 1, f"resumed handshakes counted: {metric('edge_tls_handshakes_resumed_total')}")

# mTLS required: no certificate is refused (and counted); a trusted one reaches the upstream, which
# sees the subject's CN in the PROXY v2 SSL TLV.
rej0 = metric("edge_tls_errors_total", 'reason="client_cert_rejected"')
r = curl("https://example.test:9443/")
c.that(r.returncode != 0, f"mTLS without a client certificate is refused: rc={r.returncode} {r.stderr.strip()}")
r = curl("https://example.test:9443/", "--cert", f"{certs}/rogue-client.pem", "--key", f"{certs}/rogue-client.key")
c.that(r.returncode != 0, f"mTLS with an untrusted client certificate is refused: rc={r.returncode}")
c.that(metric("edge_tls_errors_total", 'reason="client_cert_rejected"') >= rej0 + 2,
       f"refusals counted as client_cert_rejected: {metric('edge_tls_errors_total', 'reason=' + chr(34) + 'client_cert_rejected' + chr(34))}")
r = curl("https://example.test:9443/", "--http1.1", "--cert", f"{certs}/client.pem", "--key", f"{certs}/client.key")
info = json.loads(r.stdout) if r.returncode == 0 and r.stdout.startswith("{") else {}
c.that(info.get("ssl_cn") == "client1" and info.get("ssl_client", 0) & 3 == 3 and info.get("ssl_verify") == 0,
       f"with a trusted certificate the upstream sees CN=client1, verified: {info} {r.stderr.strip()}")

# The WAF on a tls service: an attack over HTTPS gets 403, a clean request passes.
r = curl("https://example.test/search?q=1%27%20union%20select%20password%20from%20users", "-o", "/dev/null",
         "-w", "%{http_code}")
c.that(r.stdout == "403", f"SQL injection over HTTPS blocked with 403: {r.stdout} {r.stderr.strip()}")
r = curl("https://example.test/search?q=shoes", "-w", " %{http_code}")
c.that(r.stdout == "search ok\n 200", f"a clean request over HTTPS passes: {r.stdout!r}")

# Bulk: 32 MiB byte-exact.
t0 = time.time()
r = cli.run(["sh", "-c", f"curl -s -S --max-time 100 --cacert {certs}/ca.pem --resolve example.test:443:{VIP} "
             f"https://example.test/big | sha256sum"], check=False, timeout=120)
dt = time.time() - t0
c.that(r.stdout.split()[:1] == [big_sha], f"GET 32 MiB over TLS byte-exact in {dt:.2f}s ({32 * 8 / dt:.0f} Mbit/s)")

# 200 handshakes pending in the offload (RSA-4096 signatures, one crypto thread) while a paced bulk
# download on an established connection keeps moving: the worker does not sign. (With tls.async off
# the same load stalls the download for the whole signing time, 2.7 s here.)
peak = [0.0]
sampling = threading.Event()


def sample_pending():
    while not sampling.is_set():
        peak[0] = max(peak[0], e.metrics().get("edge_tls_async_pending", 0))
        time.sleep(0.01)


cpu0 = metric("edge_tls_offload_cpu_nanoseconds_total")
sampler = threading.Thread(target=sample_pending)
sampler.start()
with open(f"{certs}/both.pem", "w") as f:
    f.write(open(f"{certs}/ca.pem").read() + open(f"{certs}/rsa4k.pem").read())
r = cli.run(["/usr/bin/python3", os.path.join(here, "tls_pending.py"), VIP, f"{certs}/both.pem", "200", "443", "/big",
             "8443", "slow.test"], check=False, timeout=200)
sampling.set()
sampler.join()
res = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else {}
sign_s = (metric("edge_tls_offload_cpu_nanoseconds_total") - cpu0) / 1e9
c.that(res.get("handshakes") == 200, f"200 concurrent RSA-4096 handshakes completed: {res} {r.stderr.strip()[-300:]}")
c.that(peak[0] >= 100, f"up to {peak[0]:.0f} handshakes were pending in the offload at once (>= 100 sampled)")
c.that(res.get("reads_during_burst", 0) > 0 and res.get("max_gap_s", 99) < 0.5,
       f"the bulk download kept moving while they were served: {res.get('reads_during_burst')} reads in "
       f"{res.get('burst_s')}s, longest pause {res.get('max_gap_s')}s, offload CPU {sign_s:.3f}s")
c.that(res.get("bulk_bytes", 0) >= 32 << 20, f"and it completed: {res.get('bulk_bytes')} bytes")

# Garbage, a malformed ClientHello and a truncated one: an alert, then the connection closes.
fail0 = metric("edge_relay_ends_total", 'outcome="tls_handshake_failed"')
probe = f"""
import socket, sys
cases = {{
    'garbage': b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n',
    'bad_version': bytes([22, 3, 1, 0, 8, 1, 0, 0, 4, 0x7f, 0x7f, 0, 0]),
    'short_hello': bytes([22, 3, 1, 0, 11, 1, 0, 0, 7, 3, 3]) + bytes(5),
}}
for name, payload in cases.items():
    s = socket.create_connection(('{VIP}', 443), timeout=5)
    s.sendall(payload)
    data = b''
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        end = 'fin'
    except ConnectionResetError:
        end = 'rst'
    except socket.timeout:
        end = 'timeout'
    print(name, data[:1].hex(), end)
"""
out = cli.run(["/usr/bin/python3", "-c", probe], check=False, timeout=60).stdout
for line in out.strip().splitlines():
    name, first, end = (line.split() + ["", "", ""])[:3]
    c.that(first == "15" and end == "fin", f"{name}: answered with an alert record (0x15) and a FIN: {line}")
c.that(metric("edge_relay_ends_total", 'outcome="tls_handshake_failed"') >= fail0 + 3,
       "each counted as tls_handshake_failed")
alerts = {k: v for k, v in e.metrics().items() if k.startswith("edge_tls_alerts_sent_total")}
c.that(len(alerts) > 0, f"alerts sent, by description: {alerts}")

# A handshake that never completes (TCP only, then silence) is reset after tls.handshake_timeout_ms.
to0 = metric("edge_relay_ends_total", 'outcome="tls_handshake_timeout"')
out = cli.run(["/usr/bin/python3", "-c", f"""
import socket, time
s = socket.create_connection(('{VIP}', 443), timeout=20)
t0 = time.time()
try:
    print('data', s.recv(10), round(time.time() - t0, 1))
except ConnectionResetError:
    print('rst', round(time.time() - t0, 1))
"""], check=False, timeout=30).stdout.split()
c.that(out[:1] == ["rst"] and 7.5 <= float(out[-1]) <= 11.0,
       f"a silent client is reset after the 8 s handshake timeout: {out}")
c.that(metric("edge_relay_ends_total", 'outcome="tls_handshake_timeout"') == to0 + 1, "counted as tls_handshake_timeout")

# Certificate hot swap: new key and certificate files under the same names, reload; a download that
# started before keeps its connection, new connections get the new certificate.
certs2 = os.path.join(work, "certs2")
subprocess.run(["sh", os.path.join(here, "..", "certs", "gen.sh"), certs2], check=True, capture_output=True)
old_fp = subprocess.run(["openssl", "x509", "-in", f"{certs}/ecdsa.pem", "-noout", "-fingerprint", "-sha256"],
                        capture_output=True, text=True).stdout.strip()
dl = cli.popen(["sh", "-c", f"curl -s -S --limit-rate 8M --max-time 60 --cacert {certs}/ca.pem "
                f"--resolve example.test:443:{VIP} https://example.test/big | sha256sum"],
               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(1)
shutil.copy(f"{certs2}/ecdsa.pem", f"{certs}/ecdsa.pem")
shutil.copy(f"{certs2}/ecdsa.key", f"{certs}/ecdsa.key")
shutil.copy(f"{certs2}/ca.pem", f"{certs}/ca2.pem")
rr = e.post("/reload")
out = s_client(443, "-servername example.test", "-showcerts").stdout
new_fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=out, capture_output=True,
                        text=True).stdout.strip()
c.that(rr.stdout.strip().endswith("200") and new_fp and new_fp != old_fp,
       f"after a reload new connections get the new certificate: {new_fp[-20:]} (was {old_fp[-20:]})")
got, err = dl.communicate(timeout=90)
c.that(got.split()[:1] == [big_sha], f"the download that started before the swap completed byte-exact {err.strip()}")

# testssl.sh against the VIP: no SSLv2/3, TLS 1.0/1.1, no weak cipher class, no vulnerability finding.
tj = os.path.join(work, "testssl.json")
t0 = time.time()
ts = cli.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--jsonfile", tj, "--ip", VIP,
              "-p", "-s", "-U", "example.test:8443"], check=False, timeout=600)
findings = json.load(open(tj)) if os.path.exists(tj) else []
by_id = {f["id"]: f for f in findings}
print(f"testssl.sh: {len(findings)} findings in {time.time() - t0:.0f}s")
for pid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
    c.that(by_id.get(pid, {}).get("finding", "").startswith("not offered"), f"testssl {pid}: {by_id.get(pid, {}).get('finding')}")
for pid in ("TLS1_2", "TLS1_3"):
    c.that(by_id.get(pid, {}).get("finding", "").startswith("offered"), f"testssl {pid}: {by_id.get(pid, {}).get('finding')}")
for pid in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA",
            "cipherlist_AVERAGE"):
    f = by_id.get(pid, {})
    c.that(f.get("finding", "").startswith("not offered"), f"testssl {pid}: {f.get('finding')}")
bad = [f for f in findings if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]
c.that(len(findings) > 30 and not bad, f"testssl reports no MEDIUM/HIGH/CRITICAL finding: {[(f['id'], f['finding']) for f in bad]}")

m = e.metrics()
print("metrics: " + ", ".join(f"{k}={v:.0f}" for k, v in m.items() if k.startswith(("edge_tls_", "edge_relay_ends")) and v))
c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
