#!/usr/bin/python3
"""TLS termination bench: edged (service kind `tls`) against HAProxy 2.6 (`mode tcp`, `bind … ssl crt`,
`send-proxy-v2`, nbthread 1) and nginx (stream module, `listen … ssl`, `proxy_protocol on`,
`ssl_preread` off, worker_processes 1), one server at a time, on the same namespaces, the same
certificates (tests/certs/gen.sh at run time: ECDSA P-256 and RSA-2048 for example.test), the same
nginx backend and the same load client (bench/tls/tls_load), next to `openssl speed` in the same run.

Topology:
  client ns  cli0 ──veth── dut0  server ns (edged owns dut0 via af_packet; VIP A 10.99.0.100)
             cli1 ──veth── hap0  server ns (kernel interface; HAProxy or nginx on VIP B 10.98.0.100)
                                 kern0 ──veth── eth0  backend ns (nginx 10.99.1.11:80 proxy_protocol)
Every veth has checksum offload, TSO, GSO and GRO off on both paths (the harness does it so that
af_packet frames carry complete checksums), so no server gets super-packets.

Phases, the same client parameters for every server (tls_load, TLS 1.3, X25519, AES-128-GCM):
  full-ecdsa  new session per connection, client offers ECDSA+SHA256 only   (--conns BENCH_CONNS)
  full-rsa    the same with RSA-PSS/PKCS#1 SHA-256 only                     (--conns BENCH_CONNS)
  resume      every connection offers the newest ticket (psk_dhe_ke)        (--conns BENCH_CONNS)
  bulk        keep-alive GETs of a BIG_MB MiB file                          (--conns BENCH_BULK_CONNS)
  ecdsa-paced full-ecdsa with new connections paced at BENCH_RATE/s (default 300), below every
              server's capacity here, so all see the same offered load (async on vs off, too)
Each handshake connection sends `GET / HTTP/1.1` with `Connection: close` and reads the response
to EOF, so the server completes the handshake, connects upstream (PROXY v2), relays both ways and
closes. CPU: utime+stime of the server (all threads; nginx: master + worker) from /proc/<pid>/stat
around each client run. edged polls (adaptive back-off), so its figure includes polling; its idle
CPU rate is printed too. edged runs twice: `tls.async: true` (private-key operations on one offload
thread, whose CPU is counted) and `false` (signatures on the worker), at equal client load.

Client ceiling: the same tls_load phases (not the paced one, whose offered rate is fixed) against
nginx serving the page and the file itself over TLS on the client namespace's loopback (no upstream,
no veth), pinned like the servers; a server whose handshakes/s (MB/s for bulk) reach 80 % of it or
more is marked limited by the client.

Crypto bound (openssl speed, one core, this run): full handshake = one signature + two X25519
operations (key generation and derivation, each about one scalar multiplication); resumed = two
X25519 operations; bulk = AES-128-GCM at 16 KiB records.

Env: EDGE_BUILD (build dir), BENCH_SECS (per phase, default 8), BENCH_CONNS (default 32),
BENCH_BULK_CONNS (default 4), BENCH_RATE (default 300), BENCH_ROUNDS (default 1: rounds over all
servers, each round starting with the next server; the figures are medians over the rounds),
BENCH_PIN (default 1: servers on CPU 1 like edged's worker lcore,
client and backend on CPU 0), BENCH_EDGED (default 1; 0 benches the peers only), BENCH_PROFILE
(default 0; 1 or a comma list of phases, e.g. full-ecdsa,bulk: an extra run of each per server
under `perf record`, printing where the server's CPU went), BENCH_SERVERS (default all: a comma
list of haproxy, nginx, edged-async, edged-sync)."""
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
import harness as h  # noqa: E402

_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
SECS = float(os.environ.get("BENCH_SECS", "8"))
CONNS = int(os.environ.get("BENCH_CONNS", "32"))
BULK_CONNS = int(os.environ.get("BENCH_BULK_CONNS", "4"))
PIN = os.environ.get("BENCH_PIN", "1") != "0"
WITH_EDGED = os.environ.get("BENCH_EDGED", "1") != "0"
PROFILE = {"0": [], "1": ["full-ecdsa"]}.get(os.environ.get("BENCH_PROFILE", "0"),
                                             os.environ.get("BENCH_PROFILE", "").split(","))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
