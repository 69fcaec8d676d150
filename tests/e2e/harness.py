"""E2E harness: network namespaces + veth, edged on a DPDK af_packet port, real clients.

Every test gets its own namespaces (prefixed with the test's name and pid) and tears them down on
exit, on failure and on SIGINT/SIGTERM. Needs root; run with Debian's /usr/bin/python3.
"""
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = os.environ.get("EDGE_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
EDGED = os.path.abspath(os.path.join(BUILD, "edge", "edged"))
EDGECTL = os.path.abspath(os.path.join(BUILD, "edge", "edgectl"))

# Workers of every edged the tests start (EDGE_E2E_WORKERS, default 2): one per CPU from 0. With
# more than one, the af_packet ports (no RSS) need the software dispatch mode: each worker polls
# its own fanout socket and hands a packet it does not own to the owner (docs/packet-flow.md).
WORKERS = int(os.environ.get("EDGE_E2E_WORKERS", "2"))
if WORKERS < 1:
    raise SystemExit("EDGE_E2E_WORKERS must be at least 1")


def workers_yaml(workers=None):
    """The `workers:` block of edged's YAML for EDGE_E2E_WORKERS workers, or `workers` for a test
    whose subject is one worker's own limit (keys may follow)."""
    n = WORKERS if workers is None else workers
    lcores = ", ".join(str(i) for i in range(n))
    dispatch = "\n  dispatch: software" if n > 1 else ""
    return f"workers:\n  lcores: [{lcores}]{dispatch}"


_cleanups = []


def sh(cmd, check=True, capture=True, timeout=60, ns=None):
    """Runs `cmd` (a list), in namespace `ns` if given. Returns CompletedProcess."""
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    return subprocess.run(cmd, check=check, capture_output=capture, text=True, timeout=timeout)


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep tearing down the rest
            print(f"cleanup: {e}", file=sys.stderr)


def _on_signal(signum, _frame):
    _run_cleanups()
    sys.exit(128 + signum)


atexit.register(_run_cleanups)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def stop_group(p, timeout=10):
    """Stops `p` (started with start_new_session=True) and everything it forked: nginx's workers
    outlive a master that is killed, so the whole process group gets SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            break
        try:
            p.wait(timeout)
            if sig == signal.SIGTERM:
                continue  # the master exited; SIGKILL whatever of the group is left
        except subprocess.TimeoutExpired:
            pass
    p.wait()


class Namespace:
    def __init__(self, name):
        self.name = name
        sh(["ip", "netns", "del", name], check=False)
        sh(["ip", "netns", "add", name])
        _cleanups.append(lambda: sh(["ip", "netns", "del", name], check=False))
        self.run(["ip", "link", "set", "lo", "up"])

    def run(self, cmd, **kw):
        return sh(cmd, ns=self.name, **kw)

    def popen(self, cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name] + cmd, **kw)


def veth(ns_a, if_a, ns_b, if_b):
    """A veth pair with one end in each namespace. Checksum offload is turned off on both ends so
    that frames crossing into DPDK's af_packet port carry complete checksums."""
    sh(["ip", "link", "add", if_a, "netns", ns_a.name, "type", "veth", "peer", "name", if_b, "netns", ns_b.name])
    for ns, ifn in ((ns_a, if_a), (ns_b, if_b)):
        ns.run(["ethtool", "-K", ifn, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off"], check=False)
        ns.run(["ip", "link", "set", ifn, "up"])


class Edged:
    """edged running in namespace `ns` with the YAML config text `config`."""

    def __init__(self, ns, config, admin="127.0.0.1:9180", expect_ready=True, timeout=30):
        self.ns = ns
        self.admin = admin
        self.dir = tempfile.mkdtemp(prefix="edge-e2e-")
        self.config_path = os.path.join(self.dir, "edged.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.log_path = os.path.join(self.dir, "edged.log")
        self.log = open(self.log_path, "w")
        self.proc = ns.popen([EDGED, "--config", self.config_path], stdout=self.log, stderr=subprocess.STDOUT)
        _cleanups.append(self.stop)
        if expect_ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edged exited with {self.proc.returncode} during start:\n{self.logs()}")
            r = self.ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{self.admin}/readyz"],
                            check=False)
            if r.stdout.strip() == "200":
                return
            time.sleep(0.2)
        raise RuntimeError(f"edged not ready after {timeout}s:\n{self.logs()}")

    def get(self, path):
        r = self.ns.run(["curl", "-s", "-f", f"http://{self.admin}{path}"])
        return r.stdout

    def post(self, path):
        return self.ns.run(["curl", "-s", "-X", "POST", "-w", "\n%{http_code}", f"http://{self.admin}{path}"])

    def stats(self):
        return json.loads(self.get("/stats"))

    def metrics(self):
        """Prometheus text → {name{labels}: value}."""
        out = {}
        for line in self.get("/metrics").splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def metric(self, name, **labels):
        """One sample by name and labels (in the order edged writes them); 0 when absent."""
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return self.metrics().get(f"{name}{{{want}}}" if want else name, 0.0)

    def rules_generation(self):
        """The serving generation of the rules directory (WAF rules and limits)."""
        return self.metrics().get("edge_waf_rules_generation", 0.0)

    def wait_rules_generation(self, after, timeout=15):
        """Waits until the rules directory's generation is past `after`; False on timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.rules_generation() > after:
                return True
            time.sleep(0.2)
        return False

    def drops(self, reason):
        for k, v in self.metrics().items():
            if k.startswith("edge_drops_total{") and f'reason="{reason}"' in k:
                return v
        raise KeyError(reason)

    def edgectl(self, *args, check=False):
        return self.ns.run([EDGECTL, "--admin", self.admin] + list(args), check=check)

    def logs(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, timeout=15):
        """SIGTERM, wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.flush()
        return self.proc.returncode


def eal_args(prefix):
    return ["--no-huge", "--no-pci", "--no-telemetry", "-m", "512", "--file-prefix", prefix,
            "--log-level", "lib.eal:warning"]


def tune_for_load(*namespaces):
    """Thousands of new connections per second from one client: a wider port range and TIME_WAIT
    reuse (or the ports run out), and longer accept queues."""
    for ns in namespaces:
        ns.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"])
        ns.run(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])
        ns.run(["sysctl", "-qw", "net.core.somaxconn=4096"])
        ns.run(["sysctl", "-qw", "net.ipv4.tcp_max_syn_backlog=4096"])


def yaml_list(items):
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def tag(name):
    """A short unique prefix for namespace and interface names (IFNAMSIZ is 16)."""
    return f"{name[:6]}{os.getpid() % 100000}"


class Check:
    """Collects assertion failures so a test reports all of them, then exits non-zero."""

    def __init__(self, name):
        self.name = name
        self.failures = []

    def that(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            self.failures.append(what)
        return cond

    def done(self, edged=None):
        if self.failures and edged is not None:
            print("---- edged log ----\n" + edged.logs(), file=sys.stderr)
        _run_cleanups()
        print(f"{self.name}: {'FAILED' if self.failures else 'passed'} ({len(self.failures)} failures)")
        sys.exit(1 if self.failures else 0)


def bridge(ns, name="br0"):
    """A Linux bridge inside namespace `ns` (a switch for several hosts)."""
    ns.run(["ip", "link", "add", name, "type", "bridge"])
    ns.run(["ip", "link", "set", name, "up"])
    return name


def attach(switch_ns, br, host_ns, host_if, sw_if):
    """Connects `host_if` in `host_ns` to bridge `br` in `switch_ns`."""
    veth(host_ns, host_if, switch_ns, sw_if)
    switch_ns.run(["ip", "link", "set", sw_if, "master", br])


class Nginx:
    """nginx serving `/` with `name` and `/big` (a file of `big_mb` MiB) in namespace `ns`."""

    def __init__(self, ns, name, port=80, big_mb=0, extra=""):
        self.ns = ns
        self.dir = tempfile.mkdtemp(prefix=f"edge-nginx-{name}-")
        root = os.path.join(self.dir, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write(name + "\n")
        if big_mb:
            with open(os.path.join(root, "big"), "wb") as f:
                f.write(os.urandom(big_mb << 20))
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
user root;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log {self.dir}/access.log;
  client_body_temp_path {self.dir};
  proxy_temp_path {self.dir};
  fastcgi_temp_path {self.dir};
  uwsgi_temp_path {self.dir};
  scgi_temp_path {self.dir};
  server {{
    listen {port} reuseport backlog=4096;
    root {root};
    keepalive_requests 100000;
    {extra}
  }}
}}
""")
        self.proc = ns.popen(["nginx", "-c", conf, "-p", self.dir], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        _cleanups.append(self.stop)
        deadline = time.time() + 10
        while time.time() < deadline:
            if ns.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"], check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"nginx {name} did not start")

    def stop(self):
        stop_group(self.proc)

    def access_log(self):
        with open(os.path.join(self.dir, "access.log")) as f:
            return f.read()


def http_request(ns, url, extra=(), timeout=5):
    """One curl request from namespace `ns`: (status, {lowercase header: value}, body); status 0
    when no response came (refused, reset, timed out)."""
    r = ns.run(["curl", "-s", "-i", "--max-time", str(timeout), *extra, url], check=False, timeout=timeout + 10)
    out = r.stdout.replace("\r\n", "\n")
    head, _, body = out.partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def wait_until(pred, secs, step=0.05):
    """Polls `pred` until it is true (True) or `secs` pass (False)."""
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def write_atomically(path, text):
    """Writes `path` through a rename, as editors and ConfigMap updates do (one inotify event)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def http_spread(ns, url, count, timeout=60):
    """`count` requests to `url`, each on a new TCP connection, from namespace `ns`; returns
    {body: count} (bodies are the backend names) plus 'error' for failures."""
    script = f"""
import collections, socket, sys, urllib.parse
u = urllib.parse.urlsplit({url!r})
host, port = u.hostname, u.port or 80
req = ('GET ' + (u.path or '/') + ' HTTP/1.0\\r\\nHost: ' + host + '\\r\\n\\r\\n').encode()
seen = collections.Counter()
for _ in range({count}):
    try:
        s = socket.create_connection((host, port), timeout=3)
        s.sendall(req)
        data = b''
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        seen[data.split(b'\\r\\n\\r\\n', 1)[1].strip().decode() if b'200 OK' in data else 'error'] += 1
    except Exception:
        seen['error'] += 1
print(dict(seen))
"""
    r = ns.run(["/usr/bin/python3", "-c", script], timeout=timeout)
    return eval(r.stdout)


class TcpTopology:
    """The namespaces of a `tcp` service, shared by the tcp and WAF tests and the tcp bench:

      client ns  cli0 ──veth── dut0  edged ns  kern0 ──veth── eth0  backend ns (nginx, PROXY v2)
                 (or, switch=True: cli0 ══ sw-cli ─ br0 ─ sw-dut ── dut0, the bridge inside the
                  client namespace, where nftables drops frames after the client's TCP sent them)

    dut0 is edged's DPDK af_packet port (NET.0.1 in edged's config, VIP NET.0.100); kern0
    (NET.1.2) is the kernel leg edged's upstream sockets and health checks use; nginx listens on
    NET.1.11 with `proxy_protocol`. The client is NET.0.2. `t` prefixes the namespace names."""

    def __init__(self, t, net="10.99", switch=False):
        self.t = t
        self.cli, self.dut, self.be = Namespace(f"{t}c"), Namespace(f"{t}d"), Namespace(f"{t}b")
        self.sw = None
        if switch:
            # The client's own namespace holds the bridge: its address sits on one end of a veth
            # pair whose other end is a bridge port, so a frame dropped on the bridge has already
            # left the client's TCP (a drop in its output hook would be reported back and retried).
            self.sw = self.cli
            br = bridge(self.cli)
            attach(self.cli, br, self.cli, "cli0", "sw-cli")
            attach(self.cli, br, self.dut, "dut0", "sw-dut")
        else:
            veth(self.cli, "cli0", self.dut, "dut0")
        self.client, self.port_addr, self.vip = f"{net}.0.2", f"{net}.0.1", f"{net}.0.100"
        self.kern, self.backend = f"{net}.1.2", f"{net}.1.11"
        self.cli.run(["ip", "addr", "add", f"{self.client}/24", "dev", "cli0"])
        veth(self.dut, "kern0", self.be, "eth0")
        self.dut.run(["ip", "addr", "add", f"{self.kern}/24", "dev", "kern0"])
        self.be.run(["ip", "addr", "add", f"{self.backend}/24", "dev", "eth0"])
        for ns in (self.cli, self.dut, self.be):
            ns.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        self.work = tempfile.mkdtemp(prefix=f"edge-e2e-{t}-")
        self.www = os.path.join(self.work, "www")
        os.makedirs(self.www)
        self.nginx_proc = None

    def edged_head(self, workers=None):
        """The start of edged's YAML for this topology: EAL, the af_packet port on dut0, the workers."""
        return f"""
eal:
  args: {yaml_list(eal_args(self.t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [{self.port_addr}/24]}}
{workers_yaml(workers)}
"""

    def start_nginx(self, server, http="", connections=1024, rlimit_nofile=None,
                    access_log=None):
        """nginx (one worker) in the backend namespace serving `www`; `server` is the body of its
        server block after `root` (listen lines with proxy_protocol, locations), `http` extra
        http-level lines. The access log is `work/access.log` unless `access_log` says ("off")."""
        w = self.work
        log = access_log or f"{w}/access.log"
        conf = os.path.join(w, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
user root;
worker_processes 1;
{f"worker_rlimit_nofile {rlimit_nofile};" if rlimit_nofile else ""}
pid {w}/nginx.pid;
error_log {w}/error.log;
events {{ worker_connections {connections}; }}
http {{
  {http}
  access_log {log};
  client_body_temp_path {w};
  proxy_temp_path {w};
  fastcgi_temp_path {w};
  uwsgi_temp_path {w};
  scgi_temp_path {w};
  server {{
    root {self.www};
    {server}
  }}
}}
""")
        p = self.be.popen(["nginx", "-c", conf, "-p", w], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
        _cleanups.append(lambda: stop_group(p))
        self.nginx_proc = p
        return p

    def start_echo(self, port=7000):
        """A plain TCP echo server (every byte back, no PROXY header expected) in the backend
        namespace, for services that are not HTTP."""
        p = self.be.popen(["/usr/bin/python3", "-c", f"""
import socketserver
class H(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            b = self.request.recv(4096)
            if not b:
                return
            self.request.sendall(b)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(('0.0.0.0', {port}), H).serve_forever()
"""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _cleanups.append(p.kill)
        return p

    def access_log(self):
        with open(os.path.join(self.work, "access.log")) as f:
            return f.read()

    def set_loss(self, percent):
        """Drops `percent`% of the TCP frames crossing the client namespace's bridge, both ways
        (switch=True only), with nftables in the client namespace.
        Frames there are single segments (no GSO), so both stacks really lose them."""
        self.sw.run(["nft", "add table bridge loss"])
        self.sw.run(["nft", "add chain bridge loss lossy { type filter hook forward priority 0 ; }"])
        self.sw.run(["nft", f"add rule bridge loss lossy ether type ip ip protocol tcp numgen random mod 100 < {percent} counter drop"])

    def clear_loss(self):
        """Removes the loss rule; returns how many frames it dropped."""
        dropped = int(self.sw.run(["nft", "list table bridge loss"]).stdout.split("counter packets ")[1].split()[0])
        self.sw.run(["nft", "delete table bridge loss"])
        return dropped
