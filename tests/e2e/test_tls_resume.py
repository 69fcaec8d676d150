#!/usr/bin/python3
"""Session resumption is scoped to the service and client-auth policy that issued the session
(issue 10, defect 2), and SNI that is not a host name is refused (defect 7). Three tls services on
one edged share one ticket key file, as a fleet would: `open` (no client auth), `mtls` (client
certificate required, client CA) and `other` (required, another CA). With openssl s_client
-sess_out / -sess_in, over TLS 1.3 and 1.2: a ticket from `open` does not resume on `mtls`, whose
handshake then fails without a certificate; a session verified by `other`'s CA does not resume on
`mtls` (so its CN never reaches the upstream); tickets still resume on the service that issued
them, with the CN in PROXY v2. An SNI with CR LF gets an unrecognized_name alert, counted."""
import json
import os
import re
import shutil
import subprocess

import harness as h

t = h.tag("tlsres")
c = h.Check("test_tls_resume")
topo = h.TcpTopology(t, net="10.96")
cli, dut, be = topo.cli, topo.dut, topo.be
VIP = topo.vip
here = os.path.dirname(os.path.abspath(__file__))
work = topo.work
certs = os.path.join(work, "certs")
subprocess.run(["sh", os.path.join(here, "..", "certs", "gen.sh"), certs], check=True, capture_output=True)
ticket_key = os.path.join(work, "tickets.key")
shutil.copy(os.path.join(certs, "ticket1.key"), ticket_key)
os.chmod(ticket_key, 0o600)
echo = be.popen(["/usr/bin/python3", os.path.join(here, "pp2_echo.py"), "9000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
h._cleanups.append(echo.kill)


def service(name, port, client_auth=""):
    return f"""  - name: {name}
    vip: {VIP}
    port: {port}
    kind: tls
    pool: echo
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}
      ticket_key_file: {ticket_key}
{client_auth}"""


mtls_auth = f"      client_auth: {{ca: {certs}/client-ca.pem, required: true}}\n"
other_auth = f"      client_auth: {{ca: {certs}/rogue-ca.pem, required: true}}\n"
config = f"""{topo.edged_head()}tls:
  async: true
  offload_threads: auto
pools:
  - name: echo
    connect_timeout_ms: 500
    backends: [{{address: {topo.backend}, port: 9000}}]
services:
""" + service("open", 443) + service("mtls", 9443, mtls_auth) + service("other", 9444, other_auth)
e = h.Edged(dut, config)

# Node resources (issue 12): each worker's state is built on the worker's own lcore (so on its NUMA
# socket), and `offload_threads: auto` starts one crypto thread per two workers, at least one, at
# most the CPUs that no worker is pinned to.
built = re.findall(r"worker (\d+) running on lcore (\d+) \(NUMA socket \d+; its state built on lcore (\d+)\)",
                   e.logs())
c.that(len(built) == h.WORKERS and all(lc == on for _, lc, on in built),
       f"every worker's state is built on its own lcore: {built}")
free = len(os.sched_getaffinity(0) - set(range(h.WORKERS)))  # edged inherits this CPU set
want = min((h.WORKERS + 1) // 2, free) if free else 1
c.that(e.metrics().get("edge_tls_offload_threads") == want,
       f"offload_threads: auto starts {want} crypto thread(s) for {h.WORKERS} worker(s) and {free} free CPU(s): "
       f"{e.metrics().get('edge_tls_offload_threads')}")


def metric(name, labels=""):
    return e.metrics().get(name + ("{" + labels + "}" if labels else ""), 0)


def s_client(port, *args, request=False):
    """openssl s_client; with `request`, one HTTP request whose answer (the upstream's view) comes
    back within the second before stdin closes (pp2_echo keeps the connection open)."""
    stdin = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1" if request else "printf 'Q\\n'"
    return cli.run(["sh", "-c", f"({stdin}) | openssl s_client -connect {VIP}:{port} -CAfile {certs}/ca.pem "
                    "-servername example.test " + " ".join(args) + " 2>&1"], check=False, timeout=20).stdout


def upstream_view(out):
    """The pp2_echo JSON (what the upstream learnt from PROXY v2), or {} when no data came back."""
    m = re.search(r"^\{.*\}$", out, re.M)
    return json.loads(m.group(0)) if m else {}


client_cert = f"-cert {certs}/client.pem -key {certs}/client.key"
rogue_cert = f"-cert {certs}/rogue-client.pem -key {certs}/rogue-client.key"

for ver in ("-tls1_3", "-tls1_2"):
    v = ver[1:]
    # Same service: the ticket resumes.
    sess = os.path.join(work, f"open-{v}.pem")
    out = s_client(443, ver, f"-sess_out {sess}", request=True)
    c.that(os.path.exists(sess) and "New, TLSv1." in out, f"{v}: a full handshake on `open` gives a ticket")
    out = s_client(443, ver, f"-sess_in {sess}", request=True)
    c.that("Reused, TLSv1." in out and upstream_view(out).get("authority") == "example.test",
           f"{v}: the ticket resumes on `open`, the service that issued it")

    # Across services: no resumption; the handshake of `mtls` demands a certificate and fails.
    rej0 = metric("edge_tls_errors_total", 'reason="client_cert_rejected"')
    res0 = metric("edge_tls_handshakes_resumed_total")
    out = s_client(9443, ver, f"-sess_in {sess}", request=True)
    c.that("Reused" not in out and not upstream_view(out) and re.search(r"alert|errno|error", out) is not None,
           f"{v}: the `open` ticket does not resume on `mtls` (client_auth.required), which refuses the "
           f"handshake without a certificate: {out.strip().splitlines()[-3:]}")
    c.that(metric("edge_tls_errors_total", 'reason="client_cert_rejected"') == rej0 + 1 and
           metric("edge_tls_handshakes_resumed_total") == res0,
           f"{v}: counted as client_cert_rejected, not as a resumption")

    # A session verified by another service's CA does not resume as verified on `mtls`.
    osess = os.path.join(work, f"other-{v}.pem")
    out = s_client(9444, ver, rogue_cert, f"-sess_out {osess}", request=True)
    c.that(upstream_view(out).get("ssl_cn") == "rogue", f"{v}: `other` accepts its own CA's client (CN=rogue)")
    out = s_client(9443, ver, rogue_cert, f"-sess_in {osess}", request=True)
    c.that("Reused" not in out and "rogue" not in json.dumps(upstream_view(out)),
           f"{v}: `other`'s session does not resume on `mtls`; CN=rogue never reaches its upstream: "
           f"{out.strip().splitlines()[-2:]}")

    # mTLS resumption on the same service still works, and carries the verified CN.
    msess = os.path.join(work, f"mtls-{v}.pem")
    s_client(9443, ver, client_cert, f"-sess_out {msess}", request=True)
    out = s_client(9443, ver, f"-sess_in {msess}", request=True)
    info = upstream_view(out)
    c.that("Reused, TLSv1." in out and info.get("ssl_cn") == "client1" and info.get("ssl_verify") == 0,
           f"{v}: an `mtls` ticket resumes on `mtls` with CN=client1 verified: {info}")

# SNI that is not a host name: refused with unrecognized_name, counted; nothing reaches the upstream.
bad0 = metric("edge_tls_errors_total", 'reason="bad_sni"')
out = cli.run(["sh", "-c", f"(printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | openssl s_client -connect {VIP}:443 "
               f"-servername \"$(printf 'example.test\\r\\nX-Injected: 1')\" 2>&1"], check=False, timeout=20).stdout
c.that("unrecognized name" in out and not upstream_view(out),
       f"an SNI with CR LF gets an unrecognized_name alert: {out.strip().splitlines()[-2:]}")
c.that(metric("edge_tls_errors_total", 'reason="bad_sni"') == bad0 + 1, "counted as errors{reason=bad_sni}")

c.that(e.stop() == 0, "edged stops cleanly")
c.done(e)