RATE = int(os.environ.get("BENCH_RATE", "300"))
TICK = os.sysconf("SC_CLK_TCK")
VIP_A, VIP_B, BACKEND = "10.99.0.100", "10.98.0.100", "10.99.1.11"
BIG_MB = 10
TLS_LOAD = os.path.abspath(os.path.join(h.BUILD, "bench", "tls", "tls_load"))
GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "certs", "gen.sh")
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"
PHASES = [("full-ecdsa", ["--mode", "full", "--sig", "ecdsa"], CONNS, "/"),
          ("full-rsa", ["--mode", "full", "--sig", "rsa"], CONNS, "/"),
          ("resume", ["--mode", "resume", "--sig", "ecdsa"], CONNS, "/"),
          ("bulk", ["--mode", "bulk", "--sig", "ecdsa"], BULK_CONNS, "/big"),
          ("ecdsa-paced", ["--mode", "full", "--sig", "ecdsa", "--rate", str(RATE)], CONNS, "/")]

if set(PROFILE) - {p[0] for p in PHASES}:
    sys.exit(f"BENCH_PROFILE: unknown phase(s) {sorted(set(PROFILE) - {p[0] for p in PHASES})}; "
             f"phases are {[p[0] for p in PHASES]}")


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if PIN else []


def pids(pid):
    """`pid` and its child processes (nginx's worker)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid] + [c for k in f.read().split() for c in pids(int(k))]
    except FileNotFoundError:
        return []


def cpu_s(pid):
    """utime + stime of process `pid` (all its threads) and of its child processes that still run
    (nginx's worker), in seconds."""
    total = 0.0
    for p in pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except FileNotFoundError:
            pass
    return total


def openssl_speed():
    """Crypto ops per second on one core, measured now."""
    out = subprocess.run(["openssl", "speed", "-seconds", "3", "ecdsap256", "rsa2048", "ecdhx25519"],
                         capture_output=True, text=True, check=True).stdout
    out += subprocess.run(["openssl", "speed", "-seconds", "3", "-evp", "aes-128-gcm", "-bytes", "16384"],
                          capture_output=True, text=True, check=True).stdout
    ecdsa = float(re.search(r"ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)", out).group(1))
    rsa = float(re.search(r"^rsa 2048 bits\s+\S+s\s+\S+s\s+([\d.]+)", out, re.M).group(1))
    x25519 = float(re.search(r"ecdh \(X25519\)\s+\S+s\s+([\d.]+)", out).group(1))
    gcm = re.search(r"^AES-128-GCM\s+([\d.]+)k", out, re.M)
    return {"ecdsa_sign_per_s": ecdsa, "rsa_sign_per_s": rsa, "x25519_per_s": x25519,
            "gcm_bytes_per_s": float(gcm.group(1)) * 1000}


t = h.tag("btls")
cli, dut, be = h.Namespace(f"{t}c"), h.Namespace(f"{t}d"), h.Namespace(f"{t}b")
h.veth(cli, "cli0", dut, "dut0")      # edged's af_packet port
h.veth(cli, "cli1", dut, "hap0")      # the peers' kernel interface
h.veth(dut, "kern0", be, "eth0")      # every server's upstream leg
cli.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "cli0"])
cli.run(["ip", "addr", "add", "10.98.0.2/24", "dev", "cli1"])
dut.run(["ip", "addr", "add", f"{VIP_B}/24", "dev", "hap0"])
dut.run(["ip", "addr", "add", "10.99.1.2/24", "dev", "kern0"])
be.run(["ip", "addr", "add", f"{BACKEND}/24", "dev", "eth0"])
for ns in (cli, dut, be):
    ns.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
h.tune_for_load(cli, dut, be)

