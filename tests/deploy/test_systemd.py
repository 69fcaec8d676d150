#!/usr/bin/python3
"""The systemd units under deploy/systemd pass `systemd-analyze verify` (with /usr/bin/edged and
/usr/bin/edgectl pointed at this build, since the test machine has them nowhere else), carry the
settings issue 15 asks for, and a broken unit fails the same check (so it can fail)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("EDGE_BUILD", os.path.join(SRC, "build"))
UNITS = os.path.join(SRC, "deploy", "systemd")
failures = []


def that(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def verify(d, names):
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + [os.path.join(d, n) for n in names],
                       capture_output=True, text=True, cwd=d)
    # Lines about units this test does not ship (the host's own units) are not ours.
    ours = [l for l in (r.stdout + r.stderr).splitlines() if any(n.replace("\\", "") in l.replace("\\", "") for n in names)
            or l.startswith(d)]
    return r.returncode, ours


work = tempfile.mkdtemp(prefix="edge-deploy-systemd-")
try:
    names = [n for n in os.listdir(UNITS) if n.endswith((".service", ".mount"))]
    for n in names:
        text = open(os.path.join(UNITS, n)).read()
        text = text.replace("/usr/bin/edged", os.path.join(BUILD, "edge", "edged"))
        text = text.replace("/usr/bin/edgectl", os.path.join(BUILD, "edge", "edgectl"))
        with open(os.path.join(work, n), "w") as f:
            f.write(text)
    rc, out = verify(work, names)
    that(rc == 0 and not out, f"systemd-analyze verify {' '.join(sorted(names))}: rc {rc} {out}")
    unit = open(os.path.join(UNITS, "edged.service")).read()
    for key, pat in (("LimitMEMLOCK", r"^LimitMEMLOCK=infinity$"), ("ExecReload", r"^ExecReload=/bin/kill -HUP \$MAINPID$"),
                     ("Restart", r"^Restart=on-failure$"), ("hugepage mount", r"^Requires=dev-hugepages\.mount$"),
                     ("capabilities", r"^CapabilityBoundingSet=CAP_IPC_LOCK CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_NICE$"),
                     ("hardening", r"^ProtectSystem=strict$"), ("no new privileges", r"^NoNewPrivileges=yes$"),
                     ("config errors not retried", r"^RestartPreventExitStatus=2$")):
        that(re.search(pat, unit, re.M) is not None, f"edged.service has {key}")
    with open(os.path.join(work, "broken.service"), "w") as f:
        f.write("[Service]\nExecStart=/nonexistent/edged\nLimitMEMLOCK=lots\n")
    rc, out = verify(work, ["broken.service"])
    that(rc != 0 or out, f"a broken unit fails verify: {out}")
finally:
    shutil.rmtree(work, ignore_errors=True)
print(f"test_systemd: {'FAILED' if failures else 'passed'} ({len(failures)} failures)")
sys.exit(1 if failures else 0)
