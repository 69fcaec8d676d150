#!/usr/bin/python3
"""Limits and ACLs of the rules directory on services without a WAF (tests/e2e/test_limits.py has
the tcp service with one): one edged, EDGE_E2E_WORKERS workers (2 by default), two services on one
nginx backend, and no service has a WAF policy:

  - `plain`, kind tcp, no WAF (VIP NET.0.100): a deny-listed source (a .cidr file) is dropped and
    counted; a conn limit (rate 1/s, burst 3, action rst) resets the connections past its burst,
    each one counted in edge_limit_limited_total;
  - `fwd`, kind l4, full NAT (VIP NET.0.101): a deny-listed source (an inline prefix) is dropped and
    counted; a syn limit with action rst answers the SYNs past its burst with a RST (curl: refused);
  - a limit the named service cannot enforce (conn on the l4 service) is refused with
    file:line:col and the serving limits stay; a good change is published and applies at once;
  - a configuration reload that adds an l4 service a conn limit already names is refused (409,
    the limit's file:line:col) before any of it applies.

Before this, edged loaded limit files only when a service had a WAF policy: none of the above was
enforced, without a word in the log."""
import os
import time

import harness as h

t = h.tag("limk")
c = h.Check("test_limits_kinds")
NET = "10.96"
cli, dut, sw, be = (h.Namespace(f"{t}{x}") for x in ("c", "d", "s", "b"))
h.veth(cli, "cli0", dut, "dut0")
CLIENT, ATTACKER, DENIED = f"{NET}.0.2", f"{NET}.0.3", f"{NET}.0.4"
for a in (CLIENT, ATTACKER, DENIED):
    cli.run(["ip", "addr", "add", f"{a}/24", "dev", "cli0"])
br = h.bridge(sw)
h.attach(sw, br, dut, "lan0", "sw-lan")   # edged's l4 leg (DPDK)
h.attach(sw, br, dut, "kern0", "sw-kern")  # the kernel leg: the tcp service's upstream sockets
h.attach(sw, br, be, "eth0", "sw-be")
dut.run(["ip", "addr", "add", f"{NET}.1.2/24", "dev", "kern0"])
BACKEND = f"{NET}.1.11"
be.run(["ip", "addr", "add", f"{BACKEND}/24", "dev", "eth0"])
for ns in (cli, dut, be):
    ns.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
nginx = h.Nginx(be, "b1")
PLAIN, FWD = f"{NET}.0.100", f"{NET}.0.101"

work = nginx.dir
rules_dir = os.path.join(work, "rules")
os.makedirs(rules_dir)
with open(os.path.join(rules_dir, "deny.cidr"), "w") as f:
    f.write(f"# sources that may not connect\n192.0.2.0/24\n{DENIED}/32\n")
LIMITS = """limits:
  - name: plain-conn
    services: [plain]
    scope: conn
    key: src
    rate: 1
    burst: {burst}
  - name: fwd-syn
    services: [fwd]
    scope: syn
    key: src
    rate: 1
    burst: {burst}
    action: rst
acl:
  - service: plain
    deny: [deny.cidr]
  - service: fwd
    deny: [{denied}/32]
"""
BURST = 3
h.write_atomically(os.path.join(rules_dir, "test.limits.yaml"), LIMITS.format(burst=BURST, denied=DENIED))

config = f"""
eal:
  args: {h.yaml_list(h.eal_args(t))}
ports:
  - {{name: wan0, role: wan, device: "net_af_packet0,iface=dut0", addresses: [{NET}.0.1/24]}}
  - {{name: lan0, role: lan, device: "net_af_packet1,iface=lan0", addresses: [{NET}.1.1/24]}}
{h.workers_yaml()}
l4:
  snat_addresses: [{NET}.1.100]
waf:
  rules_dir: {rules_dir}
pools:
  - name: gw
    proxy_protocol: false
    connect_timeout_ms: 500
    backends:
      - {{address: {BACKEND}, port: 80}}
  - name: l4web
    backends:
      - {{address: {BACKEND}, port: 80}}
services:
  - {{name: plain, vip: {PLAIN}, port: 80, kind: tcp, pool: gw}}
  - {{name: fwd, vip: {FWD}, port: 80, kind: l4, pool: l4web, forwarding: fnat}}
"""
e = h.Edged(dut, config)
c.that(e.rules_generation() == 1, f"the limit files loaded with no WAF policy anywhere (generation {e.rules_generation()})")


def get(vip, src, timeout=5):
    return h.http_request(cli, f"http://{vip}/", ("--interface", src), timeout)


# --- deny lists: the source is dropped (no answer at all) and counted, on both kinds ---------------------
for svc, vip, lst in (("plain", PLAIN, "deny.cidr"), ("fwd", FWD, "inline_deny")):
    before_acl = e.metric("edge_acl_denied_total", service=svc, list=lst)
    before_drop = e.drops("acl_denied")
    s, _, _ = get(vip, DENIED, timeout=3)
    c.that(s == 0, f"{svc}: a request from the denied {DENIED} gets no answer (status {s})")
    denied = e.metric("edge_acl_denied_total", service=svc, list=lst) - before_acl
    c.that(denied >= 1, f"{svc}: edge_acl_denied_total{{service={svc},list={lst}}} counted its SYNs (+{denied:.0f})")
    c.that(e.drops("acl_denied") - before_drop == denied,
           f"{svc}: edge_drops_total{{reason=acl_denied}} counted the same packets ({e.drops('acl_denied') - before_drop:.0f})")
    s, _, body = get(vip, ATTACKER)
    c.that(s == 200 and body == "b1\n", f"{svc}: another address of the same host is served (status {s})")