work = tempfile.mkdtemp(prefix="edge-bench-tls-")
certs = os.path.join(work, "certs")
subprocess.run(["sh", GEN, certs], check=True, capture_output=True)
for kind in ("ecdsa", "rsa"):  # HAProxy takes certificate and key in one PEM file
    with open(os.path.join(certs, f"{kind}-full.pem"), "w") as out:
        for part in (f"{kind}.pem", f"{kind}.key"):
            with open(os.path.join(certs, part)) as f:
                out.write(f.read())
www = os.path.join(work, "www")
os.makedirs(www)
with open(os.path.join(www, "index.html"), "w") as f:
    f.write("hello through edge\n")
with open(os.path.join(www, "big"), "wb") as f:
    f.write(os.urandom(BIG_MB << 20))
TEMP_PATHS = "".join(f"  {k}_temp_path {work};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def nginx_head(tag):
    """The start of an nginx config for one worker process, up to inside `http {`: its pid and error
    log named by `tag` under the work dir, no access log, temp paths in the work dir."""
    return f"""
daemon off;
user root;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {work}/{tag}.pid;
error_log {work}/{tag}-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off;
{TEMP_PATHS}"""

nconf = os.path.join(work, "backend.conf")
with open(nconf, "w") as f:
    f.write(f"""{nginx_head("backend")}
  sendfile on;
  server {{
    listen 80 proxy_protocol backlog=4096;
    root {www};
    keepalive_requests 1000000;
  }}
}}
""")
backend = be.popen(pin(0) + ["nginx", "-c", nconf, "-p", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True)
h._cleanups.append(lambda: h.stop_group(backend))


class Server:
    """A server under test: its process, the VIP it terminates, how to stop it and read its log."""

    def __init__(self, name, vip, proc, stop, logs, diag=None):
        self.name, self.vip, self.proc, self.pid, self.stop, self.logs = name, vip, proc, proc.pid, stop, logs
        self.diag = diag or (lambda: "")


def spawn(name, cmd, vip):
    """`cmd` in the server namespace (pinned to the worker core), output to a log file."""
    log_path = os.path.join(work, f"{name}.log")
    log = open(log_path, "w")
    # `ip netns exec` and taskset exec the command, so this is the server's own pid.
    proc = dut.popen(pin(1) + cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop():
        h.stop_group(proc)  # the server and its workers

    def logs():
        log.flush()
        with open(log_path) as f:
            return f.read()

    h._cleanups.append(stop)
    return Server(name, vip, proc, stop, logs)


def haproxy():
    conf = os.path.join(work, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""
global
  maxconn {min(20000, (_hard - 64) // 2)}
  nbthread 1
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend vip
  bind {VIP_B}:443 ssl crt {certs}/ecdsa-full.pem crt {certs}/rsa-full.pem alpn http/1.1 backlog 4096
  default_backend gw
backend gw
  server s1 {BACKEND}:80 send-proxy-v2
""")
    return spawn("haproxy", ["haproxy", "-db", "-f", conf], VIP_B)


def nginx_stream():
    conf = os.path.join(work, "nginx-stream.conf")
    with open(conf, "w") as f:
        f.write(f"""
load_module {NGINX_STREAM};
daemon off;
user root;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {work}/nginx-stream.pid;
error_log {work}/nginx-stream-error.log;
events {{ worker_connections 16384; }}
stream {{
  upstream gw {{ server {BACKEND}:80; }}
  server {{
    listen {VIP_B}:443 ssl backlog=4096;
    ssl_protocols TLSv1.3;
    ssl_certificate {certs}/ecdsa.pem;
    ssl_certificate_key {certs}/ecdsa.key;
    ssl_certificate {certs}/rsa.pem;
    ssl_certificate_key {certs}/rsa.key;
    ssl_alpn http/1.1;
    proxy_pass gw;
    proxy_protocol on;
  }}
}}
""")
    return spawn("nginx", ["nginx", "-c", conf, "-p", work], VIP_B)


def edged(async_on):
    config = f"""
eal:
  args: {h.yaml_list(h.eal_args(t + ("a" if async_on else "s")))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0,framecnt=4096", addresses: [10.99.0.1/24]}}
workers:
  lcores: [1]
tcp:
  max_connections: 8192
  syn_backlog: 1024
  idle_timeout_ms: 60000
tls:
  async: {"true" if async_on else "false"}
  offload_threads: 1
pools:
  - name: gw
    connect_timeout_ms: 1000
    health_check: {{type: tcp, interval_ms: 1000, timeout_ms: 500, rise: 1, fall: 3}}
    backends:
      - {{address: {BACKEND}, port: 80}}
services:
  - name: web-tls
    vip: {VIP_A}
    port: 443
    kind: tls
    pool: gw
    tls:
      certificates:
        - {{cert: {certs}/ecdsa.pem, key: {certs}/ecdsa.key}}
        - {{cert: {certs}/rsa.pem, key: {certs}/rsa.key}}
      alpn: [http/1.1]
      tls13_tickets: 2
"""
    # OpenSSL servers (HAProxy, nginx) send two TLS 1.3 tickets per handshake; edged is told to as well.
    e = h.Edged(dut, config)
    return Server(f"edged-{'async' if async_on else 'sync'}", VIP_A, e.proc, e.stop, e.logs, lambda: edged_diag(e))


def edged_diag(e):
    """edged's counters that say where connections went (printed after a phase with client errors)."""
    try:
        m = e.metrics()
    except subprocess.SubprocessError as err:
        return f"no /metrics: {err}"
    keys = ("edge_drops_total", "edge_port_rx_missed", "edge_port_rx_nombuf", "edge_port_tx_dropped", "edge_relay",
            "edge_tcp_active", "edge_tcp_refused", "edge_tcp_handshake_timeouts", "edge_tcp_rto", "edge_tcp_retransmits",
            "edge_tcp_resets_sent", "edge_tls_errors", "edge_tls_alerts", "edge_tls_sessions_active",
            "edge_tls_async_pending", "edge_tls_offload_in_flight", "edge_upstream", "edge_worker_busy_loops",
            "edge_worker_idle_loops")
    return ", ".join(f"{k}={v:.0f}" for k, v in sorted(m.items()) if k.startswith(keys) and v)


def sanity(s):
    """One HTTPS request through the server, once the upstream is up (edged's health check)."""
    deadline, last = time.time() + 20, ""
    while time.time() < deadline:
        if s.proc.poll() is not None:
            break
        r = cli.run(["curl", "-sk", "--max-time", "3", "--resolve", f"example.test:443:{s.vip}",
                     "https://example.test/"], check=False, timeout=10)
        if r.stdout == "hello through edge\n":
            return True
        last = f"{r.returncode} {r.stdout!r} {r.stderr.strip()}"
        time.sleep(0.5)
    print(f"{s.name}: sanity request failed: {last}\n---- log ----\n{s.logs()}", file=sys.stderr)
    return False


def load(vip, args, conns, path, port=443):
    cmd = pin(0) + [TLS_LOAD, "--connect", f"{vip}:{port}", "--conns", str(conns), "--secs", str(SECS),
                    "--path", path] + args
    r = cli.run(cmd, check=False, timeout=SECS + 60)
    m = re.search(r"^tls_load .*$", r.stdout, re.M)
    if not m:
        raise RuntimeError(f"tls_load failed ({r.returncode}): {r.stdout}{r.stderr}")
    out = {k: (float(v) if re.fullmatch(r"[\d.]+", v) else v)
           for k, v in (kv.split("=", 1) for kv in m.group(0).split()[1:])}
    out["stderr"] = r.stderr.strip()
    return out


def run_phases(s, rnd):
    if not sanity(s):
        return False
    idle0, w0 = cpu_s(s.pid), time.time()
    time.sleep(2)
    idle.setdefault(s.name, []).append((cpu_s(s.pid) - idle0) / (time.time() - w0))
    for phase, args, conns, path in PHASES:
        c0 = cpu_s(s.pid)
        r = load(s.vip, args, conns, path)
        r["cpu"] = cpu_s(s.pid) - c0
        res.setdefault((phase, s.name), []).append(r)
        errs = " ".join(f"{k}={int(v)}" for k, v in r.items() if k.startswith("err_"))
        print(f"  r{rnd} {s.name:12} {phase:11} {int(r['handshakes']):6d} hs ({int(r['resumed'])} resumed) "
              f"{r['bytes'] / 1e6:7.1f} MB in {r['secs']:.2f}s, {r['hs_per_s']:7.1f} hs/s {r['MB_per_s']:6.1f} MB/s, "
              f"server cpu {r['cpu']:.2f}s = {unit(phase, r):7.1f} {'s/GB' if phase == 'bulk' else 'us/hs'}, "
              f"errors {int(r['errors'])} {errs} {r['stderr']}", flush=True)
        if r["errors"]:
            print(f"    {s.name} after {phase}: {s.diag()}\n    log tail: " +
                  "\n    ".join(s.logs().splitlines()[-10:]), flush=True)
    if rnd == 0:
        for phase in PROFILE:
            profile(s, phase)
    return True


def profile(s, phase):
    """Where the server's CPU goes in an extra run of `phase` under `perf record` (not a measured
    one: sampling costs the target CPU): shares by binary, then the top functions."""
    _name, args, conns, path = next(p for p in PHASES if p[0] == phase)
    data = os.path.join(work, f"perf-{s.name}-{phase}.data")
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-o", data,
                          "-p", ",".join(str(x) for x in pids(s.pid))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    load(s.vip, args, conns, path)
    p.send_signal(signal.SIGINT)
    p.wait(30)
    print(f"  profile of {s.name}, {phase} (perf cpu-clock, self time; by binary, then top functions):")
    for sort, limit, top in (("dso", "1", 8), ("dso,sym", "0.5", 30)):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                            "--sort", sort, "--percent-limit", limit], capture_output=True, text=True)
        lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        for line in lines[:top]:
            print("    " + line[:140])


def unit(phase, r):
    """Server CPU µs per handshake, or CPU s per GB for bulk, of one run."""
    if phase == "bulk":
        return r["cpu"] / (r["bytes"] / 1e9) if r["bytes"] else float("inf")
    return r["cpu"] * 1e6 / r["handshakes"] if r["handshakes"] else float("inf")


print("openssl speed (one core) ...", flush=True)
speed = openssl_speed()
print("  " + ", ".join(f"{k} {v:.0f}" for k, v in speed.items()), flush=True)
x = 1e6 / speed["x25519_per_s"]
bound_us = {"full-ecdsa": 1e6 / speed["ecdsa_sign_per_s"] + 2 * x,
            "full-rsa": 1e6 / speed["rsa_sign_per_s"] + 2 * x,
            "resume": 2 * x,
            "bulk": 1e9 / speed["gcm_bytes_per_s"]}  # CPU s per GB
bound_us["ecdsa-paced"] = bound_us["full-ecdsa"]

makers = [(haproxy, "haproxy"), (nginx_stream, "nginx")]
if WITH_EDGED:
    makers += [(lambda: edged(True), "edged-async"), (lambda: edged(False), "edged-sync")]
if os.environ.get("BENCH_SERVERS"):
    makers = [m for m in makers if m[1] in os.environ["BENCH_SERVERS"].split(",")]
res, idle, failed = {}, {}, set()
for rnd in range(ROUNDS):
    # Each round starts with the next server, so a drift in the machine's load favours none.
    for make, name in makers[rnd % len(makers):] + makers[:rnd % len(makers)]:
        if name in failed:
            continue
        try:
            s = make()
        except RuntimeError as err:  # edged refused its config or did not get ready
            print(f"{name}: not benched: {err}", file=sys.stderr)
            failed.add(name)
            continue
        if not run_phases(s, rnd):
            failed.add(name)
        s.stop()
servers = [n for _m, n in makers if n not in failed]


def ceiling_server():
    """nginx terminating TLS on the client namespace's loopback and serving the page and the file
    itself: the trivial server the client's ceiling is measured against."""
    conf = os.path.join(work, "ceiling.conf")
    with open(conf, "w") as f:
        f.write(f"""{nginx_head("ceiling")}
  server {{
    listen 127.0.0.1:8443 ssl backlog=4096;
    ssl_protocols TLSv1.3;
    ssl_certificate {certs}/ecdsa.pem;
    ssl_certificate_key {certs}/ecdsa.key;
    ssl_certificate {certs}/rsa.pem;
    ssl_certificate_key {certs}/rsa.key;
    root {www};
    keepalive_requests 1000000;
  }}
}}
""")
    proc = cli.popen(pin(1) + ["nginx", "-c", conf, "-p", work], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    h._cleanups.append(lambda: h.stop_group(proc))
    return proc


# The client's own ceiling on this machine: the same tls_load runs against a trivial TLS server (no
# upstream, no veth) on the servers' core. A server's rate near it is the client's limit, and is
# marked so. Errors here are printed and noted; they do not fail the bench.
CLIENT_LIMITED = 0.8  # a rate at 80 % of the ceiling or more is the client's limit
ceiling, ceiling_notes = {}, []
cproc = ceiling_server()
deadline = time.time() + 10
while time.time() < deadline and cli.run(["curl", "-sk", "--max-time", "2", "https://127.0.0.1:8443/"],
                                         check=False, timeout=5).stdout != "hello through edge\n":
    time.sleep(0.2)
for phase, args, conns, path in PHASES:
    if "--rate" in args:
        continue
    try:
        r = load("127.0.0.1", args, conns, path, port=8443)
    except RuntimeError as err:
        ceiling_notes.append(f"tls_load ceiling, {phase}: not measured ({err})")
        continue
    ceiling[phase] = r["MB_per_s" if phase == "bulk" else "hs_per_s"]
    if r["errors"]:
        ceiling_notes.append(f"tls_load ceiling, {phase}: {int(r['errors'])} client errors")
    print(f"  ceiling (tls_load -> nginx TLS on loopback) {phase:11} {ceiling[phase]:9.1f} "
          f"{'MB/s' if phase == 'bulk' else 'hs/s'}, errors {int(r['errors'])}", flush=True)
h.stop_group(cproc)
ceiling = {k: v for k, v in ceiling.items() if v > 0}


def per_unit(phase, name):
    """Median over the rounds of the server's CPU per handshake (µs) or per GB (s)."""
    return statistics.median(unit(phase, r) for r in res[(phase, name)])


def ratio(a, b):
    """a / b; None when b is 0 (a server that completed nothing in a phase)."""
    return a / b if b else None


def rate(phase, name):
    return statistics.median(r["MB_per_s" if phase == "bulk" else "hs_per_s"] for r in res[(phase, name)])


labels = {"full-ecdsa": "CPU us / full handshake, ECDSA P-256", "full-rsa": "CPU us / full handshake, RSA-2048",
          "resume": "CPU us / resumed handshake", "bulk": "CPU s / GB bulk (AES-128-GCM)",
          "ecdsa-paced": f"CPU us / ECDSA full at {RATE}/s offered"}
print(f"\nTLS 1.3 termination, one server at a time on one core (haproxy nbthread 1, nginx worker_processes 1, "
      f"edged one worker lcore); tls_load --conns {CONNS} (bulk {BULK_CONNS}) --secs {SECS:g}, "
      f"{'pinned: servers CPU 1, client+backend CPU 0' if PIN else 'unpinned'}; host {os.cpu_count()} cores; "
      f"median of {ROUNDS} round(s)")
W = 13
print(f"{'metric':40}" + "".join(f"{n:>{W}}" for n in servers) + f"{'crypto bound':>{W + 1}}")
for phase, *_ in PHASES:
    print(f"{labels[phase]:40}" + "".join(f"{per_unit(phase, n):{W}.1f}" for n in servers) +
          f"{bound_us[phase]:{W + 1}.1f}")
for phase, *_ in PHASES:
    print(f"{phase + (' MB/s' if phase == 'bulk' else ' handshakes/s'):40}" +
          "".join(f"{rate(phase, n):{W}.1f}" for n in servers))
for phase, c in ceiling.items():
    print(f"{phase + ': share of the ceiling':40}" + "".join(f"{rate(phase, n) / c:{W}.2f}" for n in servers))
    for n in servers:
        if rate(phase, n) / c >= CLIENT_LIMITED:
            ceiling_notes.append(f"{phase} {n}: {rate(phase, n) / c:.0%} of tls_load's ceiling: limited by the client")
for note in ceiling_notes:
    print("note: " + note)
print(f"{'idle CPU (s per s)':40}" + "".join(f"{statistics.median(idle[n]):{W}.3f}" for n in servers))
if ROUNDS > 1:
    print(f"{'spread over rounds (max/min per unit)':40}")
    for phase, *_ in PHASES:
        print(f"{'  ' + phase:40}" + "".join(
            f"{max(unit(phase, r) for r in res[(phase, n)]) / min(unit(phase, r) for r in res[(phase, n)]):{W}.2f}"
            for n in servers))

pairs = [(a, b) for a in servers if a.startswith("edged") for b in servers if not b.startswith("edged")]
if "edged-async" in servers and "edged-sync" in servers:
    pairs.append(("edged-async", "edged-sync"))
cols = [f"{a}/{b}" for a, b in pairs] + [f"{n}/bound" for n in servers]
print("\nratios of server CPU per unit (< 1: the first uses less)")
print(f"{'':12}" + "".join(f"{c:>{max(len(c), 8) + 2}}" for c in cols))
for phase, *_ in PHASES:
    vals = [ratio(per_unit(phase, a), per_unit(phase, b)) for a, b in pairs] + \
           [ratio(per_unit(phase, n), bound_us[phase]) for n in servers]
    print(f"{phase:12}" + "".join(f"{'n/a' if v is None else f'{v:.2f}':>{max(len(c), 8) + 2}}"
                                  for c, v in zip(cols, vals)))
if not any(n.startswith("edged") for n in servers):
    print("(edged not benched: peers and bound only)")
errs = {f"{p}/{n}": sum(int(r["errors"]) for r in v) for (p, n), v in res.items() if any(r["errors"] for r in v)}
nores = {n: sum(int(r["not_resumed"]) for r in v) for (p, n), v in res.items()
         if p == "resume" and any(r["not_resumed"] for r in v)}
print("client errors: " + (str(errs) if errs else "none") + "; resume offered but not resumed: " +
      (str(nores) if nores else "none"))
if os.environ.get("BENCH_JSON"):  # bench/run's record of this run
    with open(os.environ["BENCH_JSON"], "w") as f:
        json.dump({"figures": [{"metric": labels[phase], "who": n, "value": per_unit(phase, n)}
                               for phase, *_ in PHASES for n in servers] +
                              [{"metric": labels[phase], "who": "bound", "value": bound_us[phase]}
                               for phase, *_ in PHASES] +
                              [{"metric": f"tls_load ceiling, {phase} {'MB/s' if phase == 'bulk' else 'handshakes/s'} "
                                          "(nginx TLS on loopback)", "who": "tls_load", "value": c}
                               for phase, c in ceiling.items()],
                   "ratios": [{"metric": labels[phase], "num": a, "den": b,
                               "value": ratio(per_unit(phase, a), per_unit(phase, b))}
                              for phase, *_ in PHASES for a, b in pairs] +
                             [{"metric": labels[phase], "num": n, "den": "bound",
                               "value": ratio(per_unit(phase, n), bound_us[phase])}
                              for phase, *_ in PHASES for n in servers] +
                             [{"metric": f"{phase}: share of tls_load's ceiling", "num": n, "den": "tls_load ceiling",
                               "value": rate(phase, n) / c} for phase, c in ceiling.items() for n in servers],
                   "notes": ceiling_notes,
                   "errors": sum(errs.values()) + len(failed)}, f, indent=1)
h._run_cleanups()
sys.exit(0 if servers and not errs and not failed else 1)
