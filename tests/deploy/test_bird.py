#!/usr/bin/python3
"""BGP with BIRD, offline and against a real BIRD (no router, no edged):
  - the node configuration rendered from each example edged config, and the router example, pass
    `bird -p`; a broken one fails it (the check can fail);
  - `edgectl bgp-announce` against a real BIRD 2 (in its own network namespace, so its BGP session
    attempts go nowhere) and a stand-in admin API whose /readyz the test flips: the VIP routes are
    in BIRD's table while /readyz passes, gone when it fails, when edged is unreachable, and after
    the announcer is stopped; each change is reported to the admin API (POST /announcer)."""
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("EDGE_BUILD", os.path.join(SRC, "build"))
EDGECTL = os.path.join(BUILD, "edge", "edgectl")
RENDER = os.path.join(SRC, "deploy", "bird", "render-bird-conf.py")
failures = []


def that(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def bird_parse(path):
    r = subprocess.run(["bird", "-p", "-c", path], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


work = tempfile.mkdtemp(prefix="edge-deploy-bird-")
ns = f"edgebird{os.getpid()}"
bird = None
try:
    # --- bird -p ---------------------------------------------------------------------------------
    examples = os.path.join(SRC, "deploy", "examples")
    rendered = 0
    for name in sorted(os.listdir(examples)):
        if not name.endswith(".yaml") or "services:" not in open(os.path.join(examples, name)).read():
            continue
        out = os.path.join(work, name + ".bird.conf")
        with open(out, "w") as f:
            r = subprocess.run(["/usr/bin/python3", RENDER, "--edged-config", os.path.join(examples, name),
                                "--router-id", "192.0.2.11", "--local-as", "65010", "--peer", "192.0.2.1:65000",
                                "--peer", "2001:db8::1:65000", "--bfd"], stdout=f, stderr=subprocess.PIPE, text=True)
        rc, msg = bird_parse(out)
        that(r.returncode == 0 and rc == 0, f"bird -p accepts the node config rendered from {name} ({msg or 'ok'})")
        rendered += 1
    that(rendered >= 3, f"node configs rendered from {rendered} example(s)")
    # --next-hop: the routers send the VIPs to edged's own port, not to BIRD's session address.
    nh = os.path.join(work, "next-hop.bird.conf")
    with open(nh, "w") as f:
        subprocess.run(["/usr/bin/python3", RENDER, "--edged-config", os.path.join(examples, "dsr.yaml"),
                        "--router-id", "192.0.2.11", "--local-as", "65010", "--peer", "192.0.2.1:65000",
                        "--peer", "2001:db8::1:65000", "--next-hop", "198.51.100.11"], stdout=f, check=True)
    rc, msg = bird_parse(nh)
    text = open(nh).read()
    that(rc == 0 and text.count("next hop address 198.51.100.11;") == 1 and text.count("next hop self;") == 1,
         f"--next-hop sets the IPv4 session's next hop, the IPv6 one keeps its own ({msg or 'ok'})")
    rc, msg = bird_parse(os.path.join(SRC, "deploy", "bird", "router.conf.example"))
    that(rc == 0, f"bird -p accepts deploy/bird/router.conf.example ({msg or 'ok'})")
    broken = os.path.join(work, "broken.conf")
    with open(broken, "w") as f:
        f.write(open(os.path.join(work, "https-waf.yaml.bird.conf")).read().replace("/32 blackhole", "/33 blackhole"))
    rc, msg = bird_parse(broken)
    that(rc != 0 and "broken.conf" in msg, f"bird -p refuses a /33 route, naming the file: {msg}")

    # --- the announcer against a real BIRD -----------------------------------------------------
    state = {"ready": 200, "reports": []}

    class Admin(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = b"ready\n" if state["ready"] == 200 else b"not ready: draining\n"
            code = state["ready"] if self.path == "/readyz" else 404
            if self.path == "/metrics":
                body, code = b"edge_ready 1\n", 200
            if self.path == "/healthz":
                body, code = b"ok\n", 200
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            state["reports"].append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Admin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    admin = f"127.0.0.1:{srv.server_address[1]}"

    conf = os.path.join(work, "https-waf.yaml.bird.conf")
    import re
    VIP = re.search(r"route (\S+/32) blackhole", open(conf).read()).group(1)  # the example's VIP
    sock = os.path.join(work, "bird.ctl")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    bird = subprocess.Popen(["ip", "netns", "exec", ns, "bird", "-f", "-c", conf, "-s", sock,
                             "-P", os.path.join(work, "bird.pid")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        if os.path.exists(sock):
            break
        time.sleep(0.1)

    def routes():
        r = subprocess.run(["birdc", "-s", sock, "show", "route", "protocol", "edge_vips4"], capture_output=True, text=True)
        return r.stdout

    def announce(*extra, admin_addr=None):
        return subprocess.run([EDGECTL, "--admin", admin_addr or admin, "bgp-announce", "--bird-socket", sock, "--once"]
                              + list(extra), capture_output=True, text=True, timeout=20)

    that(VIP not in routes(), "BIRD starts with the VIP protocol disabled: no VIP route")
    r = announce()
    that(r.returncode == 0 and VIP in routes(),
         f"/readyz passes: the announcer enables it, BIRD has the VIP /32 ({r.stderr.strip()})")
    that(state["reports"][-1:] == ["/announcer?state=announced"], f"the announcement is reported: {state['reports']}")
    state["ready"] = 503
    r = announce()
    that(r.returncode == 0 and VIP not in routes(),
         f"/readyz fails: the VIP route is withdrawn ({r.stderr.strip()})")
    that(state["reports"][-1:] == ["/announcer?state=withdrawn"], f"the withdrawal is reported: {state['reports']}")
    state["ready"] = 200
    announce()
    r = announce(admin_addr="127.0.0.1:1")
    that(r.returncode == 0 and VIP not in routes() and "cannot reach the edged admin API" in r.stderr,
         f"edged unreachable: withdrawn ({r.stderr.strip().splitlines()[-1]})")
    r = subprocess.run([EDGECTL, "--admin", admin, "bgp-announce", "--bird-socket", os.path.join(work, "nope.ctl"),
                        "--once"], capture_output=True, text=True, timeout=20)
    that(r.returncode == 1 and "cannot reach BIRD" in r.stderr, f"BIRD unreachable: exit 1, said so: {r.stderr.strip()}")
    r = announce("--protocol", "no_such_protocol")
    that(r.returncode == 1 and "BIRD refused" in r.stderr, f"an unknown protocol is BIRD's error: {r.stderr.strip()}")

    # Continuous: follows /readyz within a few intervals; SIGTERM withdraws and exits 0.
    p = subprocess.Popen([EDGECTL, "--admin", admin, "bgp-announce", "--bird-socket", sock, "--interval-ms", "100"],
                         stderr=subprocess.PIPE, text=True)

    def wait_for(pred, secs=3):
        end = time.time() + secs
        while time.time() < end:
            if pred():
                return True
            time.sleep(0.05)
        return False

    that(wait_for(lambda: VIP in routes()), "running: announced while ready")
    t0 = time.time()
    state["ready"] = 503
    that(wait_for(lambda: VIP not in routes()),
         f"running: withdrawn within {time.time() - t0:.2f} s of /readyz failing")
    state["ready"] = 200
    that(wait_for(lambda: VIP in routes()), "running: announced again once /readyz passes (undrain)")
    subprocess.run(["birdc", "-s", sock, "disable", "edge_vips4"], capture_output=True)
    that(wait_for(lambda: VIP in routes()),
         "running: a VIP protocol disabled behind its back (BIRD restart) is enabled again within an interval")
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    log = p.stderr.read()
    that(rc == 0 and VIP not in routes(), f"SIGTERM: withdrawn, exit {rc}")
    that("VIPs announced" in log and "VIPs withdrawn" in log, "the announcer logs its changes: " + log.replace("\n", " | ")[:300])
    # The pod-IP face of /metrics (the admin API stays on loopback) and the liveness probe.
    mp = subprocess.Popen([EDGECTL, "--admin", admin, "metrics-proxy", "--listen", "127.0.0.1:19181"],
                          stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    got = subprocess.run(["curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:19181/metrics"], capture_output=True, text=True).stdout
    other = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:19181/drain"],
                           capture_output=True, text=True).stdout
    mp.send_signal(signal.SIGTERM)
    that(got == "edge_ready 1\n 200" and other == "404" and mp.wait(5) == 0,
         f"metrics-proxy serves /metrics only ({got!r}, other paths {other}) and stops on SIGTERM")
    state["ready"] = 503
    r = subprocess.run([EDGECTL, "--admin", admin, "health", "--live"], capture_output=True, text=True)
    r2 = subprocess.run([EDGECTL, "--admin", admin, "health"], capture_output=True, text=True)
    that(r.returncode == 0 and r2.returncode == 1, f"health --live passes while not ready (liveness), health fails ({r.stdout.strip()})")
    srv.shutdown()
finally:
    if bird is not None:
        bird.terminate()
        try:
            bird.wait(5)
        except subprocess.TimeoutExpired:
            bird.kill()
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
print(f"test_bird: {'FAILED' if failures else 'passed'} ({len(failures)} failures)")
sys.exit(1 if failures else 0)