# --- rate limits: the burst passes, then each new connection is refused with a RST and counted ----------
def burst_of(vip, n):
    t0 = time.time()
    statuses = [get(vip, CLIENT)[0] for _ in range(n)]
    return statuses, time.time() - t0


N = 10
for svc, vip, name, scope, want_reason in (("plain", PLAIN, "plain-conn", "conn", None),
                                           ("fwd", FWD, "fwd-syn", "syn", "rate_limited_rst")):
    lim0 = e.metric("edge_limit_limited_total", limit=name, scope=scope, action="rst")
    rst0 = e.drops("rate_limited_rst")
    statuses, took = burst_of(vip, N)
    ok = statuses.count(200)
    # rate 1/s: the burst, plus at most one per second the loop took (and one for the rounding).
    c.that(statuses[:BURST] == [200] * BURST and ok <= BURST + int(took) + 1,
           f"{svc}: {N} connections in {took:.1f} s: the first {BURST} (the burst) served, {ok} in all: {statuses}")
    refused = N - ok
    c.that(refused >= N - BURST - int(took) - 1 and all(s in (0, 200) for s in statuses),
           f"{svc}: the others refused without an HTTP answer ({refused})")
    lim = e.metric("edge_limit_limited_total", limit=name, scope=scope, action="rst") - lim0
    c.that(lim == refused, f"{svc}: edge_limit_limited_total{{limit={name},scope={scope},action=rst}} +{lim:.0f} = {refused} refused")
    if want_reason:
        rst = e.drops(want_reason) - rst0
        c.that(rst == refused, f"{svc}: each refused SYN answered with a RST (edge_drops_total{{reason={want_reason}}} +{rst:.0f})")

# --- a limit the service cannot enforce is refused with file:line:col; a good change applies -----------
gen = e.rules_generation()
h.write_atomically(os.path.join(rules_dir, "bad.limits.yaml"),
                   "limits:\n  - name: fwd-conn\n    services: [fwd]\n    scope: conn\n    rate: 1\n")
time.sleep(2.0)
c.that(e.rules_generation() == gen, "a conn limit on the l4 service publishes nothing")
want = (f"bad.limits.yaml:2:5: limit fwd-conn: scope conn on service 'fwd' (kind l4): kind l4 forwards "
        "packets and sees no handshake or connection end; use syn, packets or bytes")
c.that(want in e.logs(), "the refusal is logged with file:line:col and why")
time.sleep(1.5)
s, _, _ = get(FWD, CLIENT)
statuses, _ = burst_of(FWD, BURST + 2)
c.that(statuses.count(0) >= 1, f"the serving fwd-syn limit still refuses past its burst: {statuses}")
os.remove(os.path.join(rules_dir, "bad.limits.yaml"))
c.that(e.wait_rules_generation(gen), "removing the bad file publishes the directory again")
gen = e.rules_generation()
h.write_atomically(os.path.join(rules_dir, "test.limits.yaml"), LIMITS.format(burst=100, denied=DENIED))
c.that(e.wait_rules_generation(gen), "a higher burst is published")
statuses, _ = burst_of(FWD, N)
c.that(statuses == [200] * N, f"after the reload {N} quick connections to fwd are served: {statuses}")
statuses, _ = burst_of(PLAIN, N)
c.that(statuses == [200] * N, f"and to plain: {statuses}")
s, _, _ = get(FWD, DENIED, timeout=3)
c.that(s == 0, "the deny list still holds after the reload")

# --- a configuration reload is checked against the limit files before it applies -------------------
# `later` is not in the configuration, so a conn limit naming it loads; a configuration that adds it
# as kind l4 (which cannot enforce conn) is refused whole, and `fwd` keeps its service.
gen = e.rules_generation()
h.write_atomically(os.path.join(rules_dir, "later.limits.yaml"),
                   "limits:\n  - name: later-conn\n    services: [later]\n    scope: conn\n    rate: 1\n")
c.that(e.wait_rules_generation(gen), "a conn limit naming a service the configuration lacks is published")
LATER = f"{NET}.0.102"
with open(e.config_path, "w") as f:
    f.write(config + f"  - {{name: later, vip: {LATER}, port: 80, kind: l4, pool: l4web, forwarding: fnat}}\n")
refused0 = e.metric("edge_config_reloads_total", outcome="refused")
r = e.post("/reload")
c.that(r.stdout.strip().endswith("409") and "later.limits.yaml:2:5: limit later-conn: scope conn on service 'later'"
       in r.stdout and "running configuration kept" in r.stdout,
       "the reload adding `later` as kind l4 is refused with the limit's file:line:col: " + r.stdout.strip()[-300:])
c.that(e.metric("edge_config_reloads_total", outcome="refused") == refused0 + 1, "counted as a refused reload")
s, _, _ = get(LATER, CLIENT, timeout=3)
c.that(s == 0, f"`later` does not serve (status {s})")
s, _, body = get(FWD, CLIENT)
c.that(s == 200 and body == "b1\n", f"fwd still serves under the running configuration (status {s})")
gen = e.rules_generation()
os.remove(os.path.join(rules_dir, "later.limits.yaml"))
c.that(e.wait_rules_generation(gen), "removing the limit publishes the directory again")
r = e.post("/reload")
c.that(r.stdout.strip().endswith("200"), "without that limit the same configuration reloads: " + r.stdout.strip()[-200:])
s, _, body = get(LATER, CLIENT)
c.that(s == 200 and body == "b1\n", f"and `later` serves (status {s})")

c.that(e.stop() == 0, "edged exits cleanly")
c.done(e)
